package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/metric"
)

// StateMachine applies committed commands to the state DB.
type StateMachine interface {
	// Apply applies one committed command; deterministic; b is an indexed batch
	// over the state DB (reads through b see writes made earlier in the same
	// raft batch). The result goes back to the proposer on the leader.
	// Apply must not write keys beginning with ReservedPrefix, and must not
	// commit or close b.
	//
	// An error result that implements FatalApplyError stops the replica:
	// the batch is thrown away (nothing of it reaches the state, the
	// applied index stays behind the entry), the replica applies nothing
	// more and shuts raft down. Any other result, error or not, is the
	// entry's outcome, which must be the same on every replica.
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
//
// A fatal apply error (FatalApplyError from the state machine, or a state
// commit that fails) fails the fsm for good: fail records the error,
// closes failed, and calls onFail (set by Open: it shuts raft down). From
// then on ApplyBatch applies nothing, Snapshot and Restore refuse, and the
// state DB keeps the last batch that committed, so a restart on healthy
// storage (or a newer binary) replays the rest of the log.
type fsm struct {
	db      *pebble.DB
	sm      StateMachine
	log     *slog.Logger
	applied atomic.Uint64
	// batch times ApplyBatch's batches that applied entries (Node.Latency).
	batch metric.Latency

	failOnce sync.Once
	failed   chan struct{}          // closed by fail
	failErr  error                  // set once, before failed is closed
	onFail   atomic.Pointer[func()] // set by Open once raft runs
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(db *pebble.DB, sm StateMachine) (*fsm, error) {
	f := &fsm{db: db, sm: sm, log: slog.New(slog.DiscardHandler), failed: make(chan struct{})}
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
// makes replaying the raft log idempotent.
//
// A fatal apply error (see StateMachine) or a failed commit stops the
// replica: the batch is discarded, the failing entry and every later one
// get an error wrapping ErrReplicaFailed, and the fsm fails (see fsm).
// Entries before the failing one keep their results: they are committed
// in the raft log and every other replica computes the same ones.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	res := make([]any, len(logs))
	if err := f.err(); err != nil {
		failFrom(res, 0, err)
		return res
	}
	applied := f.applied.Load()
	last := logs[len(logs)-1].Index
	if last <= applied {
		return res
	}
	start := time.Now()
	b := f.db.NewIndexedBatch()
	defer b.Close()
	for i, l := range logs {
		if l.Index <= applied || l.Type != raft.LogCommand {
			continue
		}
		r := f.sm.Apply(b, l.Index, l.Data)
		if fe, ok := asFatal(r); ok {
			err := fmt.Errorf("%w: entry %d: %w", ErrReplicaFailed, l.Index, fe)
			f.fail(err)
			failFrom(res, i, err)
			return res
		}
		res[i] = r
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], last)
	err := b.Set(appliedKey, v[:], nil)
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err != nil {
		err = fmt.Errorf("%w: commit entries up to %d: %w", ErrReplicaFailed, last, err)
		f.fail(err)
		failFrom(res, 0, err)
		return res
	}
	f.applied.Store(last)
	f.batch.Observe(time.Since(start))
	return res
}

// asFatal reports whether an Apply result is a fatal apply error.
func asFatal(r any) (error, bool) {
	err, ok := r.(error)
	if !ok {
		return nil, false
	}
	var fe FatalApplyError
	if !errors.As(err, &fe) {
		return nil, false
	}
	return err, true
}

func failFrom(res []any, i int, err error) {
	for ; i < len(res); i++ {
		res[i] = err
	}
}

// fail stops the fsm for good after a fatal apply error (see fsm).
func (f *fsm) fail(err error) {
	f.failOnce.Do(func() {
		f.failErr = err
		close(f.failed)
		f.log.Error("raftstore: replica stopped: it cannot apply the log as its peers do; "+
			"fix its storage (or upgrade it) and restart it to replay the log", "err", err,
			"applied", f.applied.Load())
		f.resetSM() // what it cached from the discarded batch is not the state
		if fn := f.onFail.Load(); fn != nil {
			(*fn)()
		}
	})
}

// err returns the error that failed the fsm, or nil.
func (f *fsm) err() error {
	select {
	case <-f.failed:
		return f.failErr
	default:
		return nil
	}
}

// Snapshot flushes the state DB, so that the state at the snapshot index is
// durable before raft compacts the log behind it, and returns a Pebble
// snapshot that Persist streams out on another goroutine.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.err(); err != nil {
		// raft counts the failed entries as applied; a snapshot now would
		// claim state this replica does not have.
		return nil, err
	}
	// The flush that makes the state at the snapshot's index durable is
	// Persist's, off the FSM goroutine: here it held every apply of the
	// group for a memtable's flush.
	return &fsmSnapshot{db: f.db, snap: f.db.NewSnapshot()}, nil
}

// Restore replaces the whole state with the snapshot stream. It first wipes
// the state and sets a restore marker in one durable batch, and clears the
// marker only after the stream is loaded and flushed; Open finds a marker
// left by a crash and restores again from the snapshot store.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.err(); err != nil {
		return err
	}
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
