package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig: `relaymesh core|edge --check-config` says ok and exits
// 0 on good files without starting anything (the ports it names stay
// ours, no data directory appears), and on bad ones prints every problem
// and exits 1.
func TestCheckConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	// The addresses the files name are held by the test: a check that
	// listened would fail or steal them.
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcp2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp2.Close()
	coreCfg, edgeCfg := prodConfigs(t, dir, udp.LocalAddr().String(), tcp.Addr().String(), tcp2.Addr().String())

	for _, c := range []struct{ role, cfg string }{{"core", coreCfg}, {"edge", edgeCfg}} {
		out, errOut, code := run(t, dir, c.role, "--config", c.cfg, "--check-config")
		if code != 0 || out != "ok\n" || errOut != "" {
			t.Errorf("%s --check-config on a good file: exit %d, stdout %q, stderr %q; want 0 and ok", c.role, code, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("--check-config created the data directory (%v)", err)
	}

	good, err := os.ReadFile(coreCfg)
	if err != nil {
		t.Fatal(err)
	}
	goodEdge, err := os.ReadFile(edgeCfg)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(s, old, new string) string {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("%q not in the file", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	for _, c := range []struct {
		name, role, body string
		want             []string // each must be in stderr
	}{
		{"bad TOML", "core", string(good) + "\n[core\n", []string{"toml"}},
		{"unknown key", "core", edit(string(good), "[core]\n", "[core]\nnode_name = \"x\"\n"), []string{"unknown keys", "core.node_name"}},
		{"cert file missing", "core", edit(string(good), `cert = "pki/core-1.crt"`, `cert = "pki/nope.crt"`), []string{"nope.crt"}},
		{"CA file missing", "edge", edit(string(goodEdge), `ca = "pki/ca.crt"`, `ca = "pki/none.crt"`), []string{"none.crt"}},
		{"key of another node", "core", edit(string(good), `key = "pki/core-1.key"`, `key = "pki/edge-1.key"`), []string{"[tls]"}},
		{"an edge's certificate on a core", "core", edit(edit(string(good), `cert = "pki/core-1.crt"`, `cert = "pki/edge-1.crt"`), `key = "pki/core-1.key"`, `key = "pki/edge-1.key"`), []string{"edge certificate, not a core one"}},
		{"token key missing", "edge", edit(string(goodEdge), `session_token_key_file = "pki/session-token.key"`, `session_token_key_file = "pki/gone.key"`), []string{"gone.key"}},
		{"no [core] section", "core", strings.Split(string(good), "[core]")[0], []string{"[core] needs node_id and mesh_addr"}},
		{"bad address", "edge", edit(string(goodEdge), `mesh_addr = "127.0.0.1:0"`, `mesh_addr = "127.0.0.1"`), []string{"edge.mesh_addr"}},
		// Several problems at once: every one is listed.
		{"many problems", "core", edit(edit(edit(string(good), "[core]\n", "[core]\nbogus = 1\n"),
			`cert = "pki/core-1.crt"`, `cert = "pki/nope.crt"`), `master_key = "ops-master"`, `master_key = ""`),
			[]string{"unknown keys", "nope.crt", "no master_key"}},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".toml")
		if err := os.WriteFile(f, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := run(t, dir, c.role, "--config", f, "--check-config")
		if code != 1 || out != "" {
			t.Errorf("%s: exit %d, stdout %q; want 1 and nothing on stdout", c.name, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr does not name %q:\n%s", c.name, w, errOut)
			}
		}
	}
	for _, args := range [][]string{
		{"core", "--config", filepath.Join(dir, "missing.toml"), "--check-config"},
		{"edge", "--check-config"},
		{"core", "--config", coreCfg, "--check-config", "extra"},
	} {
		if out, errOut, code := run(t, dir, args...); code == 0 || out == "ok\n" || errOut == "" {
			t.Errorf("relaymesh %v: exit %d, stdout %q, stderr %q; want a refusal", args, code, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("--check-config created the data directory (%v)", err)
	}
}
