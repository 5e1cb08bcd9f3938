package core

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func (c *client) conv(op lcpb.OpType, cm *lcpb.ConvCommand) *lcpb.GenericCommand {
	return c.do(convCmd(op, cm))
}

func (c *client) close() {
	c.e.t.Helper()
	if _, err := c.e.core.HandleClient(context.Background(), c.req(meshpb.ClientRequest_CLOSE, nil)); err != nil {
		c.e.t.Fatal(err)
	}
}

// TestChatroom runs a chatroom through the core: create, join, send to the
// joined sessions only with the priority on the delivery, count, members,
// refused invite, history, close and reconnect.
func TestChatroom(t *testing.T) {
	e := newEnv(t)
	a, b, z := e.client("alice"), e.client("bob"), e.client("zed")
	for _, c := range []*client{a, b, z} {
		c.open("", false, 0)
	}
	started := mustOK(t, a.conv(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"alice"}, Transient: proto.Bool(true),
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"name":"room"}`)}}))
	cid := started.ConvMessage.GetCid()
	countIn := func(c *client, cid string) int32 {
		return mustOK(t, c.conv(lcpb.OpType_count, &lcpb.ConvCommand{Cid: proto.String(cid)})).ConvMessage.GetCount()
	}
	count := func(c *client) int32 { return countIn(c, cid) }
	if n := count(a); n != 1 {
		t.Fatalf("count after create: got %d, want 1 (the creator)", n)
	}
	wantError(t, b.sendText(cid, "not joined"), lcpb.ErrInvalidMessagingTarget)
	add := mustOK(t, b.conv(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}))
	if add.GetOp() != lcpb.OpType_added || !slices.Equal(add.ConvMessage.AllowedPids, []string{"bob"}) {
		t.Fatalf("join reply: got %v", add)
	}
	wantError(t, a.conv(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"zed"}}), lcpb.ErrConversationNotAllowed)
	wantError(t, a.conv(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}), lcpb.ErrConversationNotAllowed)
	if n := count(z); n != 2 {
		t.Fatalf("count: got %d, want 2", n)
	}
	mem := mustOK(t, z.conv(lcpb.OpType_members, &lcpb.ConvCommand{Cid: proto.String(cid)}))
	if !slices.Equal(mem.ConvMessage.M, []string{"alice", "bob"}) {
		t.Fatalf("members: got %v, want [alice bob]", mem.ConvMessage.M)
	}

	low := a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), Priority: proto.Int32(3),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hello")}})
	mustOK(t, low)
	e.edge.waitPush(t, "bob", b.conn, func(g *lcpb.GenericCommand) bool { return g.GetDirectMessage().GetMsg() == "hello" })
	e.edge.noPush(t, e.core, "zed", z.conn, func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_direct })
	e.edge.noPush(t, e.core, "alice", a.conn, func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_direct })
	e.edge.noPush(t, e.core, "bob", b.conn, func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_conv })
	e.edge.mu.Lock()
	var prio int32 = -1
	for _, d := range e.edge.got {
		g := new(lcpb.GenericCommand)
		if proto.Unmarshal(d.Command, g) == nil && g.GetDirectMessage().GetMsg() == "hello" {
			prio = d.Priority
		}
	}
	e.edge.mu.Unlock()
	if prio != 3 {
		t.Fatalf("delivery priority: got %d, want 3", prio)
	}
	if logs := z.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}); len(logs) != 1 || logs[0].GetData() != "hello" {
		t.Fatalf("history: got %v, want [hello]", logs)
	}

	// bob's session ends: out of the count; a reconnect brings him back.
	b.close()
	if n := count(a); n != 1 {
		t.Fatalf("count after close: got %d, want 1", n)
	}
	b2 := e.client("bob")
	b2.open("", true, 0)
	if n := count(a); n != 2 {
		t.Fatalf("count after reconnect: got %d, want 2", n)
	}
	mustOK(t, b2.sendText(cid, "back"))
	e.edge.waitPush(t, "alice", a.conn, func(g *lcpb.GenericCommand) bool { return g.GetDirectMessage().GetMsg() == "back" })

	// Joining another chatroom leaves the first; quit leaves.
	other := mustOK(t, z.conv(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"zed"}, Transient: proto.Bool(true)})).ConvMessage.GetCid()
	mustOK(t, b2.conv(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(other), M: []string{"bob"}}))
	if n, m := count(a), countIn(z, other); n != 1 || m != 2 {
		t.Fatalf("counts after switching: got %d, %d, want 1, 2", n, m)
	}
	mustOK(t, b2.conv(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(other), M: []string{"bob"}}))
	if n := countIn(z, other); n != 1 {
		t.Fatalf("count after quit: got %d, want 1", n)
	}
	wantError(t, b2.sendText(other, "gone"), lcpb.ErrInvalidMessagingTarget)
}

// TestChatroomPresence: the leader reports a session's chatroom in its
// reply (ClientReply.room) and a core that learns it through presence
// (SyncPresence, as a follower) has the membership: count, members and
// fan-out after it leads, with nothing pushed by the sync itself.
func TestChatroomPresence(t *testing.T) {
	e := newEnv(t)
	a, z := e.client("alice"), e.client("zed")
	a.open("", false, 0)
	z.open("", false, 0)
	raw := func(c *client, op lcpb.OpType, cm *lcpb.ConvCommand) *meshpb.ClientReply {
		t.Helper()
		c.i++
		g := convCmd(op, cm)
		g.I = proto.Int32(c.i)
		b, _ := proto.Marshal(g)
		rep, err := e.core.HandleClient(context.Background(), c.req(meshpb.ClientRequest_COMMAND, b))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := raw(a, lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"alice"}, Transient: proto.Bool(true)})
	cid := mustOK(t, decodeAll(t, rep)[0]).ConvMessage.GetCid()
	if !rep.RoomChanged || rep.Room != cid {
		t.Fatalf("create reply: room %q changed %v, want %q", rep.Room, rep.RoomChanged, cid)
	}
	if rep := raw(z, lcpb.OpType_join, &lcpb.ConvCommand{Cid: proto.String(cid)}); !rep.RoomChanged || rep.Room != cid {
		t.Fatalf("join reply: room %q changed %v, want %q", rep.Room, rep.RoomChanged, cid)
	}
	if rep := raw(z, lcpb.OpType_leave, &lcpb.ConvCommand{Cid: proto.String(cid)}); !rep.RoomChanged || rep.Room != "" {
		t.Fatalf("quit reply: room %q changed %v, want none", rep.Room, rep.RoomChanged)
	}
	if rep := raw(z, lcpb.OpType_count, &lcpb.ConvCommand{Cid: proto.String(cid)}); rep.RoomChanged {
		t.Fatal("count reply reports a room change")
	}

	// As a follower, the core mirrors bob and carol (edge e1) into the room.
	sess := func(peer string, conn uint64, room string) *meshpb.PresenceSession {
		return &meshpb.PresenceSession{AppId: testApp, PeerId: peer, ConnId: conn, ProtocolVersion: 3, Room: room}
	}
	bob, carol := connSeq.Add(1), connSeq.Add(1)
	e.rep.follower.Store(true)
	e.core.SyncPresence("e1", &meshpb.Presence{Add: []*meshpb.PresenceSession{sess("bob", bob, cid), sess("carol", carol, cid)}})
	e.rep.follower.Store(false)
	count := func() int32 {
		return mustOK(t, z.conv(lcpb.OpType_count, &lcpb.ConvCommand{Cid: proto.String(cid)})).ConvMessage.GetCount()
	}
	if n := count(); n != 3 {
		t.Fatalf("count after sync: got %d, want 3", n)
	}
	mem := mustOK(t, z.conv(lcpb.OpType_members, &lcpb.ConvCommand{Cid: proto.String(cid)}))
	if !slices.Equal(mem.ConvMessage.M, []string{"alice", "bob", "carol"}) {
		t.Fatalf("members: got %v, want [alice bob carol]", mem.ConvMessage.M)
	}
	e.edge.noPush(t, e.core, "bob", bob, func(*lcpb.GenericCommand) bool { return true })
	mustOK(t, a.sendText(cid, "hi room"))
	isHi := func(g *lcpb.GenericCommand) bool { return g.GetDirectMessage().GetMsg() == "hi room" }
	e.edge.waitPush(t, "bob", bob, isHi)
	e.edge.waitPush(t, "carol", carol, isHi)

	// Follower updates: carol quits (room ""), bob's session ends.
	e.rep.follower.Store(true)
	e.core.SyncPresence("e1", &meshpb.Presence{Add: []*meshpb.PresenceSession{sess("carol", carol, "")}})
	e.core.SyncPresence("e1", &meshpb.Presence{Remove: []*meshpb.PresenceSession{sess("bob", bob, "")}})
	e.rep.follower.Store(false)
	if n := count(); n != 1 {
		t.Fatalf("count after quit and close: got %d, want 1", n)
	}

	// The leader only restores: an unknown session is bound, a known one is
	// not moved by presence.
	dave := connSeq.Add(1)
	e.core.SyncPresence("e1", &meshpb.Presence{Add: []*meshpb.PresenceSession{sess("dave", dave, cid)}})
	if n := count(); n != 2 {
		t.Fatalf("count after restore: got %d, want 2", n)
	}
	e.core.SyncPresence("e1", &meshpb.Presence{Add: []*meshpb.PresenceSession{sess("dave", dave, "")}})
	if !e.core.relay.InRoom(testApp, "dave", connKey{Edge: "e1", Conn: dave}, cid) {
		t.Fatal("presence moved a membership on the leader")
	}
}
