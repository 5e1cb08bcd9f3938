package cluster

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relaymesh/relaymesh/mesh"
)

// TestEdgeAdminListener: with AdminAddr an edge serves /metrics (its
// series, its core link's, the runtime's), /healthz, /readyz and the
// profiler there, and its client port no longer serves /metrics; without
// it the client port keeps /metrics (backward compatible). A taken admin
// address fails StartEdge and leaks nothing.
func TestEdgeAdminListener(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "edge-1", "edge-2")
	if err != nil {
		t.Fatal(err)
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	start := func(id, admin string) (*Edge, error) {
		return StartEdge(EdgeConfig{EdgeID: id, HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0", Identity: ids[id],
			Cores: []string{"127.0.0.1:9"}, TokenKey: make([]byte, 32), AdminAddr: admin})
	}
	e, err := start("edge-1", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !strings.HasPrefix(e.AdminURL, "http://127.0.0.1:") {
		t.Fatalf("AdminURL %q", e.AdminURL)
	}
	pub := "http://" + strings.TrimSuffix(strings.TrimPrefix(e.URL, "ws://"), "/")
	code, body := get(e.AdminURL + "/metrics")
	if code != 200 {
		t.Fatalf("admin /metrics: %d", code)
	}
	for _, want := range []string{"relaymesh_edge_sessions 0\n", "relaymesh_edge_link_retries_total 0\n",
		"# TYPE relaymesh_udp_local_drops_total counter\n", "# TYPE go_goroutines gauge\n", "# TYPE process_resident_memory_bytes gauge\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("admin /metrics lacks %q", want)
		}
	}
	if code, body := get(pub + "/metrics"); code != 404 || strings.Contains(body, "relaymesh_") {
		t.Errorf("client port /metrics with an admin listener: %d %.80q, want 404", code, body)
	}
	if code, _ := get(e.AdminURL + "/debug/pprof/"); code != 200 {
		t.Errorf("admin /debug/pprof/: %d, want 200", code)
	}
	if code, _ := get(pub + "/debug/pprof/"); code == 200 {
		t.Error("client port serves the profiler")
	}
	if code, _ := get(e.AdminURL + "/readyz"); code != 503 { // no core answers
		t.Errorf("admin /readyz: %d, want 503 (no core)", code)
	}
	if code, _ := get(pub + "/healthz"); code != 503 {
		t.Errorf("client port /healthz: %d, want 503 (no core)", code)
	}
	problems, err := testutil.GatherAndLint(e.Server.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "relaymesh_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}

	// The admin address taken: StartEdge fails, the ports it took are free.
	taken := strings.TrimPrefix(e.AdminURL, "http://")
	if e2, err := start("edge-2", taken); err == nil {
		e2.Close()
		t.Fatalf("StartEdge on a taken admin address %s: no error", taken)
	}

	// No admin listener: /metrics stays on the client port.
	e3, err := start("edge-2", "")
	if err != nil {
		t.Fatal(err)
	}
	defer e3.Close()
	if e3.AdminURL != "" {
		t.Errorf("AdminURL %q without AdminAddr", e3.AdminURL)
	}
	pub3 := "http://" + strings.TrimSuffix(strings.TrimPrefix(e3.URL, "ws://"), "/")
	if code, body := get(pub3 + "/metrics"); code != 200 || !strings.Contains(body, "relaymesh_edge_link_retries_total 0\n") {
		t.Errorf("client port /metrics without admin_addr: %d, want 200 with the edge's and the link's series", code)
	}
}
