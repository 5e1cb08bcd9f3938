package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// probe requests url with method and returns the status and body ("" and
// 0 when nothing answers).
func probe(method, url string) (int, string) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitProbe polls GET url until it answers code with a body holding
// every one of want, and fails after 30 s with the last answer.
func waitProbe(t *testing.T, url string, code int, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, body := probe(http.MethodGet, url)
		ok := got == code
		for _, w := range want {
			ok = ok && strings.Contains(body, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q after 30 s, want %d with %q", url, got, body, code, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadiness runs a region of two shards as an operator does (three
// `relaymesh core` processes with admin listeners, one `relaymesh edge`)
// and watches /readyz: with one core of three no shard has a leader and
// every /readyz says so, shard by shard (the edge's too); with a second
// core both shards elect leaders and every /readyz turns 200; when the
// other two cores die the survivor loses its leaders and turns 503
// again. The cores' admin listeners serve the profiler, the edge's client
// port does not.
func TestReadiness(t *testing.T) {
	c := newProcCluster(t, procOptions{Edges: 1, Shards: 2, EdgeExtra: `drain_timeout = "1s"`,
		App: "id = \"ready-app\"\nkey = \"ready-key\"\nmaster_key = \"ready-master\"\n"})
	admin, coreArgs, edgeURL := c.metrics, c.coreArgs, "http://"+c.edgeAddrs[0]

	// One core of three: no quorum, no leader anywhere.
	core1 := startProc(t, "", coreArgs[0]...)
	waitProbe(t, admin[0]+"/readyz", 503, "shard 0: no leader", "shard 1: no leader")
	if code, _ := probe(http.MethodGet, admin[0]+"/healthz"); code != 503 {
		t.Errorf("core-1 /healthz without a leader: %d, want 503", code)
	}
	if code, body := probe(http.MethodHead, admin[0]+"/readyz"); code != 503 || body != "" {
		t.Errorf("HEAD /readyz: %d %q, want 503 without a body", code, body)
	}
	if code, _ := probe(http.MethodPost, admin[0]+"/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", code)
	}
	startProc(t, "", c.edgeArgs[0]...)
	waitProbe(t, edgeURL+"/readyz", 503, "core link")

	// A second core: both shards elect leaders, every /readyz turns 200.
	core2 := startProc(t, "", coreArgs[1]...)
	waitProbe(t, admin[0]+"/readyz", 200, "ok")
	waitProbe(t, admin[1]+"/readyz", 200, "ok")
	waitProbe(t, edgeURL+"/readyz", 200, "ok")
	if code, _ := probe(http.MethodGet, edgeURL+"/healthz"); code != 200 {
		t.Errorf("edge /healthz with leaders: %d, want 200", code)
	}
	// The third core catches up and is ready too.
	core3 := startProc(t, "", coreArgs[2]...)
	waitProbe(t, admin[2]+"/readyz", 200, "ok")

	// The profiler: on the cores' admin listeners, not on the client port.
	waitProbe(t, admin[0]+"/debug/pprof/", 200, "goroutine")
	waitProbe(t, admin[0]+"/debug/pprof/goroutine?debug=1", 200, "goroutine profile")
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if code, body := probe(http.MethodGet, edgeURL+p); code == 200 || strings.Contains(body, "goroutine") {
			t.Errorf("GET %s on the edge's client port: %d %.60q, want no profiler", p, code, body)
		}
	}

	// Two cores die: the survivor has no quorum, its leaders go, and
	// every /readyz says so again.
	core2.Kill9()
	core3.Kill9()
	waitProbe(t, admin[0]+"/readyz", 503, "no leader")
	waitProbe(t, edgeURL+"/readyz", 503, "core link")
	core1.Stop()
}
