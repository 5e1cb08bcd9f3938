package metric

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testLatency = Histogram("relaymesh_test_seconds", "Things timed.", "kind")

// TestLatency: a duration on a bound counts in that bucket, one above it
// in the next, a negative one as zero and a huge one in +Inf; the
// buckets come out cumulative with _sum in seconds; snapshots add up;
// concurrent observations all count; the output is lint-clean.
func TestLatency(t *testing.T) {
	var h Latency
	for _, d := range []time.Duration{-time.Second, 0, time.Millisecond, time.Millisecond + 1, 10 * time.Second, time.Hour} {
		h.Observe(d)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				h.Observe(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if n := h.Count(); n != 8006 {
		t.Fatalf("count: got %d, want 8006", n)
	}
	s := h.Snapshot()
	if s.Buckets[0] != 3 || s.Buckets[1] != 8001 || s.Buckets[len(LatencyBounds)-1] != 1 || s.Buckets[len(LatencyBounds)] != 1 {
		t.Errorf("buckets: got %v, want 3 at ≤1ms, 8001 at ≤2.5ms, 1 at ≤10s, 1 above", s.Buckets)
	}
	var sum LatencySnapshot
	sum.Add(s)
	sum.Add(s)
	if sum.Count() != 2*8006 || sum.Sum != 2*s.Sum {
		t.Errorf("two snapshots added: count %d sum %v, want %d and %v", sum.Count(), sum.Sum, 2*8006, 2*s.Sum)
	}
	c := NewCollector([]Desc{testLatency}, func(ch chan<- prometheus.Metric) {
		h.Sample(ch, testLatency, "one")
		sum.Sample(ch, testLatency, "two")
		var zero Latency
		zero.Sample(ch, testLatency, "none")
	})
	text, err := Text(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`relaymesh_test_seconds_bucket{kind="one",le="0.001"} 3`,
		`relaymesh_test_seconds_bucket{kind="one",le="0.0025"} 8004`,
		`relaymesh_test_seconds_bucket{kind="one",le="10"} 8005`,
		`relaymesh_test_seconds_bucket{kind="one",le="+Inf"} 8006`,
		`relaymesh_test_seconds_sum{kind="one"} 3626.002000001`,
		`relaymesh_test_seconds_count{kind="two"} 16012`,
		`relaymesh_test_seconds_count{kind="none"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("text lacks %s:\n%s", want, text)
		}
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// BenchmarkLatencyObserve is what a timed event costs: a clock read and
// an Observe, from every core at once on one histogram (the edge's
// writers share the delivery histogram).
func BenchmarkLatencyObserve(b *testing.B) {
	var h Latency
	start := time.Now().UnixMilli() - 3
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(time.Duration(time.Now().UnixMilli()-start) * time.Millisecond)
		}
	})
}
