package shard

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
)

// The catalog's member index (catalog.MemberSet) says which shards hold a
// client's conversations, so that a login asks only those. A shard's
// leader keeps it up to date (core/members.go) from what this file gives
// it: the clients each applied entry touched, and their counts read from
// the state. "A client's conversations" here are what a login share reads
// per client: member index entries (conversations it is a member of;
// chatrooms keep none), system-conversation subscriptions and server →
// user messages (sysconv.go, 'y' and 'v'); and a shard's global
// broadcasts (global.go, 'g'), which every login must get, count for
// AllClients.
//
// Nothing here writes state: the observer is a side effect of Apply on
// this replica only, and the same entry touches the same clients on
// every replica.

// AllClients is the client a shard counts its global broadcasts under
// (global.go): every login of the app must ask a shard that holds one. It
// holds ':', which no clientId may (core refuses it at login).
const AllClients = ":all"

// MemberTouch names a client whose conversations an entry changed.
type MemberTouch struct {
	App, Client string
}

// memberWatch is the FSM's observer and this replica's member index.
type memberWatch struct {
	touched []MemberTouch // filled by the appliers of the entry being applied
	mu      sync.Mutex
	fn      func(index uint64, touched []MemberTouch)
	// index is the raft index of the last entry applied here that touched
	// a client, or a floor for it (FloorMemberIndex, a restore).
	index   atomic.Uint64
	restore atomic.Bool // a snapshot restore since the last entry
}

// touch records key's client when key is one of its conversation entries.
func (a *applier) touch(key []byte) {
	if a.touched == nil || len(key) == 0 {
		return
	}
	switch key[0] {
	case tagMember, tagSubIdx, tagUserIdx, tagGlobal:
	default:
		return
	}
	app, rest, ok := readStr(key[1:])
	if !ok {
		return
	}
	if key[0] == tagGlobal {
		*a.touched = append(*a.touched, MemberTouch{App: app, Client: AllClients})
		return
	}
	pid, _, ok := readStr(rest)
	if !ok {
		return
	}
	*a.touched = append(*a.touched, MemberTouch{App: app, Client: pid})
}

// applied runs after each entry: the observer hears of the clients it
// touched, and the member index moves.
func (w *memberWatch) applied(index uint64, res any) {
	if w.restore.Swap(false) && index > 0 {
		w.floor(index - 1) // the restored state may hold any change below
	}
	t := w.touched
	w.touched = nil
	if len(t) == 0 {
		return
	}
	if _, fatal := res.(*FatalError); fatal {
		return // the batch is thrown away
	}
	w.floor(index)
	w.mu.Lock()
	fn := w.fn
	w.mu.Unlock()
	if fn != nil {
		fn(index, t)
	}
}

func (w *memberWatch) floor(i uint64) {
	for {
		old := w.index.Load()
		if i <= old || w.index.CompareAndSwap(old, i) {
			return
		}
	}
}

func (w *memberWatch) reset() {
	w.touched = nil
	w.restore.Store(true)
}

// ObserveMembers sets the function Apply calls after each entry that
// changed clients' conversations, with the entry's raft index and the
// clients (repeated when touched twice). It runs inside Apply: it must
// be quick and must not call back into the replica. Nil stops it.
func (f *FSM) ObserveMembers(fn func(index uint64, touched []MemberTouch)) {
	f.members.mu.Lock()
	f.members.fn = fn
	f.members.mu.Unlock()
}

// MemberIndex is the raft index of the last entry this replica applied
// that changed a client's conversations, or a floor at least that high
// where it cannot know (FloorMemberIndex at open; the entry before the
// first one applied after a snapshot restore).
func (f *FSM) MemberIndex() uint64 { return f.members.index.Load() }

// FloorMemberIndex raises MemberIndex to at least i (at open: the applied
// index, since the entries before it were applied by an earlier process).
func (f *FSM) FloorMemberIndex(i uint64) { f.members.floor(i) }

// maxClientCount caps ClientCount: the catalog needs to know whether a
// client has something in a shard, not how much.
const maxClientCount = 1000

// ClientCount returns how many conversation entries (memberships,
// subscriptions, server → user messages) client pid of app has in the
// shard, at most maxClientCount.
func ClientCount(r Reader, app, pid string) (uint64, error) {
	var n uint64
	prefixes := [][]byte{memberPrefix(app, pid), subIdxPrefix(app, pid), newKey(tagUserIdx).str(app).str(pid)}
	if pid == AllClients {
		prefixes = [][]byte{globalPrefix(app)}
	}
	for _, p := range prefixes {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return 0, fmt.Errorf("shard: client count: %w", err)
		}
		for ok := it.First(); ok && n < maxClientCount; ok = it.Next() {
			n++
		}
		if err := it.Close(); err != nil {
			return 0, fmt.Errorf("shard: client count: %w", err)
		}
	}
	return n, nil
}

// ClientCounts calls fn once for every client with conversation entries
// in the shard, with its count (as ClientCount, capped), in no particular
// order. It reads the whole of the three tables: for a new leader's full
// resend.
func ClientCounts(r Reader, fn func(app, pid string, n uint64)) error {
	counts := map[MemberTouch]uint64{}
	for _, tag := range []byte{tagMember, tagSubIdx, tagUserIdx, tagGlobal} {
		p := []byte{tag}
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return fmt.Errorf("shard: client counts: %w", err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			app, rest, ok := readStr(it.Key()[1:])
			if !ok {
				continue
			}
			pid := AllClients
			if tag != tagGlobal {
				if pid, _, ok = readStr(rest); !ok {
					continue
				}
			}
			k := MemberTouch{App: app, Client: pid}
			if counts[k] < maxClientCount {
				counts[k]++
			}
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("shard: client counts: %w", err)
		}
	}
	for k, n := range counts {
		fn(k.App, k.Client, n)
	}
	return nil
}
