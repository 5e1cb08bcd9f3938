package core

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// admin sends one ADMIN request as peer (what package rest forwards) and
// returns the reply and its first command, if any.
func (e *env) admin(peer string, a *meshpb.AdminRequest, cmd *lcpb.GenericCommand) (*meshpb.ClientReply, *lcpb.GenericCommand) {
	e.t.Helper()
	req := &meshpb.ClientRequest{Kind: meshpb.ClientRequest_ADMIN, AppId: testApp, PeerId: peer, Admin: a}
	if cmd != nil {
		b, err := proto.Marshal(cmd)
		if err != nil {
			e.t.Fatal(err)
		}
		req.Command = b
	}
	rep, err := e.core.HandleClient(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	var out *lcpb.GenericCommand
	if cmds := decodeAll(e.t, rep); len(cmds) > 0 {
		out = cmds[0]
	}
	return rep, out
}

// adminSend is a REST send of text to cid from peer.
func (e *env) adminSend(peer, cid, text string) (*meshpb.ClientReply, *lcpb.GenericCommand) {
	e.t.Helper()
	return e.admin(peer, &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND}, &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}})
}

// adminPatch is a REST edit of message mid of cid to text.
func (e *env) adminPatch(peer, cid, mid, text string) *meshpb.ClientReply {
	e.t.Helper()
	rep, _ := e.admin(peer, &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND}, &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
		PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{{Cid: proto.String(cid), Mid: proto.String(mid), Data: proto.String(text)}}}})
	return rep
}

func wantReplyOK(t *testing.T, what string, rep *meshpb.ClientReply) {
	t.Helper()
	if rep.GetErrorCode() != 0 {
		t.Fatalf("%s: got error %d %q, want success", what, rep.GetErrorCode(), rep.GetErrorReason())
	}
}

// TestAdminSendRunsMessageReceived: a REST send passes _messageReceived as
// a client's does, from a sender that is not a member: a drop answers
// 4402, content and toPeers rewrites apply, and the sensitive-word filter
// runs over the rewrite.
func TestAdminSendRunsMessageReceived(t *testing.T) {
	hs := newHookServer(t, func(hook string, ev map[string]any) any {
		if hook != hooks.HookMessageReceived {
			return nil
		}
		switch ev["content"] {
		case "drop me":
			return map[string]any{"drop": true, "code": 77, "detail": "not from the server"}
		case "rewrite me":
			return map[string]any{"content": "rewritten, you bastard"}
		case "only bob":
			return map[string]any{"toPeers": []string{"bob"}}
		}
		return nil
	})
	e := newEnvWith(t, func(c *Config) { c.Hooks = hs.client() })
	a, b, c := e.client("alice"), e.client("bob"), e.client("carol")
	a.open("", false, 0)
	b.open("", false, 0)
	c.open("", false, 0)
	cid := a.start([]string{"bob", "carol"}, "", false).ConvMessage.GetCid()

	rep, _ := e.adminSend("server", cid, "drop me")
	if rep.GetErrorCode() != lcpb.ErrMessageRejectedByApp || !strings.Contains(rep.GetErrorReason(), "not from the server") {
		t.Fatalf("dropped send: got %d %q, want 4402 with the hook's detail", rep.GetErrorCode(), rep.GetErrorReason())
	}
	rep, _ = e.adminSend("server", cid, "rewrite me")
	wantReplyOK(t, "rewritten send", rep)
	if got := e.edge.waitPush(t, "bob", b.conn, isDirect).DirectMessage.GetMsg(); got != "rewritten, you ***" {
		t.Errorf("delivered: got %q, want the rewrite, filtered", got)
	}
	rep, _ = e.adminSend("server", cid, "only bob")
	wantReplyOK(t, "narrowed send", rep)
	isOnlyBob := func(g *lcpb.GenericCommand) bool { return isDirect(g) && g.DirectMessage.GetMsg() == "only bob" }
	e.edge.waitPush(t, "bob", b.conn, isOnlyBob)
	e.edge.noPush(t, e.core, "carol", c.conn, isOnlyBob)

	logs := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
	if len(logs) != 2 || logs[0].GetData() != "rewritten, you ***" || logs[1].GetData() != "only bob" {
		t.Errorf("history: got %v, want the rewrite and the narrowed message, not the dropped one", logs)
	}
	evs := hs.events(hooks.HookMessageReceived)
	if len(evs) != 3 || evs[0]["fromPeer"] != "server" || evs[0]["convId"] != cid {
		t.Fatalf("_messageReceived events: got %v, want 3 from server in %s", evs, cid)
	}
	if got := toStrings(evs[0]["toPeers"]); len(got) != 3 {
		t.Errorf("toPeers: got %v, want the three members", got)
	}
	if got := e.core.IntegrationStats().Hooks[hooks.HookMessageReceived]; got.Calls != 3 || got.Drops != 1 {
		t.Errorf("hook counts: got %+v, want 3 calls, 1 drop", got)
	}
}

