package raftstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/metric"
)

// Config configures one replica. Zero tuning fields take the defaults below.
type Config struct {
	NodeID string // raft server ID
	Dir    string // data directory of this replica: raft/, state/, snapshots/
	// Transport carries raft RPCs, e.g. raft.NewNetworkTransport over
	// mesh.RaftLayer, or raft.NewTCPTransport. The Node owns it from Open on
	// (also when Open fails): Close closes it.
	Transport raft.Transport
	Bootstrap []raft.Server // non-empty on first start of a new group; ignored once there is state
	SM        StateMachine
	Logger    *slog.Logger // nil discards

	SnapshotThreshold  uint64        // log entries since the last snapshot that trigger one; default 8192
	SnapshotInterval   time.Duration // how often to check SnapshotThreshold; default 2m
	TrailingLogs       uint64        // entries kept behind a snapshot; default 10240
	SnapshotRetain     int           // snapshots kept on disk; default 2
	HeartbeatTimeout   time.Duration // default 1s
	ElectionTimeout    time.Duration // default 1s
	LeaderLeaseTimeout time.Duration // default 500ms
	CommitTimeout      time.Duration // default 50ms
	MaxAppendEntries   int           // entries per AppendEntries and per apply batch; default and maximum 1024
	LogCacheSize       int           // recent entries cached in memory for replication; default 4*MaxAppendEntries
	// StateWAL keeps a (never synced) WAL on the state DB, so that a process
	// restart finds every applied entry in the state and replays nothing.
	// Off by default: the raft log already is the state's write-ahead log.
	StateWAL bool
	// LogStore, when set, is the replica's raft log and stable store
	// instead of its own DB in Dir/raft: a Group of a DB the node shares
	// among its raft groups (issue 9 step 2b), which the caller closes
	// after every replica on it.
	LogStore *LogStore
	// StateCache, when set, is the state DB's block cache, shared with the
	// node's other groups (NewStateCache); the caller keeps its reference
	// and drops it after every DB on it closed. Nil: a cache of the DB's
	// own, StateCacheSize.
	StateCache *pebble.Cache
	// StateOptions, when set, adjusts the state DB's Pebble options before
	// it opens; tests inject storage faults with it (an FS from pebble's
	// vfs/errorfs, a zero-size block cache so reads reach the files).
	StateOptions func(*pebble.Options)
	// CompactionShare paces the state DB's compactions: while L0 keeps
	// up, a compaction works at most this share of the time and sleeps
	// the rest (see compactionPacer). 0 is DefaultCompactionShare; 1 or
	// more turns pacing off.
	CompactionShare float64
}

// DefaultCompactionShare is the state DB's compaction pace
// (Config.CompactionShare): a compaction that would take a core for a
// second takes a quarter of one for four (docs/BENCHMARKS.md, stop 35).
const DefaultCompactionShare = 0.25

// compactionBacklogL0 is the L0 table count at which compactions stop
// being paced: twice the count that starts an L0 compaction means writes
// are outrunning them.
const compactionBacklogL0 = 2 * stateL0CompactionThreshold

const defaultMaxAppendEntries = 1024

// Node is one replica of a raft group whose log, stable store and state
// machine live in Pebble.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	logs  *LogStore
	state *pebble.DB
	cache *pebble.Cache    // the state DB's block cache (maybe shared: Config.StateCache)
	pacer *compactionPacer // nil: the state DB's compactions are not paced
	fsm   *fsm
	trans raft.Transport

	// propose times the proposals that committed (Latency).
	propose metric.Latency

	closed    atomic.Bool
	waiters   sync.WaitGroup // Propose goroutines waiting on futures for a ctx-bound caller
	waitMu    sync.Mutex     // orders waiters.Add before Close's Wait (addWaiter)
	closeOnce sync.Once
	closeErr  error

	// shutdownOnce guards shutdown: raft is shut down once, by Close or
	// when the replica fails (fsm.fail, on raft's FSM goroutine, which
	// must not wait for it); Close waits for that future.
	shutdownOnce sync.Once
	shutdown     raft.Future
}

