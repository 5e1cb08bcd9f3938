// Package metric is the thin layer between the components' counters and
// Prometheus (github.com/prometheus/client_golang). The hot paths count
// with atomics as before; at scrape time a component's collector reads
// them into const metrics (prometheus.MustNewConstMetric). Each process
// part serves its own prometheus.Registry (NewRegistry), never the global
// one: tests run many nodes in one process.
//
// A component declares its series once (Counter, Gauge), reads its
// counters into a Sink in one function, and gets a prometheus.Collector
// from NewCollector. Sum is the Sink that adds several components' series
// up (a node's shard cores count for the node as a whole).
package metric

import (
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// Desc is a series' name, help, type and variable labels.
type Desc struct {
	d   *prometheus.Desc
	typ prometheus.ValueType
}

// Counter declares a counter.
func Counter(name, help string, labels ...string) Desc {
	return Desc{prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue}
}

// Gauge declares a gauge.
func Gauge(name, help string, labels ...string) Desc {
	return Desc{prometheus.NewDesc(name, help, labels, nil), prometheus.GaugeValue}
}

// Histogram declares a histogram: its samples are sent with
// prometheus.MustNewConstHistogram on Desc(), not through a Sink.
func Histogram(name, help string, labels ...string) Desc {
	return Desc{prometheus.NewDesc(name, help, labels, nil), prometheus.UntypedValue}
}

// Desc is the Prometheus descriptor.
func (d Desc) Desc() *prometheus.Desc { return d.d }

// Sink takes a component's samples at scrape time.
type Sink interface {
	// Add takes one sample of d: its value and its label values, in the
	// order of d's labels.
	Add(d Desc, v float64, labelValues ...string)
}

// Chan is the Sink that sends each sample on a Collect channel.
type Chan chan<- prometheus.Metric

// Add sends the sample as a const metric; it panics if the label values
// do not fit d (a programming error, as prometheus.MustNewConstMetric).
func (c Chan) Add(d Desc, v float64, labelValues ...string) {
	c <- prometheus.MustNewConstMetric(d.d, d.typ, v, labelValues...)
}

// Sum is the Sink that adds samples up by series (descriptor and label
// values), and sends the sums on in the order the series first came.
// The zero Sum is ready for use; it is not safe for concurrent use.
type Sum struct {
	keys []sumKey
	vals map[sumKey]*sumVal
}

type sumKey struct {
	d      *prometheus.Desc
	labels string // the label values joined by \xff
}

type sumVal struct {
	desc   Desc
	labels []string
	v      float64
}

// Add adds v to its series.
func (s *Sum) Add(d Desc, v float64, labelValues ...string) {
	k := sumKey{d.d, strings.Join(labelValues, "\xff")}
	if s.vals == nil {
		s.vals = map[sumKey]*sumVal{}
	}
	x, ok := s.vals[k]
	if !ok {
		x = &sumVal{desc: d, labels: labelValues}
		s.vals[k] = x
		s.keys = append(s.keys, k)
	}
	x.v += v
}

// To sends the sums to sink.
func (s *Sum) To(sink Sink) {
	for _, k := range s.keys {
		x := s.vals[k]
		sink.Add(x.desc, x.v, x.labels...)
	}
}

// collector is NewCollector's.
type collector struct {
	descs   []Desc
	collect func(ch chan<- prometheus.Metric)
}

// NewCollector returns a collector of the series descs: collect sends
// their samples (with Chan, or prometheus.MustNewConstHistogram on
// Desc.Desc()) when the registry is scraped.
func NewCollector(descs []Desc, collect func(ch chan<- prometheus.Metric)) prometheus.Collector {
	return &collector{descs: descs, collect: collect}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// Collectors is one collector made of several.
type Collectors []prometheus.Collector

// Describe describes every collector's series.
func (cs Collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect collects every collector's series.
func (cs Collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// NewRegistry returns a registry of cs and of the Go runtime's and the
// process's collectors: what a process part (a core's admin listener, an
// edge) serves on /metrics. It panics if cs collide (the same series
// twice), as prometheus.Registry.MustRegister.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.MustRegister(cs...)
	return r
}

// WriteText writes what g gathers in the Prometheus text format, as
// /metrics serves it.
func WriteText(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	for _, mf := range mfs {
		if _, werr := expfmt.MetricFamilyToText(w, mf); werr != nil {
			return werr
		}
	}
	return err
}

// Text is the Prometheus text of cs alone (no runtime collectors): for
// tests and tools that read a component's series.
func Text(cs ...prometheus.Collector) (string, error) {
	r := prometheus.NewRegistry()
	if err := r.Register(Collectors(cs)); err != nil {
		return "", err
	}
	var b strings.Builder
	err := WriteText(&b, r)
	return b.String(), err
}