// TestAdminSendFailOpen: a failing _messageReceived does not stop a REST
// send under the default policy (fail open), as for a client.
func TestAdminSendFailOpen(t *testing.T) {
	hs := newHookServer(t, func(string, map[string]any) any { return "not a verdict" })
	e := newEnvWith(t, func(c *Config) { c.Hooks = hs.client() })
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	rep, _ := e.adminSend("server", cid, "hello")
	wantReplyOK(t, "send with a failing hook", rep)
	if got := e.core.IntegrationStats().Hooks[hooks.HookMessageReceived]; got.Calls != 1 || got.Failures != 1 || got.Drops != 0 {
		t.Errorf("hook counts: got %+v, want 1 call, 1 failure, no drop", got)
	}
}

// TestFilteredEdit: an edit in a filtered conversation (client and REST)
// gets the same *** as a send; a 1:1 edit is not filtered.
func TestFilteredEdit(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	group := a.start([]string{"bob", "carol"}, "", false).ConvMessage.GetCid()
	single := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	edit := func(cid, mid, text string) {
		t.Helper()
		mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
			PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{{Cid: proto.String(cid), Mid: proto.String(mid), Data: proto.String(text)}}}}))
	}
	stored := func(cid, mid string) string {
		t.Helper()
		m, err := shard.GetMessage(e.rep.db, testApp, cid, mid)
		if err != nil || m == nil {
			t.Fatalf("message %s: %v", mid, err)
		}
		return m.Data
	}
	for _, tc := range []struct {
		name, cid string
		rest      bool
		want      string
	}{
		{"client edit in a group", group, false, "edited *** text"},
		{"REST edit in a group", group, true, "edited *** text"},
		{"client edit in a 1:1 chat", single, false, "edited shit text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mid := mustOK(t, a.sendText(tc.cid, "clean")).AckMessage.GetUid()
			if tc.rest {
				wantReplyOK(t, "REST edit", e.adminPatch("server", tc.cid, mid, "edited shit text"))
			} else {
				edit(tc.cid, mid, "edited shit text")
			}
			if got := stored(tc.cid, mid); got != tc.want {
				t.Errorf("stored: got %q, want %q", got, tc.want)
			}
			isEdit := func(g *lcpb.GenericCommand) bool {
				return g.GetCmd() == lcpb.CommandType_patch && g.GetPatchMessage().GetPatches()[0].GetMid() == mid
			}
			if got := e.edge.waitPush(t, "bob", b.conn, isEdit).PatchMessage.Patches[0].GetData(); got != tc.want {
				t.Errorf("patch/modify push: got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAdminDeleteMessage: DELETE_MESSAGE removes the server copy: gone
// from WebSocket and REST history and from unread counts, nobody is
// pushed, the previous message becomes the last; unknown ids are 4404.
func TestAdminDeleteMessage(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	var mids []string
	var ts []int64
	for _, text := range []string{"one", "two", "three"} {
		ack := mustOK(t, a.sendText(cid, text)).AckMessage
		mids, ts = append(mids, ack.GetUid()), append(ts, ack.GetT())
	}
	pushesBefore := len(e.edge.settle(t, e.core, "bob", b.conn))
	del := func(mid string, t0 int64) *meshpb.ClientReply {
		rep, _ := e.admin("server", &meshpb.AdminRequest{Op: meshpb.AdminRequest_DELETE_MESSAGE, Cid: cid, Mid: mid, Timestamp: t0}, nil)
		return rep
	}
	for _, tc := range []struct {
		name     string
		mid      string
		t0       int64
		wantCode int32
	}{
		{"unknown id", "nope", 0, lcpb.ErrMessageNotFound},
		{"wrong timestamp", mids[1], ts[1] + 1, lcpb.ErrMessageNotFound},
	} {
		if rep := del(tc.mid, tc.t0); rep.GetErrorCode() != tc.wantCode {
			t.Errorf("%s: got %d %q, want %d", tc.name, rep.GetErrorCode(), rep.GetErrorReason(), tc.wantCode)
		}
	}
	wantReplyOK(t, "delete the middle message", del(mids[1], ts[1]))
	wantReplyOK(t, "delete the last message", del(mids[2], 0))

	logs := b.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
	if len(logs) != 1 || logs[0].GetMsgId() != mids[0] {
		t.Errorf("WebSocket history: got %v, want only %s", logs, mids[0])
	}
	_, g := e.admin("", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND}, &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid)}})
	if rl := g.GetLogsMessage().GetLogs(); len(rl) != 1 || rl[0].GetMsgId() != mids[0] {
		t.Errorf("REST history: got %v, want only %s", rl, mids[0])
	}
	rep, _ := e.admin("bob", &meshpb.AdminRequest{Op: meshpb.AdminRequest_UNREAD_COUNT, Cid: cid}, nil)
	if got := rep.GetAdmin().GetCount(); got != 1 {
		t.Errorf("bob's unread count: got %d, want 1", got)
	}
	conv, _ := shard.GetConv(e.rep.db, testApp, cid)
	if conv.LastMID != mids[0] || conv.LastData != "one" {
		t.Errorf("last message: got %s %q, want %s one", conv.LastMID, conv.LastData, mids[0])
	}
	if got := len(e.edge.settle(t, e.core, "bob", b.conn)); got != pushesBefore {
		t.Errorf("pushes to bob: got %d new, want none", got-pushesBefore)
	}
}

