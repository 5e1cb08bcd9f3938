package raftstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestSingleNodeApplyRestart(t *testing.T) {
	c := raftstoretest.NewCluster(t, 1, newCounter)
	ctx := ctxT(t, 20*time.Second)
	for i := 1; i <= 100; i++ {
		res, err := c.Node(0).Propose(ctx, []byte(fmt.Sprintf("cmd-%d", i)))
		if err != nil {
			t.Fatalf("propose %d: %v", i, err)
		}
		if res != uint64(i) {
			t.Fatalf("propose %d: got result %v, want %d", i, res, i)
		}
	}
	applied := c.Node(0).Raft().AppliedIndex()

	// Restart twice. Round 0: the state DB has no WAL and lost its memtable,
	// so raft's replay rebuilds it. Round 1: the state was flushed, so the
	// replay meets entries already applied and must skip every one of them.
	for round := range 2 {
		if round == 1 {
			if err := c.Node(0).State().Flush(); err != nil {
				t.Fatal(err)
			}
		}
		c.Kill(0)
		c.Restart(0)
		c.WaitLeader()
		// A barrier returns once everything before it, the replay
		// included, is applied to the FSM.
		if err := c.Node(0).Raft().Barrier(10 * time.Second).Error(); err != nil {
			t.Fatalf("round %d: barrier: %v", round, err)
		}
		// hashicorp/raft sets AppliedIndex after it handed the entries to
		// the FSM, which may answer the barrier first: wait for it.
		for deadline := time.Now().Add(10 * time.Second); c.Node(0).Raft().AppliedIndex() <= applied; {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: raft applied index %d, want > %d", round, c.Node(0).Raft().AppliedIndex(), applied)
			}
			time.Sleep(time.Millisecond)
		}
		state := c.WaitConverged(time.Second)
		if got := checkNoDup(t, state); got != 100 {
			t.Fatalf("round %d: count after restart = %d, want 100", round, got)
		}
		applied = c.Node(0).Raft().AppliedIndex()
	}
	res, err := c.Node(0).Propose(ctx, []byte("cmd-101"))
	if err != nil || res != uint64(101) {
		t.Fatalf("propose after restart = %v, %v; want 101", res, err)
	}
}

func TestProposeErrors(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, newCounter)
	ctx := ctxT(t, 20*time.Second)
	l := c.WaitLeader()

	t.Run("state machine error", func(t *testing.T) {
		res, err := c.Node(l).Propose(ctx, []byte("fail-1"))
		if !errors.Is(err, errFail) || res != nil {
			t.Fatalf("got %v, %v; want nil, errFail", res, err)
		}
	})
	t.Run("follower", func(t *testing.T) {
		f := (l + 1) % 3
		_, err := c.Node(f).Propose(ctx, []byte("x"))
		if !errors.Is(err, raftstore.ErrNotLeader) || !errors.Is(err, raft.ErrNotLeader) {
			t.Fatalf("got %v, want ErrNotLeader wrapping raft.ErrNotLeader", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := c.Node(l).Propose(cctx, []byte("y")); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	t.Run("wait leader", func(t *testing.T) {
		for i := range 3 {
			if err := c.Node(i).WaitLeader(ctx); err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
			if addr, id := c.Node(i).Leader(); addr != c.Addr(l) || id != fmt.Sprintf("n%d", l) {
				t.Errorf("node %d: Leader() = %s %s, want %s n%d", i, addr, id, c.Addr(l), l)
			}
		}
	})
	t.Run("closed", func(t *testing.T) {
		f := (l + 1) % 3
		n := c.Node(f)
		c.Kill(f)
		_, err := n.Propose(ctx, []byte("z"))
		if !errors.Is(err, raftstore.ErrClosed) || !errors.Is(err, raftstore.ErrNotLeader) {
			t.Fatalf("got %v, want ErrClosed and ErrNotLeader", err)
		}
	})
}

func TestReplication(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, newCounter)
	ctx := ctxT(t, 30*time.Second)
	const workers, per = 16, 25
	errc := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range per {
				if _, err := c.Propose(ctx, []byte(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	state := c.WaitConverged(10 * time.Second)
	if got := checkNoDup(t, state); got != workers*per {
		t.Fatalf("count = %d, want %d", got, workers*per)
	}
}
