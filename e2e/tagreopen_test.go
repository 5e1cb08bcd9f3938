package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestTagReopenAfterEdgeKill9: a client logged in with a tag whose edge is
// killed -9 reconnects (r=true, its st) through another edge at once,
// while the core still holds its old session on the dead edge (until the
// mesh's idle timeout). The reopen takes the tag over from that stale
// session of its own: session/opened, not session/closed 4111, which every
// SDK takes for being kicked by another device (natives log out for
// good). Another device's login with the same tag still kicks it, and the
// kicked token no longer reopens (4112).
func TestTagReopenAfterEdgeKill9(t *testing.T) {
	c := startProcCluster(t, procOptions{Cores: 1, Edges: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const app = "failover-app"
	edge1, edge2 := c.edges[0].URL, c.edges[1].URL

	// First the same edge: a client whose old socket is still open (a
	// mobile network that switched: the server has not seen the old
	// connection end) reconnects on a new one.
	old, o := rawOpenApp(t, ctx, edge2, app, "uma", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("uma's login: %v", o)
	}
	if _, got := rawReopenApp(t, ctx, edge2, app, o.GetSessionMessage().GetSt()); got.GetOp() != lcpb.OpType_opened {
		t.Fatalf("uma's reconnect on a new socket, the old one still open: %v/%v code %d; want session/opened",
			got.GetCmd(), got.GetOp(), got.GetSessionMessage().GetCode())
	}
	// The old socket is not told it was kicked (its SDK instance moved on).
	quiet, qcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if _, b, err := old.ws.Read(quiet); err == nil {
		g := new(lcpb.GenericCommand)
		if proto.Unmarshal(b, g) == nil && g.GetCmd() == lcpb.CommandType_session && g.GetOp() == lcpb.OpType_closed {
			t.Fatalf("uma's old socket got %v", g)
		}
	}
	qcancel()

	_, o = rawOpenApp(t, ctx, edge1, app, "tia", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("login: %v", o)
	}
	st := o.GetSessionMessage().GetSt()
	c.edges[0].Kill9()
	r, got := rawReopenApp(t, ctx, edge2, app, st)
	if got.GetOp() != lcpb.OpType_opened {
		t.Fatalf("reopen through edge-2 right after edge-1's kill -9: %v/%v code %d; want session/opened (the stale session is tia's own)",
			got.GetCmd(), got.GetOp(), got.GetSessionMessage().GetCode())
	}
	// Another device with the same tag: a signature login kicks tia.
	other, o2 := rawOpenApp(t, ctx, edge2, app, "tia", "phone")
	if o2.GetOp() != lcpb.OpType_opened {
		t.Fatalf("the other device's login: %v", o2)
	}
	if k := r.next(ctx); k.GetOp() != lcpb.OpType_closed || k.GetSessionMessage().GetCode() != lcpb.ErrSessionConflict {
		t.Fatalf("tia's reopened session after the other device's login: %v, want session/closed 4111", k)
	}
	r2, got := rawReopenApp(t, ctx, edge2, app, got.GetSessionMessage().GetSt())
	wantError(t, "the kicked device's st", got, lcpb.ErrSessionTokenExpired, proto.Int32(1))
	r2.ws.CloseNow()
	other.ws.CloseNow()
}

// TestEdgeKill9Offline: the sessions of an edge killed -9 (no close on
// any connection) are offline once the core drops the dead edge's mesh
// connection: session/query stops listing them. The time it took is
// logged (FIGURE): the mesh's idle timeout bounds it.
func TestEdgeKill9Offline(t *testing.T) {
	c := startProcCluster(t, procOptions{Cores: 1, Edges: 2, EdgeLimits: "ops_per_minute = -1"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const app = "failover-app"
	if _, o := rawOpenApp(t, ctx, c.edges[0].URL, app, "ned", ""); o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("ned's login: %v", o)
	}
	obs := dial(t, ctx, c.edges[1].URL, app, "obs")
	if on, err := obs.Online(ctx, []string{"ned"}); err != nil || len(on) != 1 {
		t.Fatalf("ned online before the kill: %v %v", on, err)
	}
	c.edges[0].Kill9()
	killed := time.Now()
	for {
		on, err := obs.Online(ctx, []string{"ned"})
		if err != nil {
			t.Fatal(err)
		}
		if len(on) == 0 {
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatal("ned, whose edge was killed -9, still online after 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("FIGURE an edge killed -9: its sessions offline after %v", time.Since(killed).Round(10*time.Millisecond))
}

// TestTagTakenWhileAway: a tagged client drops off (no logout), another
// device logs in with the same tag meanwhile (nothing to kick, so no token
// is voided), then the first one reconnects with its still valid session
// token. The reconnect is refused with session/closed 4111, as LeanCloud
// refuses it, and the device holding the tag keeps its session. Before
// session chains (the token names the login its reopens began with) the
// reconnect took the tag over quietly and the other device's session was
// dropped without a word.
func TestTagTakenWhileAway(t *testing.T) {
	c := startProcCluster(t, procOptions{Cores: 1, Edges: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const app = "failover-app"
	url := c.edges[0].URL
	watcher := dial(t, ctx, url, app, "watcher")
	a, o := rawOpenApp(t, ctx, url, app, "vera", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("vera's first device: %v", o)
	}
	stA := o.GetSessionMessage().GetSt()
	dropOff(t, ctx, a, watcher, "vera")
	b, o := rawOpenApp(t, ctx, url, app, "vera", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("vera's second device: %v", o)
	}
	_, got := rawReopenApp(t, ctx, url, app, stA)
	wantTagRefused(t, "the first device's reconnect while the second holds the tag", got)
	// The second device is still the one that gets vera's messages.
	stillHolds(t, ctx, b, watcher, "vera")
	// The second device's own reconnect (its socket still open, as after a
	// network switch) still replaces its session quietly.
	if _, got := rawReopenApp(t, ctx, url, app, o.GetSessionMessage().GetSt()); got.GetOp() != lcpb.OpType_opened {
		t.Fatalf("the second device's own reconnect: %v/%v code %d, want session/opened", got.GetCmd(), got.GetOp(), got.GetSessionMessage().GetCode())
	}
}

// stillHolds checks that the raw session holder, which holds a tag,
// still gets peer's messages: from sends a message to a new conversation
// with peer, and holder must get it without a session/closed first.
func stillHolds(t *testing.T, ctx context.Context, holder *raw, from *client.Client, peer string) {
	t.Helper()
	cid, err := from.CreateConversation(ctx, []string{peer}, "to "+peer, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := from.Send(ctx, cid, client.TextMessage("which device?"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		g := holder.next(ctx)
		if g.GetCmd() == lcpb.CommandType_session && g.GetOp() == lcpb.OpType_closed {
			t.Fatalf("the session holding %s's tag was closed: %v", peer, g)
		}
		if g.GetCmd() == lcpb.CommandType_direct && g.GetDirectMessage().GetMsg() != "" {
			return
		}
	}
}

// dropOff closes the raw session r's socket without a session/close (a
// lost network) and waits until watcher sees peer offline.
func dropOff(t *testing.T, ctx context.Context, r *raw, watcher *client.Client, peer string) {
	t.Helper()
	r.ws.CloseNow()
	waitFor(t, 10*time.Second, func() bool {
		on, err := watcher.Online(ctx, []string{peer})
		return err == nil && len(on) == 0
	})
}

// wantTagRefused checks that a reconnect got session/closed 4111, the
// answer every SDK takes for "another device holds your tag".
func wantTagRefused(t *testing.T, what string, got *lcpb.GenericCommand) {
	t.Helper()
	if got.GetCmd() != lcpb.CommandType_session || got.GetOp() != lcpb.OpType_closed || got.GetSessionMessage().GetCode() != lcpb.ErrSessionConflict {
		t.Fatalf("%s: %v/%v code %d %v, want session/closed %d", what,
			got.GetCmd(), got.GetOp(), got.GetSessionMessage().GetCode(), got.GetErrorMessage(), lcpb.ErrSessionConflict)
	}
}
