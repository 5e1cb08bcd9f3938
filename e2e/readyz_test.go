package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	bin := relaymeshBin(t)
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("relaymesh %v: %v\n%s", args, err, out)
		}
	}
	pki := filepath.Join(dir, "pki")
	run("pki", "init", "--dir", pki)
	common := `data = "data"
session_token_key_file = "pki/session-token.key"

[[apps]]
id = "ready-app"
key = "ready-key"
master_key = "ready-master"
`
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(common+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var peers, cores []string
	meshAddrs := map[string]string{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("core-%d", i)
		run("pki", "issue", "--dir", pki, "--name", name, "--hosts", "127.0.0.1")
		meshAddrs[name] = freeUDPAddr(t)
		peers = append(peers, fmt.Sprintf("%s = %q", name, meshAddrs[name]))
		cores = append(cores, fmt.Sprintf("%q", meshAddrs[name]))
	}
	var admin []string
	var coreArgs [][]string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("core-%d", i)
		a := freeAddr(t)
		admin = append(admin, "http://"+a)
		cfg := write(name+".toml", fmt.Sprintf(`
[tls]
ca = "pki/ca.crt"
cert = "pki/%[1]s.crt"
key = "pki/%[1]s.key"

[core]
node_id = %[1]q
mesh_addr = %[2]q
peers = { %[3]s }
metrics_addr = %[4]q
shards = 2
`, name, meshAddrs[name], strings.Join(peers, ", "), a))
		coreArgs = append(coreArgs, []string{"core", "--config", cfg, "--log-level", "warn"})
	}
	run("pki", "issue", "--dir", pki, "--name", "edge-1", "--hosts", "127.0.0.1")
	listen := freeAddr(t)
	edgeCfg := write("edge-1.toml", fmt.Sprintf(`
[tls]
ca = "pki/ca.crt"
cert = "pki/edge-1.crt"
key = "pki/edge-1.key"

[edge]
edge_id = "edge-1"
listen = %q
mesh_addr = "127.0.0.1:0"
cores = [%s]
drain_timeout = "1s"
`, listen, strings.Join(cores, ", ")))
	edgeURL := "http://" + listen

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
	startProc(t, "", "edge", "--config", edgeCfg, "--log-level", "warn")
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
