package core

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/query"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// query runs conv/query{where} (and sort, limit) and returns the error
// code (0 on success) and the rows.
func (c *client) query(where, sort string, limit int32) (int32, []map[string]any) {
	c.e.t.Helper()
	cm := &lcpb.ConvCommand{}
	if where != "" {
		cm.Where = &lcpb.JsonObjectMessage{Data: proto.String(where)}
	}
	if sort != "" {
		cm.Sort = proto.String(sort)
	}
	if limit > 0 {
		cm.Limit = proto.Int32(limit)
	}
	g := c.do(convCmd(lcpb.OpType_query, cm))
	if g.GetCmd() == lcpb.CommandType_error {
		return g.GetErrorMessage().GetCode(), nil
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(g.GetConvMessage().GetResults().GetData()), &rows); err != nil {
		c.e.t.Fatal(err)
	}
	return 0, rows
}

func byID(cid string) string { return fmt.Sprintf(`{"objectId":%q}`, cid) }

func TestQueryWhereBounds(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, `{"name":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"}`, false).ConvMessage.GetCid()

	deep := strings.Repeat(`{"$or":[`, 6) + `{"name":"x"}` + strings.Repeat(`]}`, 6)
	var in []string
	for i := range query.MaxWhereTerms {
		in = append(in, fmt.Sprintf("%q", fmt.Sprint("id", i)))
	}
	for _, tc := range []struct{ name, where, sort string }{
		{"huge", fmt.Sprintf(`{"name":%q}`, strings.Repeat("x", query.MaxWhereBytes)), ""},
		{"deep", deep, ""},
		{"many terms", `{"objectId":{"$in":[` + strings.Join(in, ",") + `]}}`, ""},
		{"long regex", fmt.Sprintf(`{"name":{"$regex":%q}}`, strings.Repeat("a", query.MaxRegexBytes+1)), ""},
		{"complex regex", `{"name":{"$regex":"(a{1,100}){1,100}"}}`, ""},
		{"bad regex", `{"name":{"$regex":"(?=a)"}}`, ""},
		{"bad options", `{"name":{"$regex":"a","$options":"x"}}`, ""},
		{"regex not a string", `{"name":{"$regex":5}}`, ""},
		{"many sort keys", "", "a,b,c,d,e,f,g,h,i"},
	} {
		if code, _ := a.query(tc.where, tc.sort, 0); code != lcpb.ErrConversationQueryFailed {
			t.Errorf("%s: got code %d, want 4310", tc.name, code)
		}
	}
	// The regexes the SDK builds work (contains, startsWith, endsWith with
	// \Q…\E quoting, matches with options).
	for _, re := range []string{`\\Qaaaa\\E`, `^\\Qaaa\\E`, `\\Qa!\\E$`, `^A+!$","$options":"i`} {
		where := fmt.Sprintf(`{"objectId":%q,"name":{"$regex":"%s"}}`, cid, re)
		if code, rows := a.query(where, "", 0); code != 0 || len(rows) != 1 {
			t.Errorf("regex %s: code %d, %d rows; want the conversation", re, code, len(rows))
		}
	}
	// A backtracking bomb is linear in RE2: it answers (no match).
	if code, rows := a.query(`{"name":{"$regex":"^(a+)+$"}}`, "", 0); code != 0 || len(rows) != 0 {
		t.Errorf("(a+)+$: code %d, %d rows; want none", code, len(rows))
	}
	// Within the bounds: answered.
	if code, rows := a.query(`{"objectId":{"$in":[`+strings.Join(in[:100], ",")+`,"`+cid+`"]}}`, "", 0); code != 0 || len(rows) != 1 {
		t.Errorf("100 ids: code %d, %d rows", code, len(rows))
	}
	m := metricsText(t, e.core)
	if !strings.Contains(m, `relaymesh_core_queries_refused_total{reason="where"} 9`) {
		t.Errorf("metrics: want 9 where refusals in\n%s", m)
	}
}

