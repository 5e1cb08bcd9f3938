package loadtest

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 5 minutes.
const (
	histLow  = 1
	histHigh = int64(5 * time.Minute / time.Microsecond)
)

// Hist is an HDR histogram of latencies, safe for concurrent use, that
// encodes to JSON as its non-empty buckets so workers can ship it to the
// coordinator, which merges them.
type Hist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram // guarded by mu
}

// NewHist returns an empty histogram with 3 significant figures.
func NewHist() *Hist { return newHist(3) }

func newHist(sig int) *Hist { return &Hist{h: hdrhistogram.New(histLow, histHigh, sig)} }

// Record adds one latency; values beyond the range are clamped.
func (h *Hist) Record(d time.Duration) {
	v := max(histLow, min(int64(d/time.Microsecond), histHigh))
	h.mu.Lock()
	_ = h.h.RecordValue(v)
	h.mu.Unlock()
}

// Merge adds every value of o to h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o == h {
		return
	}
	o.mu.Lock()
	c := o.h.Export()
	o.mu.Unlock()
	h.mu.Lock()
	h.h.Merge(hdrhistogram.Import(c))
	h.mu.Unlock()
}

// Count is the number of recorded values.
func (h *Hist) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.TotalCount()
}

// Quantiles are latency percentiles in milliseconds.
type Quantiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Quantiles summarizes h.
func (h *Hist) Quantiles() Quantiles {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.h.TotalCount() == 0 {
		return Quantiles{}
	}
	return Quantiles{
		Count: h.h.TotalCount(),
		P50:   ms(h.h.ValueAtQuantile(50)), P90: ms(h.h.ValueAtQuantile(90)),
		P99: ms(h.h.ValueAtQuantile(99)), P999: ms(h.h.ValueAtQuantile(99.9)),
		Max: ms(h.h.Max()), Mean: h.h.Mean() / 1000,
	}
}

// Bucket is one non-empty histogram bucket: From..To µs, Count values.
type Bucket struct {
	From  int64 `json:"from"`
	To    int64 `json:"to"`
	Count int64 `json:"count"`
}

// Buckets lists the non-empty buckets in ascending order.
func (h *Hist) Buckets() []Bucket {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Bucket
	for _, b := range h.h.Distribution() {
		if b.Count > 0 {
			out = append(out, Bucket{From: b.From, To: b.To, Count: b.Count})
		}
	}
	return out
}

type histJSON struct {
	Sig     int64    `json:"sig"`
	Buckets []Bucket `json:"buckets"`
}

// MarshalJSON encodes the non-empty buckets.
func (h *Hist) MarshalJSON() ([]byte, error) {
	h.mu.Lock()
	sig := h.h.SignificantFigures()
	h.mu.Unlock()
	return json.Marshal(histJSON{Sig: sig, Buckets: h.Buckets()})
}

// UnmarshalJSON rebuilds a histogram from MarshalJSON's output.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Sig < 1 || j.Sig > 5 {
		j.Sig = 3
	}
	nh := hdrhistogram.New(histLow, histHigh, int(j.Sig))
	for _, b := range j.Buckets {
		_ = nh.RecordValues(b.From, b.Count)
	}
	h.mu.Lock()
	h.h = nh
	h.mu.Unlock()
	return nil
}

// Series is a latency histogram per one-second window since the start of
// the run, for the latency-over-time plot.
type Series struct {
	start time.Time // immutable

	mu      sync.Mutex
	windows map[int]*Hist // guarded by mu; second offset → latencies
}

// NewSeries starts a series at start.
func NewSeries(start time.Time) *Series {
	return &Series{start: start, windows: make(map[int]*Hist)}
}

// Record adds a latency observed at t.
func (s *Series) Record(t time.Time, d time.Duration) {
	sec := max(0, int(t.Sub(s.start)/time.Second))
	s.mu.Lock()
	h, ok := s.windows[sec]
	if !ok {
		h = newHist(2)
		s.windows[sec] = h
	}
	s.mu.Unlock()
	h.Record(d)
}

// Windows returns a copy of the windows (second → histogram).
func (s *Series) Windows() map[int]*Hist {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]*Hist, len(s.windows))
	for k, v := range s.windows {
		out[k] = v
	}
	return out
}

// Point is one window of a series: second offset, count and percentiles.
type Point struct {
	Second int     `json:"t"`
	Count  int64   `json:"count"`
	P50    float64 `json:"p50"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

// Points summarizes windows (second → histogram) in time order.
func Points(windows map[int]*Hist) []Point {
	last := -1
	for k := range windows {
		last = max(last, k)
	}
	var out []Point
	for sec := 0; sec <= last; sec++ {
		h, ok := windows[sec]
		if !ok {
			out = append(out, Point{Second: sec})
			continue
		}
		q := h.Quantiles()
		out = append(out, Point{Second: sec, Count: q.Count, P50: q.P50, P99: q.P99, Max: q.Max})
	}
	return out
}

// SlowSecondMS is the per-second p99 above which SecondsSummary counts a
// second as slow.
const SlowSecondMS = 50

// SecondTail sums up a series by second: how the p99 of each second that
// saw anything is spread over the run, which a run's own p99 hides (a
// 20-second run missed a spike every few seconds that minutes showed,
// docs/BENCHMARKS.md stop 32).
type SecondTail struct {
	Seconds   int     `json:"seconds"`       // seconds with a count
	MedianP99 float64 `json:"median_p99_ms"` // the median of their p99s
	WorstP99  float64 `json:"worst_p99_ms"`
	Slow      int     `json:"slow"` // seconds whose p99 was over SlowSecondMS
}

// SecondsSummary is points' SecondTail.
func SecondsSummary(points []Point) SecondTail {
	var p99 []float64
	for _, p := range points {
		if p.Count > 0 {
			p99 = append(p99, p.P99)
		}
	}
	if len(p99) == 0 {
		return SecondTail{}
	}
	slices.Sort(p99)
	t := SecondTail{Seconds: len(p99), MedianP99: p99[len(p99)/2], WorstP99: p99[len(p99)-1]}
	for _, v := range p99 {
		if v > SlowSecondMS {
			t.Slow++
		}
	}
	return t
}

// mergeWindows adds the windows of src into dst.
func mergeWindows(dst, src map[int]*Hist) {
	for k, h := range src {
		if d, ok := dst[k]; ok {
			d.Merge(h)
		} else {
			n := newHist(2)
			n.Merge(h)
			dst[k] = n
		}
	}
}
