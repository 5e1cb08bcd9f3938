package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/raftstore"
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
		`relaymesh_raft_leader{shard="0"} 1` + "\n",
		"# TYPE relaymesh_udp_local_drops_total counter\n",
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_cpu_seconds_total counter\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q; got:\n%s", want, body)
		}
	}
	// Every family once, lint-clean (ours; the runtime's are client_golang's).
	problems, err := testutil.GatherAndLint(c.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "relaymesh_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	if n, err := testutil.GatherAndCount(c.Gatherer(), "relaymesh_core_fanout_replayed_total", "relaymesh_raft_term"); err != nil || n != 2 {
		t.Errorf("replayed and raft term series: got %d (%v), want one each (one shard core, one shard)", n, err)
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

// TestCoreStopsOnNewerCommand: a core whose binary meets a shard command of
// a newer version (a mixed cluster in an upgrade) stops its replica: the
// proposal fails, Failed is closed, /healthz answers 503. Started again on
// the same binary it replays the log and stops at the same entry, never
// applying it differently (the entries before it stay in the log for the
// binary that knows the version).
func TestCoreStopsOnNewerCommand(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1")
	if err != nil {
		t.Fatal(err)
	}
	start := func() *Core {
		t.Helper()
		c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"),
			Identity: ids["core-1"], MetricsAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := start()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.Replica.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	ok := fmt.Sprintf(`{"v":%d,"op":"start","app":"a","cid":"c1","from":"u","now":1}`, shard.Version)
	if _, err := c.Replica.Propose(ctx, []byte(ok)); err != nil {
		t.Fatalf("a command of this version: %v", err)
	}
	newer := fmt.Sprintf(`{"v":%d,"op":"start","app":"a","cid":"c2","from":"u","now":2}`, shard.Version+1)
	_, err = c.Replica.Propose(ctx, []byte(newer))
	if !errors.Is(err, raftstore.ErrReplicaFailed) || !errors.Is(err, shard.ErrUnknownVersion) {
		t.Fatalf("a newer command: got %v, want the replica stopped on an unknown version", err)
	}
	select {
	case <-c.Replica.Failed():
	case <-ctx.Done():
		t.Fatal("Failed not closed")
	}
	if resp, err := http.Get(c.MetricsURL + "/healthz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/healthz of the stopped core: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}
	if conv, _ := shard.GetConv(c.Replica.State(), "a", "c2"); conv != nil {
		t.Fatal("the newer command was applied")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = start()
	defer c.Close()
	select {
	case <-c.Replica.Failed():
	case <-ctx.Done():
		t.Fatal("restarted on the same binary: the replay did not stop at the newer command")
	}
	if err := c.Replica.Err(); !errors.Is(err, shard.ErrUnknownVersion) {
		t.Fatalf("after the restart: %v, want the same unknown version", err)
	}
	if conv, _ := shard.GetConv(c.Replica.State(), "a", "c2"); conv != nil {
		t.Fatal("the newer command was applied on the replay")
	}
}
