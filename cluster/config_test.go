package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relaymesh.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	p := writeConfig(t, `
data = "state"
[[apps]]
id = "app-1"
master_key = "m"
signature_required = true
[core]
node_id = "core-1"
mesh_addr = "127.0.0.1:7100"
peers = { core-1 = "127.0.0.1:7100", core-2 = "127.0.0.1:7200" }
[edge.limits]
sends_per_minute = -1
idle_timeout = "10m"
`)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.DataDir(), filepath.Join(filepath.Dir(p), "state"); got != want {
		t.Errorf("DataDir = %q, want %q", got, want)
	}
	reg, err := c.Registry()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Lookup("app-1"); err != nil {
		t.Errorf("configured app: %v", err)
	}
	if _, err := reg.Lookup("app-2"); err == nil {
		t.Error("an app not in the file must be refused")
	}
	l := c.Limits()
	if l.SendsPerMinute != -1 || l.IdleTimeout != 10*time.Minute {
		t.Errorf("limits = %+v, want sends -1 and idle 10m", l)
	}
	if _, err := c.CoreConfig(); !errors.Is(err, ErrConfig) {
		t.Errorf("CoreConfig without [tls]: err %v, want ErrConfig", err)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	for name, body := range map[string]string{
		"unknown key":           "colour = \"blue\"\n",
		"duplicate app":         "[[apps]]\nid = \"a\"\n[[apps]]\nid = \"a\"\n",
		"signature without key": "[[apps]]\nid = \"a\"\nsignature_required = true\n",
		"bad duration":          "[edge.limits]\nidle_timeout = \"soon\"\n",
		"not toml":              "[[apps\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadConfig(writeConfig(t, body)); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
	c, err := LoadConfig(writeConfig(t, "[edge]\nedge_id = \"e\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Registry(); !errors.Is(err, ErrConfig) {
		t.Errorf("a production role with no apps: err %v, want ErrConfig", err)
	}
}
