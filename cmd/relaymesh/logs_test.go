package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logLines reads up to n stderr lines of p (fewer if it exits or within
// d).
func logLines(p *proc, n int, d time.Duration) []string {
	var out []string
	timeout := time.After(d)
	for len(out) < n {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return out
			}
			out = append(out, l)
		case <-timeout:
			return out
		}
	}
	return out
}

// checkJSONLines fails unless every line is one JSON object with time
// (RFC 3339), level and msg.
func checkJSONLines(t *testing.T, what string, lines []string) {
	t.Helper()
	t.Logf("%s: %d lines at %v", what, len(lines), time.Now().Format("15:04:05.000"))
	if len(lines) == 0 {
		t.Fatalf("%s: no log lines", what)
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%s: log line is not JSON (%v): %s", what, err, l)
		}
		ts, _ := rec["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("%s: time %q: %v in %s", what, rec["time"], err, l)
		}
		switch rec["level"] {
		case "DEBUG", "INFO", "WARN", "ERROR":
		default:
			t.Errorf("%s: level %v in %s", what, rec["level"], l)
		}
		if m, _ := rec["msg"].(string); m == "" {
			t.Errorf("%s: no msg in %s", what, l)
		}
	}
}

// prodConfigs writes a core and an edge config (single-node core) with
// certificates from `relaymesh pki`, and returns their paths.
func prodConfigs(t *testing.T, dir string, coreMesh, metrics, edgeListen string) (coreCfg, edgeCfg string) {
	t.Helper()
	for _, args := range [][]string{
		{"pki", "init", "--dir", "pki"},
		{"pki", "issue", "--dir", "pki", "--name", "core-1", "--hosts", "127.0.0.1"},
		{"pki", "issue", "--dir", "pki", "--name", "edge-1", "--hosts", "127.0.0.1"},
	} {
		if _, errOut, code := run(t, dir, args...); code != 0 {
			t.Fatalf("relaymesh %v: exit %d: %s", args, code, errOut)
		}
	}
	common := `data = "data"
session_token_key_file = "pki/session-token.key"

[[apps]]
id = "ops-app"
key = "ops-key"
master_key = "ops-master"
`
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(common+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	metricsLine := ""
	if metrics != "" {
		metricsLine = fmt.Sprintf("metrics_addr = %q", metrics)
	}
	coreCfg = write("core.toml", fmt.Sprintf(`
[tls]
ca = "pki/ca.crt"
cert = "pki/core-1.crt"
key = "pki/core-1.key"

[core]
node_id = "core-1"
mesh_addr = %q
%s
`, coreMesh, metricsLine))
	edgeCfg = write("edge.toml", fmt.Sprintf(`
[tls]
ca = "pki/ca.crt"
cert = "pki/edge-1.crt"
key = "pki/edge-1.key"

[edge]
edge_id = "edge-1"
listen = %q
mesh_addr = "127.0.0.1:0"
cores = [%q]
`, edgeListen, coreMesh))
	return coreCfg, edgeCfg
}

// TestLogFormats: core and edge log JSON lines by default, dev text;
// --log-format switches either way; an unknown format is refused.
func TestLogFormats(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	coreMesh := freeDevAddr(t)
	coreCfg, edgeCfg := prodConfigs(t, dir, coreMesh, "", freeDevAddr(t))

	// --log-level debug so that every role says something at once.
	core := start(t, dir, "core", "--config", coreCfg, "--log-level", "debug")
	checkJSONLines(t, "core (default format)", logLines(core, 5, 20*time.Second))
	edge := start(t, dir, "edge", "--config", edgeCfg, "--log-level", "debug")
	checkJSONLines(t, "edge (default format)", logLines(edge, 1, 20*time.Second)) // it says little: its first line
	edge.stop(t)
	core.stop(t)

	dev := start(t, dir, "dev", "--data", filepath.Join(dir, "dev"), "--addr", freeDevAddr(t), "--log-level", "debug", "--log-format", "json")
	checkJSONLines(t, "dev --log-format json", logLines(dev, 5, 20*time.Second))
	dev.stop(t)

	dev = start(t, dir, "dev", "--data", filepath.Join(dir, "dev"), "--addr", freeDevAddr(t), "--log-level", "debug")
	lines := logLines(dev, 5, 20*time.Second)
	if len(lines) == 0 {
		t.Fatal("dev: no log lines")
	}
	for _, l := range lines {
		if json.Valid([]byte(l)) || !strings.Contains(l, "level=") || !strings.Contains(l, "msg=") {
			t.Errorf("dev (default format) line is not slog text: %s", l)
		}
	}
	dev.stop(t)

	for _, role := range [][]string{{"core", "--config", coreCfg}, {"edge", "--config", edgeCfg}, {"dev", "--data", filepath.Join(dir, "never")}} {
		_, errOut, code := run(t, dir, append(role, "--log-format", "yaml")...)
		if code == 0 || !strings.Contains(errOut, "--log-format") {
			t.Errorf("relaymesh %s --log-format yaml: exit %d, stderr %q; want a refusal naming --log-format", role[0], code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "never")); !os.IsNotExist(err) {
		t.Errorf("dev with a bad --log-format wrote its data directory: %v", err)
	}
}
