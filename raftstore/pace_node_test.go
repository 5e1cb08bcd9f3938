package raftstore_test

import (
	"fmt"
	"testing"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// TestNodeCompactionShare: a replica's state DB paces its compactions by
// default (StateStats counts the bytes paced and the time slept) and not
// with CompactionShare 1.
func TestNodeCompactionShare(t *testing.T) {
	for _, tc := range []struct {
		share float64
		paced bool
	}{{0, true}, {1, false}} {
		t.Run(fmt.Sprint(tc.share), func(t *testing.T) {
			c := raftstoretest.NewCluster(t, 1, func(int) raftstore.StateMachine { return counterSM{} },
				raftstoretest.WithConfig(func(_ int, cfg *raftstore.Config) { cfg.CompactionShare = tc.share }))
			c.WaitLeader()
			db := c.Node(0).State()
			// Keys "k…", which counterSM never writes or reads.
			raftstore.WriteFlush(t, db, 3, 2000)
			if err := db.Compact([]byte("k"), []byte("l"), true); err != nil {
				t.Fatal(err)
			}
			st, _ := c.Node(0).StateStats()
			if st.CompactedBytes < 1<<20 {
				t.Fatalf("compacted %d bytes, want ~2 MB", st.CompactedBytes)
			}
			if got := st.PacedBytes > 0 && st.PaceWait > 0; got != tc.paced {
				t.Fatalf("share %v: paced %d bytes, waited %v; want paced %v", tc.share, st.PacedBytes, st.PaceWait, tc.paced)
			}
		})
	}
}
