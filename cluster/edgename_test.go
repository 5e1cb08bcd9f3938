package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// startNamedCore starts core-1 of a fresh dev PKI under dir and waits
// until it serves.
func startNamedCore(t *testing.T, dir string, reg *apps.Registry) *Core {
	t.Helper()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"),
		Identity: ids["core-1"], Apps: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitUntil(t, func() bool { return c.Ready() && c.CatalogReady() })
	return c
}

// exchange logs alice and bob in on e, has alice send bob a message and
// returns "" once bob got it, else what went wrong.
func exchange(t *testing.T, c *Core, e *Edge) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	dial := func(id string) *client.Client {
		cl, err := client.Dial(ctx, e.URL, client.Options{AppID: "name-app", ClientID: id, NoReconnect: true})
		if err != nil {
			t.Fatalf("dial %s: %v", id, err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	alice, bob := dial("alice"), dial("bob")
	cid, err := alice.CreateConversation(ctx, []string{"alice", "bob"}, "names", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.Send(ctx, cid, client.TextMessage("hi"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-bob.Events():
			if m, ok := ev.(client.Message); ok && m.ID == sent.ID {
				return ""
			}
		case <-ctx.Done():
			st := c.Service.Relay().Stats()
			return fmt.Sprintf("bob never got the message: the core delivered %d deliveries and dropped %d (relaymesh_core_deliveries_dropped_total)",
				st.Delivered.Load(), st.Dropped.Load())
		}
	}
}

// TestEdgeCertificateNames: an edge's certificate name does not matter,
// its role does. An edge certificate named gateway-1 (relaymesh pki issue
// --name gateway-1 --role edge) serves clients that get their messages,
// with edge_id gateway-1 or another (the edges of an autoscaling group
// share one certificate, each with its own edge_id). A certificate whose
// role is not edge, here the dev PKI's for gateway-1 (no "edge" prefix:
// a core), is refused by StartEdge with an error naming the role and the
// fix; before, such an edge logged clients in and reported ready while
// the core refused its delivery stream and dropped every delivery to it.
// A core started with an edge certificate is refused likewise.
func TestEdgeCertificateNames(t *testing.T) {
	reg := apps.NewDev()
	for _, tc := range []struct{ name, edgeID string }{
		{"gateway-1", "gateway-1"},
		{"gateway-1", "edge-gw-7"}, // a shared certificate, as deploy/terraform's autoscaling group
	} {
		t.Run(tc.name+" as "+tc.edgeID, func(t *testing.T) {
			dir := t.TempDir()
			c := startNamedCore(t, dir, reg)
			id, err := mesh.IssueNodeRole(filepath.Join(dir, "pki"), tc.name, mesh.RoleEdge, nil)
			if err != nil {
				t.Fatal(err)
			}
			e, err := StartEdge(EdgeConfig{EdgeID: tc.edgeID, HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0", Identity: id,
				Cores: []string{c.Node.Addr()}, TokenKey: make([]byte, 32), Apps: reg})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			waitUntil(t, func() bool { return len(e.link.NotReady()) == 0 })
			if why := exchange(t, c, e); why != "" {
				t.Fatal(why)
			}
		})
	}

	t.Run("dev PKI gateway-1 (role core)", func(t *testing.T) {
		dir := t.TempDir()
		c := startNamedCore(t, dir, reg)
		id, err := mesh.IssueNode(filepath.Join(dir, "pki"), "gateway-1", nil) // DevRole: a core
		if err != nil {
			t.Fatal(err)
		}
		e, err := StartEdge(EdgeConfig{EdgeID: "gateway-1", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0", Identity: id,
			Cores: []string{c.Node.Addr()}, TokenKey: make([]byte, 32), Apps: reg})
		if err == nil {
			defer e.Close()
			waitUntil(t, func() bool { return e.link.Ready() })
			t.Fatalf("StartEdge took a certificate of role %q; %s", id.Role, exchange(t, c, e))
		}
		for _, want := range []string{`"gateway-1"`, `role "core"`, "--role edge"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("StartEdge: %v; want it to name %s", err, want)
			}
		}
		// A core with an edge certificate: refused too, before it opens
		// anything.
		eid, err := mesh.IssueNodeRole(filepath.Join(dir, "pki"), "gateway-2", mesh.RoleEdge, nil)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := StartCore(CoreConfig{NodeID: "core-2", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-2"), Identity: eid, Apps: reg})
		if err == nil {
			c2.Close()
			t.Fatal("StartCore took an edge certificate")
		}
		if !strings.Contains(err.Error(), `role "edge"`) || !strings.Contains(err.Error(), "--role core") {
			t.Errorf("StartCore: %v; want it to name the role and the fix", err)
		}
	})
}

// TestEdgeIDTakeover: an edge certificate cannot take over the deliveries
// of an edge id another certificate holds attached. gateway-1 serves
// alice; a second edge certificate (edge-9) opens a delivery stream to
// the core whose hello names gateway-1, and tries to log a session in on
// gateway-1. The core refuses both: alice still gets bob's message, and
// edge-9 receives no delivery (before, its attach replaced gateway-1's
// and took every delivery to gateway-1's clients). The edge id is not
// the certificate's name (edges may share one), so a hello naming
// another id is not refused for that alone: edge-9 attaches as edge-9.
func TestEdgeIDTakeover(t *testing.T) {
	dir := t.TempDir()
	reg := apps.NewDev()
	c := startNamedCore(t, dir, reg)
	pki := filepath.Join(dir, "pki")
	gw, err := mesh.IssueNodeRole(pki, "gateway-1", mesh.RoleEdge, nil)
	if err != nil {
		t.Fatal(err)
	}
	thief, err := mesh.IssueNodeRole(pki, "edge-9", mesh.RoleEdge, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := StartEdge(EdgeConfig{EdgeID: "gateway-1", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0", Identity: gw,
		Cores: []string{c.Node.Addr()}, TokenKey: make([]byte, 32), Apps: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	waitUntil(t, func() bool { return len(e.link.NotReady()) == 0 })
	// The edge's stream is up once it sent its hello; the core attaches the
	// edge when it reads it (a CI run looked in between).
	waitUntil(t, func() bool { _, ok := c.Service.Relay().EdgeOwner("gateway-1"); return ok })
	if owner, ok := c.Service.Relay().EdgeOwner("gateway-1"); !ok || owner != "gateway-1" {
		t.Fatalf("gateway-1 attached by %q (%v), want its certificate gateway-1", owner, ok)
	}

	node, err := mesh.Listen("127.0.0.1:0", thief, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// stolen counts the deliveries with targets the thief's stream gets.
	var stolen atomic.Int64
	attach := func(edgeID string) (ended chan struct{}) {
		st, err := node.OpenStream(ctx, c.Node.Addr(), meshpb.MethodDeliveries)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		hello, _ := proto.Marshal(&meshpb.EdgeHello{EdgeId: edgeID})
		if err := st.Send(hello); err != nil {
			t.Fatal(err)
		}
		ended = make(chan struct{})
		go func() {
			defer close(ended)
			for {
				b, err := st.Recv()
				if err != nil {
					return
				}
				d := new(meshpb.Delivery)
				if proto.Unmarshal(b, d) == nil && len(d.Targets) > 0 {
					stolen.Add(1)
				}
			}
		}()
		return ended
	}
	ended := attach("gateway-1")
	select {
	case <-ended: // the core closed the stream: refused
	case <-time.After(3 * time.Second):
		t.Error("the core kept a delivery stream whose hello names an edge id another certificate holds")
	}
	if owner, _ := c.Service.Relay().EdgeOwner("gateway-1"); owner != "gateway-1" {
		t.Errorf("gateway-1 is attached by %q now", owner)
	}
	// A login on gateway-1 through edge-9's certificate: refused too.
	open, _ := proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN, AppId: "name-app", PeerId: "mallory",
		EdgeId: "gateway-1", ConnId: 1 << 40, ProtocolVersion: 3})
	out, err := node.Call(ctx, c.Node.Addr(), meshpb.MethodClient, open)
	if err != nil {
		t.Fatal(err)
	}
	rep := new(meshpb.ClientReply)
	if err := proto.Unmarshal(out, rep); err != nil || rep.ErrorCode == 0 {
		t.Errorf("OPEN on gateway-1 from edge-9: %+v %v, want refused", rep, err)
	}
	if c.Service.Relay().Online("name-app", "mallory") {
		t.Error("mallory is online on gateway-1")
	}
	// edge-9 may attach under an edge id of its own (not its name's).
	mine := attach("edge-9-b")
	waitUntil(t, func() bool { owner, ok := c.Service.Relay().EdgeOwner("edge-9-b"); return ok && owner == "edge-9" })
	select {
	case <-mine:
		t.Fatal("edge-9's stream as edge-9-b ended")
	default:
	}
	if why := exchange(t, c, e); why != "" {
		t.Error(why)
	}
	if n := stolen.Load(); n != 0 {
		t.Errorf("edge-9 received %d deliveries", n)
	}
}
