package relay

import (
	"strings"
	"testing"
)

// TestQueuedGauge: relaymesh_core_relay_queued shows the deliveries
// waiting behind an edge whose send is blocked, and none once it drains.
func TestQueuedGauge(t *testing.T) {
	r := newRelay(t)
	gated := &fakeEdge{gate: make(chan struct{})}
	detach := r.AttachEdge("e1", gated.send)
	open(t, r, "bob", "", "e1", 1)
	for _, m := range []string{"one", "two", "three"} {
		r.Fanout("app", []string{"bob"}, ConnKey{}, text(m), false)
	}
	gauge := func() string {
		var b strings.Builder
		if err := r.WriteMetrics(&b); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, "relaymesh_core_relay_queued ") {
				return l
			}
		}
		t.Fatal("no relaymesh_core_relay_queued series")
		return ""
	}
	// The first is in the blocked send; two wait.
	waitFor(t, "two queued", func() bool { return r.Queued() == 2 })
	if g := gauge(); g != "relaymesh_core_relay_queued 2" {
		t.Errorf("got %q, want 2 queued", g)
	}
	close(gated.gate)
	waitFor(t, "the queue drains", func() bool { return r.Queued() == 0 })
	if g := gauge(); g != "relaymesh_core_relay_queued 0" {
		t.Errorf("got %q, want 0 queued", g)
	}
	detach()
}
