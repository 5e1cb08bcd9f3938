package core

import (
	"slices"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/relay"
)

// TestFanoutTakeScansPending: a pending fan-out that has left (here: one
// with no deliveries to wait for) is named by take — at once the first
// time, and within fanoutScanEvery after a scan; nothing is lost or named
// twice.
func TestFanoutTakeScansPending(t *testing.T) {
	var tr fanoutTracker
	tr.init()
	tr.mu.Lock()
	tr.pending[7] = []relay.Wait{}
	tr.mu.Unlock()
	if got := tr.take(); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("first take: got %v, want [7]", got)
	}
	tr.settle([]uint64{7}, true)

	tr.mu.Lock()
	tr.pending[8] = []relay.Wait{}
	tr.done = append(tr.done, 9) // done without waiting: named whatever the scan
	tr.mu.Unlock()
	var got []uint64
	got = append(got, tr.take()...) // 8 may wait for the next scan
	time.Sleep(fanoutScanEvery)
	got = append(got, tr.take()...)
	slices.Sort(got)
	if !slices.Equal(got, []uint64{8, 9}) {
		t.Fatalf("takes: got %v, want [8 9] once each", got)
	}
	if got := tr.take(); got != nil {
		t.Fatalf("take with nothing left: got %v", got)
	}
}
