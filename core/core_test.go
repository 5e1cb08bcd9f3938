package core

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func TestStartUniqueAndJoinedPush(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)

	s1 := a.start([]string{"alice", "bob"}, `{"name":"AB","color":"red"}`, true)
	if s1.GetOp() != lcpb.OpType_started || s1.ConvMessage.GetCid() == "" || s1.ConvMessage.GetExisting() {
		t.Fatalf("first start: got %v", s1)
	}
	if len(s1.ConvMessage.GetCdate()) != len("2006-01-02T15:04:05.000Z") {
		t.Fatalf("cdate: got %q", s1.ConvMessage.GetCdate())
	}
	cid := s1.ConvMessage.GetCid()
	j := e.edge.waitPush(t, "bob", b.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_joined))
	if j.ConvMessage.GetCid() != cid || j.ConvMessage.GetInitBy() != "alice" || j.GetService() != lcpb.ServiceIM || j.GetPeerId() != "bob" || j.ServerTs == nil || j.I != nil {
		t.Fatalf("joined push: got %v", j)
	}
	e.edge.noPush(t, e.core, "alice", a.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_joined))

	s2 := b.start([]string{"alice"}, "", true)
	if s2.ConvMessage.GetCid() != cid || !s2.ConvMessage.GetExisting() {
		t.Fatalf("second unique start: got cid %q existing %v, want %q true", s2.ConvMessage.GetCid(), s2.ConvMessage.GetExisting(), cid)
	}

	// Query by objectId: row shape as the SDKs parse it.
	q := mustOK(t, b.do(convCmd(lcpb.OpType_query, &lcpb.ConvCommand{
		Where: &lcpb.JsonObjectMessage{Data: proto.String(`{"objectId":"` + cid + `"}`)}})))
	if q.GetOp() != lcpb.OpType_results {
		t.Fatalf("query op: got %v", q.GetOp())
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(q.ConvMessage.Results.GetData()), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("rows: %v %s", err, q.ConvMessage.Results.GetData())
	}
	row := rows[0]
	if row["objectId"] != cid || row["name"] != "AB" || row["color"] != "red" || row["c"] != "alice" || row["tr"] != false || row["unique"] != true {
		t.Fatalf("row: got %v", row)
	}
	if m, _ := row["m"].([]any); len(m) != 2 {
		t.Fatalf("row m: got %v", row["m"])
	}
}

