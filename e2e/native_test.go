package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// The native LeanCloud SDKs (Android, iOS) cannot run here, so this test
// speaks their protocol by hand against a real relaymesh dev and checks the
// points of the checklist at the end of NATIVE-SDKS.md that break them.

func (r *raw) open(t *testing.T, ctx context.Context, app, peer, tag string, i *int32) *lcpb.GenericCommand {
	t.Helper()
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: i,
		AppId: proto.String(app), PeerId: proto.String(peer),
		SessionMessage: &lcpb.SessionCommand{Ua: proto.String("LeanCloud-Java-SDK/8.2.28"), ConfigBitmap: proto.Int64(175), Tag: strPtr(tag)}})
	c := r.next(ctx)
	if c.GetCmd() != lcpb.CommandType_session || c.GetOp() != lcpb.OpType_opened {
		t.Fatalf("open %s: got %v/%v %v", peer, c.GetCmd(), c.GetOp(), c.GetErrorMessage())
	}
	return c
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// do sends a request with id i and returns the next non-unread frame,
// checking that it echoes i and names the peer.
func (r *raw) do(t *testing.T, ctx context.Context, peer string, i int32, c *lcpb.GenericCommand) *lcpb.GenericCommand {
	t.Helper()
	c.I = proto.Int32(i)
	r.send(ctx, c)
	rep := r.next(ctx)
	if rep.I == nil || *rep.I != i {
		t.Fatalf("%v/%v: reply i = %v, want %d (echo by presence, negatives too)", c.GetCmd(), c.GetOp(), rep.I, i)
	}
	if rep.GetPeerId() != peer {
		t.Fatalf("%v/%v: reply peerId = %q, want %q", c.GetCmd(), c.GetOp(), rep.GetPeerId(), peer)
	}
	if rep.GetCmd() == lcpb.CommandType_error {
		t.Fatalf("%v/%v: error %v", c.GetCmd(), c.GetOp(), rep.GetErrorMessage())
	}
	return rep
}

// push waits for the next push (no i) and checks service=2 and peerId.
func (r *raw) push(t *testing.T, ctx context.Context, peer string) *lcpb.GenericCommand {
	t.Helper()
	c := r.next(ctx)
	if c.I != nil {
		t.Fatalf("push %v/%v carries i=%d", c.GetCmd(), c.GetOp(), c.GetI())
	}
	if c.GetService() != lcpb.ServiceIM {
		t.Fatalf("push %v/%v: service %d, want 2 (Swift/OC drop it otherwise)", c.GetCmd(), c.GetOp(), c.GetService())
	}
	if c.GetPeerId() != peer {
		t.Fatalf("push %v/%v: peerId %q, want %q", c.GetCmd(), c.GetOp(), c.GetPeerId(), peer)
	}
	return c
}

func wantOp(t *testing.T, what string, c *lcpb.GenericCommand, cmd lcpb.CommandType, op lcpb.OpType) {
	t.Helper()
	if c.GetCmd() != cmd || c.GetOp() != op {
		t.Fatalf("%s: got %v/%v, want %v/%v (Java completes only on the exact op)", what, c.GetCmd(), c.GetOp(), cmd, op)
	}
}

