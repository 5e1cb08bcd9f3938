package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
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
master_key = "m2"
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
		"user store url":  "[[apps]]\nid = \"a\"\nuser_verify_url = \"ftp://users\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadConfig(writeConfig(t, body)); !errors.Is(err, ErrConfig) {
				t.Errorf("got %v, want ErrConfig", err)
			}
		})
	}
}

// TestLoadConfigRefusesOpenApps: an [[apps]] entry without master_key (an
// "open" app that would take any key as its master key) is refused at
// load with a message that names the app, as are app ids that hold ':'.
func TestLoadConfigRefusesOpenApps(t *testing.T) {
	for name, body := range map[string]string{
		"no master_key":      "[[apps]]\nid = \"open-app\"\nkey = \"k\"\n",
		"empty master_key":   "[[apps]]\nid = \"open-app\"\nmaster_key = \"\"\n",
		"second app open":    "[[apps]]\nid = \"a\"\nmaster_key = \"m\"\n[[apps]]\nid = \"open-app\"\n",
		"colon in id":        "[[apps]]\nid = \"a:b\"\nmaster_key = \"m\"\n",
		"control char in id": "[[apps]]\nid = \"a\\u0001\"\nmaster_key = \"m\"\n",
	} {
		_, err := LoadConfig(writeConfig(t, body))
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
			continue
		}
		if name != "colon in id" && name != "control char in id" && !strings.Contains(err.Error(), `"open-app" has no master_key`) {
			t.Errorf("%s: message %q does not name the app and the missing key", name, err)
		}
	}
	if _, err := LoadConfig(writeConfig(t, "[[apps]]\nid = \"a\"\nmaster_key = \"m\"\n")); err != nil {
		t.Fatalf("an app with a master key: %v", err)
	}
}

func TestDevExposureWarning(t *testing.T) {
	for addr, warn := range map[string]bool{
		"127.0.0.1:8080": false, "[::1]:8080": false, "localhost:8080": false, "127.0.0.2:9": false,
		"0.0.0.0:8080": true, ":8080": true, "[::]:8080": true, "10.0.0.5:8080": true, "example.com:80": true,
	} {
		got := DevExposureWarning(addr, true)
		if (got != "") != warn {
			t.Errorf("%s: warning %q, want warning %v", addr, got, warn)
		}
		if warn && !strings.Contains(got, "OPEN apps") {
			t.Errorf("%s: warning does not say the apps are open: %q", addr, got)
		}
	}
}

func TestLoadConfigSignMaxAge(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, "[edge.rest]\nsign_max_age = \"5m\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RESTLimits().SignMaxAge; got != 5*time.Minute {
		t.Errorf("sign_max_age: got %v, want 5m", got)
	}
	for _, bad := range []string{"soon", "0s"} {
		if _, err := LoadConfig(writeConfig(t, "[edge.rest]\nsign_max_age = \""+bad+"\"\n")); !errors.Is(err, ErrConfig) {
			t.Errorf("sign_max_age %q: got %v, want ErrConfig", bad, err)
		}
	}
}