func TestQueryWhereSortLimit(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	var cids []string
	for i, m := range [][]string{{"bob"}, {"bob", "carol"}, {"carol"}} {
		attr := `{"name":"c` + string(rune('0'+i)) + `","attr":{"kind":"group"}}`
		cids = append(cids, a.start(m, attr, false).ConvMessage.GetCid())
	}
	mustOK(t, a.sendText(cids[0], "x")) // cids[0] has the latest lm
	query := func(where, sort string, limit int32, flag int32) []map[string]any {
		cm := &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(where)}, Flag: proto.Int32(flag)}
		if sort != "" {
			cm.Sort = proto.String(sort)
		}
		if limit > 0 {
			cm.Limit = proto.Int32(limit)
		}
		g := mustOK(t, a.do(convCmd(lcpb.OpType_query, cm)))
		var rows []map[string]any
		if err := json.Unmarshal([]byte(g.ConvMessage.Results.GetData()), &rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	ids := func(rows []map[string]any) []string {
		var out []string
		for _, r := range rows {
			out = append(out, r["objectId"].(string))
		}
		return out
	}
	tests := []struct {
		name, where, sort string
		limit             int32
		want              []string
	}{
		{"m $all", `{"m":{"$all":["alice","carol"]}}`, "createdAt", 0, []string{cids[1], cids[2]}},
		{"m $in", `{"m":{"$in":["bob"]}}`, "createdAt", 0, []string{cids[0], cids[1]}},
		{"objectId $in", `{"objectId":{"$in":["` + cids[2] + `","` + cids[0] + `"]}}`, "-createdAt", 0, []string{cids[2], cids[0]}},
		{"name", `{"name":"c1"}`, "", 0, []string{cids[1]}},
		{"nested attr", `{"attr.kind":"group","m":"carol"}`, "-createdAt", 0, []string{cids[2], cids[1]}},
		{"default sort -lm", `{"m":"alice"}`, "", 1, []string{cids[0]}},
		{"tr false", `{"tr":false,"name":{"$in":["c0","c2"]}}`, "name", 0, []string{cids[0], cids[2]}},
		{"limit", `{}`, "createdAt", 2, []string{cids[0], cids[1]}},
		{"m $size", `{"m":{"$size":3}}`, "", 0, []string{cids[1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(query(tt.where, tt.sort, tt.limit, 0))
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
	rows := query(`{"objectId":"`+cids[0]+`"}`, "", 0, 1)
	if _, ok := rows[0]["m"]; ok {
		t.Fatal("compact row has m")
	}
	lm, _ := rows[0]["lm"].(map[string]any)
	if lm["__type"] != "Date" || rows[0]["msg"] != "x" || rows[0]["msg_from"] != "alice" || rows[0]["msg_mid"] == nil {
		t.Fatalf("last message fields: got %v", rows[0])
	}
	g := mustOK(t, a.do(convCmd(lcpb.OpType_query, &lcpb.ConvCommand{TempConvIds: []string{"_tmp:x"}})))
	if g.ConvMessage.Results.GetData() != "[]" {
		t.Fatalf("tempConvIds: got %s", g.ConvMessage.Results.GetData())
	}
}

func TestDirectAckAndFanout(t *testing.T) {
	e := newEnv(t)
	a, a2, b, z := e.client("alice"), e.client("alice"), e.client("bob"), e.client("zed")
	for _, c := range []*client{a, a2, b, z} {
		c.open("", false, 0)
	}
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	ack := mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{
		Cid: proto.String(cid), Msg: proto.String("hello"), MentionPids: []string{"bob"}, Dt: proto.String("dt-1")}}))
	if ack.GetCmd() != lcpb.CommandType_ack || ack.AckMessage.GetUid() == "" || ack.AckMessage.GetT() == 0 {
		t.Fatalf("ack: got %v", ack)
	}
	isDirect := func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_direct }
	d := e.edge.waitPush(t, "bob", b.conn, isDirect)
	dm := d.DirectMessage
	// peerId: the delivery also targets alice's other session, so the edge fills it.
	if d.GetService() != 2 || dm.GetId() != ack.AckMessage.GetUid() || dm.GetTimestamp() != ack.AckMessage.GetT() ||
		dm.GetCid() != cid || dm.GetFromPeerId() != "alice" || dm.GetMsg() != "hello" || dm.GetConvType() != 1 || len(dm.MentionPids) != 1 {
		t.Fatalf("direct push: got %v", d)
	}
	e.edge.waitPush(t, "alice", a2.conn, isDirect) // sender's other session
	e.edge.noPush(t, e.core, "alice", a.conn, isDirect)
	e.edge.noPush(t, e.core, "zed", z.conn, isDirect)

	// Resend with the same dt: same uid and t, no second push.
	again := mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{
		Cid: proto.String(cid), Msg: proto.String("hello"), Dt: proto.String("dt-1")}}))
	if again.AckMessage.GetUid() != ack.AckMessage.GetUid() || again.AckMessage.GetT() != ack.AckMessage.GetT() {
		t.Fatalf("dedup: got %v, want %v", again.AckMessage, ack.AckMessage)
	}
	if got := e.edge.settle(t, e.core, "bob", b.conn); len(got) != 2 { // joined + one direct
		t.Fatalf("bob got %d pushes, want 2 (joined, one direct): %v", len(got), got)
	}

	// Non-member and unknown conversation: 4401.
	wantError(t, z.sendText(cid, "hi"), lcpb.ErrInvalidMessagingTarget)
	wantError(t, z.sendText("nope", "hi"), lcpb.ErrInvalidMessagingTarget)

	// Transient: acked, pushed, not stored.
	tr := mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{
		Cid: proto.String(cid), Msg: proto.String("typing"), Transient: proto.Bool(true)}}))
	if tr.AckMessage.GetUid() == "" {
		t.Fatalf("transient ack: %v", tr)
	}
	e.edge.waitPush(t, "bob", b.conn, func(g *lcpb.GenericCommand) bool { return g.GetDirectMessage().GetTransient() })
	if logs := b.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}); len(logs) != 1 {
		t.Fatalf("history after transient: got %d, want 1", len(logs))
	}
}