func TestNativeSDKChecklist(t *testing.T) {
	p := startDev(t, t.TempDir(), freeAddr(t), "--ops-per-minute", "-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const app = "native-app"

	a, resp, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	// 1, 2: the exact subprotocol echoed, no compression extension.
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != lcpb.SubprotocolBinary3 {
		t.Fatalf("Sec-WebSocket-Protocol = %q", got)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("server negotiated %q; OC rejects RSV bits", ext)
	}
	// 6: Java's Push login before any session: no reply, not closed.
	a.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_login.Enum(), AppId: proto.String(app), InstallationId: proto.String("inst-1")})
	// 10: session/opened carries peerId, st, stTtl, serverTs; i echoed even when 0.
	op := a.open(t, ctx, app, "alice", "", proto.Int32(0))
	if op.I == nil || *op.I != 0 || op.GetPeerId() != "alice" || op.GetSessionMessage().GetSt() == "" ||
		op.GetSessionMessage().GetStTtl() <= 0 || op.GetServerTs() <= 0 {
		t.Fatalf("session/opened = %v", op)
	}
	st := op.GetSessionMessage().GetSt()
	// 3: WebSocket ping answered with pong.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	pingDone := make(chan error, 1)
	go func() { pingDone <- a.ws.Ping(pctx) }()

	b, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	b.open(t, ctx, app, "bob", "phone", proto.Int32(1))

	// 12, 18: conv/start -> started with cid, cdate, uniqueId, existing; i negative.
	start := func(i int32) *lcpb.GenericCommand {
		return a.do(t, ctx, "alice", i, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_start.Enum(),
			ConvMessage: &lcpb.ConvCommand{M: []string{"alice", "bob"}, Unique: proto.Bool(true),
				Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"name":"native"}`)}}})
	}
	st1 := start(-3)
	wantOp(t, "conv/start", st1, lcpb.CommandType_conv, lcpb.OpType_started)
	cm := st1.GetConvMessage()
	cid := cm.GetCid()
	if cid == "" || cm.GetCdate() == "" || cm.GetUniqueId() == "" || cm.Existing == nil || cm.GetExisting() {
		t.Fatalf("started = %v", cm)
	}
	// The pending Ping finishes while a reads; the invitee gets joined.
	joined := b.push(t, ctx, "bob")
	wantOp(t, "invitee push", joined, lcpb.CommandType_conv, lcpb.OpType_joined)
	if joined.GetConvMessage().GetCid() != cid || joined.GetConvMessage().GetInitBy() != "alice" || joined.GetServerTs() <= 0 {
		t.Fatalf("joined push = %v", joined.GetConvMessage())
	}
	again := start(-65535)
	if again.GetConvMessage().GetCid() != cid || !again.GetConvMessage().GetExisting() {
		t.Fatalf("second unique start = %v, want existing %s", again.GetConvMessage(), cid)
	}
	if err := <-pingDone; err != nil {
		t.Fatalf("WebSocket ping not answered: %v", err)
	}
	pcancel()

	// 17: conv/query rows: objectId, ISO createdAt strings, lm as a Date object, boolean flags.
	q := a.do(t, ctx, "alice", 4, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_query.Enum(),
		ConvMessage: &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(`{"objectId":{"$in":["` + cid + `"]}}`)}}})
	wantOp(t, "conv/query", q, lcpb.CommandType_conv, lcpb.OpType_results)
	var rows []map[string]any
	if err := json.Unmarshal([]byte(q.GetConvMessage().GetResults().GetData()), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("results = %q (%v)", q.GetConvMessage().GetResults().GetData(), err)
	}
	row := rows[0]
	if row["objectId"] != cid {
		t.Fatalf("row objectId = %v", row["objectId"])
	}
	if s, ok := row["createdAt"].(string); !ok || len(s) != len("2006-01-02T15:04:05.000Z") || s[len(s)-1] != 'Z' {
		t.Fatalf("createdAt = %#v, want an ISO string (Java casts it to String)", row["createdAt"])
	}

	// 12, 13: update -> updated{udate, attrModified}; others get updated{attr, attrModified}.
	up := a.do(t, ctx, "alice", 5, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_update.Enum(),
		ConvMessage: &lcpb.ConvCommand{Cid: proto.String(cid), Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"attr.color":"red","name":"renamed"}`)}}})
	wantOp(t, "conv/update", up, lcpb.CommandType_conv, lcpb.OpType_updated)
	var mod map[string]any
	if err := json.Unmarshal([]byte(up.GetConvMessage().GetAttrModified().GetData()), &mod); err != nil ||
		up.GetConvMessage().GetUdate() == "" || mod["name"] != "renamed" {
		t.Fatalf("updated reply = %v (%v)", up.GetConvMessage(), err)
	}
	if attr, ok := mod["attr"].(map[string]any); !ok || attr["color"] != "red" {
		t.Fatalf("attrModified = %v, want nested {\"attr\":{\"color\":\"red\"}}", mod)
	}
	upd := b.push(t, ctx, "bob")
	wantOp(t, "updated push", upd, lcpb.CommandType_conv, lcpb.OpType_updated)
	if upd.GetConvMessage().GetAttr().GetData() == "" || upd.GetConvMessage().GetAttrModified().GetData() == "" {
		t.Fatalf("updated push lacks attr/attrModified: %v", upd.GetConvMessage())
	}
	// mute/unmute -> updated; count -> result{count}.
	for _, o := range []lcpb.OpType{lcpb.OpType_mute, lcpb.OpType_unmute} {
		wantOp(t, o.String(), a.do(t, ctx, "alice", 6, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: o.Enum(),
			ConvMessage: &lcpb.ConvCommand{Cid: proto.String(cid)}}), lcpb.CommandType_conv, lcpb.OpType_updated)
	}
	cnt := a.do(t, ctx, "alice", 7, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_count.Enum(),
		ConvMessage: &lcpb.ConvCommand{Cid: proto.String(cid)}})
	wantOp(t, "conv/count", cnt, lcpb.CommandType_conv, lcpb.OpType_result)
	if cnt.GetConvMessage().Count == nil || cnt.GetConvMessage().GetCount() != 2 {
		t.Fatalf("count = %v", cnt.GetConvMessage())
	}

	// direct -> ack{uid,t}; the push has cid, id, timestamp, msg, service, peerId.
	ack := a.do(t, ctx, "alice", 8, &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(`{"_lctype":-1,"_lctext":"hi"}`), Dt: proto.String("dt-1")}})
	if ack.GetCmd() != lcpb.CommandType_ack || ack.Op != nil {
		t.Fatalf("direct: got %v/%v, want ack with no op", ack.GetCmd(), ack.Op)
	}
	mid, mts := ack.GetAckMessage().GetUid(), ack.GetAckMessage().GetT()
	if mid == "" || mts <= 0 {
		t.Fatalf("ack = %v", ack.GetAckMessage())
	}
	dp := b.push(t, ctx, "bob")
	if d := dp.GetDirectMessage(); dp.GetCmd() != lcpb.CommandType_direct || d.GetId() != mid || d.GetCid() != cid ||
		d.GetTimestamp() != mts || d.GetMsg() == "" || d.GetFromPeerId() != "alice" {
		t.Fatalf("direct push = %v", dp)
	}
	// 19: Java/Swift ack (cid, mid) without i: no reply at all.
	b.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), PeerId: proto.String("bob"),
		AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Mid: proto.String(mid)}})
	// A resend with the same dt is deduplicated: the same uid and t.
	dup := a.do(t, ctx, "alice", 9, &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(`{"_lctype":-1,"_lctext":"hi"}`), Dt: proto.String("dt-1")}})
	if dup.GetAckMessage().GetUid() != mid || dup.GetAckMessage().GetT() != mts {
		t.Fatalf("resend with the same dt: ack %v, want uid %s t %d", dup.GetAckMessage(), mid, mts)
	}

	// 16: logs honours `limit` (Java/Swift) and treats t=0/tt=0 as unbounded; far-future t works.
	for _, lc := range []*lcpb.LogsCommand{
		{Cid: proto.String(cid), Limit: proto.Int32(10), T: proto.Int64(0), Tt: proto.Int64(0)},
		{Cid: proto.String(cid), L: proto.Int32(10), T: proto.Int64(64092211200000)},
	} {
		lg := a.do(t, ctx, "alice", 10, &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: lc})
		if lg.GetCmd() != lcpb.CommandType_logs || lg.LogsMessage == nil || len(lg.LogsMessage.Logs) != 1 ||
			lg.LogsMessage.Logs[0].GetMsgId() != mid {
			t.Fatalf("logs %v -> %v", lc, lg)
		}
	}

	// 12, 21: patch/modify -> modified{lastPatchTime}; a recall push carries
	// data {"_lctype":-127}, from and patchTimestamp, one item.
	pm := a.do(t, ctx, "alice", 11, &lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
		PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{{Cid: proto.String(cid), Mid: proto.String(mid),
			Timestamp: proto.Int64(mts), Recall: proto.Bool(true)}}}})
	wantOp(t, "patch/modify", pm, lcpb.CommandType_patch, lcpb.OpType_modified)
	if pm.GetPatchMessage().GetLastPatchTime() <= 0 {
		t.Fatalf("modified without lastPatchTime: %v", pm.GetPatchMessage())
	}
	rp := b.push(t, ctx, "bob")
	wantOp(t, "recall push", rp, lcpb.CommandType_patch, lcpb.OpType_modify)
	if items := rp.GetPatchMessage().GetPatches(); len(items) != 1 || items[0].GetData() != `{"_lctype":-127}` ||
		items[0].GetFrom() != "alice" || items[0].GetPatchTimestamp() <= 0 || !items[0].GetRecall() {
		t.Fatalf("recall push = %v", rp.GetPatchMessage())
	}

	// 12: session/query -> query_result.
	sq := a.do(t, ctx, "alice", 12, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_query.Enum(),
		SessionMessage: &lcpb.SessionCommand{SessionPeerIds: []string{"bob", "carol"}}})
	wantOp(t, "session/query", sq, lcpb.CommandType_session, lcpb.OpType_query_result)
	if got := sq.GetSessionMessage().GetOnlineSessionPeerIds(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("online = %v", got)
	}
	// 12: session/refresh -> refreshed{st, stTtl}.
	rf := a.do(t, ctx, "alice", 13, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refresh.Enum(),
		SessionMessage: &lcpb.SessionCommand{St: proto.String(st)}})
	wantOp(t, "session/refresh", rf, lcpb.CommandType_session, lcpb.OpType_refreshed)
	if rf.GetSessionMessage().GetSt() == "" || rf.GetSessionMessage().GetStTtl() <= 0 {
		t.Fatalf("refreshed = %v", rf.GetSessionMessage())
	}

	// 10, 11: Java reopens with st only, no i and no tag: answered without i,
	// tag recovered from st; a bad st gets cmd:error 4112.
	b2, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	b2.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
		AppId: proto.String(app), PeerId: proto.String("bob"), SessionMessage: &lcpb.SessionCommand{St: proto.String("garbage"), R: proto.Bool(true)}})
	wantError(t, "bad st", b2.next(ctx), lcpb.ErrSessionTokenExpired, nil)
	b2.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
		AppId: proto.String(app), PeerId: proto.String("alice"), SessionMessage: &lcpb.SessionCommand{St: proto.String(st), R: proto.Bool(true)}})
	if re := b2.next(ctx); re.GetOp() != lcpb.OpType_opened || re.I != nil || re.GetPeerId() != "alice" {
		t.Fatalf("st-only reopen without i: got %v/%v i=%v peer %q", re.GetCmd(), re.GetOp(), re.I, re.GetPeerId())
	}

	// 11: a second login with bob's tag kicks the first with session/closed{4111}.
	b3, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	b3.open(t, ctx, app, "bob", "phone", proto.Int32(1))
	kick := b.push(t, ctx, "bob")
	wantOp(t, "tag kick", kick, lcpb.CommandType_session, lcpb.OpType_closed)
	if kick.GetSessionMessage().GetCode() != lcpb.ErrSessionConflict {
		t.Fatalf("kick = %v", kick.GetSessionMessage())
	}
	// 11: session/close is answered with closed and NO code (Java would log out).
	cl := a.do(t, ctx, "alice", 14, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum()})
	wantOp(t, "session/close", cl, lcpb.CommandType_session, lcpb.OpType_closed)
	if cl.GetSessionMessage().Code != nil {
		t.Fatalf("close reply carries code %d", cl.GetSessionMessage().GetCode())
	}
	_ = websocket.StatusNormalClosure
}

