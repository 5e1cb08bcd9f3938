package mesh

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relaymesh/relaymesh/metric"
)

// rttSeries returns the relaymesh_mesh_rtt_seconds lines of node self
// in the collector's text.
func rttSeries(t *testing.T, self string) []string {
	t.Helper()
	text, err := metric.Text(Collector())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, `relaymesh_mesh_rtt_seconds{`) && strings.Contains(l, `node="`+self+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestRTTMetric: once two nodes talk, each exports the other's smoothed
// RTT (a positive number of seconds under ~a second on loopback),
// labelled by its own name, the peer's name and address; after the peer
// closes, the series ends; after the node itself closes, its series and
// connection count are gone. The series are lint-clean.
func TestRTTMetric(t *testing.T) {
	ids := pki(t, "rtt-core", "rtt-edge")
	core, edge := listen(t, ids["rtt-core"]), listen(t, ids["rtt-edge"])
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	for range 5 {
		if _, err := edge.Call(ctxT(t), core.Addr(), "echo", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	check := func(self, peer, addr string) {
		t.Helper()
		waitFor(t, 5*time.Second, self+"'s RTT to "+peer, func() error {
			lines := rttSeries(t, self)
			if len(lines) != 1 {
				return fmt.Errorf("got %d series %q, want 1", len(lines), lines)
			}
			var v float64
			prefix := fmt.Sprintf(`relaymesh_mesh_rtt_seconds{addr=%q,node=%q,peer=%q} `, addr, self, peer)
			if !strings.HasPrefix(lines[0], prefix) {
				return fmt.Errorf("got %s, want %s…", lines[0], prefix)
			}
			if _, err := fmt.Sscan(strings.TrimPrefix(lines[0], prefix), &v); err != nil || v <= 0 || v > 1 {
				return fmt.Errorf("got %s, want 0 < RTT < 1s", lines[0])
			}
			return nil
		})
	}
	check("rtt-edge", "rtt-core", core.Addr())
	check("rtt-core", "rtt-edge", edge.Addr())
	if problems, err := testutil.CollectAndLint(Collector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}

	core.Close()
	waitFor(t, 5*time.Second, "the edge's series for the closed core to end", func() error {
		if lines := rttSeries(t, "rtt-edge"); len(lines) != 0 {
			return fmt.Errorf("still %q", lines)
		}
		return nil
	})
	if lines := rttSeries(t, "rtt-core"); len(lines) != 0 {
		t.Errorf("a closed node still exports %q", lines)
	}
	text, _ := metric.Text(Collector())
	if strings.Contains(text, `node="rtt-core"`) {
		t.Errorf("a closed node still has series:\n%s", text)
	}
	if !strings.Contains(text, `relaymesh_mesh_connections{node="rtt-edge"} 0`+"\n") {
		t.Errorf("the edge's connection count is not 0:\n%s", text)
	}
}

// TestRTTMetricConcurrent: scrapes while nodes open, call and close
// (run with -race) neither race nor block.
func TestRTTMetricConcurrent(t *testing.T) {
	ids := pki(t, "a", "b", "c")
	b := listen(t, ids["b"])
	b.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := metric.Text(Collector()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := range 5 {
		name := "a"
		if i%2 == 1 {
			name = "c"
		}
		n, err := Listen("127.0.0.1:0", ids[name], testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Call(ctxT(t), b.Addr(), "echo", nil); err != nil {
			t.Fatal(err)
		}
		n.Close()
	}
	close(stop)
	wg.Wait()
}

// TestRTTMetricSameNames: two pairs of nodes with the same names (two
// clusters in one test process) scrape without a duplicate series: the
// connection counts add up, each peer address keeps its own RTT series.
func TestRTTMetricSameNames(t *testing.T) {
	for range 2 {
		ids := pki(t, "twin-core", "twin-edge")
		core, edge := listen(t, ids["twin-core"]), listen(t, ids["twin-edge"])
		core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
		if _, err := edge.Call(ctxT(t), core.Addr(), "echo", nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "both edges' RTT series", func() error {
		if lines := rttSeries(t, "twin-edge"); len(lines) != 2 {
			return fmt.Errorf("got %q, want one per core address", lines)
		}
		return nil
	})
	text, err := metric.Text(Collector())
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if !strings.Contains(text, `relaymesh_mesh_connections{node="twin-edge"} 2`+"\n") {
		t.Errorf("the twins' connections do not add up to 2:\n%s", text)
	}
}
