package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
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
