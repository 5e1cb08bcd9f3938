package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// await reads frames until the reply to request i (pushes in between are
// skipped).
func (r *raw) await(ctx context.Context, i int32) *lcpb.GenericCommand {
	r.t.Helper()
	for {
		c := r.next(ctx)
		if c.I != nil && c.GetI() == i {
			return c
		}
	}
}

// session is a raw logged-in client that numbers its requests.
type session struct {
	t    *testing.T
	r    *raw
	peer string
	i    int32
}

func rawSession(t *testing.T, ctx context.Context, url, app, peer string) *session {
	t.Helper()
	r, _, err := dialRaw(t, ctx, url, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	r.open(t, ctx, app, peer, "", proto.Int32(1))
	return &session{t: t, r: r, peer: peer, i: 1}
}

// call sends c and returns its reply, error or not.
func (s *session) call(ctx context.Context, c *lcpb.GenericCommand) *lcpb.GenericCommand {
	s.t.Helper()
	s.i++
	c.I = proto.Int32(s.i)
	s.r.send(ctx, c)
	return s.r.await(ctx, s.i)
}

func (s *session) ok(ctx context.Context, c *lcpb.GenericCommand) *lcpb.GenericCommand {
	s.t.Helper()
	g := s.call(ctx, c)
	if g.GetCmd() == lcpb.CommandType_error {
		s.t.Fatalf("%s %v/%v: error %v", s.peer, c.GetCmd(), c.GetOp(), g.GetErrorMessage())
	}
	return g
}

func (s *session) refused(ctx context.Context, what string, c *lcpb.GenericCommand, code int32) {
	s.t.Helper()
	g := s.call(ctx, c)
	wantError(s.t, what, g, code, proto.Int32(s.i))
}

func conv(op lcpb.OpType, cm *lcpb.ConvCommand) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm}
}

func whereQuery(where string) *lcpb.GenericCommand {
	return conv(lcpb.OpType_query, &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(where)}})
}

func (s *session) rows(ctx context.Context, where string) []map[string]any {
	s.t.Helper()
	g := s.ok(ctx, whereQuery(where))
	var rows []map[string]any
	if err := json.Unmarshal([]byte(g.GetConvMessage().GetResults().GetData()), &rows); err != nil {
		s.t.Fatal(err)
	}
	return rows
}

func (s *session) start(ctx context.Context, members []string, attr string) string {
	s.t.Helper()
	cm := &lcpb.ConvCommand{M: members}
	if attr != "" {
		cm.Attr = &lcpb.JsonObjectMessage{Data: proto.String(attr)}
	}
	return s.ok(ctx, conv(lcpb.OpType_start, cm)).GetConvMessage().GetCid()
}

func direct(dm *lcpb.DirectCommand) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: dm}
}

func hasLast(row map[string]any) bool {
	for _, k := range []string{"lm", "msg", "msg_from", "msg_mid", "msg_timestamp"} {
		if _, ok := row[k]; ok {
			return true
		}
	}
	return false
}

