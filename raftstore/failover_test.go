package raftstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// TestLeaderKilledMidWrite kills the leader under concurrent proposers.
// Proposers never retry a command: each attempt is a new command, so every
// command whose Propose succeeded must be applied exactly once on every
// replica, and commands that failed may be applied at most once.
func TestLeaderKilledMidWrite(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, newCounter)
	ctx := ctxT(t, 40*time.Second)

	var (
		mu        sync.Mutex
		succeeded []string
		attempts  []string
		nOK       atomic.Int64
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				l := c.Leader()
				n := (*raftstore.Node)(nil)
				if l >= 0 {
					n = c.Node(l)
				}
				if n == nil {
					time.Sleep(5 * time.Millisecond) // back off while there is no leader
					continue
				}
				cmd := fmt.Sprintf("w%d-%d", w, i)
				mu.Lock()
				attempts = append(attempts, cmd)
				mu.Unlock()
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := n.Propose(pctx, []byte(cmd))
				cancel()
				if err == nil {
					mu.Lock()
					succeeded = append(succeeded, cmd)
					mu.Unlock()
					nOK.Add(1)
				} else if !errors.Is(err, raftstore.ErrNotLeader) && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("propose %s: %v", cmd, err)
				}
			}
		}()
	}
	waitOK := func(n int64) {
		raftstoretest.WaitFor(t, 20*time.Second, func() error {
			if got := nOK.Load(); got < n {
				return fmt.Errorf("%d successful proposals, want %d", got, n)
			}
			return nil
		})
	}
	waitOK(300)
	old := c.Leader()
	if old < 0 {
		t.Fatal("no leader")
	}
	c.Kill(old)
	before := nOK.Load()
	newLeader := c.WaitLeader()
	if newLeader == old {
		t.Fatalf("new leader %d is the killed one", newLeader)
	}
	waitOK(before + 300)
	c.Restart(old)
	waitOK(nOK.Load() + 100)
	stop.Store(true)
	wg.Wait()

	state := c.WaitConverged(15 * time.Second)
	count := checkNoDup(t, state)
	for _, cmd := range succeeded {
		v, ok := state["v/"+cmd]
		if !ok {
			t.Fatalf("acknowledged command %s lost", cmd)
		}
		if got := binary.BigEndian.Uint64([]byte(v)); got != 1 {
			t.Fatalf("acknowledged command %s applied %d times, want 1", cmd, got)
		}
	}
	var applied uint64
	for _, cmd := range attempts {
		if v, ok := state["v/"+cmd]; ok {
			if got := binary.BigEndian.Uint64([]byte(v)); got != 1 {
				t.Fatalf("command %s applied %d times, want 1", cmd, got)
			}
			applied++
		}
	}
	if applied != count {
		t.Fatalf("count = %d, but %d distinct commands applied", count, applied)
	}
	t.Logf("%d attempts, %d acknowledged, %d applied; leader %d killed, %d took over",
		len(attempts), len(succeeded), applied, old, newLeader)
}