func TestLogsPaging(t *testing.T) {
	e := newEnv(t)
	a, b, z := e.client("alice"), e.client("bob"), e.client("zed")
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	var ts []int64
	var ids []string
	for i := 0; i < 30; i++ {
		text := `{"_lctype":-1,"_lctext":"m"}`
		if i%10 == 0 {
			text = `{"_lctype":-2}`
		}
		ack := mustOK(t, a.sendText(cid, text))
		ts = append(ts, ack.AckMessage.GetT())
		ids = append(ids, ack.AckMessage.GetUid())
	}
	check := func(name string, got []*lcpb.LogItem, want []int64) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: got %d items, want %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i].GetTimestamp() != want[i] {
				t.Fatalf("%s: item %d t=%d, want %d", name, i, got[i].GetTimestamp(), want[i])
			}
		}
	}
	check("default 20 latest", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}), ts[10:])
	check("l=5", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), L: proto.Int32(5)}), ts[25:])
	check("limit=5 before t", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(5), T: proto.Int64(ts[10]), Mid: proto.String(ids[10])}), ts[5:10])
	check("tIncluded", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(5), T: proto.Int64(ts[10]), TIncluded: proto.Bool(true)}), ts[6:11])
	check("far future", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(2), T: proto.Int64(64092211200000)}), ts[28:])
	check("t=0 tt=0", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(2), T: proto.Int64(0), Tt: proto.Int64(0)}), ts[28:])
	newer := lcpb.LogsCommand_NEW.Enum()
	check("NEW from start", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(3), Direction: newer}), ts[:3])
	check("NEW after t to tt", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(10), Direction: newer,
		T: proto.Int64(ts[3]), Tt: proto.Int64(ts[7]), TtIncluded: proto.Bool(true)}), ts[4:8])
	check("OLD to tt", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100), T: proto.Int64(ts[7]), Tt: proto.Int64(ts[3])}), ts[4:7])
	check("lctype", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Lctype: proto.Int32(-2)}), []int64{ts[0], ts[10], ts[20]})
	check("limit 1000 capped", b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(1000)}), ts)
	item := b.logs(&lcpb.LogsCommand{Cid: proto.String(cid), L: proto.Int32(1)})[0]
	if item.GetMsgId() != ids[29] || item.GetFrom() != "alice" || item.GetConvType() != 1 {
		t.Fatalf("log item: got %v", item)
	}
	wantError(t, z.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid)}}), lcpb.ErrConversationLogRejected)
}

func TestPatchRecallAndEdit(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	m1 := mustOK(t, a.sendText(cid, "one")).AckMessage
	m2 := mustOK(t, a.sendText(cid, "two")).AckMessage
	patch := func(c *client, mid string, t0 int64, recall bool, data string) *lcpb.GenericCommand {
		it := &lcpb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(t0), Recall: proto.Bool(recall)}
		if data != "" {
			it.Data = proto.String(data)
		}
		return c.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
			PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{it}}})
	}
	wantError(t, patch(b, m1.GetUid(), m1.GetT(), true, ""), lcpb.ErrMessageOwnershipRequired)
	wantError(t, patch(a, "nope", 1, true, ""), lcpb.ErrMessageNotFound)

	r := mustOK(t, patch(a, m1.GetUid(), m1.GetT(), true, ""))
	if r.GetOp() != lcpb.OpType_modified || r.PatchMessage.GetLastPatchTime() == 0 {
		t.Fatalf("patch reply: got %v", r)
	}
	p := e.edge.waitPush(t, "bob", b.conn, isOp(lcpb.CommandType_patch, lcpb.OpType_modify))
	it := p.PatchMessage.Patches[0]
	if len(p.PatchMessage.Patches) != 1 || it.GetData() != `{"_lctype":-127}` || !it.GetRecall() || it.GetFrom() != "alice" ||
		it.GetMid() != m1.GetUid() || it.GetTimestamp() != m1.GetT() || it.GetPatchTimestamp() != r.PatchMessage.GetLastPatchTime() || p.GetService() != 2 {
		t.Fatalf("recall push: got %v", p)
	}
	firstPatch := r.PatchMessage.GetLastPatchTime()
	mustOK(t, patch(a, m2.GetUid(), m2.GetT(), false, "two!"))
	logs := b.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
	if logs[0].GetData() != `{"_lctype":-127}` || logs[1].GetData() != "two!" || logs[1].GetPatchTimestamp() == 0 {
		t.Fatalf("history after patches: got %v", logs)
	}

	// A client that saw patches up to firstPatch gets the edit on login.
	b2 := e.client("bob")
	rep := decodeAll(t, b2.open("", false, firstPatch))
	var got []*lcpb.PatchItem
	for _, g := range rep {
		if g.GetCmd() == lcpb.CommandType_patch {
			got = append(got, g.PatchMessage.Patches...)
		}
	}
	if len(got) != 1 || got[0].GetMid() != m2.GetUid() || got[0].GetData() != "two!" {
		t.Fatalf("missed patches on login: got %v", got)
	}
}

