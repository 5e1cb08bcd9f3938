package edge

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestBackendHistogram: the backend latency histogram renders Prometheus'
// cumulative buckets (a duration on a bound counts in that bucket),
// +Inf, _sum in seconds and _count, per cmd label; concurrent
// observations all count.
func TestBackendHistogram(t *testing.T) {
	var m Metrics
	for _, d := range []time.Duration{time.Millisecond, 3 * time.Millisecond, 40 * time.Millisecond, time.Minute} {
		m.observeBackend(lcpb.CommandType_direct, d)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { m.observeBackend(lcpb.CommandType_conv, 2*time.Second) })
	}
	wg.Wait()
	out := metricsText(t, m.Collector())
	for _, want := range []string{
		"# TYPE relaymesh_edge_backend_seconds histogram",
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.001"} 1`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.0025"} 1`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.005"} 2`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.05"} 3`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="10"} 3`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="+Inf"} 4`,
		`relaymesh_edge_backend_seconds_sum{cmd="direct"} 60.044`,
		`relaymesh_edge_backend_seconds_count{cmd="direct"} 4`,
		`relaymesh_edge_backend_seconds_bucket{cmd="other",le="1"} 0`,
		`relaymesh_edge_backend_seconds_bucket{cmd="other",le="2.5"} 50`,
		`relaymesh_edge_backend_seconds_count{cmd="other"} 50`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
