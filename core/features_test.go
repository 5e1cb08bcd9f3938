package core

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func (c *client) direct(dm *lcpb.DirectCommand) *lcpb.GenericCommand {
	return c.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: dm})
}

func isRcp(mid string, read bool) func(*lcpb.GenericCommand) bool {
	return func(g *lcpb.GenericCommand) bool {
		return g.GetCmd() == lcpb.CommandType_rcp && g.GetRcpMessage().GetId() == mid && g.GetRcpMessage().GetRead() == read
	}
}

func TestReceipts(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.client("alice"), e.client("bob"), e.client("carol")
	for _, x := range []*client{a, b, c} {
		x.open("", false, 0)
	}
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	m1 := mustOK(t, a.direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("r"), R: proto.Bool(true)})).AckMessage
	m2 := mustOK(t, a.direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("plain")})).AckMessage

	// Java's per-message ack (cid, mid): a delivered receipt without read.
	b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Mid: proto.String(m1.GetUid())}})
	d := e.edge.waitPush(t, "alice", a.conn, isRcp(m1.GetUid(), false))
	rm := d.RcpMessage
	if rm.Read != nil || rm.GetCid() != cid || rm.GetFrom() != "bob" || rm.GetT() == 0 || d.GetService() != 2 || d.ServerTs == nil || d.GetPeerId() != "alice" {
		t.Fatalf("delivered rcp: got %v", d)
	}
	// Acking again (JS tots) moves nothing: no second receipt.
	b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Tots: proto.Int64(m1.GetT())}})
	b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum(), ReadMessage: &lcpb.ReadCommand{Cid: proto.String(cid)}})
	r := e.edge.waitPush(t, "alice", a.conn, isRcp(m1.GetUid(), true))
	if r.RcpMessage.GetFrom() != "bob" {
		t.Fatalf("read rcp: got %v", r)
	}
	n := 0
	for _, g := range e.edge.settle(t, e.core, "alice", a.conn) {
		if g.GetCmd() == lcpb.CommandType_rcp {
			n++
			if g.RcpMessage.GetId() == m2.GetUid() {
				t.Fatalf("receipt for a message sent without r: %v", g)
			}
		}
	}
	if n != 2 {
		t.Fatalf("got %d receipts, want 2 (delivered, read)", n)
	}
	e.edge.noPush(t, e.core, "bob", b.conn, func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_rcp })

	// Groups: receipts only for a session with configBitmap bit 6.
	gid := a.start([]string{"bob", "carol"}, "", false).ConvMessage.GetCid()
	g1 := mustOK(t, a.direct(&lcpb.DirectCommand{Cid: proto.String(gid), Msg: proto.String("g1"), R: proto.Bool(true)})).AckMessage
	a.config |= configGroupReceipt
	g2 := mustOK(t, a.direct(&lcpb.DirectCommand{Cid: proto.String(gid), Msg: proto.String("g2"), R: proto.Bool(true)})).AckMessage
	c.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Cid: proto.String(gid), Tots: proto.Int64(g2.GetT())}})
	got := e.edge.waitPush(t, "alice", a.conn, isRcp(g2.GetUid(), false))
	if got.RcpMessage.GetFrom() != "carol" {
		t.Fatalf("group rcp: got %v", got)
	}
	e.edge.noPush(t, e.core, "alice", a.conn, isRcp(g1.GetUid(), false))
}

func TestWillMessages(t *testing.T) {
	e := newEnv(t)
	a, a2, b := e.client("alice"), e.client("alice"), e.client("bob")
	for _, x := range []*client{a, a2, b} {
		x.open("", false, 0)
	}
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	cid2 := a.start([]string{"bob"}, `{"name":"2"}`, false).ConvMessage.GetCid()
	sendWill := func(c *client, cid, text string) *lcpb.AckCommand {
		ack := mustOK(t, c.direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text), Will: proto.Bool(true)})).AckMessage
		if ack.GetUid() == "" || ack.GetT() == 0 {
			t.Fatalf("will ack: got %v", ack)
		}
		return ack
	}
	sendWill(a, cid, "first")
	will := sendWill(a, cid, "bye") // replaces "first"
	sendWill(a2, cid2, "a2 bye")    // a2's explicit session/close drops it
	isDirect := func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_direct }
	e.edge.noPush(t, e.core, "bob", b.conn, isDirect)
	if logs := b.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}); len(logs) != 0 {
		t.Fatalf("will in history before the drop: %v", logs)
	}
	closeCmd, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum()})
	if _, err := e.core.HandleClient(context.Background(), a2.req(meshpb.ClientRequest_CLOSE, closeCmd)); err != nil {
		t.Fatal(err)
	}
	e.edge.noPush(t, e.core, "bob", b.conn, isDirect)

	// a's connection drops: the will goes out and is stored.
	if _, err := e.core.HandleClient(context.Background(), a.req(meshpb.ClientRequest_CLOSE, nil)); err != nil {
		t.Fatal(err)
	}
	d := e.edge.waitPush(t, "bob", b.conn, isDirect)
	e.edge.noPush(t, e.core, "bob", b.conn, func(g *lcpb.GenericCommand) bool {
		return isDirect(g) && g.DirectMessage.GetMsg() != "bye"
	})
	if logs := b.logs(&lcpb.LogsCommand{Cid: proto.String(cid2)}); len(logs) != 0 {
		t.Fatalf("dropped will was stored: %v", logs)
	}
	if d.DirectMessage.GetId() != will.GetUid() || d.DirectMessage.GetMsg() != "bye" || d.DirectMessage.GetFromPeerId() != "alice" {
		t.Fatalf("will push: got %v", d)
	}
	logs := b.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
	if len(logs) != 1 || logs[0].GetMsgId() != will.GetUid() {
		t.Fatalf("history after the drop: got %v", logs)
	}
	// A second CLOSE sends nothing more.
	before := e.rep.proposed.Load()
	e.core.HandleClient(context.Background(), a.req(meshpb.ClientRequest_CLOSE, nil))
	if e.rep.proposed.Load() != before {
		t.Fatal("CLOSE without wills proposed")
	}
}

