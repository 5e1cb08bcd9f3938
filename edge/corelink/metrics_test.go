package corelink

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCollector: the link's collector is lint-clean and reads its
// counters at scrape time.
func TestCollector(t *testing.T) {
	var l Link
	l.stats.retries.Add(4)
	l.replays.passed.Add(2)
	c := l.Collector()
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	if n := testutil.CollectAndCount(c); n != 10 {
		t.Errorf("series: got %d, want 10", n)
	}
	want := `
# HELP relaymesh_edge_link_retries_total Requests sent again to a core after a failed or moved attempt.
# TYPE relaymesh_edge_link_retries_total counter
relaymesh_edge_link_retries_total 4
# HELP relaymesh_edge_link_replay_passed_total Replayed pushes delivered: the session had not had the message through this edge.
# TYPE relaymesh_edge_link_replay_passed_total counter
relaymesh_edge_link_replay_passed_total 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "relaymesh_edge_link_retries_total", "relaymesh_edge_link_replay_passed_total"); err != nil {
		t.Error(err)
	}
	l.stats.retries.Add(1) // read at the next scrape
	if err := testutil.CollectAndCompare(c, strings.NewReader(strings.Replace(want, "total 4", "total 5", 1)), "relaymesh_edge_link_retries_total", "relaymesh_edge_link_replay_passed_total"); err != nil {
		t.Error(err)
	}
}