// TestNativeModerationAndReceipts checks the reply and push shapes of issue
// 4's features that only native SDKs depend on: the delivered rcp after a
// Java (cid, mid) ack has no read field, the exact moderation reply ops
// (shutup_* and blacklist/* on cmd:blacklist), numeric next cursors,
// member_info_changed roles spelled as Swift matches them, and the
// Swift-only check_shutup and check_block.
func TestNativeModerationAndReceipts(t *testing.T) {
	p := startDev(t, t.TempDir(), freeAddr(t), "--ops-per-minute", "-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const app = "native-mod"
	a, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	a.open(t, ctx, app, "alice", "", proto.Int32(1))
	b, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	b.open(t, ctx, app, "bob", "", proto.Int32(1))
	conv := func(op lcpb.OpType, cm *lcpb.ConvCommand) *lcpb.GenericCommand {
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm}
	}
	started := a.do(t, ctx, "alice", 2, conv(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"alice", "bob"}}))
	cid := started.GetConvMessage().GetCid()
	wantOp(t, "joined", b.push(t, ctx, "bob"), lcpb.CommandType_conv, lcpb.OpType_joined)

	// Receipts: Java acks (cid, mid) with no i; read carries an i but gets no reply.
	ack := a.do(t, ctx, "alice", 3, &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("r?"), R: proto.Bool(true)}})
	mid := ack.GetAckMessage().GetUid()
	if d := b.push(t, ctx, "bob"); d.GetDirectMessage().GetId() != mid {
		t.Fatalf("direct push = %v", d)
	}
	b.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), PeerId: proto.String("bob"),
		AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Mid: proto.String(mid)}})
	rcp := a.push(t, ctx, "alice")
	if rcp.GetCmd() != lcpb.CommandType_rcp || rcp.GetRcpMessage().Read != nil || rcp.GetRcpMessage().GetId() != mid ||
		rcp.GetRcpMessage().GetCid() != cid || rcp.GetRcpMessage().GetT() <= 0 || rcp.GetServerTs() <= 0 {
		t.Fatalf("delivered rcp = %v (Java: read must be absent)", rcp)
	}
	b.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum(), I: proto.Int32(4), PeerId: proto.String("bob"),
		ReadMessage: &lcpb.ReadCommand{Convs: []*lcpb.ReadTuple{{Cid: proto.String(cid), Mid: proto.String(mid)}}}})
	if rcp := a.push(t, ctx, "alice"); rcp.GetCmd() != lcpb.CommandType_rcp || !rcp.GetRcpMessage().GetRead() || rcp.GetRcpMessage().GetFrom() != "bob" {
		t.Fatalf("read rcp = %v", rcp)
	}

	// Roles: member_info_updated; the push spells the role exactly.
	up := a.do(t, ctx, "alice", 5, conv(lcpb.OpType_member_info_update, &lcpb.ConvCommand{Cid: proto.String(cid),
		TargetClientId: proto.String("bob"), Info: &lcpb.ConvMemberInfo{Pid: proto.String("bob"), Role: proto.String("Manager")}}))
	wantOp(t, "member_info_update", up, lcpb.CommandType_conv, lcpb.OpType_member_info_updated)
	ch := b.push(t, ctx, "bob")
	wantOp(t, "role push", ch, lcpb.CommandType_conv, lcpb.OpType_member_info_changed)
	if ch.GetConvMessage().GetInfo().GetRole() != "Manager" || ch.GetConvMessage().GetInfo().GetPid() != "bob" || ch.GetServerTs() <= 0 {
		t.Fatalf("member_info_changed = %v", ch.GetConvMessage())
	}

	// Shutup: exact ops, numeric next, Swift's check_shutup, the muted send refused.
	su := a.do(t, ctx, "alice", 6, conv(lcpb.OpType_add_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}))
	wantOp(t, "add_shutup", su, lcpb.CommandType_conv, lcpb.OpType_shutup_added)
	if got := su.GetConvMessage().GetAllowedPids(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("shutup_added allowedPids = %v", got)
	}
	wantOp(t, "shutuped", b.push(t, ctx, "bob"), lcpb.CommandType_conv, lcpb.OpType_shutuped)
	wantOp(t, "members_shutuped", b.push(t, ctx, "bob"), lcpb.CommandType_conv, lcpb.OpType_members_shutuped)
	q := a.do(t, ctx, "alice", 7, conv(lcpb.OpType_query_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), Limit: proto.Int32(1)}))
	wantOp(t, "query_shutup", q, lcpb.CommandType_conv, lcpb.OpType_shutup_result)
	if m := q.GetConvMessage().GetM(); len(m) != 1 || m[0] != "bob" || q.GetConvMessage().Next != nil {
		t.Fatalf("shutup_result = %v", q.GetConvMessage())
	}
	chk := b.do(t, ctx, "bob", 8, conv(lcpb.OpType_check_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}))
	if m := chk.GetConvMessage().GetM(); len(m) != 1 || m[0] != "bob" {
		t.Fatalf("check_shutup = %v", chk)
	}
	b.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(9),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("muted")}})
	if e := b.next(ctx); e.GetCmd() != lcpb.CommandType_error || e.GetErrorMessage().GetCode() != 4563 || e.GetI() != 9 {
		t.Fatalf("muted send = %v, want error 4563", e)
	}

	// Blacklist: replies on cmd:blacklist; the blocked client is told on cmd:conv.
	bl := func(i int32, op lcpb.OpType, pids ...string) *lcpb.GenericCommand {
		return a.do(t, ctx, "alice", i, &lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: op.Enum(),
			BlacklistMessage: &lcpb.BlacklistCommand{SrcCid: proto.String(cid), ToPids: pids}})
	}
	blk := bl(10, lcpb.OpType_block, "bob")
	wantOp(t, "block", blk, lcpb.CommandType_blacklist, lcpb.OpType_blocked)
	if blk.GetBlacklistMessage().GetSrcCid() != cid || len(blk.GetBlacklistMessage().GetAllowedPids()) != 1 {
		t.Fatalf("blacklist/blocked = %v", blk.GetBlacklistMessage())
	}
	wantOp(t, "blocked push", b.push(t, ctx, "bob"), lcpb.CommandType_conv, lcpb.OpType_blocked)
	cb := bl(11, lcpb.OpType_check_block, "bob")
	wantOp(t, "check_block", cb, lcpb.CommandType_blacklist, lcpb.OpType_check_result)
	if got := cb.GetBlacklistMessage().GetBlockedPids(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("check_block blockedPids = %v", got)
	}
	qr := bl(12, lcpb.OpType_query)
	wantOp(t, "blacklist query", qr, lcpb.CommandType_blacklist, lcpb.OpType_query_result)
	if got := qr.GetBlacklistMessage().GetBlockedPids(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("query_result blockedPids = %v", got)
	}
	wantOp(t, "unblock", bl(13, lcpb.OpType_unblock, "bob"), lcpb.CommandType_blacklist, lcpb.OpType_unblocked)
	wantOp(t, "unblocked push", b.push(t, ctx, "bob"), lcpb.CommandType_conv, lcpb.OpType_unblocked)
}