func TestUnreadOnOpen(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	var last *lcpb.AckCommand
	for i := 0; i < 5; i++ {
		last = mustOK(t, a.sendText(cid, "m")).AckMessage
	}
	// bob reads up to the 2nd message (read has no reply).
	logs := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
	if g := b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum(), ReadMessage: &lcpb.ReadCommand{
		Convs: []*lcpb.ReadTuple{{Cid: proto.String(cid), Timestamp: proto.Int64(logs[1].GetTimestamp()), Mid: proto.String(logs[1].GetMsgId())}}}}); g != nil {
		t.Fatalf("read replied %v", g)
	}
	mustOK(t, b.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("mine")}}))
	rep := decodeAll(t, b.open("", false, 0))
	if len(rep) != 1 || rep[0].GetCmd() != lcpb.CommandType_unread || rep[0].GetService() != 2 || rep[0].GetPeerId() != "bob" {
		t.Fatalf("open reply: got %v", rep)
	}
	convs := rep[0].UnreadMessage.Convs
	if len(convs) != 1 || convs[0].GetCid() != cid || convs[0].GetUnread() != 3 || convs[0].GetFrom() != "bob" || convs[0].GetData() != "mine" {
		t.Fatalf("unread: got %v (last alice msg %v)", convs, last)
	}
	if rep[0].UnreadMessage.NotifTime == nil {
		t.Fatal("no notifTime")
	}
	// max_read as seen by alice: bob read up to logs[1], delivered up to that too.
	mr := mustOK(t, a.do(convCmd(lcpb.OpType_max_read, &lcpb.ConvCommand{Cid: proto.String(cid)})))
	if mr.GetOp() != lcpb.OpType_max_read || mr.ConvMessage.GetMaxReadTimestamp() != logs[1].GetTimestamp() {
		t.Fatalf("max_read: got %v", mr.ConvMessage)
	}
	// Reading everything clears unread.
	b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum(), ReadMessage: &lcpb.ReadCommand{Cid: proto.String(cid)}})
	rep = decodeAll(t, b.open("", false, 0))
	if n := len(rep[0].UnreadMessage.Convs); n != 0 {
		t.Fatalf("unread after read-all: got %d convs", n)
	}
}

func TestOfflineDirectsOnV1Open(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	b.ver = 1
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	var acks []*lcpb.AckCommand
	for i := 0; i < 25; i++ {
		acks = append(acks, mustOK(t, a.sendText(cid, "m")).AckMessage)
	}
	// bob acknowledges delivery of the first 3 messages.
	b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Mid: proto.String(acks[2].GetUid())}})
	rep := decodeAll(t, b.open("", false, 0))
	if len(rep) != 22 { // all unacked: under Limits.MaxOfflinePerConv (limits_test.go)
		t.Fatalf("offline pushes: got %d, want 22", len(rep))
	}
	for i, g := range rep {
		dm := g.GetDirectMessage()
		if g.GetCmd() != lcpb.CommandType_direct || !dm.GetOffline() || dm.GetId() != acks[3+i].GetUid() || g.GetService() != 2 {
			t.Fatalf("offline %d: got %v", i, g)
		}
	}
	if rep[21].DirectMessage.GetHasMore() {
		t.Fatal("hasMore with nothing left behind")
	}
	b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Fromts: proto.Int64(0), Tots: proto.Int64(acks[24].GetT())}})
	if rep := decodeAll(t, b.open("", false, 0)); len(rep) != 0 {
		t.Fatalf("offline after full ack: got %d", len(rep))
	}
}

