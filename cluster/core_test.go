package cluster

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/mesh"
)

// TestCoreMetricsListener: a core with MetricsAddr serves /healthz (200
// once it leads its single-node shard) and /metrics with the core's and
// the hooks' series; Close stops the listener.
func TestCoreMetricsListener(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"),
		Identity: ids["core-1"], MetricsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	if c.MetricsURL == "" {
		t.Fatal("no MetricsURL")
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(c.MetricsURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := get("/healthz")
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: got %d, want 200 once the core leads", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	status, body := get("/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: got %d", status)
	}
	for _, want := range []string{
		"# TYPE relaymesh_core_deliveries_total counter\n",
		`relaymesh_core_relay_dropped_total{priority="normal"} 0` + "\n",
		`relaymesh_hook_calls_total{hook="_messageReceived"} 0` + "\n",
		"relaymesh_core_filtered_messages_total 0\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q; got:\n%s", want, body)
		}
	}
	url := c.MetricsURL
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if _, err := http.Get(url + "/metrics"); err == nil {
		t.Error("metrics listener still answers after Close")
	}
}
