package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/netem"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/push"
	"google.golang.org/protobuf/proto"
)

// twoRegions is two regions in this process, each one core (two shards)
// and one edge, that know each other's cores.
type twoRegions struct {
	cores  [2]*cluster.Core
	cfgs   [2]cluster.CoreConfig
	edges  [2]*cluster.Edge
	pushes chan push.Request // region 1's offline pushes
}

// pushRecorder is an offline push provider that hands every request to a
// channel.
type pushRecorder chan push.Request

func (p pushRecorder) Push(ctx context.Context, r push.Request) error {
	select {
	case p <- r:
	default:
	}
	return nil
}

func startTwoRegions(t *testing.T) *twoRegions { return startTwoRegionsApart(t, 0) }

// startTwoRegionsApart is startTwoRegions with apart of one-way delay
// between the regions' cores (netem on their mesh sockets; none when
// zero): region 1 on 127.0.0.1, region 2 on 127.0.0.2.
func startTwoRegionsApart(t *testing.T, apart time.Duration) *twoRegions {
	t.Helper()
	dir := t.TempDir()
	hosts := [2]string{"127.0.0.1", "127.0.0.1"}
	var shape []mesh.ListenOption
	if apart > 0 {
		hosts[1] = "127.0.0.2"
		rules := netem.NewRules(
			netem.Group{Name: "r1", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
			netem.Group{Name: "r2", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
		rules.SetPair("r1", "r2", netem.Link{Latency: apart})
		table := netem.NewTable(rules)
		shape = append(shape, mesh.WithPacketConn(func(u *net.UDPConn) net.PacketConn {
			return netem.NewConn(u, netem.Config{Table: table})
		}))
	}
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "core-2", "edge-1", "edge-2")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := apps.NewDev()
	addrs := [2]string{freeUDPAddrOn(t, hosts[0]), freeUDPAddrOn(t, hosts[1])}
	w := &twoRegions{pushes: make(chan push.Request, 100)}
	for i := range 2 {
		name := fmt.Sprintf("core-%d", i+1)
		other := 1 - i
		w.cfgs[i] = cluster.CoreConfig{NodeID: name, MeshAddr: addrs[i], DataDir: filepath.Join(dir, name),
			Identity: ids[name], Apps: reg, Logger: log, Region: uint8(i + 1), Shards: 2, MeshOptions: shape,
			Remote: []core.RemoteRegion{{Number: uint8(other + 1), Cores: []string{addrs[other]}}}}
		if i == 0 {
			w.cfgs[i].Integrations.Push = core.PushConfig{Provider: pushRecorder(w.pushes)}
		}
		c, err := cluster.StartCore(w.cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		w.cores[i] = c
		t.Cleanup(func() {
			if w.cores[i] != nil {
				w.cores[i].Close()
			}
		})
	}
	for i := range 2 {
		waitFor(t, 20*time.Second, w.cores[i].Ready)
		name := fmt.Sprintf("edge-%d", i+1)
		e, err := cluster.StartEdge(cluster.EdgeConfig{EdgeID: name, HTTPAddr: "127.0.0.1:0", MeshAddr: hosts[i] + ":0",
			Identity: ids[name], Cores: []string{addrs[i]}, TokenKey: make([]byte, 32), Apps: reg, Logger: log,
			Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}})
		if err != nil {
			t.Fatal(err)
		}
		w.edges[i] = e
		t.Cleanup(func() { e.Close() })
	}
	return w
}

// TestTwoRegions: clients of two regions chat in conversations homed in
// either; pushes cross the region boundary, requests reach the home
// region, logins and queries see both; a region cut off keeps serving its
// own conversations.
func TestTwoRegions(t *testing.T) {
	w := startTwoRegions(t)
	top := t // clients that outlive a subtest are the test's
	const app = "regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	alice := dial(t, ctx, w.edges[0].URL, app, "alice") // region 1
	bob := dial(t, ctx, w.edges[1].URL, app, "bob")     // region 2
	dave := dial(t, ctx, w.edges[1].URL, app, "dave")   // region 2

	// A conversation homed in region 1, with bob of region 2.
	c1, err := alice.CreateConversation(ctx, []string{"bob", "carol"}, "r1", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if h := catalog.HomeOf(c1); h.Region != 1 {
		t.Fatalf("alice's conversation %s homed in region %d, want 1 (the creator's)", c1, h.Region)
	}
	nextEvent(t, bob, func(e client.ConvEvent) bool { return e.ConvID == c1 && e.Op == "joined" })

	sent, err := alice.Send(ctx, c1, client.TextMessage("from region 1"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == c1 }); m.ID != sent.ID {
		t.Fatalf("bob got %s, want %s", m.ID, sent.ID)
	}
	// bob sends into region 1's conversation from region 2.
	back, err := bob.Send(ctx, c1, client.TextMessage("from region 2"), client.SendOptions{})
	if err != nil {
		t.Fatalf("bob's send into region 1: %v", err)
	}
	if m := nextEvent(t, alice, func(m client.Message) bool { return m.ConvID == c1 }); m.ID != back.ID {
		t.Fatalf("alice got %s, want %s", m.ID, back.ID)
	}
	// A recall crosses too.
	if err := alice.Recall(ctx, c1, sent.ID, sent.Timestamp); err != nil {
		t.Fatal(err)
	}
	if p := nextEvent(t, bob, func(p client.Patch) bool { return p.ConvID == c1 }); !p.Recall || p.ID != sent.ID {
		t.Fatalf("bob's patch: %+v, want the recall of %s", p, sent.ID)
	}

	// A conversation homed in region 2; alice sends into it from region 1.
	c2, err := bob.CreateConversation(ctx, []string{"alice", "carol", "dave"}, "r2", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if h := catalog.HomeOf(c2); h.Region != 2 {
		t.Fatalf("bob's conversation homed in region %d, want 2", h.Region)
	}
	if _, err := alice.Send(ctx, c2, client.TextMessage("into region 2"), client.SendOptions{}); err != nil {
		t.Fatalf("alice's send into region 2: %v", err)
	}
	nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == c2 })
	nextEvent(t, dave, func(m client.Message) bool { return m.ConvID == c2 })

	t.Run("login in region 2 counts unread of both regions", func(t *testing.T) {
		carol, err := client.Dial(ctx, w.edges[1].URL, client.Options{AppID: app, ClientID: "carol"})
		if err != nil {
			t.Fatal(err)
		}
		defer carol.Close()
		// One unread notice, or two: region 1's share comes after the
		// login when region 2's member index does not name carol there
		// yet (core/loginregions.go).
		got := map[string]int{}
		nextEvent(t, carol, func(u client.Unread) bool {
			for _, c := range u.Convs {
				got[c.ConvID] = c.Count
			}
			_, ok1 := got[c1]
			_, ok2 := got[c2]
			return ok1 && ok2
		})
		if got[c1] != 2 || got[c2] != 1 {
			t.Fatalf("carol's unread: %v; want 2 in %s (region 1) and 1 in %s (region 2)", got, c1, c2)
		}
		rows, err := carol.QueryConversations(ctx, map[string]any{"m": "carol"}, "name", 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rows {
			names = append(names, fmt.Sprint(r["name"]))
		}
		if !slices.Equal(names, []string{"r1", "r2"}) {
			t.Fatalf("carol's query: %v, want [r1 r2] from both regions", names)
		}
		online, err := carol.Online(ctx, []string{"alice", "bob", "nobody"})
		if err != nil || !slices.Equal(online, []string{"alice", "bob"}) {
			t.Fatalf("session/query from region 2: %v, %v; want alice (region 1) and bob", online, err)
		}
	})

	t.Run("chatroom of region 1 with a member in region 2", func(t *testing.T) {
		room, err := alice.CreateChatRoom(ctx, "stage", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.Join(ctx, room); err != nil {
			t.Fatalf("bob joins region 1's room from region 2: %v", err)
		}
		// Region 2's relay learns the membership from its edge's presence,
		// off the request path: send until one arrives.
		deadline := time.Now().Add(10 * time.Second)
		for k := 0; ; k++ {
			if _, err := alice.Send(ctx, room, client.TextMessage(fmt.Sprintf("on stage %d", k)), client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
			got := false
			timeout := time.After(200 * time.Millisecond)
		wait:
			for {
				select {
				case ev := <-bob.Events():
					if m, ok := ev.(client.Message); ok && m.ConvID == room {
						got = true
						break wait
					}
				case <-timeout:
					break wait
				}
			}
			if got {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("bob, in region 2, never got region 1's chatroom message")
			}
		}
		// The online count is every region's: alice's in region 1 and
		// bob's in region 2, asked from either.
		count := func(want int) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for _, c := range []*client.Client{alice, bob} {
				for {
					n, err := c.Count(ctx, room)
					if err == nil && n == want {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("chatroom count asked by %s: %d, %v; want %d", c.ID(), n, err, want)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
		count(2)

		// A member of region 2 sends, also after its connection dropped
		// and came back (its region's relay rebinds it; the home region
		// takes that region's word for its membership).
		fay := dial(top, ctx, w.edges[1].URL, app, "fay")
		if err := fay.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		count(3)
		for _, step := range []string{"joined", "reconnected"} {
			if step == "reconnected" {
				if !fay.Drop() {
					t.Fatal("fay had no connection to drop")
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				s, err := fay.Send(ctx, room, client.TextMessage("fay "+step), client.SendOptions{})
				if err == nil {
					nextEvent(t, alice, func(m client.Message) bool { return m.ID == s.ID })
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("fay (region 2), %s, sends into region 1's chatroom: %v", step, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		// dave, of region 2 too, never joined: refused.
		_, err = dave.Send(ctx, room, client.TextMessage("gatecrash"), client.SendOptions{})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != lcpb.ErrInvalidMessagingTarget {
			t.Fatalf("dave, not in the chatroom, sends: %v; want %d", err, lcpb.ErrInvalidMessagingTarget)
		}
		// fay leaves for good: the count forgets her.
		fay.Close()
		count(2)
	})

	t.Run("unique conversations meet across regions", func(t *testing.T) {
		a, err := alice.CreateConversation(ctx, []string{"bob"}, "dm", nil, true)
		if err != nil {
			t.Fatal(err)
		}
		b, err := bob.CreateConversation(ctx, []string{"alice"}, "dm", nil, true)
		if err != nil {
			t.Fatal(err)
		}
		if a != b || catalog.HomeOf(a).Region != 1 {
			t.Fatalf("alice (region 1) made %s, bob (region 2) found %s; want one, homed in region 1", a, b)
		}
		// The other way round: first in region 2.
		c, err := dave.CreateConversation(ctx, []string{"alice"}, "dm", nil, true)
		if err != nil {
			t.Fatal(err)
		}
		d, err := alice.CreateConversation(ctx, []string{"dave"}, "dm", nil, true)
		if err != nil {
			t.Fatal(err)
		}
		if c != d || catalog.HomeOf(c).Region != 2 {
			t.Fatalf("dave (region 2) made %s, alice (region 1) found %s; want one, homed in region 2", c, d)
		}
		// And it works as one: alice sends, dave gets it.
		s, err := alice.Send(ctx, d, client.TextMessage("hi dave"), client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := nextEvent(t, dave, func(m client.Message) bool { return m.ConvID == c }); m.ID != s.ID {
			t.Fatalf("dave got %s, want %s", m.ID, s.ID)
		}
	})

	t.Run("pushes go only where recipients are, and at once to a fresh login", func(t *testing.T) {
		// Wait until region 1's summary of region 2 is fresh.
		deadline := time.Now().Add(10 * time.Second)
		for !w.cores[0].Regions.OnlineElsewhere(app, "bob") {
			if time.Now().After(deadline) {
				t.Fatal("region 1 never learned that bob is online in region 2")
			}
			time.Sleep(50 * time.Millisecond)
		}
		var late []string
		for i := range 8 {
			late = append(late, fmt.Sprintf("late-%d", i))
		}
		lc, err := alice.CreateConversation(ctx, late, "late", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		stats := w.cores[0].Regions.Stats()
		skipped := stats.Skipped.Load()
		if _, err := alice.Send(ctx, lc, client.TextMessage("nobody in region 2"), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		if stats.Skipped.Load() == skipped {
			t.Fatal("a push with no recipient online in region 2 was sent there")
		}
		// Each late member logs in to region 2 and is sent a message the
		// moment its login returns: it arrives live.
		for _, id := range late {
			c := dial(t, ctx, w.edges[1].URL, app, id)
			s, err := alice.Send(ctx, lc, client.TextMessage("hello "+id), client.SendOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m := nextEvent(t, c, func(m client.Message) bool { return m.ConvID == lc && !m.Offline }); m.ID != s.ID {
				t.Fatalf("%s got %s live, want %s", id, m.ID, s.ID)
			}
			c.Close()
		}
	})

	t.Run("offline push skips a member online in the other region", func(t *testing.T) {
		// bob is online in region 2, carol nowhere: region 1's summary of
		// region 2 says so within a pull or two.
		// carol logged out of region 2 in an earlier subtest: the summary
		// drops her within a pull or two too.
		deadline := time.Now().Add(10 * time.Second)
		for !w.cores[0].Regions.OnlineElsewhere(app, "bob") || w.cores[0].Regions.OnlineElsewhere(app, "carol") {
			if time.Now().After(deadline) {
				t.Fatalf("region 1's summary of region 2 after 10 s: bob online %v (want true), carol online %v (want false)",
					w.cores[0].Regions.OnlineElsewhere(app, "bob"), w.cores[0].Regions.OnlineElsewhere(app, "carol"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		for len(w.pushes) > 0 {
			<-w.pushes
		}
		sent, err := alice.Send(ctx, c1, client.TextMessage("push me"), client.SendOptions{PushData: `{"alert":"push me"}`})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-w.pushes:
			if r.Timestamp != sent.Timestamp || !slices.Equal(r.To, []string{"carol"}) {
				t.Fatalf("offline push to %v (ts %d), want carol only (ts %d): bob is online in region 2", r.To, r.Timestamp, sent.Timestamp)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no offline push for carol")
		}
	})

	t.Run("global broadcast, REST kick and tag kick reach the other region", func(t *testing.T) {
		api := restAPI{t: t, base: "http://" + strings.TrimSuffix(strings.TrimPrefix(w.edges[0].URL, "ws://"), "/"), app: app, key: "anything,master"}
		var conv map[string]any
		api.must("POST", "/1.2/rtm/service-conversations", map[string]any{"name": "news"}, &conv)
		sys, _ := conv["objectId"].(string)
		var sent struct {
			ID string `json:"msg-id"`
		}
		api.must("POST", "/1.2/rtm/broadcasts", map[string]any{"conv_id": sys, "from_client": "sys", "message": "to everyone"}, &sent)
		for _, c := range []*client.Client{bob, dave} { // online in region 2 only
			if m := nextEvent(t, c, func(m client.Message) bool { return m.From == "sys" }); m.ID != sent.ID {
				t.Fatalf("%s got %s, want the global broadcast %s", c.ID(), m.ID, sent.ID)
			}
		}
		// REST kick of dave, asked of region 1: dave's session in region 2 ends.
		var kicked map[string]any
		api.must("POST", "/1.2/rtm/clients/dave/kick", map[string]any{"reason": "bye"}, &kicked)
		nextEvent(t, dave, func(client.Closed) bool { return true })
		dave = dial(top, ctx, w.edges[1].URL, app, "dave") // back, for what follows
		// Tag kick: erin on a phone in region 1, then on a phone in region 2.
		erin1, err := client.Dial(ctx, w.edges[0].URL, client.Options{AppID: app, ClientID: "erin", Tag: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		defer erin1.Close()
		erin2, err := client.Dial(ctx, w.edges[1].URL, client.Options{AppID: app, ClientID: "erin", Tag: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		defer erin2.Close()
		if e := nextEvent(t, erin1, func(client.Closed) bool { return true }); e.Code != lcpb.ErrSessionConflict {
			t.Fatalf("erin's region 1 session closed with %d, want %d", e.Code, lcpb.ErrSessionConflict)
		}
		if online, err := bob.Online(ctx, []string{"erin"}); err != nil || len(online) != 1 {
			t.Fatalf("erin online after the tag kick: %v %v; want her region 2 session", online, err)
		}
	})

	var b strings.Builder
	if err := w.cores[0].WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "relaymesh_region_pushes_sent_total") || strings.Contains(b.String(), "relaymesh_region_pushes_sent_total 0\n") {
		t.Fatalf("region 1's /metrics: no pushes sent to region 2:\n%s", b.String())
	}

	t.Run("region 1 cut off: region 2 keeps its own", func(t *testing.T) {
		alice.Close() // region 1's clients go with it
		w.cores[0].Close()
		w.cores[0] = nil
		if _, err := dave.Send(ctx, c2, client.TextMessage("still here"), client.SendOptions{}); err != nil {
			t.Fatalf("a send in region 2's own conversation with region 1 down: %v", err)
		}
		nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == c2 && strings.Contains(m.Text, "still here") })
		for i := range 2 { // the first finds region 1 gone, the second fails at once
			sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
			start := time.Now()
			_, err := bob.Send(sctx, c1, client.TextMessage("to a dead region"), client.SendOptions{})
			scancel()
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != lcpb.ErrInternal {
				t.Fatalf("send %d into region 1 while it is down: %v; want error %d", i, err, lcpb.ErrInternal)
			}
			if d := time.Since(start); i == 1 && d > time.Second {
				t.Fatalf("second send into the dead region took %v; want a prompt error", d)
			}
		}
	})

	t.Run("region 1 back: its conversations are reachable again", func(t *testing.T) {
		c := restartCore(t, w.cfgs[0])
		w.cores[0] = c
		waitFor(t, 20*time.Second, c.Ready)
		deadline := time.Now().Add(20 * time.Second)
		for {
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := bob.Send(sctx, c1, client.TextMessage("region 1 is back"), client.SendOptions{})
			scancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sends into region 1 after its restart still fail: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		h, err := bob.History(ctx, c1, client.HistoryQuery{Limit: 10})
		if err != nil || len(h) < 3 {
			t.Fatalf("history of %s after region 1's restart: %d messages, %v", c1, len(h), err)
		}
	})
}

// rawOpenApp logs peer in to app (which needs no signature) over a raw
// socket, with tag, and returns the socket and the answer.
func rawOpenApp(t *testing.T, ctx context.Context, url, app, peer, tag string) (*raw, *lcpb.GenericCommand) {
	t.Helper()
	r, _, err := dialRaw(t, ctx, url, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	sm := &lcpb.SessionCommand{Ua: proto.String("raw/1")}
	if tag != "" {
		sm.Tag = proto.String(tag)
	}
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(app), PeerId: proto.String(peer), SessionMessage: sm})
	return r, r.next(ctx)
}

// rawReopenApp reopens a session of app with its session token (r=true,
// as the SDKs reconnect).
func rawReopenApp(t *testing.T, ctx context.Context, url, app, st string) (*raw, *lcpb.GenericCommand) {
	t.Helper()
	r, _, err := dialRaw(t, ctx, url, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(app), SessionMessage: &lcpb.SessionCommand{St: proto.String(st), R: proto.Bool(true)}})
	return r, r.next(ctx)
}

// TestTwoRegionsTokens: a session token is checked in the region that
// issued it, wherever the client reopens with it. A logout or tag kick in
// region 1 voids the token in region 2 too; a live token of region 1
// reopens in region 2, also after a kick there gave it a newer
// generation; and with region 1 down its tokens get 4112 in region 2 (the
// SDKs then sign in again, which region 2 takes).
func TestTwoRegionsTokens(t *testing.T) {
	w := startTwoRegions(t)
	const app = "regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	r1, r2 := w.edges[0].URL, w.edges[1].URL
	opened := func(t *testing.T, what string, c *lcpb.GenericCommand) string {
		t.Helper()
		if c.GetOp() != lcpb.OpType_opened || c.GetSessionMessage().GetSt() == "" {
			t.Fatalf("%s: got %v/%v %v, want session/opened with an st", what, c.GetCmd(), c.GetOp(), c.GetErrorMessage())
		}
		return c.GetSessionMessage().GetSt()
	}
	logout := func(t *testing.T, what string, r *raw) {
		t.Helper()
		r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), I: proto.Int32(2)})
		if got := r.next(ctx); got.GetOp() != lcpb.OpType_closed {
			t.Fatalf("%s: logout got %v", what, got)
		}
	}
	refused := func(t *testing.T, what, url, st string) {
		t.Helper()
		r, got := rawReopenApp(t, ctx, url, app, st)
		wantError(t, what, got, lcpb.ErrSessionTokenExpired, proto.Int32(1))
		r.ws.CloseNow()
	}

	t.Run("a live token moves between regions", func(t *testing.T) {
		c, o := rawOpenApp(t, ctx, r1, app, "amy", "")
		st := opened(t, "login in region 1", o)
		c.ws.CloseNow()
		c2, o2 := rawReopenApp(t, ctx, r2, app, st)
		st2 := opened(t, "region 1's token reopened in region 2", o2)
		c2.ws.CloseNow()
		c3, o3 := rawReopenApp(t, ctx, r1, app, st2)
		opened(t, "region 2's token reopened in region 1", o3)
		logout(t, "amy", c3)
		refused(t, "region 2's token in region 2 after a logout in region 1 (the chain is amy's)", r2, st2)
		refused(t, "region 2's token in region 1 after a logout in region 1", r1, st2)
	})

	t.Run("a logout in region 1 voids its token in region 2", func(t *testing.T) {
		c, o := rawOpenApp(t, ctx, r1, app, "lou", "")
		st := opened(t, "login in region 1", o)
		logout(t, "lou", c)
		refused(t, "region 1's token in region 2 after its logout in region 1", r2, st)
		refused(t, "region 1's token in region 1 after its logout", r1, st)
		// Positive control: a fresh login in region 2 works, its token too.
		c2, o2 := rawOpenApp(t, ctx, r2, app, "lou", "")
		st2 := opened(t, "fresh login in region 2", o2)
		c2.ws.CloseNow()
		c3, o3 := rawReopenApp(t, ctx, r2, app, st2)
		opened(t, "region 2's fresh token in region 2", o3)
		c3.ws.CloseNow()
	})

	t.Run("a tag kick in region 1: the kicked token is void everywhere, the kicker's reopens everywhere", func(t *testing.T) {
		old, o1 := rawOpenApp(t, ctx, r1, app, "tim", "mobile")
		stOld := opened(t, "first login", o1)
		kicker, o2 := rawOpenApp(t, ctx, r1, app, "tim", "mobile")
		stNew := opened(t, "second login, same tag", o2)
		if k := old.next(ctx); k.GetOp() != lcpb.OpType_closed || k.GetSessionMessage().GetCode() != lcpb.ErrSessionConflict {
			t.Fatalf("kicked session got %v", k)
		}
		refused(t, "the kicked session's token in region 2", r2, stOld)
		kicker.ws.CloseNow()
		// The kick retired region 1's generation 0; region 2 holds none
		// for tim, and the kicker's token is region 1's generation 1.
		var got *lcpb.GenericCommand
		var r *raw
		deadline := time.Now().Add(10 * time.Second)
		for {
			// The kicker's dropped socket may still hold the tag for a moment.
			r, got = rawReopenApp(t, ctx, r2, app, stNew)
			if got.GetOp() == lcpb.OpType_opened || time.Now().After(deadline) {
				break
			}
			r.ws.CloseNow()
			time.Sleep(100 * time.Millisecond)
		}
		opened(t, "the kicker's token in region 2", got)
		r.ws.CloseNow()
	})

	t.Run("region 1 down: its tokens get 4112 in region 2, a fresh login works", func(t *testing.T) {
		c, o := rawOpenApp(t, ctx, r1, app, "dan", "")
		st := opened(t, "login in region 1", o)
		c.ws.CloseNow()
		w.cores[0].Close()
		w.cores[0] = nil
		refused(t, "region 1's token with region 1 down", r2, st)
		c2, o2 := rawOpenApp(t, ctx, r2, app, "dan", "")
		opened(t, "fresh login in region 2 with region 1 down", o2)
		c2.ws.CloseNow()
		var b strings.Builder
		if err := w.cores[1].WriteMetrics(&b); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"relaymesh_router_foreign_tokens_total ", "relaymesh_router_foreign_tokens_refused_total "} {
			i := strings.Index(b.String(), "\n"+want)
			if i < 0 || strings.HasPrefix(b.String()[i+1+len(want):], "0\n") {
				t.Fatalf("region 2's /metrics: %s missing or 0", want)
			}
		}
	})
}

// TestTwoRegionsDevices: a device bound in one region is known to the
// others (core/devicesync.go). ivy logs in to region 2 from an iPhone and
// drops off; a message to her in a conversation homed in region 1 gets
// region 1's offline push, to her device. After she logs out in region 2
// the binding is gone in region 1 too.
func TestTwoRegionsDevices(t *testing.T) {
	w := startTwoRegions(t)
	const app = "regions-app"
	const tok = "1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	iphone := func() *raw {
		t.Helper()
		r, _, err := dialRaw(t, ctx, w.edges[1].URL, lcpb.SubprotocolBinary3)
		if err != nil {
			t.Fatal(err)
		}
		r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
			AppId: proto.String(app), PeerId: proto.String("ivy"),
			SessionMessage: &lcpb.SessionCommand{Ua: proto.String("LeanCloud-Swift-SDK/17.11.0"), ConfigBitmap: proto.Int64(187),
				DeviceToken: proto.String(tok)}})
		if got := r.next(ctx); got.GetOp() != lcpb.OpType_opened {
			t.Fatalf("ivy's login in region 2: %v", got)
		}
		return r
	}
	ivy := iphone()
	ivy.ws.CloseNow() // dropped, not logged out: the binding stays

	alice := dial(t, ctx, w.edges[0].URL, app, "alice")
	watcher := dial(t, ctx, w.edges[1].URL, app, "watcher") // in ivy's region
	// offline waits until region 2 has ended ivy's session and region 1's
	// summary of region 2 no longer names her: a push is skipped for a
	// client online in another region, so a send made before that (region
	// 1 pulls the summary every half second) may rightly get none.
	offline := func() {
		t.Helper()
		for _, c := range []*client.Client{watcher, alice} {
			waitFor(t, 10*time.Second, func() bool {
				on, err := c.Online(ctx, []string{"ivy"})
				return err == nil && len(on) == 0
			})
		}
	}
	offline()
	cid, err := alice.CreateConversation(ctx, []string{"ivy"}, "to ivy", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if h := catalog.HomeOf(cid); h.Region != 1 {
		t.Fatalf("alice's conversation homed in region %d, want 1", h.Region)
	}
	// pushed sends one message and returns region 1's push request for it.
	pushed := func(text string) push.Request {
		t.Helper()
		for len(w.pushes) > 0 {
			<-w.pushes
		}
		s, err := alice.Send(ctx, cid, client.TextMessage(text), client.SendOptions{PushData: `{"alert":"` + text + `"}`})
		if err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case r := <-w.pushes:
				if r.Timestamp == s.Timestamp {
					if !slices.Equal(r.To, []string{"ivy"}) {
						t.Fatalf("push to %v, want ivy", r.To)
					}
					return r
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no offline push for %q", text)
			}
		}
	}
	hasTok := func(r push.Request) bool {
		return slices.ContainsFunc(r.Devices, func(d push.Device) bool { return d.Token == tok && d.ClientID == "ivy" })
	}
	// The binding travels off the login's path: within a few tries.
	deadline := time.Now().Add(10 * time.Second)
	for k := 0; ; k++ {
		r := pushed(fmt.Sprintf("hello %d", k))
		if hasTok(r) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("region 1's push for ivy names devices %v, want her iPhone (bound in region 2)", r.Devices)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A logout in region 2 unbinds her iPhone in region 1 too.
	ivy = iphone()
	ivy.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), I: proto.Int32(2)})
	if got := ivy.next(ctx); got.GetOp() != lcpb.OpType_closed {
		t.Fatalf("logout: %v", got)
	}
	offline()
	deadline = time.Now().Add(10 * time.Second)
	for k := 0; ; k++ {
		r := pushed(fmt.Sprintf("bye %d", k))
		if !hasTok(r) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("region 1 still pushes to ivy's iPhone after she logged out in region 2")
		}
		time.Sleep(200 * time.Millisecond)
	}
	var b strings.Builder
	if err := w.cores[0].WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\nrelaymesh_core_device_sync_taken_total ") || strings.Contains(b.String(), "\nrelaymesh_core_device_sync_taken_total 0\n") {
		t.Fatal("region 1's /metrics: no device change taken from region 2")
	}
}

// TestTwoRegionsBroadcastOnce: a global broadcast made in region 1 and
// got live by a client of region 2 does not come again at the client's
// next login, after a logout or after a dropped connection, even though
// region 1's summary of region 2 still names the client when the CLOSE
// arrives (region 2 says the client has no session left there).
func TestTwoRegionsBroadcastOnce(t *testing.T) {
	w := startTwoRegions(t)
	const app = "regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	api := restAPI{t: t, base: "http://" + strings.TrimSuffix(strings.TrimPrefix(w.edges[0].URL, "ws://"), "/"), app: app, key: "anything,master"}
	var conv map[string]any
	api.must("POST", "/1.2/rtm/service-conversations", map[string]any{"name": "news"}, &conv)
	sys, _ := conv["objectId"].(string)
	for _, end := range []string{"logout", "drop"} {
		t.Run(end, func(t *testing.T) {
			peer := "gus-" + end
			c := dial(t, ctx, w.edges[1].URL, app, peer) // region 2; a first login
			var sent struct {
				ID string `json:"msg-id"`
			}
			api.must("POST", "/1.2/rtm/broadcasts", map[string]any{"conv_id": sys, "from_client": "sys", "message": "once, " + end}, &sent)
			// (A first login may get the newest earlier broadcast first.)
			if m := nextEvent(t, c, func(m client.Message) bool { return m.From == "sys" && m.ID == sent.ID }); m.Offline {
				t.Fatalf("%s got the broadcast %s as offline, want live", peer, m.ID)
			}
			// Region 1's summary of region 2 names the client by the time
			// the session ends (it used to make region 1 take the client
			// for still online there, and not mark the broadcast got).
			waitFor(t, 10*time.Second, func() bool { return w.cores[0].Regions.OnlineElsewhere(app, peer) })
			if end == "drop" {
				c.Drop() // the server sees the connection lost, no logout
			}
			c.Close()
			// Region 1 hears of the end with the session's CLOSE; give its
			// summary of region 2 time to drop the session too.
			time.Sleep(time.Second)
			again := dial(t, ctx, w.edges[1].URL, app, peer)
			timeout := time.After(2 * time.Second)
			for {
				select {
				case ev := <-again.Events():
					if m, ok := ev.(client.Message); ok && m.ID == sent.ID {
						t.Fatalf("the broadcast %s came again at %s's next login (after a %s)", sent.ID, peer, end)
					}
					continue
				case <-timeout:
				}
				break
			}
		})
	}
}

// TestTwoRegionsTagReconnect: a client with a tag whose old socket in
// region 1 is still open (it moved on, as after a network switch)
// reconnects in region 2 with its session token. Region 2 opens it, and
// region 1 drops the old session quietly: the old socket gets no
// session/closed and no more pushes; the new one gets them.
func TestTwoRegionsTagReconnect(t *testing.T) {
	w := startTwoRegions(t)
	const app = "regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	old, o := rawOpenApp(t, ctx, w.edges[0].URL, app, "vic", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("vic's login in region 1: %v", o)
	}
	alice := dial(t, ctx, w.edges[0].URL, app, "alice")
	cid, err := alice.CreateConversation(ctx, []string{"vic"}, "to vic", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	directs := func(r *raw, d time.Duration) []string {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var got []string
		for {
			_, b, err := r.ws.Read(rctx)
			if err != nil {
				return got
			}
			g := new(lcpb.GenericCommand)
			if proto.Unmarshal(b, g) != nil {
				continue
			}
			if g.GetCmd() == lcpb.CommandType_session && g.GetOp() == lcpb.OpType_closed {
				t.Fatalf("a socket of vic got %v", g)
			}
			if g.GetCmd() == lcpb.CommandType_direct {
				got = append(got, g.GetDirectMessage().GetMsg())
			}
		}
	}
	nw, got := rawReopenApp(t, ctx, w.edges[1].URL, app, o.GetSessionMessage().GetSt())
	if got.GetOp() != lcpb.OpType_opened {
		t.Fatalf("vic's reconnect in region 2: %v", got)
	}
	if _, err := alice.Send(ctx, cid, client.TextMessage("where are you"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := directs(nw, 3*time.Second); len(d) != 1 {
		t.Fatalf("vic's new socket got %v, want the message", d)
	}
	if d := directs(old, 500*time.Millisecond); len(d) != 0 {
		t.Fatalf("vic's old socket in region 1 still got %v", d)
	}
	if n := metricOf(t, w.cores[0], "relaymesh_core_sessions_tag_replaced_total"); n != 1 {
		t.Fatalf("region 1's /metrics: relaymesh_core_sessions_tag_replaced_total %d, want 1", n)
	}
}

// TestTwoRegionsTagRefused: a reconnect that signs in afresh (r=true, no
// session token) whose tag a session holds is refused with 4111 whether
// that session is in its own region or in another, and the session
// holding the tag keeps its messages. Another tag, or the same tag once
// the holder logged out, opens. Before MethodTagHeld, region 2 opened
// such a reconnect and then the two sessions shared the tag.
func TestTwoRegionsTagRefused(t *testing.T) {
	w := startTwoRegions(t)
	const app = "regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reconnect := func(url, tag string) (*raw, *lcpb.GenericCommand) {
		t.Helper()
		r, _, err := dialRaw(t, ctx, url, lcpb.SubprotocolBinary3)
		if err != nil {
			t.Fatal(err)
		}
		r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
			AppId: proto.String(app), PeerId: proto.String("uma"),
			SessionMessage: &lcpb.SessionCommand{Ua: proto.String("raw/1"), Tag: proto.String(tag), R: proto.Bool(true)}})
		return r, r.next(ctx)
	}
	code := func(c *lcpb.GenericCommand) int32 {
		if c.GetErrorMessage() != nil {
			return c.GetErrorMessage().GetCode()
		}
		return c.GetSessionMessage().GetCode()
	}
	holder, o := rawOpenApp(t, ctx, w.edges[0].URL, app, "uma", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("uma's login in region 1: %v", o)
	}
	_, here := reconnect(w.edges[0].URL, "phone")
	if here.GetOp() == lcpb.OpType_opened || code(here) != lcpb.ErrSessionConflict {
		t.Fatalf("a reconnect without a token, its tag held in its own region: %v/%v code %d, want a refusal with %d",
			here.GetCmd(), here.GetOp(), code(here), lcpb.ErrSessionConflict)
	}
	_, there := reconnect(w.edges[1].URL, "phone")
	if there.GetOp() == lcpb.OpType_opened || code(there) != lcpb.ErrSessionConflict {
		t.Fatalf("the same reconnect in region 2: %v/%v code %d, want a refusal with %d", there.GetCmd(), there.GetOp(), code(there), lcpb.ErrSessionConflict)
	}
	if there.GetCmd() != here.GetCmd() || there.GetOp() != here.GetOp() {
		t.Fatalf("region 2 refused as %v/%v, region 1 as %v/%v: the SDKs must see one answer", there.GetCmd(), there.GetOp(), here.GetCmd(), here.GetOp())
	}
	// The holder was not disturbed: it still gets uma's messages.
	alice := dial(t, ctx, w.edges[1].URL, app, "alice")
	stillHolds(t, ctx, holder, alice, "uma")
	// Another tag is no conflict, and region 2 need not ask: the mark of
	// uma's login in region 1 (and its summary) name only "phone".
	checks := metricOf(t, w.cores[1], "relaymesh_region_tag_checks_total")
	if _, c := reconnect(w.edges[1].URL, "pad"); c.GetOp() != lcpb.OpType_opened {
		t.Fatalf("a reconnect with another tag in region 2: %v", c)
	}
	if n := metricOf(t, w.cores[1], "relaymesh_region_tag_checks_total") - checks; n != 0 {
		t.Fatalf("region 2 asked region 1 %d times about tag \"pad\", which region 1 does not hold", n)
	}
	if n := metricOf(t, w.cores[1], "relaymesh_router_reconnects_tag_refused_total"); n != 1 {
		t.Fatalf("region 2's /metrics: relaymesh_router_reconnects_tag_refused_total %d, want 1", n)
	}
	// Once the holder logged out, the tag is free in every region.
	holder.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), I: proto.Int32(2)})
	for {
		g := holder.next(ctx)
		if g.GetCmd() == lcpb.CommandType_session && g.GetOp() == lcpb.OpType_closed {
			break
		}
	}
	if _, c := reconnect(w.edges[1].URL, "phone"); c.GetOp() != lcpb.OpType_opened {
		t.Fatalf("the reconnect in region 2 after the holder logged out: %v", c)
	}
}

// TestTwoRegionsTagTakenWhileAway: a tagged client of region 1 drops off,
// another device logs in with the same tag in region 2 meanwhile, then the
// first reconnects with its valid session token, in either region. Both
// reconnects are refused with session/closed 4111 and the device holding
// the tag keeps its session. Before session chains the reconnect in region
// 1 opened and its login share to region 2 dropped the other device's
// session there without a word.
func TestTwoRegionsTagTakenWhileAway(t *testing.T) {
	w := startTwoRegions(t)
	const app = "regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1, r2 := w.edges[0].URL, w.edges[1].URL
	alice := dial(t, ctx, r1, app, "alice")
	a, o := rawOpenApp(t, ctx, r1, app, "wes", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("wes's first device in region 1: %v", o)
	}
	stA := o.GetSessionMessage().GetSt()
	dropOff(t, ctx, a, alice, "wes")
	b, o := rawOpenApp(t, ctx, r2, app, "wes", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("wes's second device in region 2: %v", o)
	}
	for i, url := range []string{r1, r2} {
		_, got := rawReopenApp(t, ctx, url, app, stA)
		wantTagRefused(t, fmt.Sprintf("the first device's reconnect in region %d while the second holds the tag in region 2", i+1), got)
	}
	stillHolds(t, ctx, b, alice, "wes")
	if n := metricOf(t, w.cores[0], "relaymesh_router_reconnects_tag_refused_total"); n != 1 {
		t.Fatalf("region 1's /metrics: relaymesh_router_reconnects_tag_refused_total %d, want 1", n)
	}
	// The second device drops off too (a logout would void every token);
	// a third takes the tag in region 1, where the first device's token
	// was issued. The first device's reconnect in region 2 (its token
	// checked in region 1 while region 1 is asked for the tag, at once)
	// is refused too.
	dropOff(t, ctx, b, alice, "wes")
	c3, o := rawOpenApp(t, ctx, r1, app, "wes", "phone")
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("wes's third device in region 1: %v", o)
	}
	_, got := rawReopenApp(t, ctx, r2, app, stA)
	wantTagRefused(t, "the first device's reconnect in region 2 while a third holds the tag in region 1", got)
	stillHolds(t, ctx, c3, alice, "wes")
}