func TestTagKick(t *testing.T) {
	e := newEnv(t)
	old, nw := e.client("alice"), e.client("alice")
	old.open("phone", false, 0)
	if rep := nw.open("phone", true, 0); rep.ErrorCode != lcpb.ErrSessionConflict {
		t.Fatalf("reconnect with taken tag: got code %d, want 4111", rep.ErrorCode)
	}
	if rep := nw.open("phone", false, 0); rep.ErrorCode != 0 {
		t.Fatalf("new login: got code %d", rep.ErrorCode)
	}
	g := e.edge.waitPush(t, "alice", old.conn, isOp(lcpb.CommandType_session, lcpb.OpType_closed))
	if g.SessionMessage.GetCode() != lcpb.ErrSessionConflict || g.SessionMessage.GetReason() == "" || g.GetService() != 2 {
		t.Fatalf("kick push: got %v", g)
	}
	e.edge.mu.Lock()
	ended := false
	for _, d := range e.edge.got {
		for _, tg := range d.Targets {
			ended = ended || (tg.ConnId == old.conn && tg.EndSession)
		}
	}
	e.edge.mu.Unlock()
	if !ended {
		t.Fatal("kick delivery without end_session")
	}
	// Only the new session is online now; a different tag does not kick.
	other := e.client("alice")
	other.open("web", false, 0)
	n := len(e.core.relay.Sessions(testApp, "alice"))
	if n != 2 {
		t.Fatalf("alice sessions: got %d, want 2", n)
	}
}

func TestSessionQueryAndClose(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	query := func() []string {
		g := mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_query.Enum(),
			SessionMessage: &lcpb.SessionCommand{SessionPeerIds: []string{"bob", "carol"}}}))
		if g.GetOp() != lcpb.OpType_query_result || g.SessionMessage == nil {
			t.Fatalf("query reply: %v", g)
		}
		return g.SessionMessage.OnlineSessionPeerIds
	}
	if got := query(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("online: got %v, want [bob]", got)
	}
	if _, err := e.core.HandleClient(context.Background(), b.req(meshpb.ClientRequest_CLOSE, nil)); err != nil {
		t.Fatal(err)
	}
	if got := query(); len(got) != 0 {
		t.Fatalf("online after close: got %v", got)
	}
}

