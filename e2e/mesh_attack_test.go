package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestMeshMethodsMisused attacks the core-to-core methods of issue 9 over
// the raw mesh: the shard rpc, the region rpc and the region push stream.
// Edge and admin certificates are refused; a core certificate sending
// garbage, unknown shards, forged parts, huge or flooding frames gets an
// error or a closed stream, and the region keeps serving its clients.
func TestMeshMethodsMisused(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "core-9", "edge-1", "edge-9", "admin-9")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := apps.NewDev()
	addr := freeUDPAddr(t)
	c, err := cluster.StartCore(cluster.CoreConfig{NodeID: "core-1", MeshAddr: addr, DataDir: filepath.Join(dir, "core-1"),
		Identity: ids["core-1"], Apps: reg, Logger: log, Shards: 2,
		// A region 2 that does not exist: pushes to it fail and are counted.
		Remote: []core.RemoteRegion{{Number: 2, Cores: []string{freeUDPAddr(t)}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitFor(t, 20*time.Second, c.Ready)
	e, err := cluster.StartEdge(cluster.EdgeConfig{EdgeID: "edge-1", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0",
		Identity: ids["edge-1"], Cores: []string{addr}, TokenKey: make([]byte, 32), Apps: reg, Logger: log,
		Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const app = "attack-app"
	alice := dial(t, ctx, e.URL, app, "alice")
	bob := dial(t, ctx, e.URL, app, "bob")
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "victim", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	works := func(step string) {
		t.Helper()
		s, err := alice.Send(ctx, cid, client.TextMessage("after "+step), client.SendOptions{})
		if err != nil {
			t.Fatalf("after %s: send: %v", step, err)
		}
		nextEvent(t, bob, func(m client.Message) bool { return m.ID == s.ID })
	}
	works("setup")

	node := func(id *mesh.Identity) *mesh.Node {
		n, err := mesh.Listen("127.0.0.1:0", id, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	open := func(peer string) []byte {
		b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), SessionMessage: &lcpb.SessionCommand{}})
		r, _ := proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN, AppId: app, PeerId: peer, EdgeId: "edge-9", ConnId: 1, ProtocolVersion: 3, Command: b})
		return r
	}
	tokenReq := func(app, peer string) []byte {
		b, _ := proto.Marshal(&meshpb.ClientRequest{AppId: app, PeerId: peer})
		return b
	}
	shardReq := func(n uint32) []byte {
		b, _ := proto.Marshal(&meshpb.ShardRequest{Shard: n, Request: &meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING}})
		return b
	}

	t.Run("edge and admin certificates are refused", func(t *testing.T) {
		for _, name := range []string{"edge-9", "admin-9"} {
			n := node(ids[name])
			for _, m := range []struct {
				method string
				body   []byte
			}{{meshpb.MethodShard, shardReq(0)}, {meshpb.MethodRegion, open("mallory")},
				{meshpb.MethodPresenceSummary, nil}, {meshpb.MethodPresenceMark, nil}, {meshpb.MethodPresenceAdd, nil},
				{meshpb.MethodTokenGeneration, tokenReq(app, "alice")}, {meshpb.MethodDeviceOp, tokenReq(app, "alice")},
				{meshpb.MethodRoomCount, tokenReq(app, "alice")}, {meshpb.MethodTagHeld, tokenReq(app, "alice")}} {
				_, err := n.Call(ctx, addr, m.method, m.body)
				if !errors.Is(err, mesh.ErrForbidden) {
					t.Errorf("%s calling %s: %v, want ErrForbidden", name, m.method, err)
				}
			}
			st, err := n.OpenStream(ctx, addr, meshpb.MethodRegionDeliveries)
			if err == nil {
				b, _ := proto.Marshal(&meshpb.RegionDelivery{AppId: app, Peers: []string{"bob"}, Command: []byte{0x08, 0x01}})
				st.Send(b)
				if _, err = st.Recv(); err == nil {
					t.Errorf("%s: region push stream accepted", name)
				}
				st.Close()
			}
		}
	})
	works("role attacks")

	t.Run("an edge cannot vouch for a chatroom membership", func(t *testing.T) {
		room, err := alice.CreateChatRoom(ctx, "stage", nil)
		if err != nil {
			t.Fatal(err)
		}
		send := func(n *mesh.Node, peer string) *lcpb.GenericCommand {
			t.Helper()
			cmd, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(3),
				DirectMessage: &lcpb.DirectCommand{Cid: proto.String(room), Msg: proto.String("forged")}})
			b, _ := proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: app, PeerId: peer,
				EdgeId: "edge-9", ConnId: 5, ProtocolVersion: 3, Command: cmd, SessionRoom: proto.String(room)})
			out, err := n.Call(ctx, addr, meshpb.MethodClient, b)
			if err != nil {
				t.Fatalf("client rpc: %v", err)
			}
			rep := new(meshpb.ClientReply)
			if err := proto.Unmarshal(out, rep); err != nil || len(rep.GetCommands()) != 1 {
				t.Fatalf("client rpc reply: %v %v", rep, err)
			}
			g := new(lcpb.GenericCommand)
			if err := proto.Unmarshal(rep.GetCommands()[0], g); err != nil {
				t.Fatal(err)
			}
			return g
		}
		// An edge certificate saying "this session is in the chatroom"
		// (session_room, which only another region's router may say):
		// ignored, refused as any non-member.
		if g := send(node(ids["edge-9"]), "mallory"); g.GetCmd() != lcpb.CommandType_error || g.GetErrorMessage().GetCode() != lcpb.ErrInvalidMessagingTarget {
			t.Fatalf("edge-forged membership: %v, want error %d", g, lcpb.ErrInvalidMessagingTarget)
		}
		if n, err := alice.Count(ctx, room); err != nil || n != 1 {
			t.Fatalf("count after the forged send: %d %v, want 1 (alice)", n, err)
		}
	})
	works("forged chatroom membership")

	t.Run("an edge cannot vouch for a reconnect", func(t *testing.T) {
		// A session with a tag; then an edge certificate's OPEN for the
		// same client and tag, reconnecting, marked vouched (which only a
		// router may say, after checking a session token): refused as an
		// unvouched reconnect (4111), the session kept.
		pam, err := client.Dial(ctx, e.URL, client.Options{AppID: app, ClientID: "pam", Tag: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		defer pam.Close()
		b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), SessionMessage: &lcpb.SessionCommand{}})
		r, _ := proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN, AppId: app, PeerId: "pam", Tag: "phone", Reconnect: true,
			Vouched: true, EdgeId: "edge-9", ConnId: 9, ProtocolVersion: 3, Command: b})
		out, err := node(ids["edge-9"]).Call(ctx, addr, meshpb.MethodClient, r)
		rep := new(meshpb.ClientReply)
		if err != nil || proto.Unmarshal(out, rep) != nil {
			t.Fatalf("forged OPEN: %v", err)
		}
		if rep.GetErrorCode() != lcpb.ErrSessionConflict {
			t.Fatalf("forged vouched reconnect: %v, want error %d", rep, lcpb.ErrSessionConflict)
		}
		s, err := alice.CreateConversation(ctx, []string{"pam"}, "to pam", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		sent, err := alice.Send(ctx, s, client.TextMessage("still there?"), client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nextEvent(t, pam, func(m client.Message) bool { return m.ID == sent.ID })
	})
	works("forged vouched reconnect")

	mallory := node(ids["core-9"]) // a core certificate: trusted as a core
	t.Run("garbage and unknown shards", func(t *testing.T) {
		for _, b := range [][]byte{nil, {0xff, 0xff, 0xff}, []byte(strings.Repeat("\x0a", 1000))} {
			if _, err := mallory.Call(ctx, addr, meshpb.MethodShard, b); err == nil {
				t.Errorf("shard rpc with %d garbage bytes: no error", len(b))
			}
			if _, err := mallory.Call(ctx, addr, meshpb.MethodRegion, b); err == nil && len(b) > 0 {
				t.Errorf("region rpc with %d garbage bytes: no error", len(b))
			}
		}
		out, err := mallory.Call(ctx, addr, meshpb.MethodShard, shardReq(9))
		rep := new(meshpb.ClientReply)
		if err != nil || proto.Unmarshal(out, rep) != nil || rep.GetErrorCode() != lcpb.ErrConversationNotFound {
			t.Errorf("shard 9 of 2: %v %v, want error %d", rep, err, lcpb.ErrConversationNotFound)
		}
		// A message into a shard this core does not have, by its id.
		bad, _ := catalog.NewConvID(1, 40)
		_, err = alice.Send(ctx, bad, client.TextMessage("x"), client.SendOptions{})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != lcpb.ErrConversationNotFound {
			t.Errorf("send to shard 40: %v, want %d", err, lcpb.ErrConversationNotFound)
		}
	})
	works("garbage")

	t.Run("presence rpcs: garbage refused; an added session is only presence", func(t *testing.T) {
		for _, m := range []string{meshpb.MethodPresenceSummary, meshpb.MethodPresenceMark, meshpb.MethodPresenceAdd} {
			if _, err := mallory.Call(ctx, addr, m, []byte{0xff, 0xff, 0x01}); err == nil {
				t.Errorf("%s with garbage: no error", m)
			}
		}
		// A presence-add for a session on an edge that does not exist: the
		// core records it, a push to it is dropped and counted, nothing
		// else happens (presence is what edges report; a core certificate
		// is trusted to report it).
		b, _ := proto.Marshal(&meshpb.PresenceAdd{EdgeId: "edge-nowhere", Session: &meshpb.PresenceSession{AppId: app, PeerId: "ghost", ConnId: 7}})
		if _, err := mallory.Call(ctx, addr, meshpb.MethodPresenceAdd, b); err != nil {
			t.Fatalf("presence-add: %v", err)
		}
		// A summary read: the whole set, then nothing new.
		b, _ = proto.Marshal(&meshpb.PresenceSummaryRequest{})
		out, err := mallory.Call(ctx, addr, meshpb.MethodPresenceSummary, b)
		sum := new(meshpb.PresenceSummary)
		if err != nil || proto.Unmarshal(out, sum) != nil || !sum.GetFull() || len(sum.GetAdds()) < 3 { // alice, bob, ghost
			t.Fatalf("summary: %v %v", sum, err)
		}
		b, _ = proto.Marshal(&meshpb.PresenceSummaryRequest{Epoch: sum.GetEpoch(), Version: sum.GetVersion()})
		out, err = mallory.Call(ctx, addr, meshpb.MethodPresenceSummary, b)
		sum2 := new(meshpb.PresenceSummary)
		if err != nil || proto.Unmarshal(out, sum2) != nil || sum2.GetFull() || len(sum2.GetAdds())+len(sum2.GetRemoves()) != 0 {
			t.Fatalf("summary since the last: %v %v", sum2, err)
		}
		// A mark for a region this core does not know, and for region 0:
		// ignored.
		for _, r := range []uint32{0, 7, 300} {
			b, _ := proto.Marshal(&meshpb.PresenceMark{Region: r, Peer: &meshpb.PeerRef{AppId: app, PeerId: "x"}})
			mallory.Call(ctx, addr, meshpb.MethodPresenceMark, b)
		}
		if c.Regions.OnlineElsewhere(app, "x") {
			t.Fatal("a mark for an unknown region counted")
		}
	})
	works("presence rpc attacks")

	t.Run("token-generation rpc: garbage and empty names refused; an answer is the generation only", func(t *testing.T) {
		for _, b := range [][]byte{nil, {0xff, 0xff, 0x01}, tokenReq("", "alice"), tokenReq(app, ""), []byte(strings.Repeat("\x0a", 1000))} {
			if _, err := mallory.Call(ctx, addr, meshpb.MethodTokenGeneration, b); err == nil {
				t.Errorf("token-generation with %q: no error", b)
			}
		}
		for _, peer := range []string{"alice", "nobody", strings.Repeat("z", 60000)} {
			out, err := mallory.Call(ctx, addr, meshpb.MethodTokenGeneration, tokenReq(app, peer))
			rep := new(meshpb.ClientReply)
			if err != nil || proto.Unmarshal(out, rep) != nil {
				t.Fatalf("token-generation of %.10s: %v", peer, err)
			}
			// Region 1's tag, generation 0: no kick or logout happened.
			if rep.GetSessionGeneration() != 1<<56 || rep.GetErrorCode() != 0 || len(rep.GetCommands()) != 0 {
				t.Fatalf("token-generation of %.10s: %v, want generation 1<<56 and nothing else", peer, rep)
			}
		}
	})
	works("token-generation rpc attacks")

	t.Run("device-op rpc: only device changes, of the app named", func(t *testing.T) {
		call := func(what string, req *meshpb.ClientRequest) *meshpb.ClientReply {
			t.Helper()
			b, _ := proto.Marshal(req)
			out, err := mallory.Call(ctx, addr, meshpb.MethodDeviceOp, b)
			rep := new(meshpb.ClientReply)
			if err != nil || proto.Unmarshal(out, rep) != nil {
				t.Fatalf("%s: %v", what, err)
			}
			return rep
		}
		if _, err := mallory.Call(ctx, addr, meshpb.MethodDeviceOp, []byte{0xff, 0xff, 0x01}); err == nil {
			t.Error("device-op with garbage: no error")
		}
		for what, cmd := range map[string]string{
			"not JSON":                "{{",
			"a conversation start":    `{"op":"start","app":"` + app + `","from":"mallory","now":1,"m":["alice"]}`,
			"a message":               `{"op":"append","app":"` + app + `","cid":"` + cid + `","from":"mallory","now":1}`,
			"another app's device":    `{"op":"device_bind","app":"other-app","from":"alice","now":1}`,
			"a device change, no app": `{"op":"device_bind","from":"alice","now":1}`,
		} {
			app := app
			if what == "a device change, no app" {
				app = ""
			}
			if rep := call(what, &meshpb.ClientRequest{AppId: app, Command: []byte(cmd)}); rep.GetErrorCode() == 0 {
				t.Errorf("device-op with %s: taken", what)
			}
		}
		// A device change that is one: taken (a core certificate is
		// trusted, as for presence).
		rep := call("a binding", &meshpb.ClientRequest{AppId: app, Command: []byte(`{"op":"device_bind","app":"` + app +
			`","from":"alice","now":1,"dev":{"kind":"tok","ident":"` + strings.Repeat("ab", 32) + `","nid":"dev1","type":"ios"}}`)})
		if rep.GetErrorCode() != 0 {
			t.Errorf("a device binding: %d %s", rep.GetErrorCode(), rep.GetErrorReason())
		}
	})
	works("device-op rpc attacks")

	t.Run("room-count and tag-held rpcs: garbage and empty names refused; answers name nothing else", func(t *testing.T) {
		req := func(r *meshpb.ClientRequest) []byte {
			b, _ := proto.Marshal(r)
			return b
		}
		ask := func(method string, b []byte) (*meshpb.ClientReply, error) {
			out, err := mallory.Call(ctx, addr, method, b)
			if err != nil {
				return nil, err
			}
			rep := new(meshpb.ClientReply)
			return rep, proto.Unmarshal(out, rep)
		}
		huge := strings.Repeat("z", 60000)
		for _, b := range [][]byte{nil, {0xff, 0xff, 0x01}, req(&meshpb.ClientRequest{AppId: app}),
			req(&meshpb.ClientRequest{Admin: &meshpb.AdminRequest{Cid: "x"}}), []byte(strings.Repeat("\x0a", 1000))} {
			if _, err := ask(meshpb.MethodRoomCount, b); err == nil {
				t.Errorf("room-count with %q: no error", b)
			}
		}
		for _, b := range [][]byte{nil, {0xff, 0xff, 0x01}, req(&meshpb.ClientRequest{AppId: app, PeerId: "alice"}),
			req(&meshpb.ClientRequest{AppId: app, Tag: "t"}), req(&meshpb.ClientRequest{PeerId: "alice", Tag: "t"})} {
			if _, err := ask(meshpb.MethodTagHeld, b); err == nil {
				t.Errorf("tag-held with %q: no error", b)
			}
		}
		// A chatroom nobody joined, and names no session holds: zero, no
		// members, no conflict.
		for _, cid := range []string{"nothing-here", huge} {
			rep, err := ask(meshpb.MethodRoomCount, req(&meshpb.ClientRequest{AppId: app, Admin: &meshpb.AdminRequest{Cid: cid}}))
			if err != nil || rep.GetAdmin().GetCount() != 0 || len(rep.GetAdmin().GetRoomMembers()) != 0 || rep.GetErrorCode() != 0 {
				t.Fatalf("room-count of %.10s: %v %v, want 0 and no members", cid, rep, err)
			}
		}
		// bob in a chatroom: counted; named unless the asker wants the
		// count only (admin.limit -1, conv/count).
		room, err := bob.CreateChatRoom(ctx, "counted", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int32{0, -1} {
			rep, err := ask(meshpb.MethodRoomCount, req(&meshpb.ClientRequest{AppId: app, Admin: &meshpb.AdminRequest{Cid: room, Limit: limit}}))
			want := []string{"bob"}
			if limit < 0 {
				want = nil
			}
			if err != nil || rep.GetAdmin().GetCount() != 1 || !slices.Equal(rep.GetAdmin().GetRoomMembers(), want) {
				t.Fatalf("room-count with limit %d: %v %v, want 1 and members %v", limit, rep, err, want)
			}
		}
		for _, r := range []*meshpb.ClientRequest{{AppId: app, PeerId: "alice", Tag: "phone"}, {AppId: app, PeerId: huge, Tag: huge},
			{AppId: app, PeerId: "alice", Tag: "phone", SessionChain: 1<<64 - 1},
			{AppId: "other-app", PeerId: "alice", Tag: "phone"}} {
			rep, err := ask(meshpb.MethodTagHeld, req(r))
			if err != nil || rep.GetErrorCode() != 0 || len(rep.GetCommands()) != 0 {
				t.Fatalf("tag-held of %.10s/%.10s: %v %v, want no conflict and nothing else", r.GetPeerId(), r.GetTag(), rep, err)
			}
		}
	})
	works("room-count and tag-held rpc attacks")

	t.Run("region rpc: a part is never passed on; a dead region costs little", func(t *testing.T) {
		out, err := mallory.Call(ctx, addr, meshpb.MethodRegion, open("bob"))
		rep := new(meshpb.ClientReply)
		if err != nil || proto.Unmarshal(out, rep) != nil {
			t.Fatalf("region OPEN part: %v", err)
		}
		// bob's share: the unread of his conversation, not a session.
		if got := rep.GetCommands(); len(got) == 0 {
			t.Fatal("region OPEN part: no share")
		}
		if c.Router.Stats().Split.Load() == 0 {
			t.Error("the region part did not run over the shards")
		}
		online, err := alice.Online(ctx, []string{"mallory"})
		if err != nil || len(online) != 0 {
			t.Fatalf("a region part registered a session: %v %v", online, err)
		}
		// Region 2 never answers: once marked unreachable, session/query
		// (which asks every region) no longer waits for it.
		start := time.Now()
		for range 5 {
			if _, err := alice.Online(ctx, []string{"bob"}); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("5 session/query with region 2 dead took %v: the dead region is asked every time", d)
		}
	})

	t.Run("region push stream: garbage closes it; floods and bogus targets are harmless", func(t *testing.T) {
		st, err := mallory.OpenStream(ctx, addr, meshpb.MethodRegionDeliveries)
		if err != nil {
			t.Fatal(err)
		}
		push, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{
			Cid: proto.String(cid), Id: proto.String("forged"), Msg: proto.String("from mallory"), Timestamp: proto.Int64(1)}})
		// A flood of pushes for clientIds nobody is, and a member list of
		// 10k names: delivered to nobody, nothing breaks.
		many := make([]string, 10000)
		for i := range many {
			many[i] = fmt.Sprintf("ghost-%d", i)
		}
		for i := range 2000 {
			d := &meshpb.RegionDelivery{AppId: app, Peers: []string{fmt.Sprintf("nobody-%d", i)}, Command: push}
			if i == 0 {
				d.Peers = many
			}
			b, _ := proto.Marshal(d)
			if err := st.Send(b); err != nil {
				t.Fatalf("push %d: %v", i, err)
			}
		}
		// Garbage: the stream is closed by the core.
		if err := st.Send([]byte{0xff, 0x01, 0x02}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err == nil {
			t.Fatal("a garbage region push left the stream open")
		}
		st.Close()
	})
	works("region push attacks")

	// The dead region 2: pushes to it fail, are counted, and hold up
	// nothing here.
	var b strings.Builder
	if err := c.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "relaymesh_region_pushes_received_total 2000\n") {
		t.Errorf("/metrics: want the 2000 pushes mallory sent counted as received:\n%s", grep(b.String(), "relaymesh_region_"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
