package edge

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// get requests path on the test server with method and headers.
func (e *testEnv) get(t *testing.T, method, path string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, strings.NewReader("x=1"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestReadyz: /readyz answers 200 "ok" while the backend's checks pass,
// 503 with every failing check (text, or JSON when asked) when they do
// not, 503 while draining whatever the checks say; HEAD gives the status
// without a body, other methods 405; /healthz keeps its own answer.
func TestReadyz(t *testing.T) {
	var mu sync.Mutex
	failing := []string(nil)
	env := newEnv(t, func(c *Config) {
		c.NotReady = func() []string {
			mu.Lock()
			defer mu.Unlock()
			return failing
		}
	})
	// The backend's answer is cached for readyFor: each change of it
	// moves the edge's clock past that.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	env.srv.now = func() time.Time { return time.Unix(0, clock.Load()) }
	set := func(f ...string) {
		mu.Lock()
		failing = f
		mu.Unlock()
		clock.Add(int64(2 * readyFor))
	}

	if code, h, body := env.get(t, http.MethodGet, "/readyz"); code != 200 || body != "ok\n" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("ready: %d %q (Cache-Control %q), want 200 ok no-store", code, body, h.Get("Cache-Control"))
	}
	set("core link: shard 1: no leader", "core link: shard 3: no leader")
	code, _, body := env.get(t, http.MethodGet, "/readyz")
	if code != 503 || body != "core link: shard 1: no leader\ncore link: shard 3: no leader\n" {
		t.Fatalf("two checks failing: %d %q, want 503 and both, one per line", code, body)
	}
	code, h, body := env.get(t, http.MethodGet, "/readyz", "Accept", "application/json")
	var js struct {
		Ready   bool     `json:"ready"`
		Failing []string `json:"failing"`
	}
	if err := json.Unmarshal([]byte(body), &js); err != nil || code != 503 || js.Ready || len(js.Failing) != 2 ||
		!strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("JSON: %d %q (%v), want 503 {ready:false, failing:[2]}", code, body, err)
	}
	if code, _, body := env.get(t, http.MethodHead, "/readyz"); code != 503 || body != "" {
		t.Errorf("HEAD: %d %q, want 503 without a body", code, body)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, "BREW"} {
		if code, h, _ := env.get(t, m, "/readyz"); code != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /readyz: %d (Allow %q), want 405 with Allow: GET, HEAD", m, code, h.Get("Allow"))
		}
	}
	// Liveness does not follow readiness (Config.Ready is unset: live).
	if code, _, _ := env.get(t, http.MethodGet, "/healthz"); code != 200 {
		t.Errorf("/healthz with failing readiness checks: %d, want 200", code)
	}

	set()
	if code, _, _ := env.get(t, http.MethodHead, "/readyz"); code != 200 {
		t.Fatalf("HEAD once ready again: %d, want 200", code)
	}
	// A drain takes the edge out of both at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = env.srv.Drain(ctx)
	if code, _, body := env.get(t, http.MethodGet, "/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %q, want 503 naming the drain", code, body)
	}
	if code, _, _ := env.get(t, http.MethodGet, "/healthz"); code != 503 {
		t.Errorf("/healthz while draining: %d, want 503", code)
	}
}

