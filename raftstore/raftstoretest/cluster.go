// Package raftstoretest runs in-process raftstore groups for tests: N
// replicas in one process, each with its own directory and a real transport
// (TCP on 127.0.0.1 by default; swap in any raft.Transport with
// WithTransport).
package raftstoretest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/raftstore"
)

// Option adjusts a Cluster.
type Option func(*settings)

type settings struct {
	config    func(i int, c *raftstore.Config)
	transport func(addr string, logger *slog.Logger) (raft.Transport, error)
	level     slog.Level
}

// WithConfig lets a test tune each replica's Config before Open.
func WithConfig(f func(i int, c *raftstore.Config)) Option {
	return func(s *settings) { s.config = f }
}

// WithTransport replaces the TCP transport. addr is "" for a new replica
// (pick any address) and the replica's previous address on Restart.
func WithTransport(f func(addr string, logger *slog.Logger) (raft.Transport, error)) Option {
	return func(s *settings) { s.transport = f }
}

// WithLogLevel sets the level of the t.Log logger; default slog.LevelWarn.
func WithLogLevel(l slog.Level) Option {
	return func(s *settings) { s.level = l }
}

// TCPTransport binds a raft TCP transport on addr, or 127.0.0.1:0 if empty.
func TCPTransport(addr string, logger *slog.Logger) (raft.Transport, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	return raft.NewTCPTransportWithConfig(addr, nil, &raft.NetworkTransportConfig{
		MaxPool: 3,
		Timeout: 2 * time.Second,
		Logger:  raftstore.NewHCLogger(logger, "raft-net"),
	})
}

// Cluster is an in-process raft group. Replica i is node i, with raft ID
// "n<i>" and directory under t.TempDir(). Closing happens in t.Cleanup.
type Cluster struct {
	t   testing.TB
	sm  func(i int) raftstore.StateMachine
	set settings
	log *slog.Logger
	tw  *tlogWriter

	mu    sync.Mutex
	nodes []*raftstore.Node // guarded by mu; nil while down
	dirs  []string          // guarded by mu
	addrs []string          // guarded by mu
}

// NewCluster starts n replicas bootstrapped as one group and waits for a
// leader. sm returns replica i's state machine; it is called again on Restart.
func NewCluster(t testing.TB, n int, sm func(i int) raftstore.StateMachine, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, sm: sm, set: settings{transport: TCPTransport, level: slog.LevelWarn}}
	for _, o := range opts {
		o(&c.set)
	}
	c.tw = &tlogWriter{t: t}
	c.log = slog.New(slog.NewTextHandler(c.tw, &slog.HandlerOptions{Level: c.set.level}))
	t.Cleanup(c.Close)

	base := t.TempDir()
	trans := make([]raft.Transport, n)
	servers := make([]raft.Server, n)
	for i := range n {
		tr, err := c.set.transport("", c.log)
		if err != nil {
			t.Fatalf("transport %d: %v", i, err)
		}
		trans[i] = tr
		c.dirs = append(c.dirs, filepath.Join(base, nodeID(i)))
		c.addrs = append(c.addrs, string(tr.LocalAddr()))
		servers[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(nodeID(i)), Address: tr.LocalAddr()}
	}
	c.nodes = make([]*raftstore.Node, n)
	for i := range n {
		nd, err := raftstore.Open(c.config(i, trans[i], servers))
		if err != nil {
			t.Fatalf("open node %d: %v", i, err)
		}
		c.nodes[i] = nd
	}
	c.WaitLeader()
	return c
}

func nodeID(i int) string { return fmt.Sprintf("n%d", i) }

func (c *Cluster) config(i int, tr raft.Transport, bootstrap []raft.Server) raftstore.Config {
	cfg := raftstore.Config{
		NodeID:             nodeID(i),
		Dir:                c.dirs[i],
		Transport:          tr,
		Bootstrap:          bootstrap,
		SM:                 c.sm(i),
		Logger:             c.log.With("node", i),
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 200 * time.Millisecond,
		CommitTimeout:      10 * time.Millisecond,
	}
	if c.set.config != nil {
		c.set.config(i, &cfg)
	}
	return cfg
}

// N returns the number of replicas, live or down.
func (c *Cluster) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Node returns replica i, nil while it is down.
func (c *Cluster) Node(i int) *raftstore.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Addr returns replica i's raft address.
func (c *Cluster) Addr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[i]
}