func TestRolesShutupBlacklist(t *testing.T) {
	e := newEnv(t)
	o, m, x, y := e.client("owner"), e.client("mgr"), e.client("x"), e.client("y")
	for _, c := range []*client{o, m, x, y} {
		c.open("", false, 0)
	}
	cid := o.start([]string{"mgr", "x", "y"}, "", false).ConvMessage.GetCid()
	members := func() []string {
		g := mustOK(t, o.do(convCmd(lcpb.OpType_members, &lcpb.ConvCommand{Cid: proto.String(cid)})))
		return g.ConvMessage.M
	}
	role := func(c *client, pid, r string) *lcpb.GenericCommand {
		return c.do(convCmd(lcpb.OpType_member_info_update, &lcpb.ConvCommand{Cid: proto.String(cid), TargetClientId: proto.String(pid),
			Info: &lcpb.ConvMemberInfo{Pid: proto.String(pid), Role: proto.String(r)}}))
	}
	conv := func(c *client, op lcpb.OpType, m ...string) *lcpb.GenericCommand {
		return c.do(convCmd(op, &lcpb.ConvCommand{Cid: proto.String(cid), M: m}))
	}
	bl := func(c *client, op lcpb.OpType, pids ...string) *lcpb.GenericCommand {
		return c.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: op.Enum(),
			BlacklistMessage: &lcpb.BlacklistCommand{SrcCid: proto.String(cid), ToPids: pids}})
	}

	// Members may not moderate; refusals change nothing.
	wantError(t, role(x, "mgr", "Manager"), codeOperationUnauthorized)
	wantError(t, conv(x, lcpb.OpType_remove, "y"), codeOperationUnauthorized)
	wantError(t, conv(x, lcpb.OpType_add_shutup, "y"), codeOperationUnauthorized)
	wantError(t, bl(x, lcpb.OpType_block, "y"), codeOperationUnauthorized)
	wantError(t, role(o, "mgr", "Owner"), codeOperationUnauthorized)
	wantError(t, role(o, "mgr", "King"), codeUnknownRole)
	wantError(t, role(o, "owner", "Member"), codeNeedOwner)
	if got := members(); len(got) != 4 {
		t.Fatalf("members after refusals: %v", got)
	}

	up := mustOK(t, role(o, "mgr", "Manager"))
	if up.GetCmd() != lcpb.CommandType_conv || up.GetOp() != lcpb.OpType_member_info_updated || up.ConvMessage == nil {
		t.Fatalf("member_info_update reply: %v", up)
	}
	ch := e.edge.waitPush(t, "x", x.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_member_info_changed))
	if ch.ConvMessage.GetInfo().GetPid() != "mgr" || ch.ConvMessage.GetInfo().GetRole() != "Manager" || ch.ConvMessage.GetInitBy() != "owner" || ch.GetService() != 2 {
		t.Fatalf("member_info_changed: %v", ch)
	}

	// Shutup: the Manager mutes x and tries the Owner.
	su := mustOK(t, conv(m, lcpb.OpType_add_shutup, "x", "owner"))
	if su.GetOp() != lcpb.OpType_shutup_added || len(su.ConvMessage.AllowedPids) != 1 || su.ConvMessage.AllowedPids[0] != "x" ||
		len(su.ConvMessage.FailedPids) != 1 || su.ConvMessage.FailedPids[0].GetCode() != codeOperationUnauthorized || su.ConvMessage.FailedPids[0].Pids[0] != "owner" {
		t.Fatalf("shutup_added: %v", su)
	}
	e.edge.waitPush(t, "x", x.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_shutuped))
	ms := e.edge.waitPush(t, "y", y.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_members_shutuped))
	if len(ms.ConvMessage.M) != 1 || ms.ConvMessage.M[0] != "x" || ms.ConvMessage.GetInitBy() != "mgr" {
		t.Fatalf("members_shutuped: %v", ms)
	}
	e.edge.waitPush(t, "x", x.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_members_shutuped))
	wantError(t, x.sendText(cid, "hi"), codeSilenced)
	wantError(t, x.direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("t"), Transient: proto.Bool(true)}), codeSilenced)
	if logs := o.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}); len(logs) != 0 {
		t.Fatalf("a muted member's message was stored: %v", logs)
	}
	mustOK(t, conv(o, lcpb.OpType_add_shutup, "y"))
	q := mustOK(t, o.do(convCmd(lcpb.OpType_query_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), Limit: proto.Int32(1)})))
	if q.GetOp() != lcpb.OpType_shutup_result || len(q.ConvMessage.M) != 1 || q.ConvMessage.M[0] != "x" || q.ConvMessage.GetNext() != "1" {
		t.Fatalf("shutup_result page 1: %v", q)
	}
	q = mustOK(t, o.do(convCmd(lcpb.OpType_query_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), Limit: proto.Int32(1), Next: proto.String("1")})))
	if len(q.ConvMessage.M) != 1 || q.ConvMessage.M[0] != "y" || q.ConvMessage.Next != nil {
		t.Fatalf("shutup_result page 2: %v", q)
	}
	chk := mustOK(t, y.do(convCmd(lcpb.OpType_check_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"x", "mgr"}})))
	if chk.GetOp() != lcpb.OpType_check_result || len(chk.ConvMessage.M) != 1 || chk.ConvMessage.M[0] != "x" {
		t.Fatalf("check_shutup: %v", chk)
	}
	un := mustOK(t, conv(o, lcpb.OpType_remove_shutup, "x", "y"))
	if un.GetOp() != lcpb.OpType_shutup_removed || len(un.ConvMessage.AllowedPids) != 2 {
		t.Fatalf("shutup_removed: %v", un)
	}
	e.edge.waitPush(t, "x", x.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_unshutuped))
	mustOK(t, x.sendText(cid, "free"))

	// Blacklist: the reply is on cmd:blacklist; blocking removes.
	b := mustOK(t, bl(m, lcpb.OpType_block, "x", "owner"))
	if b.GetCmd() != lcpb.CommandType_blacklist || b.GetOp() != lcpb.OpType_blocked || b.BlacklistMessage.GetSrcCid() != cid ||
		len(b.BlacklistMessage.AllowedPids) != 1 || b.BlacklistMessage.FailedPids[0].Pids[0] != "owner" {
		t.Fatalf("blacklist/blocked: %v", b)
	}
	e.edge.waitPush(t, "x", x.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_blocked))
	mb := e.edge.waitPush(t, "y", y.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_members_blocked))
	if len(mb.ConvMessage.M) != 1 || mb.ConvMessage.M[0] != "x" {
		t.Fatalf("members_blocked: %v", mb)
	}
	if got := members(); len(got) != 3 || contains(got, "x") {
		t.Fatalf("members after block: %v", got)
	}
	join := mustOK(t, conv(x, lcpb.OpType_add))
	if len(join.ConvMessage.AllowedPids) != 0 || join.ConvMessage.FailedPids[0].GetCode() != lcpb.ErrConversationBlacklisted {
		t.Fatalf("blocked join: %v", join)
	}
	add := mustOK(t, conv(y, lcpb.OpType_add, "x"))
	if len(add.ConvMessage.FailedPids) != 1 || add.ConvMessage.FailedPids[0].GetCode() != lcpb.ErrConversationBlacklisted {
		t.Fatalf("blocked add: %v", add)
	}
	if got := members(); len(got) != 3 {
		t.Fatalf("members after refused adds: %v", got)
	}
	bq := mustOK(t, bl(o, lcpb.OpType_query))
	if bq.GetCmd() != lcpb.CommandType_blacklist || bq.GetOp() != lcpb.OpType_query_result || len(bq.BlacklistMessage.BlockedPids) != 1 || bq.BlacklistMessage.Next != nil {
		t.Fatalf("blacklist/query_result: %v", bq)
	}
	cb := mustOK(t, bl(o, lcpb.OpType_check_block, "x", "y"))
	if cb.GetOp() != lcpb.OpType_check_result || len(cb.BlacklistMessage.BlockedPids) != 1 || cb.BlacklistMessage.BlockedPids[0] != "x" {
		t.Fatalf("blacklist/check_result: %v", cb)
	}
	ub := mustOK(t, bl(o, lcpb.OpType_unblock, "x"))
	if ub.GetCmd() != lcpb.CommandType_blacklist || ub.GetOp() != lcpb.OpType_unblocked {
		t.Fatalf("blacklist/unblocked: %v", ub)
	}
	e.edge.waitPush(t, "x", x.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_unblocked))
	mustOK(t, conv(x, lcpb.OpType_add))
	if got := members(); len(got) != 4 {
		t.Fatalf("members after unblock and join: %v", got)
	}
	// The Manager kicks a Member but not the Owner.
	k := mustOK(t, conv(m, lcpb.OpType_remove, "y", "owner"))
	if len(k.ConvMessage.AllowedPids) != 1 || k.ConvMessage.AllowedPids[0] != "y" || k.ConvMessage.FailedPids[0].GetCode() != codeOperationUnauthorized {
		t.Fatalf("manager kick: %v", k)
	}
}
