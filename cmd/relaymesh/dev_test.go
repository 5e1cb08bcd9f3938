package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevFlagMisuse: --tls without the WebTransport certificate, a
// --pprof or --admin-addr address that cannot be listened on and an
// unknown --log-format are refused before anything starts (no data
// directory is written).
func TestDevFlagMisuse(t *testing.T) {
	dir := t.TempDir() + "/data"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls", "--no-webtransport"}, "--tls"},
		{[]string{"--pprof", "256.0.0.1:1"}, "--pprof"},
		{[]string{"--admin-addr", "256.0.0.1:1"}, "admin"},
		{[]string{"--log-format", "xml"}, "--log-format"},
	} {
		err := runDev(append([]string{"--data", dir, "--addr", "127.0.0.1:1", "--log-level", "error"}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("relaymesh dev %v: %v, want an error naming %s", c.args, err, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("relaymesh dev %v wrote its data directory before refusing: %v", c.args, err)
		}
	}
}

// TestGCFloorEnv: RELAYMESH_GC_HEAP_FLOOR_MIB sets the collector's heap
// floor, 0 turns it off, RELAYMESH_GC_HEAP_FLOOR_MAX_MIB how far it may
// rise with the allocation rate (64 to 256 MiB when neither is set, a
// fixed floor when only the first is), and anything but a number of MiB,
// or a maximum below the floor, is refused before a serving command
// starts; GOGC in the environment wins.
func TestGCFloorEnv(t *testing.T) {
	t.Setenv("GOGC", "")
	for _, name := range []string{"RELAYMESH_GC_HEAP_FLOOR_MIB", "RELAYMESH_GC_HEAP_FLOOR_MAX_MIB"} {
		for _, bad := range []string{"abc", "-1", "1.5", "99999999"} {
			t.Setenv(name, bad)
			if tu, err := startGCFloor(); err == nil || !strings.Contains(err.Error(), name) {
				tu.Stop()
				t.Errorf("%s=%s: %v, want an error naming the variable", name, bad, err)
			}
		}
		t.Setenv(name, "")
	}
	for _, c := range []struct {
		floor, max string
		lo, hi     uint64 // MiB; 0: no tuner
		err        bool
	}{
		{"", "", 64, 256, false},
		{"32", "", 32, 32, false}, // a fixed floor, as an operator who set it had before stop 40
		{"32", "128", 32, 128, false},
		{"", "512", 64, 512, false},
		{"", "64", 64, 64, false},
		{"128", "64", 0, 0, true}, // the maximum below the floor
		{"0", "", 0, 0, false},    // no floor
	} {
		t.Setenv("RELAYMESH_GC_HEAP_FLOOR_MIB", c.floor)
		t.Setenv("RELAYMESH_GC_HEAP_FLOOR_MAX_MIB", c.max)
		tu, err := startGCFloor()
		if (err != nil) != c.err {
			t.Errorf("floor %q max %q: err %v, want an error: %v", c.floor, c.max, err, c.err)
		}
		if err != nil && !strings.Contains(err.Error(), "RELAYMESH_GC_HEAP_FLOOR_MAX_MIB") {
			t.Errorf("floor %q max %q: %v, want an error naming the maximum", c.floor, c.max, err)
		}
		if c.lo == 0 {
			if tu != nil {
				tu.Stop()
				t.Errorf("floor %q max %q: a tuner, want none", c.floor, c.max)
			}
			continue
		}
		if tu == nil {
			t.Fatalf("floor %q max %q: no tuner", c.floor, c.max)
		}
		if lo, hi := tu.Bounds(); lo != c.lo<<20 || hi != c.hi<<20 {
			t.Errorf("floor %q max %q: bounds %d, %d MiB, want %d, %d", c.floor, c.max, lo>>20, hi>>20, c.lo, c.hi)
		}
		tu.Stop()
	}
	t.Setenv("RELAYMESH_GC_HEAP_FLOOR_MIB", "")
	t.Setenv("RELAYMESH_GC_HEAP_FLOOR_MAX_MIB", "")
	t.Setenv("GOGC", "200")
	if tu, err := startGCFloor(); tu != nil || err != nil {
		tu.Stop()
		t.Errorf("with GOGC set: tuner %v, err %v; want none", tu, err)
	}
}

// TestDevAdminListener: relaymesh dev prints its admin listener's URLs at
// start; there /metrics has the edge's and the core's series, /readyz
// turns 200 and the profiler answers, while the client port has no
// profiler.
func TestDevAdminListener(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	addr := freeDevAddr(t)
	p := start(t, dir, "dev", "--data", filepath.Join(dir, "data"), "--addr", addr, "--log-level", "warn")
	var metrics string
	deadline := time.Now().Add(30 * time.Second)
	for metrics == "" {
		for _, l := range strings.Split(p.stdout.String(), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "metrics:" {
				metrics = f[1]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics: line printed in 30 s:\n%s", p.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(metrics, "http://127.0.0.1:") || !strings.HasSuffix(metrics, "/metrics") {
		t.Fatalf("metrics URL %q, want http://127.0.0.1:PORT/metrics (loopback)", metrics)
	}
	admin := strings.TrimSuffix(metrics, "/metrics")
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, body := get(admin + "/readyz")
		if code == 200 && body == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin /readyz: %d %q after 30 s, want 200 ok", code, body)
		}
	}
	code, body := get(metrics)
	for _, want := range []string{"relaymesh_edge_connections ", "relaymesh_core_deliveries_total", "relaymesh_router_shards",
		"relaymesh_raft_leader{shard=\"0\"} 1\n", "relaymesh_raft_has_leader{shard=\"0\"} 1\n", "relaymesh_core_ready 1\n"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("admin /metrics: %d, want 200 with %s", code, want)
		}
	}
	if code, body := get(admin + "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("admin /debug/pprof/: %d, want the profiler's index", code)
	}
	if code, _ := get("http://" + addr + "/debug/pprof/"); code == 200 {
		t.Errorf("client port /debug/pprof/: %d, want no profiler", code)
	}
	if code, body := get("http://" + addr + "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("client port /readyz: %d %q, want 200 ok", code, body)
	}
}
