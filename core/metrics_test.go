package core

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// metricsText is the Prometheus text of c's collector.
func metricsText(t *testing.T, c *Core) string {
	t.Helper()
	text, err := metric.Text(c.Collector())
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// gather gathers c alone on a fresh pedantic registry, by family name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	r := prometheus.NewPedanticRegistry() // every series collected is described
	if err := r.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestCollectorLint: the core's collector passes promlint, and every
// family is one of ours.
func TestCollectorLint(t *testing.T) {
	e := newEnv(t)
	c := e.core.Collector()
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	for name := range gather(t, c) {
		if !strings.HasPrefix(name, "relaymesh_") {
			t.Errorf("family %s: want the relaymesh_ prefix", name)
		}
	}
}

// TestCollectorSumsShards: over several shard cores, each series comes
// once with the cores' values added up; what they share (the relay, the
// hook client) is read once, from the first.
func TestCollectorSumsShards(t *testing.T) {
	cores := []*Core{newEnv(t).core, newEnv(t).core, newEnv(t).core}
	for i, c := range cores {
		c.stats.Replayed.Add(uint64(i + 1)) // 1+2+3
		c.queries.Refuse(0)                 // where, once each
		c.relay.Stats().Delivered.Add(10)   // the relay of each; only the first's counts
	}
	cores[1].relay.Stats().DroppedByPriority[pq.Low].Add(7) // not the first's: not read
	col := Collector(cores)
	fams := gather(t, col)
	value := func(name string, labels ...string) float64 {
		t.Helper()
		mf := fams[name]
		if mf == nil {
			t.Fatalf("no family %s", name)
		}
		var found []float64
		for _, m := range mf.GetMetric() {
			ok := true
			for i := 0; i+1 < len(labels); i += 2 {
				match := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						match = true
					}
				}
				ok = ok && match
			}
			if ok {
				switch {
				case m.Counter != nil:
					found = append(found, m.GetCounter().GetValue())
				case m.Gauge != nil:
					found = append(found, m.GetGauge().GetValue())
				}
			}
		}
		if len(found) != 1 {
			t.Fatalf("%s%v: %d series, want 1", name, labels, len(found))
		}
		return found[0]
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"relaymesh_core_fanout_replayed_total", nil, 6},
		{"relaymesh_core_queries_refused_total", []string{"reason", "where"}, 3},
		{"relaymesh_core_queries_refused_total", []string{"reason", "scan"}, 0},
		{"relaymesh_core_deliveries_total", nil, 10},
		{"relaymesh_core_relay_dropped_total", []string{"priority", "low"}, 0},
		{"relaymesh_hook_calls_total", []string{"hook", "_messageReceived"}, 0},
	} {
		if got := value(tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v: got %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(col, "relaymesh_core_fanout_replayed_total"); n != 1 {
		t.Errorf("replayed series over 3 cores: got %d, want 1", n)
	}
	// One core and three give the same families.
	one := gather(t, cores[0].Collector())
	if len(one) != len(fams) {
		t.Errorf("families: one core %d, three %d", len(one), len(fams))
	}
	if problems, err := testutil.CollectAndLint(col); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestCollectorConcurrent: scrapes race with the counters and each other
// (go test -race).
func TestCollectorConcurrent(t *testing.T) {
	cores := []*Core{newEnv(t).core, newEnv(t).core}
	col := Collector(cores)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			cores[1].stats.Replayed.Add(1)
			cores[0].queries.Refuse(1)
		}
	}()
	for range 20 {
		if _, err := metric.Text(col); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if got := value1(t, col, "relaymesh_core_fanout_replayed_total"); got != 1000 {
		t.Errorf("replayed: got %v, want 1000", got)
	}
}

// value1 is the value of the single series of name in c.
func value1(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	r := prometheus.NewPedanticRegistry()
	r.MustRegister(c)
	mfs, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series %s", name)
	return 0
}

// TestRegionsAndRouterCollectors: the region hop's and the router's
// collectors are lint-clean and read their counters; a node without other
// regions (nil Regions) exports none of the region series.
func TestRegionsAndRouterCollectors(t *testing.T) {
	g := &Regions{}
	g.stats.Sent.Add(4)
	g.stats.Dropped[pq.Low].Add(2)
	r := &Router{}
	r.stats.Forwarded.Add(9)
	for name, c := range map[string]prometheus.Collector{"regions": g.Collector(), "router": r.Collector()} {
		if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
			t.Errorf("%s lint: %v %v", name, problems, err)
		}
	}
	for _, tc := range []struct {
		c    prometheus.Collector
		name string
		want string
	}{
		{g.Collector(), "relaymesh_region_pushes_sent_total", "relaymesh_region_pushes_sent_total 4\n"},
		{g.Collector(), "relaymesh_region_pushes_dropped_total", `relaymesh_region_pushes_dropped_total{class="low"} 2` + "\n"},
		{r.Collector(), "relaymesh_router_forwarded_total", "relaymesh_router_forwarded_total 9\n"},
		{r.Collector(), "relaymesh_router_shards", "relaymesh_router_shards 0\n"},
	} {
		if text := metricsOf(t, tc.c); !strings.Contains(text, tc.want) {
			t.Errorf("%s: want %q in\n%s", tc.name, tc.want, text)
		}
	}
	if n := testutil.CollectAndCount((*Regions)(nil).Collector()); n != 0 {
		t.Errorf("nil Regions: %d series, want none", n)
	}
}

func metricsOf(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	text, err := metric.Text(c)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// TestPushLatencyMetric: offline pushes the queue's worker handed to
// the provider are timed under outcome="sent"; the device providers'
// attempt histograms exist at zero without APNs or FCM; both are
// lint-clean.
func TestPushLatencyMetric(t *testing.T) {
	fp := &fakePush{}
	e := newEnvWith(t, func(c *Config) {
		c.Push = PushConfig{Provider: fp, Templates: map[string]string{testApp: `{"alert":"x"}`}}
	})
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"carol"}, "", false).ConvMessage.GetCid() // carol is offline
	for _, text := range []string{"one", "two"} {
		mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}}))
	}
	want := `relaymesh_push_seconds_count{outcome="sent"} 2` + "\n"
	waitFor(t, "two pushes timed", func() bool { return strings.Contains(metricsText(t, e.core), want) })
	text := metricsText(t, e.core)
	for _, w := range []string{
		`relaymesh_push_seconds_count{outcome="failed"} 0`,
		`relaymesh_push_provider_attempt_seconds_count{provider="apns"} 0`,
		`relaymesh_push_provider_attempt_seconds_count{provider="fcm"} 0`,
	} {
		if !strings.Contains(text, w+"\n") {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if problems, err := testutil.CollectAndLint(e.core.Collector(), "relaymesh_push_seconds", "relaymesh_push_provider_attempt_seconds"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