// lastKeys lists the last-message columns present in row.
func lastKeys(row map[string]any) []string {
	var out []string
	for _, k := range lastRowKeys {
		if _, ok := row[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

func TestQueryHidesLastMessage(t *testing.T) {
	e := newEnv(t)
	a, b, m := e.client("alice"), e.client("bob"), e.client("mallory")
	for _, c := range []*client{a, b, m} {
		c.open("", false, 0)
	}
	cid := a.start([]string{"bob"}, `{"name":"secret"}`, false).ConvMessage.GetCid()
	mustOK(t, a.sendText(cid, "top secret"))

	rowOf := func(c *client, where string) map[string]any {
		t.Helper()
		code, rows := c.query(where, "", 0)
		if code != 0 || len(rows) != 1 {
			t.Fatalf("%s: code %d, %d rows; want the row", c.peer, code, len(rows))
		}
		return rows[0]
	}
	if got := lastKeys(rowOf(b, byID(cid))); len(got) < 5 || rowOf(b, byID(cid))["msg"] != "top secret" {
		t.Fatalf("member: last-message columns %v, want msg and the rest", got)
	}
	if got := lastKeys(rowOf(m, byID(cid))); len(got) != 0 {
		t.Fatalf("non-member sees %v", got)
	}
	// Nor can the where clause probe it.
	probe := fmt.Sprintf(`{"objectId":%q,"msg":"top secret"}`, cid)
	if _, rows := m.query(probe, "", 0); len(rows) != 0 {
		t.Fatal("non-member matched on msg")
	}
	if _, rows := m.query(fmt.Sprintf(`{"objectId":%q,"msg":{"$regex":"^top"}}`, cid), "", 0); len(rows) != 0 {
		t.Fatal("non-member matched msg with a regex")
	}
	if _, rows := b.query(probe, "", 0); len(rows) != 1 {
		t.Fatal("member: where on msg does not match")
	}
	// A client just kicked still finds the conversation, not its message.
	mustOK(t, a.do(convCmd(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}})))
	if row := rowOf(b, byID(cid)); row["objectId"] != cid || len(lastKeys(row)) != 0 {
		t.Fatalf("kicked member: row %v", row)
	}
	// The server API sees everything.
	_, g := e.admin("", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND},
		convCmd(lcpb.OpType_query, &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(byID(cid))}}))
	if !strings.Contains(g.GetConvMessage().GetResults().GetData(), "top secret") {
		t.Fatalf("server API query: %s", g.GetConvMessage().GetResults().GetData())
	}

	// A chatroom's history is open to anyone who joins: so is its last
	// message.
	room := mustOK(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{Transient: proto.Bool(true)}))).ConvMessage.GetCid()
	mustOK(t, a.sendText(room, "hello room"))
	if row := rowOf(m, byID(room)); row["msg"] != "hello room" {
		t.Fatalf("chatroom row for a non-member: %v", row)
	}

	// A temporary conversation: members only.
	tmp := mustOK(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"bob"}, TempConv: proto.Bool(true)}))).ConvMessage.GetCid()
	mustOK(t, a.sendText(tmp, "temp secret"))
	for _, tc := range []struct {
		c    *client
		want bool
	}{{b, true}, {m, false}} {
		g := mustOK(t, tc.c.do(convCmd(lcpb.OpType_query, &lcpb.ConvCommand{TempConvIds: []string{tmp}})))
		if got := strings.Contains(g.GetConvMessage().GetResults().GetData(), "temp secret"); got != tc.want {
			t.Errorf("temporary conversation, %s: last message shown %v, want %v", tc.c.peer, got, tc.want)
		}
	}
}

