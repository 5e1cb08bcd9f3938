package edge

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// metricsText is the Prometheus text of c alone.
func metricsText(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	text, err := metric.Text(c)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// extraCollector is a one-series collector, as the core's in dev.
func extraCollector(name string, v float64) prometheus.Collector {
	d := metric.Counter(name, "A test series.")
	return metric.NewCollector([]metric.Desc{d}, func(ch chan<- prometheus.Metric) { metric.Chan(ch).Add(d, v) })
}

// TestMetricsEndpoint: /metrics serves the edge's series, the queues',
// the mesh's, Go's and the process's, and Config.Collectors'; with
// AdminMetrics the public port does not, and MetricsHandler does.
func TestMetricsEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []prometheus.Collector
		want  string
	}{
		{"extra series", []prometheus.Collector{extraCollector("relaymesh_core_x_total", 7)}, "relaymesh_core_x_total 7\n"},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{TokenKey: []byte("k"), Collectors: tc.extra})
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
			body := w.Body.String()
			if w.Code != 200 {
				t.Fatalf("GET /metrics: %d", w.Code)
			}
			for _, want := range []string{
				"# TYPE relaymesh_edge_sessions gauge\n",
				"relaymesh_edge_queued_frames 0\n",
				"# TYPE relaymesh_udp_local_drops_total counter\n",
				"# TYPE go_goroutines gauge\n",
				"# TYPE process_resident_memory_bytes gauge\n",
				tc.want,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %q: got\n%s", want, body)
				}
			}
		})
	}
	t.Run("admin", func(t *testing.T) {
		s := New(Config{TokenKey: []byte("k"), AdminMetrics: true})
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if w.Code != 404 || strings.Contains(w.Body.String(), "relaymesh_") {
			t.Errorf("public /metrics with AdminMetrics: %d %.80q, want 404", w.Code, w.Body.String())
		}
		w = httptest.NewRecorder()
		s.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if w.Code != 200 || !strings.Contains(w.Body.String(), "relaymesh_edge_sessions 0\n") {
			t.Errorf("MetricsHandler: %d %.200q", w.Code, w.Body.String())
		}
	})
}

// TestMetricsCollideExtra: a Config.Collectors series the edge already
// exports is a wiring mistake New refuses at once, not a broken scrape.
func TestMetricsCollideExtra(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New with a colliding collector: no panic")
		}
	}()
	New(Config{TokenKey: []byte("k"), Collectors: []prometheus.Collector{extraCollector("relaymesh_edge_sessions_total", 1)}})
}

// TestMetricsCollector: the counters' collector is lint-clean, describes
// every series it collects, and reads the atomics at scrape time, the
// rejections by code included (every LeanCloud code from the start, at
// zero; another code once seen).
func TestMetricsCollector(t *testing.T) {
	var m Metrics
	m.SessionsOpen.Add(3)
	m.ByTransport[TransportWebTransport].FramesIn.Add(5)
	m.Dropped[0].Add(2)
	m.Reject(4301)
	m.Reject(4301)
	m.Reject(1)
	m.Command(lcpb.CommandType_direct)
	c := m.Collector()
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	r := prometheus.NewPedanticRegistry() // a series not described fails the gather
	r.MustRegister(c)
	if _, err := r.Gather(); err != nil {
		t.Fatal(err)
	}
	if n, want := testutil.CollectAndCount(c, "relaymesh_edge_rejections_total"), len(lcpb.ErrorCodes())+1; n != want {
		t.Errorf("rejection series: got %d, want one per LeanCloud code and code 1 (%d)", n, want)
	}
	text := metricsText(t, c)
	for _, want := range []string{
		"relaymesh_edge_sessions 3\n",
		`relaymesh_edge_transport_frames_in_total{transport="webtransport"} 5` + "\n",
		`relaymesh_edge_transport_frames_in_total{transport="websocket"} 0` + "\n",
		`relaymesh_edge_dropped_frames_total{priority="` + Priority(0).String() + `"} 2` + "\n",
		`relaymesh_edge_rejections_total{code="4301"} 2` + "\n",
		`relaymesh_edge_rejections_total{code="1"} 1` + "\n",
		`relaymesh_edge_rejections_total{code="4100"} 0` + "\n", // known, never seen
		`relaymesh_edge_commands_total{cmd="direct"} 1` + "\n",
		"# TYPE relaymesh_edge_backend_seconds histogram\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
}

// TestMetricsScrapeRace: scrapes run alongside the counters, new
// rejection codes and each other (go test -race), and the last one
// counts everything.
func TestMetricsScrapeRace(t *testing.T) {
	s := New(Config{TokenKey: []byte("k")})
	m := s.Metrics()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 500 {
				m.FramesIn.Add(1)
				m.Reject(int32(4000 + (i*500+j)%50))
				m.observeBackend(lcpb.CommandType_direct, 0)
			}
		})
		wg.Go(func() {
			for range 10 {
				w := httptest.NewRecorder()
				s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
				if w.Code != 200 {
					t.Errorf("GET /metrics: %d", w.Code)
				}
			}
		})
	}
	wg.Wait()
	text := metricsText(t, m.Collector())
	for _, want := range []string{
		"relaymesh_edge_frames_in_total 2000\n",
		`relaymesh_edge_backend_seconds_count{cmd="direct"} 2000` + "\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q", want)
		}
	}
	if n, want := testutil.CollectAndCount(m.Collector(), "relaymesh_edge_rejections_total"), len(lcpb.ErrorCodes())+50; n != want {
		t.Errorf("rejection series: got %d, want %d", n, want)
	}
}