func TestLoadConfigDevicePush(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rder, _ := x509.MarshalPKCS8PrivateKey(rk)
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "proj-1", "client_email": "x@proj-1.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rder}))})
	p := writeConfig(t, `
[[apps]]
id = "app-1"
master_key = "m"
push_provider = "log"
[apps.push]
expiry = "24h"
[apps.push.apns]
key_file = "AuthKey.p8"
key_id = "ABC123DEFG"
team_id = "TEAM123456"
topic = "com.example.chat"
production = false
[apps.push.fcm]
service_account_file = "sa.json"
[[apps]]
id = "app-2"
master_key = "m"
`)
	dir := filepath.Dir(p)
	if err := os.WriteFile(filepath.Join(dir, "AuthKey.p8"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.json"), sa, 0o600); err != nil {
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
	defer in.Close()
	r, ok := in.Push.Provider.(pushRouter)
	if !ok || !r.Enabled("app-1") || r.Enabled("app-2") {
		t.Fatalf("router: got %T, want app-1 only", in.Push.Provider)
	}
	var names []string
	for _, np := range r["app-1"] {
		names = append(names, np.name)
	}
	if strings.Join(names, ",") != "log,apns,fcm" {
		t.Errorf("app-1 providers: got %v, want log, apns, fcm", names)
	}
	if s := r.ProviderStats(); len(s) != 3 {
		t.Errorf("ProviderStats: got %v", s)
	}
}
func TestCoreCommandVersion(t *testing.T) {
	type vcase struct {
		v    string
		want bool // accepted
	}
	cases := []vcase{{"-1", false}, {strconv.Itoa(shard.Version + 1), false}}
	for v := 1; v <= shard.Version; v++ {
		cases = append(cases, vcase{strconv.Itoa(v), true})
	}
	for _, tc := range cases {
		c, err := LoadConfig(writeConfig(t, `
[core]
node_id = "core-1"
mesh_addr = "127.0.0.1:7100"
command_version = `+tc.v+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.CoreConfig()
		if refused := errors.Is(err, ErrConfig) && strings.Contains(err.Error(), "command_version"); refused == tc.want {
			t.Errorf("command_version = %s: CoreConfig error %v, want accepted %v", tc.v, err, tc.want)
		}
	}
}

// TestLoadConfigAppUsers: user_verify_url gives the app a user store in the
// hook client edges and cores share (with or without other hooks), the sign
// limits are read, and a bad [edge] trusted_proxies is refused.
func TestLoadConfigAppUsers(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, `
[[apps]]
id = "app-1"
master_key = "m"
user_verify_url = "https://users.example.com/1.1/users/me"
[[apps]]
id = "app-2"
master_key = "m2"
[edge]
trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]
[edge.rest]
signs_per_second = 5
signs_in_flight = 2
`))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hooks()
	if h == nil || !h.HasUserStore("app-1") || h.HasUserStore("app-2") || h.Enabled("app-1", "_rtmClientSign") {
		t.Fatal("want a user store for app-1 only, and no hooks")
	}
	if l := c.RESTLimits(); l.SignsPerSecond != 5 || l.SignsInFlight != 2 {
		t.Errorf("REST sign limits: %+v", l)
	}
	if _, err := LoadConfig(writeConfig(t, "[edge]\ntrusted_proxies = [\"10.0.0.0/99\"]\n")); !errors.Is(err, ErrConfig) {
		t.Errorf("a bad prefix: got %v, want ErrConfig", err)
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

func TestLoadConfigCompactionShare(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, "[core]\ncompaction_share = 0.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Core.CompactionShare; got != 0.5 {
		t.Errorf("compaction_share = %v, want 0.5", got)
	}
	for _, bad := range []string{"-0.1", "1.5"} {
		if _, err := LoadConfig(writeConfig(t, "[core]\ncompaction_share = "+bad+"\n")); !errors.Is(err, ErrConfig) {
			t.Errorf("compaction_share = %s: got %v, want ErrConfig", bad, err)
		}
	}
}

func TestRegionsConfig(t *testing.T) {
	const regions = `
[[apps]]
id = "app-1"
master_key = "m"
[[regions]]
name = "eu"
cidrs = ["10.1.0.0/16"]
public_urls = ["wss://eu-1/", "wss://eu-2/"]
nearest = ["us"]
[[regions]]
name = "us"
cidrs = ["10.2.0.0/16"]
public_urls = ["wss://us-1/"]
`
	c, err := LoadConfig(writeConfig(t, regions+"[edge]\nregion = \"us\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := c.Routes(c.Edge.Region)
	if err != nil || rt == nil {
		t.Fatalf("Routes: %v, %v", rt, err)
	}
	if srv, sec, reg := rt.Route(netip.MustParseAddr("10.1.3.4")); reg != "eu" || !strings.HasPrefix(srv, "wss://eu-") || sec != "wss://us-1/" {
		t.Errorf("route of an eu caller: %s %s %s", srv, sec, reg)
	}
	if _, _, reg := rt.Route(netip.MustParseAddr("192.0.2.1")); reg != "us" {
		t.Errorf("route of an unknown caller: region %s, want the edge's us", reg)
	}
	// A core's file may list regions without an edge region.
	if c, err := LoadConfig(writeConfig(t, regions)); err != nil {
		t.Errorf("regions without [edge] region: %v", err)
	} else if _, err := c.Routes(""); !errors.Is(err, ErrConfig) {
		t.Errorf("an edge without its region: got %v, want ErrConfig", err)
	}
	for name, body := range map[string]string{
		"bad cidr":       strings.Replace(regions, "10.2.0.0/16", "10.2.0.0/33", 1) + "[edge]\nregion = \"us\"\n",
		"unknown region": regions + "[edge]\nregion = \"mars\"\n",
		"no urls":        strings.Replace(regions, `public_urls = ["wss://us-1/"]`, "", 1) + "[edge]\nregion = \"us\"\n",
		"unknown key":    regions + "[[regions]]\nname = \"ap\"\npublic_urls = [\"wss://ap/\"]\ncidr = \"x\"\n",
	} {
		if _, err := LoadConfig(writeConfig(t, body)); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
}

func TestDrainTimeoutConfig(t *testing.T) {
	base := "[[apps]]\nid = \"a\"\nmaster_key = \"m\"\n[edge]\n"
	c, err := LoadConfig(writeConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.Edge.drainTimeout(); d != DefaultDrainTimeout {
		t.Errorf("default drain timeout %v, want %v", d, DefaultDrainTimeout)
	}
	c, err = LoadConfig(writeConfig(t, base+"drain_timeout = \"2s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.Edge.drainTimeout(); d != 2*time.Second {
		t.Errorf("drain timeout %v, want 2s", d)
	}
	if _, err := LoadConfig(writeConfig(t, base+"drain_timeout = \"soon\"\n")); !errors.Is(err, ErrConfig) {
		t.Errorf("bad drain_timeout: got %v, want ErrConfig", err)
	}
}

// TestCoreRegionsAndShards: [core] region, shards and remote_regions are
// read into CoreConfig, and each bad value is refused with ErrConfig.
func TestCoreRegionsAndShards(t *testing.T) {
	pki := t.TempDir()
	if _, err := mesh.EnsureDevPKI(pki, "core-1"); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("[[apps]]\nid = \"app-1\"\nmaster_key = \"m\"\n[tls]\nca = %q\ncert = %q\nkey = %q\n",
		filepath.Join(pki, "ca.crt"), filepath.Join(pki, "core-1.crt"), filepath.Join(pki, "core-1.key")) +
		"[core]\nnode_id = \"core-1\"\nmesh_addr = \"127.0.0.1:7100\"\n"
	good := base + "region = 2\nshards = 4\n\n[[core.remote_regions]]\nnumber = 1\ncores = [\"127.0.0.1:7200\"]\n\n[[core.remote_regions]]\nnumber = 3\ncores = [\"127.0.0.1:7300\", \"127.0.0.1:7301\"]\n"
	c, err := LoadConfig(writeConfig(t, good))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.CoreConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cc.Region != 2 || cc.Shards != 4 || len(cc.Remote) != 2 || cc.Remote[1].Number != 3 || len(cc.Remote[1].Cores) != 2 {
		t.Fatalf("got region %d shards %d remote %+v", cc.Region, cc.Shards, cc.Remote)
	}
	for _, bad := range []string{
		base + "region = 256\n",
		base + "region = -1\n",
		base + "shards = 257\n",
		base + "shards = -2\n",
		base + "region = 2\n[[core.remote_regions]]\nnumber = 2\ncores = [\"x:1\"]\n",                                             // itself
		base + "[[core.remote_regions]]\nnumber = 3\ncores = []\n",                                                                // no cores
		base + "[[core.remote_regions]]\nnumber = 0\ncores = [\"x:1\"]\n",                                                         // no number
		base + "[[core.remote_regions]]\nnumber = 3\ncores = [\"x:1\"]\n[[core.remote_regions]]\nnumber = 3\ncores = [\"y:1\"]\n", // twice
	} {
		c, err := LoadConfig(writeConfig(t, bad))
		if err != nil {
			continue // refused at load: fine too
		}
		if _, err := c.CoreConfig(); !errors.Is(err, ErrConfig) {
			t.Errorf("accepted:\n%s(err %v)", bad, err)
		}
	}
}