// Dir returns replica i's data directory.
func (c *Cluster) Dir(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirs[i]
}

// Live returns the indexes of the replicas that are up.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []int
	for i, n := range c.nodes {
		if n != nil {
			live = append(live, i)
		}
	}
	return live
}

// Leader returns the index of a live replica that is leader now, or -1.
func (c *Cluster) Leader() int {
	for _, i := range c.Live() {
		if n := c.Node(i); n != nil && n.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits up to 10s for a leader among the live replicas and
// returns its index.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	l := -1
	WaitFor(c.t, 10*time.Second, func() error {
		if l = c.Leader(); l < 0 {
			return errors.New("no leader")
		}
		return nil
	})
	return l
}

// Propose proposes cmd to the current leader, retrying on ErrNotLeader until
// ctx ends. A retry after raft.ErrLeadershipLost may commit cmd twice: use it
// with idempotent commands, or call Node(i).Propose for exactly-once checks.
func (c *Cluster) Propose(ctx context.Context, cmd []byte) (any, error) {
	for {
		if l := c.Leader(); l >= 0 {
			if n := c.Node(l); n != nil {
				res, err := n.Propose(ctx, cmd)
				if !errors.Is(err, raftstore.ErrNotLeader) && !errors.Is(err, raftstore.ErrClosed) {
					return res, err
				}
			}
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Kill stops replica i without a clean snapshot: raft shuts down mid-flight
// (pending proposals fail), the transport and DBs close. Like a process
// crash, it loses the state DB's memtable when it has no WAL (the default);
// on Restart raft replays the log over whatever state was flushed.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		c.t.Fatalf("kill %d: already down", i)
	}
	if err := n.Close(); err != nil {
		c.t.Errorf("kill %d: %v", i, err)
	}
}

// Restart reopens replica i from its directory and address.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	if c.nodes[i] != nil {
		c.mu.Unlock()
		c.t.Fatalf("restart %d: still up", i)
	}
	addr := c.addrs[i]
	c.mu.Unlock()
	var tr raft.Transport
	WaitFor(c.t, 5*time.Second, func() error { // the port may linger briefly
		var err error
		tr, err = c.set.transport(addr, c.log)
		return err
	})
	nd, err := raftstore.Open(c.config(i, tr, nil))
	if err != nil {
		c.t.Fatalf("restart %d: %v", i, err)
	}
	c.mu.Lock()
	c.nodes[i] = nd
	c.mu.Unlock()
}

// Add starts a new, empty replica and adds it to the group as a voter
// through the leader; it catches up by log or snapshot. It returns its index.
func (c *Cluster) Add() int {
	c.t.Helper()
	tr, err := c.set.transport("", c.log)
	if err != nil {
		c.t.Fatalf("add: transport: %v", err)
	}
	c.mu.Lock()
	i := len(c.nodes)
	c.nodes = append(c.nodes, nil)
	c.dirs = append(c.dirs, filepath.Join(filepath.Dir(c.dirs[0]), nodeID(i)))
	c.addrs = append(c.addrs, string(tr.LocalAddr()))
	c.mu.Unlock()
	nd, err := raftstore.Open(c.config(i, tr, nil))
	if err != nil {
		c.t.Fatalf("add %d: %v", i, err)
	}
	c.mu.Lock()
	c.nodes[i] = nd
	c.mu.Unlock()
	WaitFor(c.t, 10*time.Second, func() error {
		l := c.Leader()
		if l < 0 {
			return errors.New("no leader")
		}
		return c.Node(l).Raft().AddVoter(raft.ServerID(nodeID(i)), raft.ServerAddress(tr.LocalAddr()), 0, 5*time.Second).Error()
	})
	return i
}

// Close stops every live replica. It runs in t.Cleanup; calling it earlier
// is fine.
func (c *Cluster) Close() {
	for _, i := range c.Live() {
		c.mu.Lock()
		n := c.nodes[i]
		c.nodes[i] = nil
		c.mu.Unlock()
		if err := n.Close(); err != nil {
			c.t.Errorf("close %d: %v", i, err)
		}
	}
	c.tw.stop()
}

// WaitFor polls cond every 10ms until it returns nil, failing t with the
// last error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tlogWriter sends log lines to t.Log until stop, after which (raft
// goroutines winding down) lines are dropped rather than panicking.
type tlogWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tlogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