// TestReadyzFlood: a flood of /readyz on the public port runs the
// backend's checks (a PING to the cores in production) once per readyFor,
// shared by the requests that arrive while it runs.
func TestReadyzFlood(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	env := newEnv(t, func(c *Config) {
		c.NotReady = func() []string {
			calls.Add(1)
			<-release
			return []string{"core link: shard 1: no leader"}
		}
	})
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	env.srv.now = func() time.Time { return time.Unix(0, clock.Load()) }
	const n = 200
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() {
			resp, err := http.Get(env.ts.URL + "/readyz")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 503 {
			t.Fatalf("a flooded /readyz answered %d, want every one 503", c)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("%d concurrent /readyz ran the backend's checks %d times, want once", n, got)
	}
	env.get(t, http.MethodGet, "/readyz")
	if got := calls.Load(); got != 1 {
		t.Errorf("within readyFor the checks ran again (%d)", got)
	}
	clock.Add(int64(readyFor))
	env.get(t, http.MethodGet, "/readyz")
	if got := calls.Load(); got != 2 {
		t.Errorf("after readyFor the checks ran %d times, want 2", got)
	}
}

// TestReadyzFallsBackToReady: without NotReady, /readyz follows Ready.
func TestReadyzFallsBackToReady(t *testing.T) {
	var ready atomic.Bool
	env := newEnv(t, func(c *Config) { c.Ready = ready.Load })
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	env.srv.now = func() time.Time { return time.Unix(0, clock.Load()) }
	if code, _, body := env.get(t, http.MethodGet, "/readyz"); code != 503 || body == "" {
		t.Errorf("not ready: %d %q, want 503 with a reason", code, body)
	}
	ready.Store(true)
	clock.Add(int64(readyFor))
	if code, _, _ := env.get(t, http.MethodGet, "/readyz"); code != 200 {
		t.Errorf("ready: %d, want 200", code)
	}
}

// TestNoProfilerOnClientPort: the edge's public handler serves no
// /debug/pprof (the profiler is on the cores' admin listeners only).
func TestNoProfilerOnClientPort(t *testing.T) {
	env := newEnv(t, nil)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2"} {
		code, _, body := env.get(t, http.MethodGet, p)
		if code == 200 || strings.Contains(body, "goroutine") || strings.Contains(body, "Types of profiles") {
			t.Errorf("GET %s on the client port: %d %.80q, want no profiler", p, code, body)
		}
	}
}

// TestCommandsByType: client commands are counted by type on /metrics,
// a type this build does not know in one "unknown" series, so a client
// cannot grow the label set.
func TestCommandsByType(t *testing.T) {
	var m Metrics
	m.Command(lcpb.CommandType_direct)
	m.Command(lcpb.CommandType_direct)
	m.Command(lcpb.CommandType_ack)
	for _, bad := range []lcpb.CommandType{99, -1, 1 << 20, numCommandTypes} {
		m.Command(bad)
	}
	b := metricsText(t, m.Collector())
	for _, want := range []string{
		`relaymesh_edge_commands_total{cmd="direct"} 2`,
		`relaymesh_edge_commands_total{cmd="ack"} 1`,
		`relaymesh_edge_commands_total{cmd="session"} 0`,
		`relaymesh_edge_commands_total{cmd="unknown"} 4`,
	} {
		if !strings.Contains(b, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(b, "relaymesh_edge_commands_total{"); n != len(lcpb.CommandType_name)+1 {
		t.Errorf("%d command series, want one per known type and unknown (%d)", n, len(lcpb.CommandType_name)+1)
	}
}

// TestQueueDepthMetrics: /metrics shows the frames waiting in the
// connections' outbound queues, summed and the fullest one's.
func TestQueueDepthMetrics(t *testing.T) {
	env := newEnv(t, nil)
	codec, err := lcpb.CodecFor(lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*conn
	for _, frames := range []int{3, 5} {
		c := newConn(env.srv, codec, &wsTransport{codec: codec})
		for range frames {
			c.q.Push(outFrame{b: []byte("x"), p: PriorityNormal}, PriorityNormal)
		}
		env.srv.mu.Lock()
		env.srv.conns[c.id] = c
		env.srv.mu.Unlock()
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		env.srv.mu.Lock()
		for _, c := range conns {
			delete(env.srv.conns, c.id)
			c.cancel()
		}
		env.srv.mu.Unlock()
	})
	_, _, body := env.get(t, http.MethodGet, "/metrics")
	for _, want := range []string{"relaymesh_edge_queued_frames 8\n", "relaymesh_edge_queued_frames_max 5\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
