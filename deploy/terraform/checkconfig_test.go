package terraform

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/relaymesh/relaymesh/internal/testbin"
)

// TestMain removes the binary testbin built for the --check-config runs.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Remove()
	os.Exit(code)
}

// checkConfig runs `relaymesh ROLE --config FILE --check-config`.
func checkConfig(t *testing.T, role, file string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testbin.Relaymesh(t), role, "--config", file, "--check-config")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// TestUserDataChecksConfig: the systemd unit the boot script writes runs
// --check-config before each start, so a broken config shows in the
// journal as its problems, before any listener opens.
func TestUserDataChecksConfig(t *testing.T) {
	e := newEvaluator(t)
	core := e.resourceAttr(t, "aws_instance", "core", "user_data", "eu-core-2").AsString()
	edge, err := base64.StdEncoding.DecodeString(e.resourceAttr(t, "aws_launch_template", "edge", "user_data", "").AsString())
	if err != nil {
		t.Fatal(err)
	}
	const want = "ExecStartPre=/usr/local/bin/relaymesh $ROLE --config $ETC/relaymesh.toml --check-config\nExecStart="
	for role, script := range map[string]string{"core": core, "edge": string(edge)} {
		if !strings.Contains(script, want) {
			t.Errorf("%s user-data: no %q", role, want)
		}
	}
}

// TestRenderedConfigsPassCheckConfig: what the module writes on each
// instance — the config, certificates, CA bundle, token key and
// WebTransport certificate the boot script unpacks from the secret — is
// accepted by the binary's own `relaymesh core|edge --check-config`, with
// and without WebTransport; and the check does fail on that same directory
// when the module's output is damaged (a certificate missing, an unknown
// key, the other role's file).
func TestRenderedConfigsPassCheckConfig(t *testing.T) {
	e := newEvaluator(t)
	var coreDir string
	for _, n := range e.coreNames {
		dir := e.unpackSecret(t, e.resourceAttr(t, "aws_secretsmanager_secret_version", "core", "secret_string", n), "i-0core")
		if out, errOut, code := checkConfig(t, "core", filepath.Join(dir, "relaymesh.toml")); code != 0 || out != "ok\n" {
			t.Errorf("%s: core --check-config: exit %d, stdout %q\n%s\n%s", n, code, out, errOut, readFile(t, filepath.Join(dir, "relaymesh.toml")))
		}
		coreDir = dir
	}
	edgeDir := e.unpackSecret(t, e.resourceAttr(t, "aws_secretsmanager_secret_version", "edge", "secret_string", ""), "i-0edge")
	if out, errOut, code := checkConfig(t, "edge", filepath.Join(edgeDir, "relaymesh.toml")); code != 0 || out != "ok\n" {
		t.Errorf("edge: --check-config: exit %d, stdout %q\n%s\n%s", code, out, errOut, readFile(t, filepath.Join(edgeDir, "relaymesh.toml")))
	}
	e2 := newEvaluatorWith(t, map[string]cty.Value{"webtransport": cty.NilVal, "wt_cert_pem": cty.NilVal, "wt_key_pem": cty.NilVal})
	plain := e2.unpackSecret(t, e2.resourceAttr(t, "aws_secretsmanager_secret_version", "edge", "secret_string", ""), "i-0edge")
	if out, errOut, code := checkConfig(t, "edge", filepath.Join(plain, "relaymesh.toml")); code != 0 || out != "ok\n" {
		t.Errorf("edge without WebTransport: --check-config: exit %d, stdout %q\n%s", code, out, errOut)
	}

	// The same directories, damaged.
	coreTOML := readFile(t, filepath.Join(coreDir, "relaymesh.toml"))
	edgeTOML := readFile(t, filepath.Join(edgeDir, "relaymesh.toml"))
	for _, c := range []struct {
		name, role, dir, body, remove, want string
	}{
		{"core certificate missing", "core", coreDir, coreTOML, "pki/node.crt", "node.crt"},
		{"WebTransport key missing", "edge", edgeDir, edgeTOML, "pki/wt.key", "wt.key"},
		{"token key missing", "edge", edgeDir, edgeTOML, "pki/session-token.key", "session-token.key"},
		{"unknown key", "core", coreDir, strings.Replace(coreTOML, "[core]\n", "[core]\nnode = 1\n", 1), "", "unknown keys"},
		{"edge file on a core", "core", edgeDir, edgeTOML, "", "[core] needs node_id and mesh_addr"},
		{"bad TOML", "edge", edgeDir, edgeTOML + "\n[edge\n", "", "toml"},
	} {
		f := filepath.Join(c.dir, "damaged.toml")
		if err := os.WriteFile(f, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		var saved []byte
		if c.remove != "" {
			p := filepath.Join(c.dir, c.remove)
			saved = []byte(readFile(t, p))
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		out, errOut, code := checkConfig(t, c.role, f)
		if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 naming %q", c.name, code, out, errOut, c.want)
		}
		if c.remove != "" {
			if err := os.WriteFile(filepath.Join(c.dir, c.remove), saved, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}
