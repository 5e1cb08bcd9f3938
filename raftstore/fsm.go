package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

// StateMachine applies committed commands to the state DB.
type StateMachine interface {
	// Apply applies one committed command; deterministic; b is an indexed batch
	// over the state DB (reads through b see writes made earlier in the same
	// raft batch). The result goes back to the proposer on the leader.
	// Apply must not write keys beginning with ReservedPrefix, and must not
	// commit or close b.
	Apply(b *pebble.Batch, index uint64, cmd []byte) any
}

// Resetter is implemented by a StateMachine that keeps anything derived
// from the state DB in memory (a cache). raftstore calls Reset when it opens
// the state DB and whenever a snapshot restore replaces the state, before
// the next Apply.
type Resetter interface {
	Reset()
}

// ReservedPrefix starts the state DB keys raftstore keeps for itself (the
// applied index and the restore marker). Byte 0xff sorts after every key a
// state machine would normally write, so SM range scans never meet them.
const ReservedPrefix = "\xffraftstore/"

var (
	appliedKey   = []byte(ReservedPrefix + "applied")
	restoringKey = []byte(ReservedPrefix + "restoring")
)

// AppliedIndex returns the raft index of the last entry applied to a state DB
// (or a batch or snapshot of it), 0 if none.
func AppliedIndex(r pebble.Reader) (uint64, error) {
	v, closer, err := r.Get(appliedKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("raftstore: read applied index: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: applied index has %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// fsm adapts a StateMachine over a Pebble state DB to raft.BatchingFSM.
//
// raft calls ApplyBatch, Snapshot and Restore from its one FSM goroutine, so
// they never run concurrently; applied is atomic only so that other
// goroutines (tests, metrics) may read it.
type fsm struct {
	db      *pebble.DB
	sm      StateMachine
	applied atomic.Uint64
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(db *pebble.DB, sm StateMachine) (*fsm, error) {
	f := &fsm{db: db, sm: sm}
	f.resetSM()
	idx, err := AppliedIndex(db)
	if err != nil {
		return nil, err
	}
	f.applied.Store(idx)
	return f, nil
}

// Apply implements raft.FSM; raft uses ApplyBatch instead.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies every command of logs in one indexed batch together with
// the new applied index, and commits it without fsync. Entries at or below the
// stored applied index were applied before a restart and are skipped, which
// makes replaying the raft log idempotent. A failed commit leaves the state
// machine behind the log with no way to report it, so it panics, as raft does
// for store failures on this path.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	res := make([]any, len(logs))
	applied := f.applied.Load()
	last := logs[len(logs)-1].Index
	if last <= applied {
		return res
	}
	b := f.db.NewIndexedBatch()
	defer b.Close()
	for i, l := range logs {
		if l.Index <= applied || l.Type != raft.LogCommand {
			continue
		}
		res[i] = f.sm.Apply(b, l.Index, l.Data)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], last)
	if err := b.Set(appliedKey, v[:], nil); err != nil {
		panic(fmt.Sprintf("raftstore: set applied index %d: %v", last, err))
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		panic(fmt.Sprintf("raftstore: commit applied batch up to %d: %v", last, err))
	}
	f.applied.Store(last)
	return res
}

// Snapshot flushes the state DB, so that the state at the snapshot index is
// durable before raft compacts the log behind it, and returns a Pebble
// snapshot that Persist streams out on another goroutine.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.db.Flush(); err != nil {
		return nil, fmt.Errorf("raftstore: flush state before snapshot: %w", err)
	}
	return &fsmSnapshot{snap: f.db.NewSnapshot()}, nil
}

// Restore replaces the whole state with the snapshot stream. It first wipes
// the state and sets a restore marker in one durable batch, and clears the
// marker only after the stream is loaded and flushed; Open finds a marker
// left by a crash and restores again from the snapshot store.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	defer f.resetSM() // also after a failed load: the state is not what it was
	f.resetSM()
	if err := f.wipe(); err != nil {
		return err
	}
	if err := readSnapshot(rc, f.db); err != nil {
		return err
	}
	if err := f.db.Delete(restoringKey, pebble.NoSync); err != nil {
		return fmt.Errorf("raftstore: clear restore marker: %w", err)
	}
	if err := f.db.Flush(); err != nil {
		return fmt.Errorf("raftstore: flush restored state: %w", err)
	}
	idx, err := AppliedIndex(f.db)
	if err != nil {
		return err
	}
	f.applied.Store(idx)
	return nil
}

// wipe deletes every key of the state DB and sets the restore marker, in one
// batch made durable by a flush (the state DB may have no WAL to sync).
func (f *fsm) wipe() error {
	it, err := f.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("raftstore: wipe state: %w", err)
	}
	var end []byte
	if it.Last() {
		end = append(append([]byte(nil), it.Key()...), 0)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("raftstore: wipe state: %w", err)
	}
	b := f.db.NewBatch()
	defer b.Close()
	if end != nil {
		if err := b.DeleteRange([]byte{}, end, nil); err != nil {
			return fmt.Errorf("raftstore: wipe state: %w", err)
		}
	}
	if err := b.Set(restoringKey, nil, nil); err != nil {
		return fmt.Errorf("raftstore: set restore marker: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("raftstore: wipe state: %w", err)
	}
	if err := f.db.Flush(); err != nil {
		return fmt.Errorf("raftstore: wipe state: %w", err)
	}
	f.applied.Store(0)
	return nil
}

// restoring reports whether a restore was interrupted.
func (f *fsm) restoring() (bool, error) {
	_, closer, err := f.db.Get(restoringKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("raftstore: read restore marker: %w", err)
	}
	closer.Close()
	return true, nil
}

// resetSM tells the state machine that the state DB changed behind it.
func (f *fsm) resetSM() {
	if r, ok := f.sm.(Resetter); ok {
		r.Reset()
	}
}