func TestQueryHidesSystemLastMessage(t *testing.T) {
	e := newEnv(t)
	s, m := e.client("sub"), e.client("mallory")
	s.open("", false, 0)
	m.open("", false, 0)
	_, g := e.admin("sys", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND, System: true},
		convCmd(lcpb.OpType_start, &lcpb.ConvCommand{Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"name":"news"}`)}}))
	cid := g.GetConvMessage().GetCid()
	mustOK(t, s.do(convCmd(lcpb.OpType_join, &lcpb.ConvCommand{Cid: proto.String(cid)})))
	rep, _ := e.admin("sys", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_BROADCAST, Cid: cid, ValidTill: e.now.Load() + 1e7},
		&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("bulletin")}})
	wantReplyOK(t, "broadcast", rep)
	for _, tc := range []struct {
		c    *client
		want bool
	}{{s, true}, {m, false}} {
		_, rows := tc.c.query(byID(cid), "", 0)
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows", tc.c.peer, len(rows))
		}
		if got := rows[0]["msg"] == "bulletin"; got != tc.want {
			t.Errorf("system conversation, %s: last message shown %v, want %v (row %v)", tc.c.peer, got, tc.want, rows[0])
		}
	}
}

func TestQueryScanCapAndBudget(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Limits.MaxQueryScan, c.Limits.QueryScanPerSecond = 5, 1 })
	a := e.client("alice")
	a.open("", false, 0)
	for range 4 {
		a.start([]string{"bob"}, `{"name":"x"}`, false)
	}
	// Budget: burst 2 × 5 = 10 conversations; each unindexed query
	// examines 4.
	for i := range 3 {
		if code, rows := a.query(`{"name":"x"}`, "", 0); code != 0 || len(rows) != 4 {
			t.Fatalf("query %d: code %d, %d rows", i, code, len(rows))
		}
	}
	if code, _ := a.query(`{"name":"x"}`, "", 0); code != lcpb.ErrConversationQueryFailed {
		t.Fatalf("over the app's budget: code %d, want 4310", code)
	}
	// Another app is not held back.
	o := e.client("olga")
	o.open("", false, 0)
	req := func(app string, g *lcpb.GenericCommand) *lcpb.GenericCommand {
		b, _ := proto.Marshal(g)
		r := o.req(meshpb.ClientRequest_COMMAND, b)
		r.AppId = app
		rep, err := e.core.HandleClient(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		return decodeAll(t, rep)[0]
	}
	g := req("other-app", convCmd(lcpb.OpType_query, &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(`{"name":"x"}`)}}))
	if g.GetCmd() != lcpb.CommandType_conv || g.GetOp() != lcpb.OpType_results {
		t.Fatalf("other app: %v", g)
	}
	// The budget refills.
	e.now.Add(int64(10 * time.Second / time.Millisecond))
	if code, _ := a.query(`{"name":"x"}`, "", 0); code != 0 {
		t.Fatalf("after the refill: code %d", code)
	}

	// Cap: a scan that would examine more than 5 conversations is refused;
	// an indexed query of the same app is answered.
	e.now.Add(int64(100 * time.Second / time.Millisecond))
	a.start([]string{"carol"}, `{"name":"x"}`, false)
	a.start([]string{"carol"}, `{"name":"y"}`, false)
	if code, _ := a.query(`{"name":"x"}`, "", 0); code != lcpb.ErrConversationQueryFailed {
		t.Fatalf("scan of 6: code %d, want 4310", code)
	}
	if code, rows := a.query(`{"m":"carol"}`, "", 0); code != 0 || len(rows) != 2 {
		t.Fatalf("indexed: code %d, %d rows", code, len(rows))
	}
	mb := metricsText(t, e.core)
	for _, want := range []string{
		`relaymesh_core_queries_refused_total{reason="budget"} 1`,
		`relaymesh_core_queries_refused_total{reason="scan"} 1`,
		fmt.Sprintf(`relaymesh_core_query_examined_total{app=%q} %d`, testApp, 4*4+6+2),
	} {
		if !strings.Contains(mb, want) {
			t.Errorf("metrics: no %s in\n%s", want, mb)
		}
	}
}

func TestInputValidation(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, `{"name":"n"}`, false).ConvMessage.GetCid()
	proposed := e.rep.proposed.Load()
	members := func() []any {
		_, rows := a.query(byID(cid), "", 0)
		return rows[0]["m"].([]any)
	}
	before := fmt.Sprint(members())
	bad := []string{"a:b", strings.Repeat("x", 65), "tab\there", "nul\x00", "\xff\xfe"}
	for _, id := range bad {
		wantError(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"bob", id}})), lcpb.ErrInvalidLogin)
		wantError(t, a.do(convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{id}})), lcpb.ErrInvalidLogin)
		wantError(t, a.do(convCmd(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{id}})), lcpb.ErrInvalidLogin)
		wantError(t, a.do(convCmd(lcpb.OpType_add_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{id}})), lcpb.ErrInvalidLogin)
		wantError(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: lcpb.OpType_block.Enum(),
			BlacklistMessage: &lcpb.BlacklistCommand{SrcCid: proto.String(cid), ToPids: []string{id}}}), lcpb.ErrInvalidLogin)
		wantError(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"), MentionPids: []string{id}}}), lcpb.ErrInvalidLogin)
	}
	// 64 characters (not bytes) is fine.
	a.start([]string{strings.Repeat("界", 64)}, "", false)
	proposed++

	var many []string
	for i := range MaxMentions + 1 {
		many = append(many, fmt.Sprint("u", i))
	}
	for _, dm := range []*lcpb.DirectCommand{
		{Cid: proto.String(cid), Msg: proto.String("hi"), MentionPids: many},
		{Cid: proto.String(cid), Msg: proto.String("hi"), Dt: proto.String(strings.Repeat("d", 65))},
		{Cid: proto.String(cid), Msg: proto.String("hi"), Dt: proto.String("with space")},
		{Cid: proto.String(cid), Msg: proto.String("hi"), Dt: proto.String("ctl\x01")},
		{Cid: proto.String(cid), Msg: proto.String("hi"), Transient: proto.Bool(true), MentionPids: many},
	} {
		wantError(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: dm}), lcpb.ErrConversationAPIFailed)
	}
	wantError(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
		PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{{Cid: proto.String(cid), Mid: proto.String("m"),
			Data: proto.String("x"), MentionPids: many}}}}), lcpb.ErrConversationAPIFailed)

	// Attributes: a create or an update over the cap, and an update whose
	// merged result would be over it.
	big := fmt.Sprintf(`{"blob":%q}`, strings.Repeat("z", shard.MaxAttrBytes))
	wantError(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"bob"},
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(big)}})), lcpb.ErrConversationUpdateFailed)
	wantError(t, a.do(convCmd(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(big)}})), lcpb.ErrConversationUpdateFailed)
	half := strings.Repeat("h", shard.MaxAttrBytes/2)
	mustOK(t, a.do(convCmd(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf(`{"attr.a":%q}`, half))}})))
	proposed++
	_, rows := a.query(byID(cid), "", 0)
	attrBefore := fmt.Sprint(rows[0])
	wantError(t, a.do(convCmd(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
		Attr: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf(`{"attr.b":%q}`, half))}})), lcpb.ErrConversationUpdateFailed)
	proposed++ // the merged check is the shard's (it was proposed, and refused)
	if _, rows := a.query(byID(cid), "", 0); fmt.Sprint(rows[0]) != attrBefore {
		t.Fatal("a refused update changed the conversation")
	}

	// The server API: a from_client or member that is not a clientId.
	rep, _ := e.admin("a:b", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND}, &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("x")}})
	if rep.GetErrorCode() != lcpb.ErrInvalidLogin {
		t.Fatalf("REST send from a:b: %d %q", rep.GetErrorCode(), rep.GetErrorReason())
	}
	rep, _ = e.admin("", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND},
		convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bad\nid"}}))
	if rep.GetErrorCode() != lcpb.ErrInvalidLogin {
		t.Fatalf("REST add of bad\\nid: %d %q", rep.GetErrorCode(), rep.GetErrorReason())
	}

	if got := e.rep.proposed.Load(); got != proposed {
		t.Errorf("%d commands proposed, want %d: refused input reached the shard", got, proposed)
	}
	if after := fmt.Sprint(members()); after != before {
		t.Errorf("members %s, want %s", after, before)
	}
	if items := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}); len(items) != 0 {
		t.Errorf("%d messages stored, want none", len(items))
	}
}

// TestCommandVersionPin: a core pinned to version 1 proposes version 1
// commands, which every replica applies as before (no merged attribute
// cap), so a rolling upgrade never has old and new replicas disagree.
func TestCommandVersionPin(t *testing.T) {
	for _, v := range []int{shard.Version1, 0} {
		e := newEnvWith(t, func(c *Config) { c.CommandVersion = v })
		a := e.client("alice")
		a.open("", false, 0)
		cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
		half := strings.Repeat("h", shard.MaxAttrBytes/2)
		for i, k := range []string{"a", "b"} {
			g := a.do(convCmd(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
				Attr: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf(`{"attr.%s":%q}`, k, half))}}))
			refused := g.GetCmd() == lcpb.CommandType_error
			if want := i == 1 && v == 0; refused != want {
				t.Errorf("version %d, update %d: refused %v, want %v (%v)", v, i, refused, want, g.GetErrorMessage())
			}
		}
	}
}
