package relay

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/relay/pq"
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
		text, err := metric.Text(r.Collector())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(text, "\n") {
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

// TestCollector: the relay's collector is lint-clean and reads its
// counters: one series per priority class of the drops.
func TestCollector(t *testing.T) {
	r := newRelay(t)
	r.stats.Delivered.Add(3)
	r.stats.DroppedByPriority[1].Add(5)
	c := r.Collector()
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	if n := testutil.CollectAndCount(c, "relaymesh_core_relay_dropped_total"); n != pq.NumClasses {
		t.Errorf("drop series: got %d, want %d", n, pq.NumClasses)
	}
	text, err := metric.Text(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TYPE relaymesh_core_deliveries_total counter\nrelaymesh_core_deliveries_total 3\n",
		fmt.Sprintf("relaymesh_core_relay_dropped_total{priority=%q} 5\n", pq.Class(1).String()),
		"# TYPE relaymesh_core_relay_queued gauge\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
}