// TestAdminSendChatroomPriority: the command's priority (REST `priority`)
// is the Delivery priority of a chatroom message's fan-out.
func TestAdminSendChatroomPriority(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	cid := mustOK(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{Transient: proto.Bool(true)}))).ConvMessage.GetCid()
	for _, pri := range []int32{3, 1} {
		text := "at priority " + string(rune('0'+pri))
		rep, _ := e.admin("server", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND}, &lcpb.GenericCommand{
			Cmd: lcpb.CommandType_direct.Enum(), Priority: proto.Int32(pri),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}})
		wantReplyOK(t, "chatroom send", rep)
		drain(t, e.core)
		if got, ok := deliveryPriority(t, e.edge, "alice", text); !ok || got != pri {
			t.Errorf("%s: delivery priority got %d (found %v), want %d", text, got, ok, pri)
		}
	}
}

// deliveryPriority finds the delivery to peer carrying a direct with text.
func deliveryPriority(t *testing.T, fe *fakeEdge, peer, text string) (int32, bool) {
	t.Helper()
	fe.mu.Lock()
	defer fe.mu.Unlock()
	for _, d := range fe.got {
		g := new(lcpb.GenericCommand)
		if proto.Unmarshal(d.Command, g) != nil || g.GetDirectMessage().GetMsg() != text {
			continue
		}
		for _, tg := range d.Targets {
			if tg.PeerId == peer {
				return d.Priority, true
			}
		}
	}
	return 0, false
}

// TestWriteMetrics: the core's collector renders as Prometheus text, hook
// series included even without hooks.
func TestWriteMetrics(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"bob", "carol"}, "", false).ConvMessage.GetCid()
	mustOK(t, a.sendText(cid, "shit and shit"))
	e.core.relay.Stats().DroppedByPriority[pq.Low].Add(2)
	out := metricsText(t, e.core)
	for _, want := range []string{
		"# TYPE relaymesh_core_filtered_messages_total counter\nrelaymesh_core_filtered_messages_total 1\n",
		"relaymesh_core_filter_hits_total 2\n",
		`relaymesh_core_relay_dropped_total{priority="low"} 2` + "\n",
		`relaymesh_core_relay_dropped_total{priority="high"} 0` + "\n",
		"# HELP relaymesh_hook_calls_total ",
		`relaymesh_hook_calls_total{hook="_messageReceived"} 0` + "\n",
		"# TYPE relaymesh_push_queue_waiting gauge\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q; got:\n%s", want, out)
		}
	}
}