// TestQueryBoundsRaw attacks conv/query over the raw protocol of a real
// relaymesh dev: where clauses too big, too deep, with too many terms,
// bad or oversized regexes, scans past the cap, an app over its budget,
// and non-members reading another conversation's last message. Each is
// refused (4310) or answered without the message; nothing changes.
func TestQueryBoundsRaw(t *testing.T) {
	p := startDevConfig(t, "[[apps]]\nid = \"bounds-app\"\nmaster_key = \"bounds-master\"\n[[apps]]\nid = \"bounds-wide\"\nmaster_key = \"m\"\n[[apps]]\nid = \"bounds-busy\"\nmaster_key = \"m\"\n\n[core.limits]\nmax_query_scan = 30\nquery_scan_per_second = 1\n",
		"--ops-per-minute", "-1", "--sends-per-minute", "-1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const app = "bounds-app"
	alice := rawSession(t, ctx, p.URL, app, "alice")
	bob := rawSession(t, ctx, p.URL, app, "bob")
	mallory := rawSession(t, ctx, p.URL, app, "mallory")

	cid := alice.start(ctx, []string{"bob"}, `{"name":"secret room"}`)
	alice.ok(ctx, direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("top secret")}))
	byID := fmt.Sprintf(`{"objectId":%q}`, cid)
	if rows := bob.rows(ctx, byID); len(rows) != 1 || rows[0]["msg"] != "top secret" {
		t.Fatalf("member: %v, want the last message", rows)
	}
	rows := mallory.rows(ctx, byID)
	if len(rows) != 1 || rows[0]["objectId"] != cid || hasLast(rows[0]) {
		t.Fatalf("non-member: %v, want the row without its last message", rows)
	}
	for _, probe := range []string{`"msg":"top secret"`, `"msg":{"$regex":"^top"}`, `"msg_from":"alice"`, `"lm":{"$exists":true}`} {
		if rows := mallory.rows(ctx, fmt.Sprintf(`{"objectId":%q,%s}`, cid, probe)); len(rows) != 0 {
			t.Fatalf("non-member probed %s: %v", probe, rows)
		}
	}
	// Kicked: the row still comes back (the SDKs fetch it to show the
	// kick), without the message.
	alice.ok(ctx, conv(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}))
	if rows := bob.rows(ctx, byID); len(rows) != 1 || hasLast(rows[0]) {
		t.Fatalf("kicked member: %v", rows)
	}

	before := alice.rows(ctx, byID)
	deep := strings.Repeat(`{"$or":[`, 6) + `{"name":"x"}` + strings.Repeat(`]}`, 6)
	var ids []string
	for i := range 300 {
		ids = append(ids, fmt.Sprintf(`"id%d"`, i))
	}
	for _, tc := range []struct{ what, where string }{
		{"17 KiB where", fmt.Sprintf(`{"name":%q}`, strings.Repeat("x", 17<<10))},
		{"12 levels deep", deep},
		{"300 terms", `{"objectId":{"$in":[` + strings.Join(ids, ",") + `]}}`},
		{"300-byte regex", fmt.Sprintf(`{"name":{"$regex":%q}}`, strings.Repeat("a", 300))},
		{"regex lookahead", `{"name":{"$regex":"(?=secret)"}}`},
		{"regex blow-up", `{"name":{"$regex":"((a{1,100}){1,100}){1,100}"}}`},
	} {
		alice.refused(ctx, tc.what, whereQuery(tc.where), lcpb.ErrConversationQueryFailed)
	}
	// The classic backtracking bomb: RE2 answers in linear time.
	alice.ok(ctx, whereQuery(`{"name":{"$regex":"^(([a-z ])+)+!$"}}`))
	// The SDK's contains(): \Q…\E.
	if rows := alice.rows(ctx, `{"name":{"$regex":"\\Qsecret\\E"}}`); len(rows) != 1 {
		t.Fatalf("contains: %d rows", len(rows))
	}
	if after := alice.rows(ctx, byID); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the conversation changed: %v, was %v", after, before)
	}

	// Scan cap: an app with 31 conversations cannot be scanned whole.
	wide := rawSession(t, ctx, p.URL, "bounds-wide", "walt")
	for range 31 {
		wide.start(ctx, []string{"wendy"}, `{"name":"w"}`)
	}
	wide.refused(ctx, "scan of 31", whereQuery(`{"name":"w"}`), lcpb.ErrConversationQueryFailed)
	// Budget: burst 60 rows, refill 1 a second; 28 conversations.
	busy := rawSession(t, ctx, p.URL, "bounds-busy", "bea")
	for range 28 {
		busy.start(ctx, []string{"ben"}, `{"name":"b"}`)
	}
	for i := range 3 {
		if rows := busy.rows(ctx, `{"name":"b"}`); len(rows) != 10 {
			t.Fatalf("query %d: %d rows, want the first 10", i, len(rows))
		}
	}
	busy.refused(ctx, "over the app's budget", whereQuery(`{"name":"b"}`), lcpb.ErrConversationQueryFailed)
	// Other apps are not held back by it.
	if rows := alice.rows(ctx, byID); len(rows) != 1 {
		t.Fatal("another app's query refused")
	}

	resp, err := http.Get("http://" + p.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`relaymesh_core_query_examined_total{app="bounds-busy"} 84`,
		`relaymesh_core_queries_refused_total{reason="where"} 6`,
		`relaymesh_core_queries_refused_total{reason="scan"} 1`,
		`relaymesh_core_queries_refused_total{reason="budget"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}

	// The server API: the same where bounds (HTTP 400, code 4310).
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: "bounds-master,master"}
	var e restError
	if status := api.call("GET", "/1.2/rtm/conversations?where="+url.QueryEscape(deep), nil, &e); status != 400 || e.Code != 4310 {
		t.Errorf("REST deep where: %d %+v, want 400 code 4310", status, e)
	}
}

// TestInputBoundsRaw: malformed clientIds in member lists and mentions,
// bad dt, too many mentions and oversized attributes, over the raw
// protocol and the REST API: each refused with its LeanCloud code, and the
// conversation is as it was.
func TestInputBoundsRaw(t *testing.T) {
	p := startDev(t, t.TempDir(), freeAddr(t), "--ops-per-minute", "-1", "--sends-per-minute", "-1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const app = "input-app"
	alice := rawSession(t, ctx, p.URL, app, "alice")
	cid := alice.start(ctx, []string{"bob"}, `{"name":"n"}`)
	byID := fmt.Sprintf(`{"objectId":%q}`, cid)
	before := alice.rows(ctx, byID)
	convsBefore := len(alice.rows(ctx, `{"m":"alice"}`))

	for _, id := range []string{"a:b", strings.Repeat("x", 65), "line\nbreak", "\x7f"} {
		alice.refused(ctx, "start with "+id, conv(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"bob", id}}), lcpb.ErrInvalidLogin)
		alice.refused(ctx, "add "+id, conv(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{id}}), lcpb.ErrInvalidLogin)
		alice.refused(ctx, "remove "+id, conv(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{id}}), lcpb.ErrInvalidLogin)
		alice.refused(ctx, "mention "+id, direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"),
			MentionPids: []string{id}}), lcpb.ErrInvalidLogin)
	}
	var many []string
	for i := range 21 {
		many = append(many, fmt.Sprint("u", i))
	}
	alice.refused(ctx, "21 mentions", direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"),
		MentionPids: many}), lcpb.ErrConversationAPIFailed)
	alice.refused(ctx, "65-character dt", direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"),
		Dt: proto.String(strings.Repeat("d", 65))}), lcpb.ErrConversationAPIFailed)
	alice.refused(ctx, "dt with a space", direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"),
		Dt: proto.String("a b")}), lcpb.ErrConversationAPIFailed)
	if after := alice.rows(ctx, byID); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused members, mentions or dt changed the conversation: %v, was %v", after, before)
	}
	half := strings.Repeat("h", 9<<10)
	alice.ok(ctx, conv(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf(`{"attr.a":%q}`, half))}}))
	before = alice.rows(ctx, byID)
	alice.refused(ctx, "merged attributes over 16 KiB", conv(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf(`{"attr.b":%q}`, half))}}), lcpb.ErrConversationUpdateFailed)
	alice.refused(ctx, "create with 17 KiB of attributes", conv(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"bob"},
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf(`{"x":%q}`, strings.Repeat("y", 17<<10)))}}), lcpb.ErrConversationUpdateFailed)

	// The same through the REST API.
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: "any,master"}
	for _, tc := range []struct {
		what, method, path string
		body               any
		code               int
	}{
		{"create with a:b", "POST", "/1.2/rtm/conversations", map[string]any{"m": []string{"a:b"}, "c": "alice"}, 4103},
		{"add a\\tb", "POST", "/1.2/rtm/conversations/" + cid + "/members", map[string]any{"client_ids": []string{"a\tb"}}, 4103},
		{"send from a:b", "POST", "/1.2/rtm/conversations/" + cid + "/messages", map[string]any{"from_client": "a:b", "message": "x"}, 4103},
		{"mention a:b", "POST", "/1.2/rtm/conversations/" + cid + "/messages",
			map[string]any{"from_client": "alice", "message": "x", "mention_client_ids": []string{"a:b"}}, 4103},
		{"attributes over 16 KiB", "PUT", "/1.2/rtm/conversations/" + cid, map[string]any{"b": half}, 4306},
	} {
		var e restError
		if status := api.call(tc.method, tc.path, tc.body, &e); status != 400 || e.Code != tc.code {
			t.Errorf("REST %s: %d %+v, want 400 code %d", tc.what, status, e, tc.code)
		}
	}

	if after := alice.rows(ctx, byID); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the conversation changed: %v, was %v", after, before)
	}
	if n := len(alice.rows(ctx, `{"m":"alice"}`)); n != convsBefore {
		t.Errorf("alice is in %d conversations, was %d", n, convsBefore)
	}
	logs := alice.ok(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid)}})
	if n := len(logs.GetLogsMessage().GetLogs()); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}
