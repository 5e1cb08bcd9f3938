package raftstore_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// TestLatency: the leader times each proposal that committed, a follower
// none (its proposals fail); every replica times the state machine's
// batches, which hold all the entries, so there are no more batches than
// entries; the durations add up to something positive.
func TestLatency(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, newCounter)
	ctx := ctxT(t, 30*time.Second)
	lead := c.WaitLeader()
	const n = 40
	for i := range n {
		if _, err := c.Node(lead).Propose(ctx, []byte(fmt.Sprint("k", i))); err != nil {
			t.Fatal(err)
		}
	}
	follower := (lead + 1) % 3
	if _, err := c.Node(follower).Propose(ctx, []byte("x")); !errors.Is(err, raftstore.ErrNotLeader) {
		t.Fatalf("a follower's proposal: got %v, want ErrNotLeader", err)
	}
	c.WaitConverged(10 * time.Second)
	for i := range 3 {
		propose, batch := c.Node(i).Latency()
		wantProposals := uint64(0)
		if i == lead {
			wantProposals = n
		}
		if got := propose.Count(); got != wantProposals {
			t.Errorf("replica %d: %d proposals timed, want %d", i, got, wantProposals)
		}
		if i == lead && propose.Sum <= 0 {
			t.Errorf("leader: proposals took %v in all, want more than 0", propose.Sum)
		}
		// Each replica applied n commands (and perhaps a no-op or
		// configuration entry, which a batch of its own may carry).
		if got := batch.Count(); got == 0 || got > n+3 {
			t.Errorf("replica %d: %d batches timed, want 1..%d", i, got, n+3)
		}
	}
}