// Open opens (or creates) the replica in cfg.Dir and starts raft. If
// cfg.Bootstrap is set and the replica has no raft state yet, the group is
// bootstrapped with those servers first.
func Open(cfg Config) (n *Node, err error) {
	if cfg.Transport == nil {
		return nil, errors.New("raftstore: open: no transport")
	}
	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				_ = cleanup[i]()
			}
		}
	}()
	cleanup = append(cleanup, func() error { return closeTransport(cfg.Transport) })
	if cfg.NodeID == "" || cfg.Dir == "" || cfg.SM == nil {
		return nil, errors.New("raftstore: open: NodeID, Dir and SM are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("raft_id", cfg.NodeID)
	if cfg.MaxAppendEntries <= 0 {
		cfg.MaxAppendEntries = defaultMaxAppendEntries
	}
	if cfg.LogCacheSize <= 0 {
		cfg.LogCacheSize = 4 * cfg.MaxAppendEntries
	}
	if cfg.SnapshotRetain <= 0 {
		cfg.SnapshotRetain = 2
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftstore: open: %w", err)
	}

	logs := cfg.LogStore
	if logs == nil {
		var err error
		if logs, err = OpenLogStore(filepath.Join(cfg.Dir, "raft"), logDBOptions(logger)); err != nil {
			return nil, err
		}
	}
	cleanup = append(cleanup, logs.Close) // a Group view's Close leaves the shared DB open

	stateOpts := stateDBOptions(logger, cfg.StateWAL, cfg.StateCache)
	stateCache := stateOpts.Cache
	if cfg.StateOptions != nil {
		cfg.StateOptions(stateOpts)
	}
	var pacer *compactionPacer
	if share := cmp.Or(cfg.CompactionShare, DefaultCompactionShare); share > 0 && share < 1 {
		pacer = newCompactionPacer(cmp.Or(stateOpts.FS, vfs.Default), share, compactionBacklogL0)
		pacer.install(stateOpts)
	}
	state, err := pebble.Open(filepath.Join(cfg.Dir, "state"), stateOpts)
	if cfg.StateCache == nil {
		stateCache.Unref() // the state DB holds its own reference while open
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: open state db: %w", err)
	}
	cleanup = append(cleanup, state.Close)
	if pacer != nil {
		pacer.db.Store(state)
	}

	f, err := newFSM(state, cfg.SM)
	if err != nil {
		return nil, err
	}
	f.log = logger
	hlog := newHCLog(logger, "raft")
	snaps, err := openSnapStore(filepath.Join(cfg.Dir, "snapshots"), cfg.SnapshotRetain, logger, func() *pebble.Options {
		o := &pebble.Options{Logger: pebbleLogger{logger.With("db", "snapshot")}}
		TuneStateDB(o)
		return o
	})
	if err != nil {
		return nil, err
	}
	if err := finishRestore(f, snaps); err != nil {
		return nil, err
	}

	rc := raftConfig(cfg, hlog)
	cached, err := raft.NewLogCache(cfg.LogCacheSize, logs)
	if err != nil {
		return nil, fmt.Errorf("raftstore: log cache: %w", err)
	}
	if len(cfg.Bootstrap) > 0 {
		has, err := raft.HasExistingState(cached, logs, snaps)
		if err != nil {
			return nil, fmt.Errorf("raftstore: open: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: cfg.Bootstrap}
			if err := raft.BootstrapCluster(rc, cached, logs, snaps, cfg.Transport, conf); err != nil {
				return nil, fmt.Errorf("raftstore: bootstrap: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, f, cached, logs, snaps, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}
	n = &Node{cfg: cfg, log: logger, raft: r, logs: logs, state: state, cache: stateOpts.Cache, pacer: pacer, fsm: f, trans: cfg.Transport}
	stop := func() { n.shutdownRaft() }
	f.onFail.Store(&stop)
	if f.err() != nil { // failed before onFail was set
		n.shutdownRaft()
	}
	return n, nil
}

// shutdownRaft shuts raft down once and returns the future to wait on.
func (n *Node) shutdownRaft() raft.Future {
	n.shutdownOnce.Do(func() { n.shutdown = n.raft.Shutdown() })
	return n.shutdown
}

func raftConfig(cfg Config, hlog *hclogAdapter) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	// BatchApplyCh stays off: with a buffered applyCh, futures still in the
	// buffer when raft shuts down are never answered (hashicorp/raft
	// v1.8.0), so Propose and Close would wait forever. Unbuffered, the
	// leader loop still drains every waiting Apply into one batch of up to
	// MaxAppendEntries, and every future it took is answered on shutdown.
	rc.BatchApplyCh = false
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	// The state DB is persistent and knows its applied index; restoring the
	// last snapshot on start would only throw newer state away.
	rc.NoSnapshotRestoreOnStart = true
	setIf(&rc.SnapshotThreshold, cfg.SnapshotThreshold)
	setIf(&rc.SnapshotInterval, cfg.SnapshotInterval)
	setIf(&rc.TrailingLogs, cfg.TrailingLogs)
	setIf(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	setIf(&rc.ElectionTimeout, cfg.ElectionTimeout)
	setIf(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	setIf(&rc.CommitTimeout, cfg.CommitTimeout)
	return rc
}

func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// finishRestore completes a snapshot restore that a crash interrupted, from
// the newest snapshot on disk.
func finishRestore(f *fsm, snaps raft.SnapshotStore) error {
	restoring, err := f.restoring()
	if err != nil || !restoring {
		return err
	}
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raftstore: list snapshots: %w", err)
	}
	if len(list) == 0 {
		return fmt.Errorf("%w: restore interrupted and no snapshot left", ErrBadSnapshot)
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("raftstore: open snapshot %s: %w", list[0].ID, err)
	}
	if err := f.Restore(rc); err != nil {
		return fmt.Errorf("raftstore: finish interrupted restore: %w", err)
	}
	return nil
}

// Propose commits cmd through raft and returns the state machine's result
// once the command is applied on this (leader) replica. A result that is an
// error is returned as the error. On a follower, or a closed Node (which
// also matches ErrClosed), it fails with ErrNotLeader; on a failed replica
// (Err) with ErrReplicaFailed. The context bounds
// both enqueueing and waiting; when it ends first, the command may still
// commit.
func (n *Node) Propose(ctx context.Context, cmd []byte) (any, error) {
	if err := n.fsm.err(); err != nil {
		return nil, err
	}
	if n.closed.Load() {
		return nil, fmt.Errorf("%w: %w", ErrNotLeader, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	start := time.Now()
	f := n.raft.Apply(cmd, timeout)
	var err error
	if ctx.Done() == nil {
		err = f.Error()
	} else {
		if !n.addWaiter() {
			err = f.Error() // closing: raft's shutdown ends the future
		} else {
			done := make(chan error, 1)
			go func() {
				defer n.waiters.Done()
				done <- f.Error()
			}()
			select {
			case err = <-done:
			case <-ctx.Done():
				return nil, fmt.Errorf("raftstore: propose (outcome unknown): %w", ctx.Err())
			}
		}
	}
	if err != nil {
		return nil, proposeErr(err)
	}
	n.propose.Observe(time.Since(start))
	resp := f.Response()
	if e, ok := resp.(error); ok {
		return nil, e
	}
	return resp, nil
}

// Latency is how long this replica's proposals that committed took, from
// Propose to the applied result (appending, replication to a quorum,
// commit and the state machine's apply: what a client's write waits
// for; proposals that failed, on a follower or at a timeout, are left
// out, a state machine's error result counts), and how long its state
// machine took per batch of committed entries (ApplyBatch: the entries'
// Apply and the Pebble commit, on every replica), since Open.
func (n *Node) Latency() (propose, batch metric.LatencySnapshot) {
	return n.propose.Snapshot(), n.fsm.batch.Snapshot()
}

func proposeErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w: %w", ErrNotLeader, ErrClosed, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("raftstore: propose: %w: %w", context.DeadlineExceeded, err)
	}
	return fmt.Errorf("raftstore: propose: %w", err)
}

// State returns the state DB: committed and applied state, read-only for
// callers, valid until Close. On a follower it may lag the leader.
func (n *Node) State() *pebble.DB { return n.state }

// AppliedIndex returns the raft index of the last entry applied to State.
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied.Load() }

// Err returns the fatal apply error that stopped this replica, nil while it
// runs. A failed replica has shut raft down (it is no leader and applies
// nothing); its state DB stays as of the last batch that committed, so a
// restart replays the log from there. See FatalApplyError.
func (n *Node) Err() error { return n.fsm.err() }

// Failed is closed when the replica stops after a fatal apply error; the
// process hosting it should then exit loudly (cmd/relaymesh does).
func (n *Node) Failed() <-chan struct{} { return n.fsm.failed }

// StateMachine returns the state machine the node applies commands to
// (Config.SM), so that the service over it can use what it caches.
func (n *Node) StateMachine() StateMachine { return n.cfg.SM }

// IsLeader reports whether this replica is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's address and ID, empty if unknown.
func (n *Node) Leader() (addr string, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// WaitLeader returns once the group has a leader known to this replica.
func (n *Node) WaitLeader(ctx context.Context) error {
	ch := make(chan raft.Observation, 1)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	// Observations are dropped when ch is full; the ticker covers that and
	// leader changes raft does not announce, such as a restart.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if n.closed.Load() {
			return ErrClosed
		}
		if _, id := n.raft.LeaderWithID(); id != "" {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("raftstore: wait leader: %w", ctx.Err())
		}
	}
}

// HandOff moves leadership to another voter if this replica leads and
// the group has one, and returns once a new leader has taken over, the
// transfer failed, or ctx ends. It is what a core does before it stops
// (and `relaymesh admin shard transfer-leader` asks): proposals waiting
// on this leader fail as not-leader, so their callers retry on the new
// one at once instead of waiting out an election timeout after a close.
// moved is false when nothing was to be moved (a follower, a single
// voter).
func (n *Node) HandOff(ctx context.Context) (moved bool, err error) {
	if n.closed.Load() {
		return false, ErrClosed
	}
	if !n.IsLeader() {
		return false, nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, fmt.Errorf("raftstore: hand off: %w", err)
	}
	others := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			others++
		}
	}
	if others == 0 {
		return false, nil
	}
	done := make(chan error, 1)
	go func() { done <- n.raft.LeadershipTransfer().Error() }()
	select {
	case err := <-done:
		if err != nil {
			return false, fmt.Errorf("raftstore: hand off: %w", err)
		}
		return true, nil
	case <-ctx.Done():
		return false, fmt.Errorf("raftstore: hand off: %w", ctx.Err())
	}
}

// Raft returns the underlying raft instance, for membership changes,
// snapshots and stats.
func (n *Node) Raft() *raft.Raft { return n.raft }

// addWaiter counts one more goroutine waiting on a future, unless the
// node is closing: a WaitGroup's Add must not race its Wait (Close).
func (n *Node) addWaiter() bool {
	n.waitMu.Lock()
	defer n.waitMu.Unlock()
	if n.closed.Load() {
		return false
	}
	n.waiters.Add(1)
	return true
}

// closeWaitersMax bounds how long Close waits for proposals still waiting
// on raft's futures once raft has shut down.
const closeWaitersMax = 2 * time.Second

// WaitAtMost waits for wg, at most max, and reports whether it finished.
// It is for goroutines blocked on raft futures once raft is shutting
// down: raft answers every future it holds then, except one it had queued
// where no loop took it, which it never answers. Such a goroutine stays
// blocked (the process is stopping); the caller goes on.
func WaitAtMost(wg *sync.WaitGroup, max time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Close shuts raft down, closes the transport and both DBs, and returns
// after every goroutine it started has exited, but for a proposal's waiter
// whose future raft never answers (closeWaitersMax). It takes no snapshot.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.waitMu.Lock()
		n.closed.Store(true)
		n.waitMu.Unlock()
		f := n.shutdownRaft()
		// Raft's shutdown waits for its replication goroutines, and one
		// dialing a dead peer waits out the transport's timeout (10 s)
		// unless the stream layer is closed: close it now, so the dial
		// gives up at once.
		stopDials(n.trans)
		errs := []error{f.Error()}
		// Proposals still waiting end with raft's shutdown, except one
		// whose future raft had queued but no loop took: raft never
		// answers it. Give them closeWaitersMax, then go on (such a
		// goroutine stays blocked; the process is stopping).
		WaitAtMost(&n.waiters, closeWaitersMax)
		if n.pacer != nil {
			n.pacer.closing.Store(true) // Close waits for a compaction running: let it run flat out
		}
		errs = append(errs, closeTransport(n.trans), n.logs.Close(), n.state.Close())
		if err := errors.Join(errs...); err != nil {
			n.closeErr = fmt.Errorf("raftstore: close: %w", err)
		}
	})
	return n.closeErr
}

// stopDials closes the stream layer under a NetworkTransport (its Close
// closes the layer, and nothing else until CloseStreams), so that dials in
// progress end.
func stopDials(t raft.Transport) {
	if c, ok := t.(*raft.NetworkTransport); ok {
		c.Close()
	}
}

// closeTransport closes pooled outgoing connections too (raft's
// NetworkTransport.Close leaves them open, which strands the peers'
// connection handlers), then the transport.
func closeTransport(t raft.Transport) error {
	if s, ok := t.(interface{ CloseStreams() }); ok {
		s.CloseStreams()
	}
	if c, ok := t.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}
