package core

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

func (c *client) startTemp(members []string, ttl int32) *lcpb.GenericCommand {
	return c.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{M: members, TempConv: proto.Bool(true), TempConvTTL: proto.Int32(ttl)}))
}

func queryRows(t *testing.T, g *lcpb.GenericCommand) []map[string]any {
	t.Helper()
	var rows []map[string]any
	if err := json.Unmarshal([]byte(mustOK(t, g).ConvMessage.GetResults().GetData()), &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestTempConv(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)

	st := mustOK(t, a.startTemp([]string{"bob", "alice"}, 60))
	cid := st.ConvMessage.GetCid()
	if st.GetOp() != lcpb.OpType_started || !strings.HasPrefix(cid, "_tmp:") || len(cid) <= len("_tmp:") ||
		st.ConvMessage.GetTempConvTTL() != 60 || st.ConvMessage.GetCdate() == "" {
		t.Fatalf("started: got %v", st)
	}
	j := e.edge.waitPush(t, "bob", b.conn, func(g *lcpb.GenericCommand) bool { return g.GetOp() == lcpb.OpType_joined })
	if j.ConvMessage.GetCid() != cid || !j.ConvMessage.GetTempConv() || j.ConvMessage.GetTempConvTTL() != 60 {
		t.Fatalf("joined push: got %v", j.ConvMessage)
	}

	// Messages, receipts and history as in a normal conversation.
	ack := mustOK(t, b.sendText(cid, "hi")).AckMessage
	d := e.edge.waitPush(t, "alice", a.conn, func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_direct })
	if d.DirectMessage.GetCid() != cid || d.DirectMessage.GetConvType() != convTypeTemp {
		t.Fatalf("direct push: got %v, want cid %s convType 4", d.DirectMessage, cid)
	}
	if logs := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}); len(logs) != 1 || logs[0].GetMsgId() != ack.GetUid() {
		t.Fatalf("logs: got %v", logs)
	}
	rep := decodeAll(t, e.client("alice").open("", false, 0))
	if u := rep[0].GetUnreadMessage().GetConvs(); len(u) != 1 || u[0].GetCid() != cid || u[0].GetConvType() != convTypeTemp {
		t.Fatalf("unread on login: got %v", u)
	}

	// tempConvIds finds it; where-queries do not (no _Conversation row).
	rows := queryRows(t, a.do(convCmd(lcpb.OpType_query, &lcpb.ConvCommand{TempConvIds: []string{cid, cid, "_tmp:nope", "plain"}})))
	if len(rows) != 1 || rows[0]["objectId"] != cid || rows[0]["temp"] != true || rows[0]["ttl"].(float64) <= 0 ||
		rows[0]["ttl"].(float64) > 60 || len(rows[0]["m"].([]any)) != 2 {
		t.Fatalf("tempConvIds rows: got %v", rows)
	}
	for _, where := range []string{`{}`, `{"objectId":"` + cid + `"}`, `{"objectId":{"$in":["` + cid + `"]}}`, `{"m":"bob"}`} {
		rows := queryRows(t, a.do(convCmd(lcpb.OpType_query, &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(where)}})))
		if len(rows) != 0 {
			t.Fatalf("where %s: got %v, want no rows", where, rows)
		}
	}

	// Membership and attributes are fixed.
	for _, cmd := range []*lcpb.GenericCommand{
		convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"zed"}}),
		convCmd(lcpb.OpType_join, &lcpb.ConvCommand{Cid: proto.String(cid)}),
		convCmd(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}),
		convCmd(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid), Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"name":"x"}`)}}),
		convCmd(lcpb.OpType_mute, &lcpb.ConvCommand{Cid: proto.String(cid)}),
		convCmd(lcpb.OpType_add_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}),
	} {
		wantError(t, a.do(cmd), lcpb.ErrNormalConvRequired)
	}

	// After the TTL every operation is refused and tempConvIds omits it.
	e.now.Add(61_000)
	wantError(t, b.sendText(cid, "late"), lcpb.ErrTemporaryConvExpired)
	wantError(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid)}}), lcpb.ErrTemporaryConvExpired)
	wantError(t, a.do(convCmd(lcpb.OpType_count, &lcpb.ConvCommand{Cid: proto.String(cid)})), lcpb.ErrTemporaryConvExpired)
	wantError(t, a.do(convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"zed"}})), lcpb.ErrTemporaryConvExpired)
	if rows := queryRows(t, a.do(convCmd(lcpb.OpType_query, &lcpb.ConvCommand{TempConvIds: []string{cid}}))); len(rows) != 0 {
		t.Fatalf("tempConvIds after expiry: got %v", rows)
	}
	rep = decodeAll(t, e.client("alice").open("", false, 0))
	if u := rep[0].GetUnreadMessage().GetConvs(); len(u) != 0 {
		t.Fatalf("unread of an expired conversation: got %v", u)
	}
}

func TestTempConvStartLimits(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	nine := []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"}
	wantError(t, a.startTemp(append(nine, "m10"), 0), lcpb.ErrConversationFull)
	for _, tc := range []struct {
		name    string
		ttl     int32
		wantTTL int32
	}{
		{"default", 0, shard.DefaultTempTTL},
		{"one second", 1, 1},
		{"clamped", shard.MaxTempTTL + 1, shard.MaxTempTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := mustOK(t, a.startTemp(nine, tc.ttl))
			if got := g.ConvMessage.GetTempConvTTL(); got != tc.wantTTL {
				t.Fatalf("tempConvTTL: got %d, want %d", got, tc.wantTTL)
			}
		})
	}
}
