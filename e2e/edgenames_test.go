package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/mesh"
)

// TestEdgeCertificateNamesProc runs `relaymesh core` and `relaymesh edge`
// processes with certificates from `relaymesh pki` named like no edge:
//
//   - gateway-0, issued with --role core by mistake: `relaymesh edge`
//     refuses to start, naming the role and the fix (before, it started,
//     logged clients in and answered /readyz, while the core refused its
//     delivery stream and dropped every delivery to it);
//   - gateway-1, issued with --role edge and shared by two edges gw-a and
//     gw-b (as an autoscaling group shares one): a client on each chats
//     with the other both ways, and `relaymesh admin app list` lists both
//     edges by edge_id, each with the certificate's name.
func TestEdgeCertificateNamesProc(t *testing.T) {
	c := newProcCluster(t, procOptions{Cores: 1, NoMetrics: true})
	c.cores[0] = startProc(t, "", c.coreArgs[0]...)

	c.issue("gateway-0", "--hosts", "127.0.0.1", "--role", "core")
	_, args := c.writeEdgeAs("gateway-0", "gateway-0", c.coreMesh)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	out, err := exec.CommandContext(ctx, relaymeshBin(t), args...).CombinedOutput()
	timedOut := ctx.Err() != nil
	cancel()
	if timedOut {
		t.Fatalf("relaymesh edge with a core certificate kept running (it would drop every delivery):\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), `role "core"`) || !strings.Contains(string(out), "--role edge") {
		t.Fatalf("relaymesh edge with a core certificate: %v, output\n%s\nwant a failure naming the role and the fix", err, out)
	}

	c.issue("gateway-1", "--hosts", "127.0.0.1", "--role", "edge")
	var edges []*devProc
	for _, id := range []string{"gw-a", "gw-b"} {
		listen, args := c.writeEdgeAs("gateway-1", id, c.coreMesh)
		edges = append(edges, startProc(t, listen, args...))
	}
	ctx, cancel = context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const app = "failover-app"
	alice := dial(t, ctx, edges[0].URL, app, "alice")
	bob := dial(t, ctx, edges[1].URL, app, "bob")
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "names", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.Send(ctx, cid, client.TextMessage("gw-a to gw-b"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == cid }); m.ID != sent.ID {
		t.Fatalf("bob got %s, want %s", m.ID, sent.ID)
	}
	back, err := bob.Send(ctx, cid, client.TextMessage("gw-b to gw-a"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := nextEvent(t, alice, func(m client.Message) bool { return m.ConvID == cid && m.From == "bob" }); m.ID != back.ID {
		t.Fatalf("alice got %s, want %s", m.ID, back.ID)
	}

	a := newAdminCLI(t, c, "ops", "admin")
	var rows []string
	waitFor(t, 20*time.Second, func() bool {
		rows = rows[:0]
		for _, e := range a.appList(false).Edges {
			rows = append(rows, e.Edge+"/"+e.Cert)
		}
		return strings.Join(rows, " ") == "gw-a/gateway-1 gw-b/gateway-1"
	})
	if text := a.ok("app", "list"); !strings.Contains(text, "edge gw-a (certificate gateway-1): apps generation") {
		t.Errorf("admin app list:\n%s\nwant edge gw-a with its certificate", text)
	}
}

// TestEdgeCertificateNamesRegions: two regions, each one core and one
// edge whose certificate is named like no edge (gateway-1, gateway-2,
// issued with the role edge) and whose edge_id is neither (gw-eu,
// gw-us): a conversation homed in region 1 carries messages both ways
// across the region hop (core/regions.go routes by edge id, never by
// certificate name).
func TestEdgeCertificateNamesRegions(t *testing.T) {
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	ids, err := mesh.EnsureDevPKI(pki, "core-1", "core-2")
	if err != nil {
		t.Fatal(err)
	}
	reg := apps.NewDev()
	addrs := [2]string{freeUDPAddr(t), freeUDPAddr(t)}
	var cores [2]*cluster.Core
	for i := range 2 {
		name := fmt.Sprintf("core-%d", i+1)
		c, err := cluster.StartCore(cluster.CoreConfig{NodeID: name, MeshAddr: addrs[i], DataDir: filepath.Join(dir, name),
			Identity: ids[name], Apps: reg, Region: uint8(i + 1),
			Remote: []core.RemoteRegion{{Number: uint8(2 - i), Cores: []string{addrs[1-i]}}}})
		if err != nil {
			t.Fatal(err)
		}
		cores[i] = c
		t.Cleanup(func() { c.Close() })
	}
	var urls [2]string
	for i, id := range []string{"gw-eu", "gw-us"} {
		waitFor(t, 20*time.Second, cores[i].Ready)
		cert, err := mesh.IssueNodeRole(pki, fmt.Sprintf("gateway-%d", i+1), mesh.RoleEdge, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := cluster.StartEdge(cluster.EdgeConfig{EdgeID: id, HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0",
			Identity: cert, Cores: []string{addrs[i]}, TokenKey: make([]byte, 32), Apps: reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		urls[i] = e.URL
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const app = "names-regions-app"
	alice := dial(t, ctx, urls[0], app, "alice") // region 1
	bob := dial(t, ctx, urls[1], app, "bob")     // region 2
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "r1", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, bob, func(e client.ConvEvent) bool { return e.ConvID == cid && e.Op == "joined" })
	sent, err := alice.Send(ctx, cid, client.TextMessage("to region 2"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == cid }); m.ID != sent.ID {
		t.Fatalf("bob (region 2) got %s, want %s", m.ID, sent.ID)
	}
	back, err := bob.Send(ctx, cid, client.TextMessage("to region 1"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := nextEvent(t, alice, func(m client.Message) bool { return m.ConvID == cid && m.From == "bob" }); m.ID != back.ID {
		t.Fatalf("alice (region 1) got %s, want %s", m.ID, back.ID)
	}
}