func TestMembershipOps(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.client("alice"), e.client("bob"), e.client("carol")
	for _, x := range []*client{a, b, c} {
		x.open("", false, 0)
	}
	cid := a.start([]string{"bob"}, `{"name":"g"}`, false).ConvMessage.GetCid()
	add := mustOK(t, a.do(convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"carol"}})))
	if add.GetOp() != lcpb.OpType_added || len(add.ConvMessage.AllowedPids) != 1 || add.ConvMessage.AllowedPids[0] != "carol" {
		t.Fatalf("added: got %v", add)
	}
	e.edge.waitPush(t, "carol", c.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_joined))
	mj := e.edge.waitPush(t, "bob", b.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_members_joined))
	if len(mj.ConvMessage.M) != 1 || mj.ConvMessage.M[0] != "carol" || mj.ConvMessage.GetInitBy() != "alice" {
		t.Fatalf("members_joined: got %v", mj)
	}
	cnt := mustOK(t, a.do(convCmd(lcpb.OpType_count, &lcpb.ConvCommand{Cid: proto.String(cid)})))
	if cnt.GetOp() != lcpb.OpType_result || cnt.ConvMessage.GetCount() != 3 {
		t.Fatalf("count: got %v", cnt)
	}
	upd := mustOK(t, b.do(convCmd(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"name":"g2","attr.topic":"x"}`)}})))
	if upd.GetOp() != lcpb.OpType_updated || upd.ConvMessage.GetAttrModified().GetData() != `{"attr":{"topic":"x"},"name":"g2"}` || upd.ConvMessage.GetUdate() == "" {
		t.Fatalf("updated: got %v", upd)
	}
	up := e.edge.waitPush(t, "alice", a.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_updated))
	if up.ConvMessage.GetAttr().GetData() == "" || up.ConvMessage.GetAttrModified().GetData() == "" || up.ConvMessage.GetInitBy() != "bob" {
		t.Fatalf("updated push: got %v", up)
	}
	// carol quits (remove self), then alice removes bob.
	q := mustOK(t, c.do(convCmd(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"carol"}})))
	if q.GetOp() != lcpb.OpType_removed {
		t.Fatalf("quit: got %v", q)
	}
	e.edge.waitPush(t, "alice", a.conn, func(g *lcpb.GenericCommand) bool {
		return isOp(lcpb.CommandType_conv, lcpb.OpType_members_left)(g) && g.ConvMessage.M[0] == "carol"
	})
	mustOK(t, a.do(convCmd(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}})))
	e.edge.waitPush(t, "bob", b.conn, isOp(lcpb.CommandType_conv, lcpb.OpType_left))
	wantError(t, b.sendText(cid, "still here?"), lcpb.ErrInvalidMessagingTarget)
	// A kicked client can still query the conversation.
	g := mustOK(t, b.do(convCmd(lcpb.OpType_query, &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(`{"objectId":"` + cid + `"}`)}})))
	if g.ConvMessage.Results.GetData() == "[]" {
		t.Fatal("kicked client cannot query the conversation")
	}
	mu := mustOK(t, a.do(convCmd(lcpb.OpType_mute, &lcpb.ConvCommand{Cid: proto.String(cid)})))
	if mu.GetOp() != lcpb.OpType_updated {
		t.Fatalf("mute: got %v", mu)
	}
	mem := mustOK(t, a.do(convCmd(lcpb.OpType_members, &lcpb.ConvCommand{Cid: proto.String(cid)})))
	if len(mem.ConvMessage.M) != 1 || mem.ConvMessage.M[0] != "alice" {
		t.Fatalf("members: got %v", mem.ConvMessage.M)
	}
}

func TestMalformedAndNotLeader(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	before := e.rep.proposed.Load()
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 2000; n++ {
		b := make([]byte, rng.Intn(64))
		rng.Read(b)
		rep, err := e.core.HandleClient(context.Background(), a.req(meshpb.ClientRequest_COMMAND, b))
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range decodeAll(t, rep) {
			if g.GetCmd() != lcpb.CommandType_error {
				// random bytes may decode to a valid read-only command
				if g.GetCmd() != lcpb.CommandType_logs && g.GetCmd() != lcpb.CommandType_conv && g.GetCmd() != lcpb.CommandType_session && g.GetCmd() != lcpb.CommandType_echo {
					t.Fatalf("random command %x got %v", b, g)
				}
			}
		}
	}
	if got := e.rep.proposed.Load(); got != before {
		t.Fatalf("random commands proposed %d changes", got-before)
	}
	// Missing payloads and unknown ops.
	for _, g := range []*lcpb.GenericCommand{
		{Cmd: lcpb.CommandType_direct.Enum()},
		{Cmd: lcpb.CommandType_logs.Enum()},
		{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum()},
		{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_update.Enum()},
		{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_blocked.Enum()},
		{Cmd: lcpb.CommandType_pubsub.Enum()},
	} {
		r := a.do(g)
		if r == nil || r.GetCmd() != lcpb.CommandType_error || r.GetErrorMessage().GetReason() == "" {
			t.Fatalf("%v: got %v, want error", g, r)
		}
	}
	// i = 0 and negative are echoed by presence.
	r := a.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_pubsub.Enum(), I: proto.Int32(0)})
	if r.I == nil || r.GetI() != 0 {
		t.Fatalf("i=0 not echoed: %v", r)
	}
	// A follower does nothing and says so with ErrNotLeader (the edge
	// sends the request to the leader), for commands and logins alike.
	e.rep.follower.Store(true)
	logs, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), I: proto.Int32(99), LogsMessage: &lcpb.LogsCommand{Cid: proto.String("x")}})
	if _, err := e.core.HandleClient(context.Background(), a.req(meshpb.ClientRequest_COMMAND, logs)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("logs on a follower: got %v, want ErrNotLeader", err)
	}
	if _, err := e.core.HandleClient(context.Background(), a.req(meshpb.ClientRequest_OPEN, nil)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("open on a follower: got %v, want ErrNotLeader", err)
	}
	if e.core.Ready() {
		t.Fatal("follower core reports ready")
	}
}

func TestDetachDropsSessionsAndCloseStopsGoroutines(t *testing.T) {
	rep := newFakeReplica(t)
	c := New(Config{Replica: rep})
	edge := &fakeEdge{}
	detach := c.AttachEdge("e9", edge.send)
	req := &meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN, AppId: testApp, PeerId: "p", EdgeId: "e9", ConnId: 1, ProtocolVersion: 3}
	if _, err := c.HandleClient(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if !c.online(testApp, "p") {
		t.Fatal("not online after open")
	}
	detach()
	if c.online(testApp, "p") {
		t.Fatal("online after detach")
	}
	c.AttachEdge("e10", edge.send)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleClient(context.Background(), req); err == nil {
		t.Fatal("HandleClient after Close succeeded")
	}
}

func TestOneDeliveryPerEdge(t *testing.T) {
	e := newEnv(t)
	e2 := &fakeEdge{}
	detach := e.core.AttachEdge("e2", e2.send)
	defer detach()
	a := e.client("alice")
	a.open("", false, 0)
	members := []string{"m1", "m2", "m3", "m4"}
	for i, m := range members {
		c := e.client(m)
		r := c.req(meshpb.ClientRequest_OPEN, nil)
		if i%2 == 1 {
			r.EdgeId = "e2"
		}
		if _, err := e.core.HandleClient(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	cid := a.start(members, "", false).ConvMessage.GetCid()
	drain(t, e.core)
	count := func(fe *fakeEdge) (deliveries, targets int) {
		fe.mu.Lock()
		defer fe.mu.Unlock()
		for _, d := range fe.got {
			g := new(lcpb.GenericCommand)
			proto.Unmarshal(d.Command, g)
			if g.GetCmd() == lcpb.CommandType_direct {
				deliveries++
				targets += len(d.Targets)
			}
		}
		return
	}
	mustOK(t, a.sendText(cid, "hi"))
	drain(t, e.core)
	for name, fe := range map[string]*fakeEdge{"e1": e.edge, "e2": e2} {
		if d, n := count(fe); d != 1 || n != 2 {
			t.Fatalf("%s: got %d deliveries with %d targets, want 1 with 2", name, d, n)
		}
	}
}

// TestSyncPresence: sessions an edge reports through Presence frames (not
// through OPEN on this core) are online and can be replaced, removed and
// re-reported idempotently.
func TestSyncPresence(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	online := func() []string {
		g := mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_query.Enum(),
			SessionMessage: &lcpb.SessionCommand{SessionPeerIds: []string{"bob", "carol"}}}))
		return g.GetSessionMessage().GetOnlineSessionPeerIds()
	}
	sess := func(peer string, conn uint64) *meshpb.PresenceSession {
		return &meshpb.PresenceSession{AppId: testApp, PeerId: peer, ConnId: conn, ProtocolVersion: 3}
	}
	e.core.SyncPresence("e2", &meshpb.Presence{ReplaceAll: true, Add: []*meshpb.PresenceSession{sess("bob", 7)}})
	e.core.SyncPresence("e2", &meshpb.Presence{Add: []*meshpb.PresenceSession{sess("bob", 7)}}) // again: no duplicate
	if got := online(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("online after sync: got %v, want [bob]", got)
	}
	n := len(e.core.relay.Sessions(testApp, "bob"))
	if n != 1 {
		t.Fatalf("bob has %d sessions after a repeated add, want 1", n)
	}
	// replace_all from e2 swaps bob for carol and leaves e1's alice alone.
	e.core.SyncPresence("e2", &meshpb.Presence{ReplaceAll: true, Add: []*meshpb.PresenceSession{sess("carol", 8)}})
	if got := online(); len(got) != 1 || got[0] != "carol" {
		t.Fatalf("online after replace_all: got %v, want [carol]", got)
	}
	e.core.SyncPresence("e2", &meshpb.Presence{Remove: []*meshpb.PresenceSession{sess("carol", 8)}})
	if got := online(); len(got) != 0 {
		t.Fatalf("online after remove: got %v, want none", got)
	}
	if !e.core.online(testApp, "alice") {
		t.Fatal("alice, logged in through OPEN on edge e1, went offline")
	}
}
