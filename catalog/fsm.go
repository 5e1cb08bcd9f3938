package catalog

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// FSM is the catalog's state machine (a raftstore.StateMachine). All state
// is in Pebble (keys.go); the FSM keeps nothing in memory, so it needs no
// Reset, and raftstore's snapshots (a stream of every state key) carry the
// whole catalog.
//
// Apply is deterministic: it reads only the command and the state, never
// the clock or randomness, iterates the state in key order and sorted
// slices (never a map), and validates with code that does not depend on
// the environment.
type FSM struct{}

// New returns the catalog state machine.
func New() *FSM { return &FSM{} }

// Apply applies one committed command to b. It returns a *Result, an
// *Error for a command the state or the bounds refuse (nothing is written
// then), or a *FatalError when this replica cannot apply the command as
// every other replica does (a storage failure, a newer version).
func (f *FSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	if len(cmd) > MaxCommandBytes {
		if v := peekVersion(cmd); v > Version {
			return &FatalError{Index: index,
				Err: fmt.Errorf("%w: version %d, this replica applies up to %d", ErrUnknownVersion, v, Version)}
		}
		return fail(ErrTooLong, "command: %d bytes, at most %d", len(cmd), MaxCommandBytes)
	}
	v, c, err := Decode(cmd)
	if v > Version {
		return &FatalError{Index: index,
			Err: fmt.Errorf("%w: version %d, this replica applies up to %d", ErrUnknownVersion, v, Version)}
	}
	if err != nil {
		return &Error{Err: ErrBadCommand, Detail: err.Error()}
	}
	a := &applier{b: b, index: index, v: v}
	res, serr := a.apply(c)
	if a.err != nil {
		err := a.err
		if !errors.Is(err, ErrStorage) {
			err = fmt.Errorf("%w: %w", ErrStorage, err)
		}
		return &FatalError{Index: index, Op: c.Op(), Err: err}
	}
	if serr != nil {
		return serr
	}
	return res
}

// applier carries one command through Apply. err records the first
// storage failure, so handlers stay linear: once it is set, Apply answers
// with a FatalError whatever the handler returns. A handler checks every
// input before its first write, so a refusal writes nothing.
type applier struct {
	b     *pebble.Batch
	index uint64
	v     int // the command's version
	err   error
}

func (a *applier) apply(c Command) (*Result, *Error) {
	switch c := c.(type) {
	case *AddRegion:
		return a.addRegion(c)
	case *RemoveRegion:
		return a.removeRegion(c)
	case *PutNode:
		return a.putNode(c)
	case *RemoveNode:
		return a.removeNode(c)
	case *AddShard:
		return a.addShard(c)
	case *SetShardVoters:
		return a.setShardVoters(c)
	case *SetShardOpen:
		return a.setShardOpen(c)
	case *MemberDelta:
		return a.memberDelta(c)
	case *ClaimUnique:
		return a.claimUnique(c)
	case *ReleaseUnique:
		return a.releaseUnique(c)
	case *ImportIDs:
		return a.importIDs(c)
	case *PutApp:
		return a.putApp(c)
	case *DeleteApp:
		return a.deleteApp(c)
	case *MemberSet:
		return a.memberSet(c)
	}
	// Decode returns only the commands above.
	panic(fmt.Sprintf("catalog: apply: command %T without a handler", c))
}

// get returns a copy of the value at key, or false.
func (a *applier) get(key []byte) ([]byte, bool) {
	if a.err != nil {
		return nil, false
	}
	v, ok, err := getRaw(a.b, key)
	if err != nil {
		a.err = err
	}
	return v, ok
}

// getJSON decodes the value at key into v.
func (a *applier) getJSON(key []byte, what string, v any) bool {
	raw, ok := a.get(key)
	if !ok {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		a.err = errCorrupt(what, key)
		return false
	}
	return true
}

func (a *applier) has(key []byte) bool {
	_, ok := a.get(key)
	return ok
}

func (a *applier) set(key []byte, v any) {
	if a.err != nil {
		return
	}
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			a.err = err
			return
		}
	}
	if err := a.b.Set(key, b, nil); err != nil {
		a.err = err
	}
}

func (a *applier) del(key []byte) {
	if a.err != nil {
		return
	}
	if err := a.b.Delete(key, nil); err != nil {
		a.err = err
	}
}

// counter reads a counter (0 if unset).
func (a *applier) counter(key []byte) uint64 {
	v, ok := a.get(key)
	if !ok {
		return 0
	}
	if len(v) != 8 {
		a.err = errCorrupt("counter", key)
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (a *applier) setCounter(key []byte, n uint64) {
	a.set(key, binary.BigEndian.AppendUint64(nil, n))
}

// scan calls fn for every key with prefix, in key order, until fn returns
// false.
func (a *applier) scan(prefix []byte, fn func(k, v []byte) bool) {
	if a.err != nil {
		return
	}
	if err := scanPrefix(a.b, prefix, fn); err != nil {
		a.err = err
	}
}

func getRaw(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: read %q: %w", ErrStorage, key, err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

func scanPrefix(r pebble.Reader, prefix []byte, fn func(k, v []byte) bool) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("%w: scan: %w", ErrStorage, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("%w: scan: %w", ErrStorage, err)
	}
	return nil
}
