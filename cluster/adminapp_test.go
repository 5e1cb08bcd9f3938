package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func ptr[T any](v T) *T { return &v }

// TestAppsFollowCatalog: a core declares its config file's apps to the
// catalog and serves the catalog's from then on; an edge follows the
// core; set, rotate and delete reach both; after a restart with the same
// config file the catalog wins (a deleted app stays deleted, a new key
// stays). A core and an edge without the switches (dev) change nothing.
func TestAppsFollowCatalog(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "edge-1", "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	configApps := []meshpb.AppEntry{
		{ID: "cfg-app", Settings: meshpb.AppSettings{Key: "k", MasterKey: "m1", SignatureRequired: true}},
		{ID: "other-app", Settings: meshpb.AppSettings{MasterKey: "o1", Hooks: map[string]string{"_messageReceived": "http://127.0.0.1:1/h"}}},
	}
	staticOf := func() *apps.Registry {
		var l []apps.App
		for _, a := range configApps {
			l = append(l, appOf(a.ID, a.Settings))
		}
		return apps.NewStatic(l)
	}
	coreReg := staticOf()
	meshAddr := freeUDP(t, 1)[0]
	start := func(reg *apps.Registry) *Core {
		t.Helper()
		c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: meshAddr, DataDir: filepath.Join(dir, "core-1"),
			Identity: ids["core-1"], Apps: reg, ConfigApps: configApps, FollowCatalogApps: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := start(coreReg)
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()
	edgeReg := staticOf()
	e, err := StartEdge(EdgeConfig{EdgeID: "edge-1", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0", Identity: ids["edge-1"],
		Cores: []string{meshAddr}, TokenKey: make([]byte, 32), Apps: edgeReg, FollowCoreApps: true, AppPollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	waitUntil(t, func() bool { return c.appSync.ready() && e.AppsGen() != "" })

	// The catalog has the config file's apps, as declared.
	raw, ok, err := c.Catalog.GetApp("cfg-app")
	if err != nil || !ok {
		t.Fatalf("catalog lacks cfg-app: %v", err)
	}
	var got meshpb.AppSettings
	if err := json.Unmarshal(raw, &got); err != nil || got.MasterKey != "m1" || !got.SignatureRequired {
		t.Fatalf("catalog's cfg-app: %s, %v", raw, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	cl, err := DialOps(ids["admin-1"], "127.0.0.1:0", []string{meshAddr}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	do := func(req *meshpb.OpsRequest) *meshpb.AppEntry {
		t.Helper()
		rep, err := cl.Do(ctx, req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Op, req.App, err)
		}
		return rep.App
	}
	// masterKey is what both registries serve for id ("" refused).
	served := func(reg *apps.Registry, id string) string {
		a, err := reg.Lookup(id)
		if err != nil {
			return ""
		}
		return a.MasterKey
	}
	both := func(id, want string) {
		t.Helper()
		waitUntil(t, func() bool { return served(coreReg, id) == want && served(edgeReg, id) == want })
	}

	do(&meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "cfg-app", AppChange: &meshpb.AppChange{MasterKey: ptr("m2")}})
	both("cfg-app", "m2")
	if a, _ := edgeReg.Lookup("cfg-app"); !a.SignatureRequired || a.Key != "k" {
		t.Errorf("set of the master key changed the rest: %+v", a)
	}
	rot := do(&meshpb.OpsRequest{Op: meshpb.OpAppRotate, App: "cfg-app"})
	if rot.Settings.MasterKey == "m2" || len(rot.Settings.MasterKey) < 20 {
		t.Fatalf("rotate: got %+v", rot)
	}
	both("cfg-app", rot.Settings.MasterKey)
	do(&meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "new-app", AppChange: &meshpb.AppChange{MasterKey: ptr("n1")}})
	both("new-app", "n1")
	// The hooks follow too: other-app's (from its config entry) until it
	// is deleted; new-app's once set.
	h := c.appSync.hooks
	if h == nil || !h.Enabled("other-app", "_messageReceived") || h.Enabled("new-app", "_messageReceived") {
		t.Fatalf("hooks before: other-app %v, new-app %v", h.Enabled("other-app", "_messageReceived"), h.Enabled("new-app", "_messageReceived"))
	}
	do(&meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "new-app", AppChange: &meshpb.AppChange{HookBaseURL: ptr("https://engine.example.com")}})
	waitUntil(t, func() bool { return h.Enabled("new-app", "_conversationStart") })
	do(&meshpb.OpsRequest{Op: meshpb.OpAppDelete, App: "other-app"})
	both("other-app", "")
	if h.Enabled("other-app", "_messageReceived") {
		t.Error("a deleted app's hook is still enabled")
	}

	// app-list: the catalog's apps, the tombstone, and the config file's.
	nodes := cl.Apps(ctx, 5*time.Second)
	if len(nodes) != 1 || nodes[0].View == nil || nodes[0].View.Source != "catalog" {
		t.Fatalf("app-list: %+v", nodes)
	}
	r := MergeApps(nodes)
	for id, want := range map[string]string{"cfg-app": "catalog", "new-app": "catalog", "other-app": "deleted"} {
		if a := r.App(id); a == nil || a.Source != want {
			t.Errorf("app-list %s: got %+v, want source %s", id, a, want)
		}
	}
	if a := r.App("cfg-app"); len(a.Drift) != 1 || !strings.Contains(a.Drift[0], "differs from the catalog") {
		t.Errorf("cfg-app's drift: got %q, want the config file's", a.Drift)
	}

	// An edge that starts now asks the core before it serves: its config
	// file's key is not served, not even at first.
	lateReg := staticOf()
	late, err := StartEdge(EdgeConfig{EdgeID: "edge-1", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0", Identity: ids["edge-1"],
		Cores: []string{meshAddr}, TokenKey: make([]byte, 32), Apps: lateReg, FollowCoreApps: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := served(lateReg, "cfg-app"); got != rot.Settings.MasterKey || served(lateReg, "other-app") != "" {
		t.Errorf("a new edge at once: cfg-app %q, other-app %q; want the rotated key and none", got, served(lateReg, "other-app"))
	}
	late.Close()

	// The MethodApps rpc is for edges and cores only.
	adminNode, err := mesh.Listen("127.0.0.1:0", ids["admin-1"], log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminNode.Call(ctx, meshAddr, meshpb.MethodApps, []byte(`{}`)); !errors.Is(err, mesh.ErrForbidden) {
		t.Errorf("an admin calling apps: got %v, want ErrForbidden", err)
	}
	adminNode.Close()

	// A restart with the same config file: the catalog wins.
	c.Close()
	closed = true
	coreReg = staticOf()
	c = start(coreReg)
	closed = false
	waitUntil(t, c.appSync.ready)
	if got := served(coreReg, "other-app"); got != "" {
		t.Errorf("after a restart, the deleted other-app is served again (master key %q)", got)
	}
	if got := served(coreReg, "cfg-app"); got != rot.Settings.MasterKey {
		t.Errorf("after a restart, cfg-app's master key is %q, want the rotated one", got)
	}
	if got := served(coreReg, "new-app"); got != "n1" {
		t.Errorf("after a restart, new-app's master key is %q, want n1", got)
	}
}

// TestAppOpsMisuse: the app ops refuse bad ids, unknown apps, bad
// changes and oversized requests, and leave the app as it was.
func TestAppOpsMisuse(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	// A config app whose settings the catalog refuses (over
	// MaxSettingsBytes) is left out, and does not hold up the rest.
	reg := apps.NewStatic([]apps.App{{ID: "app", MasterKey: "m"}, {ID: "huge-app", MasterKey: "h"}})
	c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"),
		Identity: ids["core-1"], Apps: reg, FollowCatalogApps: true,
		ConfigApps: []meshpb.AppEntry{{ID: "app", Settings: meshpb.AppSettings{MasterKey: "m"}},
			{ID: "huge-app", Settings: meshpb.AppSettings{MasterKey: "h", Key: strings.Repeat("k", catalog.MaxSettingsBytes)}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, c.appSync.ready)
	waitUntil(t, c.CatalogReady)
	if _, err := reg.Lookup("huge-app"); !errors.Is(err, apps.ErrUnknownApp) {
		t.Errorf("a config app the catalog refused: got %v, want ErrUnknownApp", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl, err := DialOps(ids["admin-1"], "127.0.0.1:0", []string{c.Node.Addr()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tc := range []struct {
		name string
		req  meshpb.OpsRequest
		want string
	}{
		{"empty id", meshpb.OpsRequest{Op: meshpb.OpAppSet, AppChange: &meshpb.AppChange{Key: ptr("k")}}, "invalid app id"},
		{"colon", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "a:b", AppChange: &meshpb.AppChange{Key: ptr("k")}}, "invalid app id"},
		{"control", meshpb.OpsRequest{Op: meshpb.OpAppDelete, App: "a\nb"}, "invalid app id"},
		{"too long", meshpb.OpsRequest{Op: meshpb.OpAppRotate, App: strings.Repeat("a", 65)}, "invalid app id"},
		{"no change", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app"}, "without a change"},
		{"new app without a master key", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "keyless", AppChange: &meshpb.AppChange{Key: ptr("k")}}, "needs a master key"},
		{"master key removed", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app", AppChange: &meshpb.AppChange{MasterKey: ptr("")}}, "needs a master key"},
		{"unknown rotate", meshpb.OpsRequest{Op: meshpb.OpAppRotate, App: "nope"}, "unknown app"},
		{"unknown delete", meshpb.OpsRequest{Op: meshpb.OpAppDelete, App: "nope"}, "unknown app"},
		{"not a hook", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app", AppChange: &meshpb.AppChange{Hooks: map[string]string{"rm -rf": "http://x/"}}}, "not a hook"},
		{"bad hook URL", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app", AppChange: &meshpb.AppChange{Hooks: map[string]string{"_messageReceived": "javascript:alert(1)"}}}, "http or https"},
		{"bad base URL", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app", AppChange: &meshpb.AppChange{HookBaseURL: ptr("//nohost")}}, "http or https"},
		{"control in key", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app", AppChange: &meshpb.AppChange{MasterKey: ptr("a\x00b")}}, "control characters"},
		{"huge", meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app", AppChange: &meshpb.AppChange{Key: ptr(strings.Repeat("k", MaxOpsRequest))}}, "at most"},
	} {
		_, err := cl.Do(ctx, &tc.req)
		if !errors.Is(err, ErrOps) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if a, err := reg.Lookup("app"); err != nil || a.MasterKey != "m" || a.Key != "" {
		t.Errorf("after the misuses: %+v, %v", a, err)
	}

	// Concurrent changes of different hooks, from several clients: none
	// is lost (each is a read-modify-write on the leader, one at a time).
	var wg sync.WaitGroup
	for _, name := range hooks.Names {
		wg.Go(func() {
			cl, err := DialOps(ids["admin-1"], "127.0.0.1:0", []string{c.Node.Addr()}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			if _, err := cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpAppSet, App: "app",
				AppChange: &meshpb.AppChange{Hooks: map[string]string{name: "http://127.0.0.1:1/" + name}}}); err != nil {
				t.Errorf("set %s: %v", name, err)
			}
		})
	}
	wg.Wait()
	raw, _, err := c.Catalog.GetApp("app")
	var got meshpb.AppSettings
	if err != nil || json.Unmarshal(raw, &got) != nil || len(got.Hooks) != len(hooks.Names) || got.MasterKey != "m" {
		t.Errorf("after %d concurrent hook changes: %s, %v", len(hooks.Names), raw, err)
	}
	// Settings over the catalog's bound are refused by the catalog too
	// (the ops request's bound is the same size, so they cannot come
	// through admin-ops).
	big, _ := json.Marshal(meshpb.AppSettings{Key: strings.Repeat("k", catalog.MaxSettingsBytes)})
	if _, err := c.Catalog.Apply(ctx, &catalog.PutApp{ID: "app", Settings: big}); !errors.Is(err, catalog.ErrTooLong) {
		t.Errorf("oversized settings: got %v, want ErrTooLong", err)
	}
}

// TestMergeApps: drift between catalog replicas, between config files and
// between a config file and the catalog is flagged; the newest replica's
// settings are served.
func TestMergeApps(t *testing.T) {
	s := func(mk string) meshpb.AppSettings { return meshpb.AppSettings{MasterKey: mk} }
	view := func(node string, idx uint64, cat, cfg []meshpb.AppEntry, lim int) AppsNode {
		return AppsNode{Addr: node + ":1", Node: node, View: &meshpb.AppsView{Node: node, Source: "catalog", CatalogIndex: idx,
			Catalog: cat, Config: cfg, Limits: map[string]int{"max_members": lim}}}
	}
	nodes := []AppsNode{
		view("core-1", 10, []meshpb.AppEntry{{ID: "a", Settings: s("new")}}, []meshpb.AppEntry{{ID: "a", Settings: s("cfg")}, {ID: "c", Settings: s("only-config")}}, 0),
		view("core-2", 9, []meshpb.AppEntry{{ID: "a", Settings: s("old")}}, []meshpb.AppEntry{{ID: "a", Settings: s("cfg")}}, 0),
		view("core-3", 10, []meshpb.AppEntry{{ID: "a", Settings: s("new")}, {ID: "b", Settings: meshpb.AppSettings{Deleted: true}}},
			[]meshpb.AppEntry{{ID: "a", Settings: s("new")}}, 500),
		{Addr: "core-4:1", Err: "unreachable"},
	}
	nodes[0].View.Gen = "g1"
	nodes[0].View.Edges = []meshpb.EdgeApps{{Edge: "edge-1", Gen: "g1", AgoMs: 500}, {Edge: "edge-2", Gen: "g1", AgoMs: 20000}}
	nodes[1].View.Gen = "g0"
	nodes[1].View.Edges = []meshpb.EdgeApps{{Edge: "edge-1", Gen: "g0", AgoMs: 100}, {Edge: "edge-3", Gen: "", AgoMs: 100}}
	nodes[2].View.Gen = "g1"
	nodes[2].View.Edges = []meshpb.EdgeApps{{Edge: "edge-4", Gen: "g1", AgoMs: 900}}
	r := MergeApps(nodes)
	if r.Gen != "g1" || len(r.Edges) != 4 || r.Edges[0].Core != "core-2" || r.Edges[0].Gen != "g0" {
		t.Errorf("edges: gen %q, %+v", r.Gen, r.Edges)
	}
	wantEdges := []string{
		"edge edge-1 serves generation g0, the catalog g1 (it catches up within seconds)",
		"edge edge-2 has not asked for apps for 20s (last via core-1): stopped, or cut off from its cores?",
		"edge edge-3 serves its config file's apps (its cores do not follow the catalog yet)",
	}
	if strings.Join(r.EdgesDrift, "\n") != strings.Join(wantEdges, "\n") {
		t.Errorf("edges drift:\n%s\nwant:\n%s", strings.Join(r.EdgesDrift, "\n"), strings.Join(wantEdges, "\n"))
	}
	a := r.App("a")
	if a == nil || a.Source != "catalog" || a.Settings.MasterKey != "new" {
		t.Fatalf("a: got %+v, want the newest replica's", a)
	}
	wantDrift := []string{
		"catalog replicas differ (a replica behind? it catches up): core-1, core-3 | core-2",
		"config files differ between cores: core-1, core-2 | core-3",
		"config file of core-1, core-2 differs from the catalog (the catalog wins)",
	}
	if strings.Join(a.Drift, "\n") != strings.Join(wantDrift, "\n") {
		t.Errorf("a's drift:\n%s\nwant:\n%s", strings.Join(a.Drift, "\n"), strings.Join(wantDrift, "\n"))
	}
	if b := r.App("b"); b == nil || b.Source != "deleted" {
		t.Errorf("b: got %+v, want deleted", b)
	}
	if c := r.App("c"); c == nil || c.Source != "config" || c.Settings.MasterKey != "only-config" ||
		len(c.Drift) != 1 || c.Drift[0] != "config files differ between cores: core-1 | core-2, core-3 (none)" {
		t.Errorf("c: got %+v", c)
	}
	if r.LimitsDrift != "core-1, core-2 | core-3" {
		t.Errorf("limits drift: got %q", r.LimitsDrift)
	}
	m := r.Masked()
	if got := m.App("a").Settings.MasterKey; got != "********" {
		t.Errorf("masked: got %q", got)
	}
	if got := m.App("a").Catalog["core-2"].MasterKey; got != "********" {
		t.Errorf("masked per core: got %q", got)
	}
	if r.App("a").Settings.MasterKey != "new" {
		t.Error("Masked changed the report it copies")
	}
	if got := MaskKey("failover-master"); got != "fail********" {
		t.Errorf("MaskKey: got %q", got)
	}
}

// TestAppsMethod: the apps rpc answers garbage with an empty reply, a
// current generation with same, and many callers at once; the edges it
// tracks stay bounded.
func TestAppsMethod(t *testing.T) {
	s := &appSync{reg: apps.NewStatic(nil), edges: map[string]edgeSeen{}, log: slog.New(slog.DiscardHandler)}
	ctx := t.Context()
	call := func(peer string, req []byte) meshpb.AppsReply {
		t.Helper()
		out, err := s.handle(ctx, peer, req)
		if err != nil {
			t.Fatal(err)
		}
		var r meshpb.AppsReply
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := call("edge-1", []byte(`{}`)); r.Ready || r.Gen != "" || len(r.Apps) != 0 {
		t.Errorf("before the catalog: got %+v, want not ready", r)
	}
	list := []meshpb.AppEntry{{ID: "a", Settings: meshpb.AppSettings{MasterKey: "m"}}, {ID: "d", Settings: meshpb.AppSettings{Deleted: true}}}
	s.set(list)
	if _, err := s.reg.Lookup("a"); err != nil {
		t.Errorf("the registry lacks a: %v", err)
	}
	if _, err := s.reg.Lookup("d"); err == nil {
		t.Error("the registry serves the deleted d")
	}
	for _, bad := range [][]byte{nil, []byte("\x00garbage"), []byte(`{"have":` + strings.Repeat("1", 5000) + `}`)} {
		if r := call("edge-1", bad); r.Ready || len(r.Apps) != 0 {
			t.Errorf("request %.20q: got %+v, want an empty reply", bad, r)
		}
	}
	r := call("edge-1", []byte(`{}`))
	if !r.Ready || r.Same || r.Gen == "" || len(r.Apps) != 2 {
		t.Fatalf("first call: got %+v", r)
	}
	have, _ := json.Marshal(meshpb.AppsRequest{Have: r.Gen})
	done := make(chan meshpb.AppsReply, 100)
	for i := range 100 {
		go func() {
			out, _ := s.handle(ctx, "edge-"+strings.Repeat("x", i%7), have)
			var r meshpb.AppsReply
			json.Unmarshal(out, &r)
			done <- r
		}()
	}
	for range 100 {
		if r := <-done; !r.Same || len(r.Apps) != 0 {
			t.Errorf("a current generation: got %+v, want same", r)
		}
	}
	// A new list: a new generation, sent whole.
	s.set(append(list, meshpb.AppEntry{ID: "b", Settings: meshpb.AppSettings{MasterKey: "n"}}))
	if r2 := call("edge-1", have); r2.Same || r2.Gen == r.Gen || len(r2.Apps) != 3 {
		t.Errorf("after a change: got %+v", r2)
	}
	// At most maxTrackedEdges edges are kept, the oldest forgotten.
	now := time.Now()
	s.mu.Lock()
	for i := range maxTrackedEdges + 50 {
		s.seenLocked("many-"+strings.Repeat("e", i%10)+string(rune('a'+i%26))+fmt.Sprint(i), "edge-x", "g", now.Add(time.Duration(i)*time.Millisecond))
	}
	n := len(s.edges)
	_, newest := s.edges["many-"+strings.Repeat("e", (maxTrackedEdges+49)%10)+string(rune('a'+(maxTrackedEdges+49)%26))+fmt.Sprint(maxTrackedEdges+49)]
	s.mu.Unlock()
	if n != maxTrackedEdges || !newest {
		t.Errorf("tracked edges: %d (newest kept: %v), want %d", n, newest, maxTrackedEdges)
	}
}

// TestAppsMethodEdgeIDs: the apps rpc tells edges apart by the edge id
// they name, not by certificate: two edges sharing one certificate (an
// autoscaling group's) are two rows, each naming the certificate; an edge
// whose certificate is named like no edge (gateway-1) is listed under its
// id; a call naming no id (an older edge), or an absurdly long one, is
// listed under the certificate's name.
func TestAppsMethodEdgeIDs(t *testing.T) {
	s := &appSync{reg: apps.NewStatic(nil), edges: map[string]edgeSeen{}, log: slog.New(slog.DiscardHandler)}
	s.set([]meshpb.AppEntry{{ID: "a", Settings: meshpb.AppSettings{MasterKey: "m"}}})
	for _, c := range []struct{ cert, edge string }{
		{"edge-eu", "edge-i-0a"}, {"edge-eu", "edge-i-0b"}, {"gateway-1", "gateway-1"}, {"old-edge", ""},
		{"long-cert", strings.Repeat("x", maxEdgeIDLen+1)},
	} {
		b, _ := json.Marshal(meshpb.AppsRequest{Edge: c.edge})
		if _, err := s.handle(t.Context(), c.cert, b); err != nil {
			t.Fatal(err)
		}
	}
	_, got := s.view(time.Now())
	var rows []string
	for _, e := range got {
		rows = append(rows, e.Edge+"/"+e.Cert)
	}
	want := []string{"edge-i-0a/edge-eu", "edge-i-0b/edge-eu", "gateway-1/", "long-cert/", "old-edge/"}
	if !slices.Equal(rows, want) {
		t.Errorf("edges (id/cert): %q, want %q", rows, want)
	}
}
