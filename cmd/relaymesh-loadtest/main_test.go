package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/internal/testbin"
	"github.com/relaymesh/relaymesh/loadtest/devserver"
)

// asMain makes this test binary act as the command, so the coordinator
// of TestWorkers can re-execute it as worker processes.
const asMain = "RELAYMESH_LOADTEST_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	testbin.Remove() // devserver's relaymesh
	os.Exit(code)
}

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code = run(ctx, args, &o, &e)
	t.Logf("relaymesh-loadtest %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, o.String(), e.String())
	return code, o.String(), e.String()
}

func TestHelpDocumentsFlagsAndScenarios(t *testing.T) {
	code, _, help := runCmd(t, "--help")
	if code != 0 {
		t.Errorf("--help exit %d, want 0", code)
	}
	for _, want := range []string{"--target", "--topology", "--scenario", "--sessions", "--rate", "--duration",
		"--out", "--workers", "--app", "--connect-rate", "--source-ips", "--server-pid", "--group-size",
		"--rooms", "--priority-mix", "--ack-interval", "connect", "pairs", "group", "reconnect", "chatroom", "cross-region", "region_pairs"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
	for _, h := range []string{"--worker ", "--chatroom-ids"} {
		if strings.Contains(help, h) {
			t.Errorf("--help shows the hidden %s flag", h)
		}
	}
}

// TestCrossRegionNeedsTopology: cross-region without regions is a usage
// error, and so is a topology that lists no edges.
func TestCrossRegionNeedsTopology(t *testing.T) {
	code, _, stderr := runCmd(t, "--target", "ws://127.0.0.1:1/", "--scenario", "cross-region")
	if code != exitUsage || !strings.Contains(stderr, "--topology") {
		t.Errorf("cross-region without --topology: exit %d, stderr %q; want 2 naming --topology", code, stderr)
	}
	empty := filepath.Join(t.TempDir(), "topology.json")
	os.WriteFile(empty, []byte(`{"regions":[{"name":"a","edges":[]}]}`), 0o644)
	if code, _, _ := runCmd(t, "--topology", empty, "--scenario", "cross-region"); code != exitUsage {
		t.Errorf("topology without edges: exit %d, want 2", code)
	}
}

func TestBadFlags(t *testing.T) {
	if code, _, _ := runCmd(t, "--scenario", "pairs"); code != exitUsage {
		t.Errorf("no target: exit %d, want 2", code)
	}
	if code, _, _ := runCmd(t, "--target", "ws://127.0.0.1:1/", "--scenario", "pairs", "--source-ips", "x"); code != exitUsage {
		t.Errorf("bad --source-ips: exit %d, want 2", code)
	}
	// The ledger that times a kill lives in one process.
	if code, _, stderr := runCmd(t, "--target", "ws://127.0.0.1:1/", "--scenario", "pairs", "--kill-pid", "999999999", "--workers", "2"); code != exitUsage || !strings.Contains(stderr, "--kill-pid") {
		t.Errorf("--kill-pid with 2 workers: exit %d, stderr %q; want 2", code, stderr)
	}
	if code, _, _ := runCmd(t, "--target", "ws://127.0.0.1:1/", "--scenario", "pairs", "--kill-pid", "999999999", "--kill-after", "-1s"); code != exitUsage {
		t.Errorf("negative --kill-after: exit %d, want 2", code)
	}
	for _, args := range [][]string{
		{"--transport", "quic"},
		{"--loss", "0.01"}, // WebSocket: no userspace TCP loss
		{"--transport", "webtransport", "--loss", "1"},
		{"--transport", "webtransport", "--loss", "-0.5"},
		{"--transport", "webtransport", "--loss", "x"},
		{"--ack-interval", "soon"},
		{"--ack-interval", "1"}, // a duration needs its unit
	} {
		a := append([]string{"--target", "ws://127.0.0.1:1/", "--scenario", "pairs"}, args...)
		if code, _, _ := runCmd(t, a...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestLedgerCatchesLoss: the server drops the 3rd direct delivery; the
// tool must see it and fail.
func TestLedgerCatchesLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t, "--test-drop-delivery", "3")
	out := filepath.Join(t.TempDir(), "run.json")
	code, stdout, _ := runCmd(t, "--target", srv.URL, "--scenario", "pairs", "--sessions", "10",
		"--rate", "20", "--duration", "2s", "--drain", "2s", "--out", out, "--progress", "1s")
	if code == 0 {
		t.Errorf("exit %d, want non-zero", code)
	}
	s := readSummary(t, out)
	if s.Lost < 1 || s.Passed {
		t.Errorf("lost %d passed %v, want ≥1 and false", s.Lost, s.Passed)
	}
	if !strings.Contains(stdout, "FAIL") {
		t.Errorf("summary does not say FAIL")
	}
}

// TestWorkers runs pairs in two worker processes and merges them.
func TestWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t)
	t.Setenv(asMain, "1")
	out := filepath.Join(t.TempDir(), "run.json")
	code, _, _ := runCmd(t, "--target", srv.URL, "--scenario", "pairs", "--sessions", "12", "--workers", "2",
		"--rate", "40", "--duration", "2s", "--out", out, "--progress", "1s", "--source-ips", "127.0.0.1-127.0.0.2")
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	s := readSummary(t, out)
	if s.Workers != 2 || s.Sessions != 12 || s.Lost != 0 || s.Acked < 40 || s.Delivered != s.Acked {
		t.Errorf("got workers %d sessions %d lost %d acked %d delivered %d; want 2, 12, 0, ≥40, all",
			s.Workers, s.Sessions, s.Lost, s.Acked, s.Delivered)
	}
	if _, err := os.Stat(strings.TrimSuffix(out, ".json") + ".html"); err != nil {
		t.Errorf("no HTML report: %v", err)
	}
}

