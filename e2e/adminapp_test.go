package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// loginCode logs clientID into app on the edge at url, signed with sign
// when set, and returns the LeanCloud code of the refusal (0: logged in).
func loginCode(t *testing.T, url, app, clientID string, sign client.SignFunc) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{AppID: app, ClientID: clientID, Signature: sign, NoReconnect: true})
	if err == nil {
		c.Close()
		return 0
	}
	var le *client.Error
	if errors.As(err, &le) {
		return le.Code
	}
	t.Fatalf("login %s/%s at %s: %v", app, clientID, url, err)
	return -1
}

// appList is `admin app list --json [--show-keys]`, decoded.
func (a *adminCLI) appList(showKeys bool) *cluster.AppsReport {
	a.t.Helper()
	args := []string{"app", "list", "--json"}
	if showKeys {
		args = append(args, "--show-keys")
	}
	out := a.ok(args...)
	var r cluster.AppsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		a.t.Fatalf("app list --json: %v\n%s", err, out)
	}
	return &r
}

// TestAdminApp runs `relaymesh admin app` against 3 cores and 2 edges
// (separate processes): list and show from the catalog and each core's
// config, a master key set and rotated and a new app created through the
// catalog and taken by every edge within seconds (the old key's signature
// refused, the new one's accepted), an app deleted (its logins refused
// with 4100), and the misuses refused.
func TestAdminApp(t *testing.T) {
	c := startProcCluster(t, procOptions{Edges: 2, EdgeLimits: "sends_per_minute = -1"})
	a := newAdminCLI(t, c, "admin-1", "admin")
	const app, oldMaster = "failover-app", "failover-master"

	// Every core follows the catalog, which has the config file's app.
	var r *cluster.AppsReport
	waitFor(t, 30*time.Second, func() bool {
		r = a.appList(true)
		if len(r.Nodes) != 3 {
			return false
		}
		for _, n := range r.Nodes {
			if n.View == nil || n.View.Source != "catalog" {
				return false
			}
		}
		v := r.App(app)
		return v != nil && v.Source == "catalog" && len(v.Catalog) == 3 && len(v.Drift) == 0
	})
	if s := r.App(app).Settings; s.MasterKey != oldMaster || s.Key != "failover-key" || s.SignatureRequired {
		t.Fatalf("app list --show-keys: %+v, want the config file's settings", s)
	}
	// One more edge, that knows only a core which does not lead the
	// catalog: it learns the apps from that core's replica.
	var st *cluster.ClusterView
	waitFor(t, 30*time.Second, func() bool {
		st = a.status()
		g := groupOf(st, "catalog", 0)
		return g != nil && g.Leader != ""
	})
	far := -1
	for i := range c.coreMesh {
		if fmt.Sprintf("core-%d", i+1) != groupOf(st, "catalog", 0).Leader {
			far = i
		}
	}
	edges := append(slices.Clone(c.edges), c.addEdge("edge-far", c.coreMesh[far]))
	t.Logf("edge-far knows only core-%d; the catalog's leader is %s", far+1, groupOf(st, "catalog", 0).Leader)
	// The three edges follow the catalog (they started on their config
	// files' apps).
	waitFor(t, 10*time.Second, func() bool {
		r := a.appList(false)
		return len(r.Edges) == 3 && len(r.EdgesDrift) == 0 && r.Gen != ""
	})

	// The listing merges each edge's last call to any core: wait until
	// it too shows them all on the catalog's apps (CI once caught edge-2
	// listed on its config file's a moment after the check above passed;
	// not explained yet).
	var text string
	waitFor(t, 10*time.Second, func() bool {
		text = a.ok("app", "list")
		return !strings.Contains(text, "! ")
	})
	t.Logf("app list:\n%s", text)
	for _, want := range []string{app, "catalog", "fail********", "limits: per core"} {
		if !strings.Contains(text, want) {
			t.Errorf("app list lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, oldMaster) || strings.Contains(text, "! ") {
		t.Errorf("app list shows the master key or drift without cause:\n%s", text)
	}
	show := a.ok("app", "show", app, "--show-keys")
	t.Logf("app show --show-keys:\n%s", show)
	if !strings.Contains(show, oldMaster) || strings.Count(show, "same") != 6 {
		t.Errorf("app show --show-keys: want the master key and 3 cores' catalog and config the same:\n%s", show)
	}

	// A new master key, signatures required: the old key's signature is
	// refused and the new one's accepted on both edges within seconds.
	const newMaster = "the-new-master-key"
	out := a.ok("app", "set", app, "--master-key", newMaster, "--signature-required=true")
	if strings.Contains(out, newMaster) {
		t.Errorf("app set printed the master key: %s", out)
	}
	setAt := time.Now()
	for i, e := range edges {
		waitFor(t, 10*time.Second, func() bool {
			return loginCode(t, e.URL, app, "alice", loginSigner(app, newMaster)) == 0 &&
				loginCode(t, e.URL, app, "alice", loginSigner(app, oldMaster)) == lcpb.ErrSignatureFailed
		})
		t.Logf("edge %d takes the new master key %v after the set returned", i+1, time.Since(setAt).Round(10*time.Millisecond))
		if code := loginCode(t, e.URL, app, "bob", nil); code != lcpb.ErrSignatureFailed {
			t.Errorf("edge %d: unsigned login got %d, want %d", i+1, code, lcpb.ErrSignatureFailed)
		}
	}
	// The config files still say the old key: drift, the catalog wins.
	// (Polled: a replica may still be a few entries behind, a drift of
	// its own.)
	waitFor(t, 10*time.Second, func() bool {
		v := a.appList(false).App(app)
		return v.Settings.MasterKey == "the-********" && len(v.Drift) == 1 && strings.Contains(v.Drift[0], "config file of core-1, core-2, core-3 differs from the catalog")
	})
	if text := a.ok("app", "list"); !strings.Contains(text, "! "+app+": config file of core-1, core-2, core-3 differs from the catalog") {
		t.Errorf("app list does not flag the config drift:\n%s", text)
	}

	// rotate-master-key prints the new key once; the edges take it.
	out = a.ok("app", "rotate-master-key", app)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	rotated := lines[len(lines)-1]
	if len(rotated) < 20 || rotated == newMaster {
		t.Fatalf("rotate-master-key printed %q", out)
	}
	for _, e := range edges {
		waitFor(t, 10*time.Second, func() bool {
			return loginCode(t, e.URL, app, "alice", loginSigner(app, rotated)) == 0 &&
				loginCode(t, e.URL, app, "alice", loginSigner(app, newMaster)) == lcpb.ErrSignatureFailed
		})
	}
	if show := a.ok("app", "show", app); strings.Contains(show, rotated) {
		t.Errorf("app show without --show-keys printed the rotated key:\n%s", show)
	}

	// A new app: 4100 before, served by every edge once set.
	const fresh = "fresh-app"
	if code := loginCode(t, c.edges[0].URL, fresh, "alice", nil); code != lcpb.ErrAppNotAvailable {
		t.Fatalf("unknown app: login got %d, want %d", code, lcpb.ErrAppNotAvailable)
	}
	// Its hook, set through the catalog only, is called by the cores.
	hooked := make(chan error, 16) // each call's signature check with the app's master key
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := hooks.Verify(r, "fresh-master")
		if err == nil && (r.Header.Get("X-LC-Id") != fresh || r.URL.Path != "/received") {
			err = fmt.Errorf("app %q path %q", r.Header.Get("X-LC-Id"), r.URL.Path)
		}
		select {
		case hooked <- err:
		default:
		}
		w.Write([]byte("{}"))
	}))
	defer hookSrv.Close()
	a.ok("app", "set", fresh, "--app-key", "fresh-key", "--master-key", "fresh-master", "--hook-url", "_messageReceived="+hookSrv.URL+"/received")
	for _, e := range edges {
		waitFor(t, 10*time.Second, func() bool { return loginCode(t, e.URL, fresh, "alice", nil) == 0 })
	}
	if show := a.ok("app", "show", fresh); !strings.Contains(show, "_messageReceived "+hookSrv.URL+"/received") {
		t.Errorf("app show lacks the hook:\n%s", show)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := dial(t, ctx, c.edges[0].URL, fresh, "alice")
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "hooked", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, cid, client.TextMessage("hello"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-hooked:
		if err != nil {
			t.Errorf("the hook call: %v, want one signed with the app's master key", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hook set with admin app set was not called")
	}
	alice.Close()

	// Delete: refused without --yes; then every edge refuses the app (4100).
	if _, errOut, code := a.run("app", "delete", fresh); code == 0 || !strings.Contains(errOut, "--yes") {
		t.Errorf("delete without --yes: exit %d, %q", code, errOut)
	}
	if code := loginCode(t, edges[2].URL, fresh, "bob", nil); code != 0 {
		t.Fatalf("delete without --yes deleted: login got %d", code)
	}
	// A client of the app stays connected until the delete, which ends
	// its session with 4100 (no reconnect follows).
	erin := dial(t, ctx, edges[2].URL, fresh, "erin")
	a.ok("app", "delete", fresh, "--yes")
	for _, e := range edges {
		waitFor(t, 10*time.Second, func() bool { return loginCode(t, e.URL, fresh, "alice", nil) == lcpb.ErrAppNotAvailable })
	}
	for closed := false; !closed; {
		select {
		case ev := <-erin.Events():
			if cl, ok := ev.(client.Closed); ok {
				if cl.Code != lcpb.ErrAppNotAvailable {
					t.Errorf("erin's session closed with %d, want %d", cl.Code, lcpb.ErrAppNotAvailable)
				}
				closed = true
			}
		case <-time.After(10 * time.Second):
			t.Fatal("erin's session of the deleted app was not closed")
		}
	}
	// The cores saw all three edges ask, each serving the newest apps.
	waitFor(t, 10*time.Second, func() bool {
		r := a.appList(false)
		return len(r.Edges) == 3 && len(r.EdgesDrift) == 0 && r.Gen != ""
	})
	if v := a.appList(false).App(fresh); v == nil || v.Source != "deleted" {
		t.Errorf("after delete: %+v, want a tombstone", v)
	}
	// Deleting again, or rotating a deleted app: unknown.
	if _, errOut, code := a.run("app", "rotate-master-key", fresh); code == 0 || !strings.Contains(errOut, "unknown app") {
		t.Errorf("rotate of a deleted app: exit %d, %q", code, errOut)
	}

	// Misuse.
	huge := "_messageReceived=http://127.0.0.1/" + strings.Repeat("x", 70<<10)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown app show", []string{"app", "show", "no-such-app"}, "unknown app"},
		{"unknown app rotate", []string{"app", "rotate-master-key", "no-such-app"}, "unknown app"},
		{"unknown app delete", []string{"app", "delete", "no-such-app", "--yes"}, "unknown app"},
		{"invalid id", []string{"app", "set", "a:b", "--app-key", "k"}, "invalid app id"},
		{"new app without a master key", []string{"app", "set", "keyless-app", "--app-key", "k"}, "needs a master key"},
		{"id too long", []string{"app", "show", strings.Repeat("a", 65)}, "invalid app id"},
		{"two ids", []string{"app", "show", app, "other"}, "want one app id"},
		{"nothing to set", []string{"app", "set", app}, "nothing to set"},
		{"bad bool", []string{"app", "set", app, "--signature-required=maybe"}, "invalid boolean"},
		{"empty master key", []string{"app", "set", app, "--master-key", ""}, "must not be empty"},
		{"not a hook", []string{"app", "set", app, "--hook-url", "_notAHook=http://127.0.0.1/"}, "not a hook"},
		{"bad hook url", []string{"app", "set", app, "--hook-url", "_messageReceived=ftp://x/"}, "http or https"},
		{"hook without =", []string{"app", "set", app, "--hook-url", "_messageReceived"}, "NAME=URL"},
		{"huge settings", []string{"app", "set", app, "--hook-url", huge}, "at most"},
		{"unknown subcommand", []string{"app", "frobnicate"}, "unknown subcommand"},
		{"unknown flag", []string{"app", "list", "--frob"}, "flag provided but not defined"},
	} {
		_, errOut, code := a.run(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want an error with %q", tc.name, code, errOut, tc.want)
		}
	}
	// None of them changed the app.
	if s := a.appList(true).App(app).Settings; s.MasterKey != rotated || !s.SignatureRequired || len(s.Hooks) != 0 {
		t.Errorf("after the misuses: %+v", s)
	}
	// Edge and core certificates are refused.
	for _, role := range []string{"edge", "core"} {
		other := newAdminCLI(t, c, "not-admin-"+role, role)
		for _, args := range [][]string{{"app", "list"}, {"app", "set", app, "--master-key", "stolen"}} {
			_, errOut, code := other.run(args...)
			if code == 0 || !strings.Contains(errOut, "refused certificate") {
				t.Errorf("%s certificate, %v: exit %d, %q", role, args, code, errOut)
			}
		}
	}
	if s := a.appList(true).App(app).Settings; s.MasterKey != rotated {
		t.Errorf("a refused certificate changed the master key: %q", s.MasterKey)
	}
	// A change after the catalog's leadership moved: the command follows
	// not_leader to the new leader, which has every change before.
	a.ok("shard", "transfer-leader", "--shard", "catalog")
	a.ok("app", "set", app, "--conversation-signature-required=true", "--core", c.coreMesh[far])
	if s := a.appList(true).App(app).Settings; s.MasterKey != rotated || !s.SignatureRequired || !s.ConversationSignatureRequired {
		t.Errorf("after a set on the new leader: %+v", s)
	}
	// Every core stopped, and one restarted alone with its config file
	// (the old master key, the deleted app absent, failover-app's switches
	// off): without a quorum its catalog replica cannot take the config
	// file's apps, and it serves what the replica held.
	for i := range c.cores {
		c.cores[i].Stop()
	}
	if err := c.restartCore(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		for _, n := range a.appList(true).Nodes {
			if n.View != nil && n.View.Node == "core-1" {
				return n.View.Source == "catalog"
			}
		}
		return false
	})
	if s := a.appList(true).App(app).Settings; s.MasterKey != rotated {
		t.Errorf("core-1 restarted alone serves %+v, want the catalog's settings", s)
	}
	for i := 1; i < len(c.cores); i++ {
		if err := c.restartCore(i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() bool {
		r := a.appList(true)
		if len(r.Nodes) != 3 {
			return false
		}
		for _, n := range r.Nodes {
			if n.View == nil || n.View.Source != "catalog" {
				return false
			}
		}
		return true
	})
	if s := a.appList(true).App(app).Settings; s.MasterKey != rotated || !s.SignatureRequired || !s.ConversationSignatureRequired {
		t.Errorf("after restarts with the config files: %+v, want the catalog's settings", s)
	}
	for _, e := range edges {
		waitFor(t, 20*time.Second, func() bool {
			return loginCode(t, e.URL, app, "carol", loginSigner(app, rotated)) == 0
		})
		if code := loginCode(t, e.URL, app, "carol", loginSigner(app, oldMaster)); code != lcpb.ErrSignatureFailed {
			t.Errorf("after the restarts, the config file's old key: login got %d, want %d", code, lcpb.ErrSignatureFailed)
		}
		if code := loginCode(t, e.URL, fresh, "carol", nil); code != lcpb.ErrAppNotAvailable {
			t.Errorf("after the restarts, the deleted app: login got %d, want %d", code, lcpb.ErrAppNotAvailable)
		}
	}
	// An edge that starts asks a core before it serves: from its first
	// client on, it takes the catalog's key, not its config file's.
	late := c.addEdge("edge-late", c.coreMesh[far])
	if code := loginCode(t, late.URL, app, "dave", loginSigner(app, oldMaster)); code != lcpb.ErrSignatureFailed {
		t.Errorf("a new edge, the config file's old key: login got %d, want %d", code, lcpb.ErrSignatureFailed)
	}
	if code := loginCode(t, late.URL, app, "dave", loginSigner(app, rotated)); code != 0 {
		t.Errorf("a new edge, the catalog's key: login got %d, want 0", code)
	}
	t.Logf("app list at the end:\n%s", a.ok("app", "list"))
}
