package metric

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	testCounter = Counter("relaymesh_test_things_total", "Things counted.")
	testByKind  = Counter("relaymesh_test_kinds_total", "Things counted by kind.", "kind")
	testGauge   = Gauge("relaymesh_test_waiting", "Things waiting now.")
)

// TestSum: samples of one series add up, in the order series first came;
// different label values and descriptors stay apart; as a collector's
// output the sums are lint-clean const metrics.
func TestSum(t *testing.T) {
	var s Sum
	for i := range 3 {
		s.Add(testCounter, float64(i+1))
		s.Add(testByKind, 1, "a")
		s.Add(testGauge, 2)
	}
	s.Add(testByKind, 5, "b")
	type sample struct {
		name string
		v    float64
		lv   string
	}
	var got []sample
	s.To(sinkFunc(func(d Desc, v float64, lv ...string) {
		got = append(got, sample{d.Desc().String(), v, strings.Join(lv, ",")})
	}))
	want := []sample{{testCounter.Desc().String(), 6, ""}, {testByKind.Desc().String(), 3, "a"},
		{testGauge.Desc().String(), 6, ""}, {testByKind.Desc().String(), 5, "b"}}
	if len(got) != len(want) {
		t.Fatalf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("series %d: got %v, want %v", i, got[i], want[i])
		}
	}
	c := NewCollector([]Desc{testCounter, testByKind, testGauge}, func(ch chan<- prometheus.Metric) {
		var s Sum
		for range 4 {
			s.Add(testCounter, 2.5)
			s.Add(testByKind, 1, "a")
			s.Add(testByKind, 2, "b")
		}
		s.Add(testGauge, 7)
		s.To(Chan(ch))
	})
	text := `
# HELP relaymesh_test_things_total Things counted.
# TYPE relaymesh_test_things_total counter
relaymesh_test_things_total 10
# HELP relaymesh_test_kinds_total Things counted by kind.
# TYPE relaymesh_test_kinds_total counter
relaymesh_test_kinds_total{kind="a"} 4
relaymesh_test_kinds_total{kind="b"} 8
# HELP relaymesh_test_waiting Things waiting now.
# TYPE relaymesh_test_waiting gauge
relaymesh_test_waiting 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(text)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	r := prometheus.NewPedanticRegistry()
	r.MustRegister(c)
	if _, err := r.Gather(); err != nil {
		t.Errorf("pedantic gather: %v", err)
	}
}

type sinkFunc func(d Desc, v float64, lv ...string)

func (f sinkFunc) Add(d Desc, v float64, lv ...string) { f(d, v, lv...) }

// TestChanBadLabels: label values that do not fit the descriptor are a
// programming error: Chan panics at once rather than export a bad series.
func TestChanBadLabels(t *testing.T) {
	ch := make(chan prometheus.Metric, 1)
	defer func() {
		if recover() == nil {
			t.Error("no panic for a missing label value")
		}
	}()
	Chan(ch).Add(testByKind, 1)
}

// TestRegistryAndText: NewRegistry adds the Go runtime's and the
// process's collectors, refuses a collision, and Text renders one
// collector alone.
func TestRegistryAndText(t *testing.T) {
	one := NewCollector([]Desc{testGauge}, func(ch chan<- prometheus.Metric) { Chan(ch).Add(testGauge, 3) })
	r := NewRegistry(one)
	var b strings.Builder
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"relaymesh_test_waiting 3\n", "# TYPE go_goroutines gauge\n", "# TYPE process_cpu_seconds_total counter\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("registry text lacks %q", want)
		}
	}
	again := NewCollector([]Desc{Gauge("relaymesh_test_waiting", "Another help.")}, func(chan<- prometheus.Metric) {})
	if err := r.Register(again); err == nil {
		t.Error("registered a second relaymesh_test_waiting")
	}
	text, err := Text(one)
	if err != nil {
		t.Fatal(err)
	}
	if text != "# HELP relaymesh_test_waiting Things waiting now.\n# TYPE relaymesh_test_waiting gauge\nrelaymesh_test_waiting 3\n" {
		t.Errorf("Text: got %q", text)
	}
	if _, err := Text(one, one); err == nil { // a series twice is an error, not two lines
		t.Error("Text(one, one): no error for the series collected twice")
	}
}
