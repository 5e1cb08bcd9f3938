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
[core.limits]
max_members = 50
max_offline_per_conv = 20
max_unread_convs = 5
[edge.limits]
queue_len = 256
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
	if l.SendsPerMinute != -1 || l.IdleTimeout != 10*time.Minute || l.QueueLen != 256 {
		t.Errorf("limits = %+v, want sends -1, idle 10m, queue 256", l)
	}
	if cl := c.CoreLimits(); cl.MaxMembers != 50 || cl.MaxOfflinePerConv != 20 || cl.MaxUnreadConvs != 5 {
		t.Errorf("core limits = %+v, want 50/20/5", cl)
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
		"bad raft timeout":      "[core]\nraft_heartbeat_timeout = \"1ms\"\n",
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

func TestLoadConfigIntegrations(t *testing.T) {
	p := writeConfig(t, `
[[apps]]
id = "app-1"
master_key = "m"
sensitive_words_file = "words.txt"
hook_base_url = "http://127.0.0.1:1"
hook_policy = "fail_closed"
push_provider = "log"
push_template = '{"alert":"${fromClientId}"}'
[apps.hooks]
_messageReceived = "http://127.0.0.1:2/received"
[[apps]]
id = "app-2"
`)
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), "words.txt"), []byte("# custom\nbanana\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.Integrations(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ app, text, want string }{
		{"app-1", "banana shit", "*** shit"}, // the custom list replaces the shipped one
		{"app-2", "banana shit", "banana ***"},
	} {
		if got, _ := in.Words.Replace(tc.app, tc.text); got != tc.want {
			t.Errorf("%s: Replace(%q) = %q, want %q", tc.app, tc.text, got, tc.want)
		}
	}
	if in.Hooks == nil || !in.Hooks.Enabled("app-1", "_messageSent") || in.Hooks.Enabled("app-2", "_messageSent") {
		t.Error("hooks: want app-1's base URL only")
	}
	if in.Push.Provider == nil || in.Push.Templates["app-1"] == "" {
		t.Errorf("push: got %+v, want app-1's log provider and template", in.Push)
	}
	if got := c.AppList(); len(got) != 2 || got[0].MasterKey != "m" {
		t.Errorf("AppList: got %+v", got)
	}
}

func TestLoadConfigIntegrationsInvalid(t *testing.T) {
	for name, body := range map[string]string{
		"hook name":       "[[apps]]\nid = \"a\"\n[apps.hooks]\n_nope = \"http://x\"\n",
		"policy":          "[[apps]]\nid = \"a\"\nhook_policy = \"maybe\"\n",
		"provider":        "[[apps]]\nid = \"a\"\npush_provider = \"apns\"\n",
		"webhook w/o url": "[[apps]]\nid = \"a\"\npush_provider = \"webhook\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadConfig(writeConfig(t, body)); !errors.Is(err, ErrConfig) {
				t.Errorf("got %v, want ErrConfig", err)
			}
		})
	}
}

func TestLoadConfigRaftTimeouts(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, "[core]\nraft_election_timeout = \"2s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	hb, el, err := c.Core.raftTimeouts()
	if err != nil || hb != DefaultRaftHeartbeatTimeout || el != 2*time.Second {
		t.Errorf("raft timeouts = %v, %v, %v; want %v, 2s", hb, el, err, DefaultRaftHeartbeatTimeout)
	}
}
