package metric

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBounds are the upper bounds, in seconds, of Latency's buckets:
// 1 ms to 10 s, the range of a message's trip, a raft commit, a hook call
// or a push.
var LatencyBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Latency counts durations in LatencyBounds' buckets, for a Prometheus
// histogram sent at scrape time (Sample). Observe is a few atomic adds
// and allocates nothing, for hot paths. The zero Latency is ready for
// use; it is safe for concurrent use.
type Latency struct {
	buckets [len(LatencyBounds) + 1]atomic.Uint64 // not cumulative; the last is +Inf
	sum     atomic.Int64                          // nanoseconds
}

// Observe counts one duration (a negative one as zero).
func (h *Latency) Observe(d time.Duration) {
	d = max(d, 0)
	sec := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && sec > LatencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// Count is how many durations were observed.
func (h *Latency) Count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// Snapshot is the counts now.
func (h *Latency) Snapshot() LatencySnapshot {
	var s LatencySnapshot
	for i := range h.buckets {
		s.Buckets[i] = h.buckets[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Sample sends the histogram as one const histogram of d (declared with
// Histogram) with labelValues.
func (h *Latency) Sample(ch chan<- prometheus.Metric, d Desc, labelValues ...string) {
	s := h.Snapshot()
	s.Sample(ch, d, labelValues...)
}

// LatencySnapshot is a Latency's counts at one time; snapshots of several
// Latency add up (Add), as Sum adds counters up.
type LatencySnapshot struct {
	Buckets [len(LatencyBounds) + 1]uint64 // not cumulative; the last is +Inf
	Sum     time.Duration
}

// Add adds o's counts to s.
func (s *LatencySnapshot) Add(o LatencySnapshot) {
	for i := range s.Buckets {
		s.Buckets[i] += o.Buckets[i]
	}
	s.Sum += o.Sum
}

// Count is how many durations s holds.
func (s *LatencySnapshot) Count() uint64 {
	var n uint64
	for _, b := range s.Buckets {
		n += b
	}
	return n
}

// Sample sends s as one const histogram of d with labelValues; it panics
// if the label values do not fit d, as prometheus.MustNewConstHistogram.
func (s *LatencySnapshot) Sample(ch chan<- prometheus.Metric, d Desc, labelValues ...string) {
	buckets := make(map[float64]uint64, len(LatencyBounds))
	var cum uint64
	for i, n := range s.Buckets {
		cum += n
		if i < len(LatencyBounds) {
			buckets[LatencyBounds[i]] = cum
		}
	}
	ch <- prometheus.MustNewConstHistogram(d.d, cum, s.Sum.Seconds(), buckets, labelValues...)
}
