package raftstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// TestHandOff: a leader that hands off under concurrent proposers leaves a
// new leader in place before it goes; proposals on the old leader fail as
// not-leader (callers retry elsewhere), none is lost or applied twice, and
// the old leader, closed afterwards, is not missed: the group keeps
// committing without an election timeout.
func TestHandOff(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, newCounter)
	ctx := ctxT(t, 40*time.Second)
	old := c.WaitLeader()

	var (
		mu        sync.Mutex
		succeeded []string
		nOK       atomic.Int64
		notLeader atomic.Int64
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				l := c.Leader()
				var n *raftstore.Node
				if l >= 0 {
					n = c.Node(l) // nil once killed
				}
				if n == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				cmd := fmt.Sprintf("w%d-%d", w, i)
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := n.Propose(pctx, []byte(cmd))
				cancel()
				switch {
				case err == nil:
					mu.Lock()
					succeeded = append(succeeded, cmd)
					mu.Unlock()
					nOK.Add(1)
				case errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, raftstore.ErrClosed):
					notLeader.Add(1)
				default:
					t.Errorf("propose %s: %v", cmd, err)
				}
			}
		})
	}
	waitOK := func(n int64) {
		raftstoretest.WaitFor(t, 20*time.Second, func() error {
			if got := nOK.Load(); got < n {
				return fmt.Errorf("%d successful proposals, want %d", got, n)
			}
			return nil
		})
	}
	waitOK(200)

	// A follower has nothing to hand off.
	follower := (old + 1) % 3
	if moved, err := c.Node(follower).HandOff(ctx); moved || err != nil {
		t.Fatalf("follower HandOff = %v, %v; want false, nil", moved, err)
	}
	moved, err := c.Node(old).HandOff(ctx)
	if err != nil || !moved {
		t.Fatalf("leader HandOff = %v, %v; want true, nil", moved, err)
	}
	if c.Node(old).IsLeader() {
		t.Fatal("the old leader still leads after HandOff returned")
	}
	newLeader := c.WaitLeader()
	if newLeader == old {
		t.Fatalf("leader %d after hand-off is the old one", newLeader)
	}
	// The old leader goes away; the new one never needed it.
	oldNode := c.Node(old)
	c.Kill(old)
	waitOK(nOK.Load() + 200)
	stop.Store(true)
	wg.Wait()

	state := c.WaitConverged(15 * time.Second)
	checkNoDup(t, state)
	for _, cmd := range succeeded {
		if _, ok := state["v/"+cmd]; !ok {
			t.Fatalf("acknowledged command %s lost", cmd)
		}
	}
	t.Logf("%d acknowledged, %d not-leader refusals; leadership %d → %d", len(succeeded), notLeader.Load(), old, newLeader)

	// A closed replica refuses.
	if _, err := oldNode.HandOff(ctx); !errors.Is(err, raftstore.ErrClosed) {
		t.Errorf("HandOff on a closed replica: %v, want ErrClosed", err)
	}
}

// TestHandOffSingleVoter: with no other voter there is nothing to move.
func TestHandOffSingleVoter(t *testing.T) {
	c := raftstoretest.NewCluster(t, 1, newCounter)
	ctx := ctxT(t, 20*time.Second)
	c.WaitLeader()
	if moved, err := c.Node(0).HandOff(ctx); moved || err != nil {
		t.Fatalf("single voter HandOff = %v, %v; want false, nil", moved, err)
	}
	if !c.Node(0).IsLeader() {
		t.Fatal("the single voter lost its leadership")
	}
}