// TestWebTransportLoss runs pairs over WebTransport with 5 % of the
// client→edge datagrams dropped (two worker processes): every message is
// delivered once, and the drops really happened.
func TestWebTransportLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t)
	t.Setenv(asMain, "1")
	out := filepath.Join(t.TempDir(), "run.json")
	code, stdout, _ := runCmd(t, "--target", srv.URL, "--scenario", "pairs", "--sessions", "10", "--workers", "2",
		"--transport", "webtransport", "--loss", "0.05", "--rate", "20", "--duration", "2s", "--out", out, "--progress", "1s")
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	s := readSummary(t, out)
	if s.Sessions != 10 || s.Lost != 0 || s.Acked < 20 || s.Delivered != s.Acked || s.Transport != "webtransport" {
		t.Errorf("got sessions %d lost %d acked %d delivered %d transport %q; want 10, 0, ≥20, all, webtransport",
			s.Sessions, s.Lost, s.Acked, s.Delivered, s.Transport)
	}
	if s.LossWritten < 100 || s.LossDropped == 0 || float64(s.LossDropped) > 0.2*float64(s.LossWritten) {
		t.Errorf("loss: %d of %d datagrams dropped, want some and about 5 %%", s.LossDropped, s.LossWritten)
	}
	if !strings.Contains(stdout, "transport: webtransport") || !strings.Contains(stdout, "injected loss") {
		t.Errorf("the text summary does not name the transport and the loss")
	}
}

// TestWebTransportReconnect: the reconnect scenario over WebTransport —
// the droppers' sockets go down (client.Drop, writes refused), feeders
// send, the sockets come back and every dropper gets its unread state.
func TestWebTransportReconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t)
	code, stdout, stderr := runCmd(t, "--target", srv.URL, "--scenario", "reconnect", "--sessions", "20",
		"--transport", "webtransport", "--duration", "2s", "--drain", "2s", "--progress", "-1s")
	if code != 0 || !strings.Contains(stdout, "(0 unrecovered)") || strings.Contains(stdout+stderr, "dropped 0 connections") {
		t.Errorf("exit %d; want 0, every dropper dropped and recovered", code)
	}
}

type summary struct {
	Transport   string `json:"transport"`
	LossWritten int64  `json:"loss_written"`
	LossDropped int64  `json:"loss_dropped"`
	Workers     int    `json:"workers"`
	Sessions    int    `json:"sessions"`
	Acked       int    `json:"acked"`
	Delivered   int    `json:"delivered"`
	Lost        int    `json:"lost"`
	Passed      bool   `json:"passed"`
}

func readSummary(t *testing.T, path string) summary {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, b)
	}
	return s
}

// TestCrossRegionWorkers runs cross-region from a topology file in two
// worker processes; the region pairs survive the trip through the
// workers' JSON reports. The two "regions" are two URLs of one relaymesh
// dev, so pairs span them and deliver.
func TestCrossRegionWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t)
	t.Setenv(asMain, "1")
	topo := filepath.Join(t.TempDir(), "topology.json")
	alias := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	b, _ := json.Marshal(map[string]any{"regions": []map[string]any{
		{"name": "r1", "edges": []string{srv.URL}, "router": "http://x"},
		{"name": "r2", "edges": []string{alias}, "router": "http://y"},
	}})
	if err := os.WriteFile(topo, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run.json")
	code, stdout, _ := runCmd(t, "--topology", topo, "--scenario", "cross-region", "--sessions", "12", "--workers", "2",
		"--rate", "30", "--duration", "2s", "--out", out, "--progress", "1s")
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Acked       int64 `json:"acked"`
		RegionPairs map[string]struct {
			Acked, Delivered, Expected, Lost int64
			DeliveryLatencyMS                struct{ Count int64 } `json:"delivery_latency_ms"`
		} `json:"region_pairs"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	var acked int64
	for _, p := range []string{"r1->r2", "r2->r1"} {
		x, ok := s.RegionPairs[p]
		if !ok || x.Acked == 0 || x.Delivered != x.Expected || x.Lost != 0 || x.DeliveryLatencyMS.Count != x.Delivered {
			t.Errorf("pair %s: %+v (present %v)", p, x, ok)
		}
		acked += x.Acked
	}
	if acked != s.Acked || len(s.RegionPairs) != 2 {
		t.Errorf("pairs %v add up to %d acked of %d", s.RegionPairs, acked, s.Acked)
	}
	if !strings.Contains(stdout, "region pair r1->r2") {
		t.Error("no region pair in the text summary")
	}
}

// TestGOGC: the load tester sets its own collector's percent: --gogc's
// default when GOGC is unset, GOGC when set, --gogc when given.
func TestGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	percent := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	for _, c := range []struct {
		env  string
		args []string
		want int
	}{
		{"", nil, defaultGOGC},
		{"150", nil, 100}, // GOGC is the runtime's own: left alone
		{"150", []string{"--gogc", "250"}, 250},
		{"", []string{"--gogc", "-1"}, -1},
	} {
		t.Setenv("GOGC", c.env)
		debug.SetGCPercent(100)
		// No scenario: refused after the flags are parsed and applied.
		if code, _, _ := runCmd(t, c.args...); code != exitUsage {
			t.Fatalf("GOGC=%q %v: exit %d, want %d (no scenario)", c.env, c.args, code, exitUsage)
		}
		if got := percent(); got != c.want {
			t.Errorf("GOGC=%q %v: GC percent %d, want %d", c.env, c.args, got, c.want)
		}
	}
}
