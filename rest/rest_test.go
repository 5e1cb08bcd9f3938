package rest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// fakeBackend records ADMIN requests and answers them with reply.
type fakeBackend struct {
	mu    sync.Mutex
	reqs  []*meshpb.ClientRequest
	reply func(*meshpb.ClientRequest) *meshpb.ClientReply
}

func (f *fakeBackend) Do(_ context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	reply := f.reply
	f.mu.Unlock()
	if reply == nil {
		return &meshpb.ClientReply{}, nil
	}
	if rep := reply(req); rep != nil {
		return rep, nil
	}
	return nil, errors.New("fake: no answer")
}

func (f *fakeBackend) last(t *testing.T) (*meshpb.ClientRequest, *lcpb.GenericCommand) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no backend request")
	}
	req := f.reqs[len(f.reqs)-1]
	if req.GetKind() != meshpb.ClientRequest_ADMIN {
		t.Fatalf("request kind %v, want ADMIN", req.GetKind())
	}
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
		t.Fatal(err)
	}
	return req, cmd
}

func cmdReply(g *lcpb.GenericCommand) *meshpb.ClientReply {
	b, _ := proto.Marshal(g)
	return &meshpb.ClientReply{Commands: [][]byte{b}}
}

const (
	testApp    = "AbCdEfGh-gzGzoHsz"
	testKey    = "UtOCzqb67d3sN12Kts4URwy8" // the X-LC-Sign test vector's app key
	testMaster = "master-key-of-the-app"
)

type env struct {
	t  *testing.T
	be *fakeBackend
	h  *Handler
}

func newEnv(t *testing.T, lim Limits) *env {
	be := &fakeBackend{}
	reg := apps.NewStatic([]apps.App{{ID: testApp, Key: testKey, MasterKey: testMaster}})
	h := New(Config{Backend: be, Apps: reg, Limits: lim,
		VerifyToken: func(st string) (string, string, uint64, error) {
			app, client, ok := strings.Cut(st, "/") // fake tokens: "app/client"
			if !ok {
				return "", "", 0, errors.New("bad token")
			}
			return app, client, 7, nil
		}})
	return &env{t: t, be: be, h: h}
}

// do runs one request with headers ("Name: value") and returns the status
// and the decoded JSON body.
func (e *env) do(method, path, body string, headers ...string) (int, any) {
	e.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	raw, _ := io.ReadAll(w.Body)
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		e.t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return w.Code, v
}

var master = []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testMaster + ",master"}

func wantError(t *testing.T, what string, status int, body any, wantStatus int, wantCode float64) {
	t.Helper()
	m, _ := body.(map[string]any)
	if status != wantStatus || m["code"] != wantCode {
		t.Errorf("%s: got %d %v, want %d with code %v", what, status, body, wantStatus, wantCode)
	}
	if s, _ := m["error"].(string); s == "" {
		t.Errorf("%s: no error message in %v", what, body)
	}
}

func TestSignTestVector(t *testing.T) {
	if got, want := Sign("1453014943466", testKey), "d5bcbb897e19b2f6633c716dfdfaf9be"; got != want {
		t.Fatalf("Sign: got %s, want %s", got, want)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Count: 3}}
	}
	const unread = "/1.2/rtm/clients/bob/unread-count" // app key
	const kick = "/1.2/rtm/clients/bob/kick"           // master key
	sign := "d5bcbb897e19b2f6633c716dfdfaf9be,1453014943466"
	e.h.cfg.Now = func() time.Time { return time.UnixMilli(1453014943466 + 60_000) } // the test vector's time
	for _, tc := range []struct {
		name, method, path string
		headers            []string
		status             int
		code               float64 // 0: success
	}{
		{"no app id", "GET", unread, []string{"X-LC-Key: " + testKey}, 401, 401},
		{"unknown app", "GET", unread, []string{"X-LC-Id: nope", "X-LC-Key: " + testKey}, 401, 401},
		{"no key", "GET", unread, []string{"X-LC-Id: " + testApp}, 401, 401},
		{"wrong key", "GET", unread, []string{"X-LC-Id: " + testApp, "X-LC-Key: wrong"}, 401, 401},
		{"app key", "GET", unread, []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey}, 200, 0},
		{"app key as master", "GET", unread, []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey + ",master"}, 401, 401},
		{"master key on app-key route", "GET", unread, master, 200, 0},
		{"sign", "GET", unread, []string{"X-LC-Id: " + testApp, "X-LC-Sign: " + sign}, 200, 0},
		{"sign upper case", "GET", unread, []string{"X-LC-Id: " + testApp, "X-LC-Sign: " + strings.ToUpper(sign)}, 200, 0},
		{"sign wrong ts", "GET", unread, []string{"X-LC-Id: " + testApp, "X-LC-Sign: d5bcbb897e19b2f6633c716dfdfaf9be,1453014943467"}, 401, 401},
		{"app key on master route", "POST", kick, []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey}, 403, 119},
		{"app sign on master route", "POST", kick, []string{"X-LC-Id: " + testApp, "X-LC-Sign: " + sign}, 403, 119},
		{"master sign", "POST", kick, []string{"X-LC-Id: " + testApp, "X-LC-Sign: " + Sign("1453014943000", testMaster) + ",1453014943000,master"}, 200, 0},
		{"master key", "POST", kick, master, 200, 0},
		{"wrong master", "POST", kick, []string{"X-LC-Id: " + testApp, "X-LC-Key: x,master"}, 401, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.do(tc.method, tc.path, "{}", tc.headers...)
			if tc.code != 0 {
				wantError(t, tc.name, status, body, tc.status, tc.code)
			} else if status != tc.status {
				t.Errorf("got %d %v, want %d", status, body, tc.status)
			}
		})
	}
}

// TestDevAppsTakeAnyKey: an app without keys (relaymesh dev) accepts any
// key as what it claims to be.
func TestDevAppsTakeAnyKey(t *testing.T) {
	be := &fakeBackend{}
	h := New(Config{Backend: be, Apps: apps.NewDev()})
	e := &env{t: t, be: be, h: h}
	if status, body := e.do("POST", "/1.2/rtm/clients/bob/kick", "{}", "X-LC-Id: any-app", "X-LC-Key: whatever,master"); status != 200 {
		t.Errorf("any master key: got %d %v, want 200", status, body)
	}
	status, body := e.do("POST", "/1.2/rtm/clients/bob/kick", "{}", "X-LC-Id: any-app", "X-LC-Key: whatever")
	wantError(t, "any app key on a master route", status, body, 403, 119)
}

func TestSendMessage(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		return cmdReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
			AckMessage: &lcpb.AckCommand{Uid: proto.String("mid1"), T: proto.Int64(1495431811151)}})
	}
	status, body := e.do("POST", "/1.2/rtm/conversations/c1/messages",
		`{"from_client":"server","message":{"_lctype":-1,"_lctext":"hi"},"no_sync":true,"transient":true,
		  "push_data":{"alert":"new"},"priority":"HIGH","mention_all":true,"mention_client_ids":["bob"]}`, master...)
	if status != 200 {
		t.Fatalf("send: got %d %v", status, body)
	}
	if m := body.(map[string]any); m["msg-id"] != "mid1" || m["timestamp"] != float64(1495431811151) {
		t.Errorf("send reply: got %v, want msg-id mid1, timestamp 1495431811151", body)
	}
	req, cmd := e.be.last(t)
	dm := cmd.GetDirectMessage()
	switch {
	case req.GetPeerId() != "server" || req.GetAppId() != testApp:
		t.Errorf("acts as %q in %q, want server in %s", req.GetPeerId(), req.GetAppId(), testApp)
	case req.GetAdmin().GetOp() != meshpb.AdminRequest_COMMAND || !req.GetAdmin().GetNoSync():
		t.Errorf("admin: got %v, want COMMAND with no_sync", req.GetAdmin())
	case cmd.GetCmd() != lcpb.CommandType_direct || dm.GetCid() != "c1" || dm.GetMsg() != `{"_lctype":-1,"_lctext":"hi"}`:
		t.Errorf("command: got %v", cmd)
	case !dm.GetTransient() || !dm.GetMentionAll() || len(dm.MentionPids) != 1 || dm.GetPushData() != `{"alert":"new"}`:
		t.Errorf("flags: got %v", dm)
	case cmd.Priority == nil || cmd.GetPriority() != 1:
		t.Errorf("priority: got %v, want 1 (HIGH)", cmd.Priority)
	}
	for _, tc := range []struct {
		priority string
		want     int32
	}{{"", 2}, {"normal", 2}, {"low", 3}, {"High", 1}} {
		e.do("POST", "/1.2/rtm/chatrooms/c1/messages", `{"from_client":"a","message":"x","priority":"`+tc.priority+`"}`, master...)
		if _, cmd := e.be.last(t); cmd.GetPriority() != tc.want {
			t.Errorf("priority %q: got %d, want %d", tc.priority, cmd.GetPriority(), tc.want)
		}
	}

	for _, tc := range []struct{ name, body string }{
		{"no from_client", `{"message":"x"}`},
		{"no message", `{"from_client":"a"}`},
		{"bad priority", `{"from_client":"a","message":"x","priority":"urgent"}`},
		{"too many mentions", `{"from_client":"a","message":"x","mention_client_ids":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17","18","19","20","21"]}`},
	} {
		status, body := e.do("POST", "/1.2/rtm/conversations/c1/messages", tc.body, master...)
		wantError(t, tc.name, status, body, 400, 1)
	}
	status, body = e.do("POST", "/1.2/rtm/conversations/c1/messages", `{"from_client":"a","message":"`+strings.Repeat("x", 5121)+`"}`, master...)
	wantError(t, "too big", status, body, 400, 4109)
	status, body = e.do("POST", "/1.2/rtm/conversations/c1/messages", `{"from_client":`, master...)
	wantError(t, "bad JSON", status, body, 400, 107)
}

func TestHistory(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		return cmdReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Logs: []*lcpb.LogItem{
			{MsgId: proto.String("m1"), From: proto.String("a"), Data: proto.String("one"), Timestamp: proto.Int64(10), ConvType: proto.Int32(1)},
			{MsgId: proto.String("m2"), From: proto.String("b"), Data: proto.String("AAE="), Timestamp: proto.Int64(20), Bin: proto.Bool(true), ConvType: proto.Int32(1)},
		}}})
	}
	status, body := e.do("GET", "/1.2/rtm/conversations/c1/messages?msgid=m9&timestamp=30&till_msgid=m0&till_timestamp=5&include_start=true&include_stop=1&limit=5000", "", master...)
	if status != 200 {
		t.Fatalf("history: got %d %v", status, body)
	}
	_, cmd := e.be.last(t)
	lm := cmd.GetLogsMessage()
	if lm.GetCid() != "c1" || lm.GetMid() != "m9" || lm.GetT() != 30 || lm.GetTmid() != "m0" || lm.GetTt() != 5 ||
		!lm.GetTIncluded() || !lm.GetTtIncluded() || lm.GetLimit() != 1000 || lm.GetDirection() != lcpb.LogsCommand_OLD {
		t.Errorf("logs command: got %v", lm)
	}
	rows := body.([]any)
	want := []map[string]any{
		{"timestamp": float64(20), "conv-id": "c1", "data": "AAE=", "from": "b", "msg-id": "m2", "is-conv": true, "is-room": false, "to": "c1", "bin": true},
		{"timestamp": float64(10), "conv-id": "c1", "data": "one", "from": "a", "msg-id": "m1", "is-conv": true, "is-room": false, "to": "c1", "bin": false},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows: got %v", rows)
	}
	for i, w := range want {
		got, _ := json.Marshal(rows[i])
		exp, _ := json.Marshal(w)
		if string(got) != string(exp) {
			t.Errorf("row %d: got %s, want %s", i, got, exp)
		}
	}

	status, body = e.do("GET", "/1.2/rtm/conversations/c1/messages?reversed=true", "", master...)
	_, cmd = e.be.last(t)
	if rows := body.([]any); status != 200 || rows[0].(map[string]any)["msg-id"] != "m1" ||
		cmd.GetLogsMessage().GetDirection() != lcpb.LogsCommand_NEW || cmd.GetLogsMessage().GetLimit() != 100 {
		t.Errorf("reversed: got %d %v with %v, want oldest first, direction NEW, limit 100", status, body, cmd.GetLogsMessage())
	}
	status, body = e.do("GET", "/1.2/rtm/conversations/c1/messages?timestamp=soon", "", master...)
	wantError(t, "bad timestamp", status, body, 400, 1)
}

func TestCoreErrorsKeepTheirCode(t *testing.T) {
	e := newEnv(t, Limits{})
	for _, tc := range []struct {
		code   int32
		status int
	}{{4303, 404}, {4404, 404}, {4309, 403}, {4302, 400}, {4200, 500}} {
		e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
			return &meshpb.ClientReply{ErrorCode: tc.code, ErrorReason: "reason"}
		}
		status, body := e.do("DELETE", "/1.2/rtm/conversations/c1", "", master...)
		wantError(t, "core error", status, body, tc.status, float64(tc.code))
	}
	e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply { return nil } // backend unreachable
	status, body := e.do("DELETE", "/1.2/rtm/conversations/c1", "", master...)
	wantError(t, "backend down", status, body, 503, 4200)
	status, body = e.do("GET", "/1.2/rtm/unknown", "", master...)
	wantError(t, "unknown path", status, body, 404, 404)
}

// TestDeleteMessage: DELETE .../messages/{mid} is an ADMIN DELETE_MESSAGE
// with the id and timestamp, answered {}; the core's 4404 is a 404.
func TestDeleteMessage(t *testing.T) {
	e := newEnv(t, Limits{})
	for _, kind := range []string{"conversations", "chatrooms"} {
		status, body := e.do("DELETE", "/1.2/rtm/"+kind+"/c1/messages/m1?from_client=server&timestamp=1495431811151", "", master...)
		if m, ok := body.(map[string]any); status != 200 || !ok || len(m) != 0 {
			t.Fatalf("%s delete: got %d %v, want 200 {}", kind, status, body)
		}
		req := e.be.reqs[len(e.be.reqs)-1]
		a := req.GetAdmin()
		if a.GetOp() != meshpb.AdminRequest_DELETE_MESSAGE || a.GetCid() != "c1" || a.GetMid() != "m1" ||
			a.GetTimestamp() != 1495431811151 || req.GetPeerId() != "server" || len(req.GetCommand()) != 0 {
			t.Errorf("%s delete: got request %v, want DELETE_MESSAGE c1/m1 at 1495431811151 as server", kind, req)
		}
	}
	status, body := e.do("DELETE", "/1.2/rtm/conversations/c1/messages/m1", "", master...)
	if a := e.be.reqs[len(e.be.reqs)-1].GetAdmin(); status != 200 || a.GetTimestamp() != 0 {
		t.Errorf("without timestamp: got %d %v, timestamp %d, want 200 and 0", status, body, a.GetTimestamp())
	}
	n := len(e.be.reqs)
	status, body = e.do("DELETE", "/1.2/rtm/conversations/c1/messages/m1?timestamp=yesterday", "", master...)
	wantError(t, "bad timestamp", status, body, 400, 1)
	status, body = e.do("DELETE", "/1.2/rtm/conversations/c1/messages/m1", "", "X-LC-Id: "+testApp, "X-LC-Key: "+testKey)
	wantError(t, "app key", status, body, 403, 119)
	if len(e.be.reqs) != n {
		t.Errorf("refused requests reached the backend: %d requests, want %d", len(e.be.reqs), n)
	}
	e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
		return &meshpb.ClientReply{ErrorCode: 4404, ErrorReason: "shard: message not found: m1"}
	}
	status, body = e.do("DELETE", "/1.2/rtm/conversations/c1/messages/m1", "", master...)
	wantError(t, "unknown message", status, body, 404, 4404)
}

func TestConversationRequests(t *testing.T) {
	e := newEnv(t, Limits{})
	row := `[{"objectId":"c1","m":["a","b"],"mu":["b"],"updatedAt":"2020-01-01T00:00:00.000Z"}]`
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		cmd := new(lcpb.GenericCommand)
		proto.Unmarshal(req.GetCommand(), cmd)
		out := &lcpb.GenericCommand{Cmd: cmd.Cmd, ConvMessage: &lcpb.ConvCommand{Cid: proto.String("c1"),
			Results: &lcpb.JsonObjectMessage{Data: proto.String(row)}, M: []string{"a", "b"}, Udate: proto.String("u")}}
		return cmdReply(out)
	}
	status, body := e.do("POST", "/1.2/rtm/conversations", `{"name":"n","m":["b"],"c":"a","unique":true,"color":"red"}`, master...)
	if status != 200 || body.(map[string]any)["objectId"] != "c1" {
		t.Fatalf("create: got %d %v", status, body)
	}
	e.be.mu.Lock()
	start := e.be.reqs[0]
	e.be.mu.Unlock()
	cmd := new(lcpb.GenericCommand)
	proto.Unmarshal(start.GetCommand(), cmd)
	cm := cmd.GetConvMessage()
	if start.GetPeerId() != "a" || cmd.GetOp() != lcpb.OpType_start || !cm.GetUnique() || cm.GetTransient() ||
		len(cm.M) != 1 || cm.GetAttr().GetData() != `{"color":"red","name":"n"}` {
		t.Errorf("start: peer %q, command %v", start.GetPeerId(), cmd)
	}

	status, body = e.do("GET", `/1.2/rtm/conversations?where={"m":"a"}&limit=5&skip=1&order=-updatedAt`, "", master...)
	_, cmd = e.be.last(t)
	if status != 200 || len(body.(map[string]any)["results"].([]any)) != 1 || cmd.GetConvMessage().GetWhere().GetData() != `{"m":"a","tr":false}` ||
		cmd.GetConvMessage().GetLimit() != 5 || cmd.GetConvMessage().GetSkip() != 1 || cmd.GetConvMessage().GetSort() != "-updatedAt" {
		t.Errorf("query: got %d %v with %v", status, body, cmd.GetConvMessage())
	}
	status, body = e.do("PUT", "/1.2/rtm/conversations/c1", `{"m":["x"]}`, master...)
	wantError(t, "update m", status, body, 400, 1)
	status, body = e.do("PUT", "/1.2/rtm/conversations/c1", `{"name":"x"}`, master...)
	if m := body.(map[string]any); status != 200 || m["updatedAt"] != "u" || m["objectId"] != "c1" {
		t.Errorf("update: got %d %v", status, body)
	}
	status, body = e.do("DELETE", "/1.2/rtm/conversations/c1/members", `{"client_ids":["b"]}`, master...)
	if m := body.(map[string]any); status != 200 || m["updatedAt"] != "2020-01-01T00:00:00.000Z" {
		t.Errorf("remove members: got %d %v", status, body)
	}
	status, body = e.do("POST", "/1.2/rtm/conversations/c1/members", `{"client_ids":[]}`, master...)
	wantError(t, "no client_ids", status, body, 400, 1)
	status, body = e.do("GET", "/1.2/rtm/conversations/c1/members", "", master...)
	if got, _ := json.Marshal(body); status != 200 || string(got) != `{"result":["a","b"]}` {
		t.Errorf("members: got %d %s", status, got)
	}
	status, body = e.do("GET", "/1.2/rtm/conversations/c1/mutes", "", master...)
	if got, _ := json.Marshal(body); status != 200 || string(got) != `{"result":["b"]}` {
		t.Errorf("mutes: got %d %s", status, got)
	}
}

func TestClients(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		return cmdReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(),
			SessionMessage: &lcpb.SessionCommand{OnlineSessionPeerIds: []string{"a"}}})
	}
	status, body := e.do("POST", "/1.2/rtm/clients/check-online", `{"client_ids":["a","b"]}`, master...)
	if got, _ := json.Marshal(body); status != 200 || string(got) != `{"results":["a"]}` {
		t.Errorf("check-online: got %d %s", status, got)
	}
	status, body = e.do("POST", "/1.2/rtm/clients/check-online", `{"client_ids":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17","18","19","20","21"]}`, master...)
	wantError(t, "21 ids", status, body, 400, 1)

	e.be.reply = nil
	status, body = e.do("POST", "/1.2/rtm/clients/bob/kick", `{"reason":"bye"}`, master...)
	req, _ := e.be.last(t)
	if a := req.GetAdmin(); status != 200 || a.GetOp() != meshpb.AdminRequest_KICK || a.GetCode() != 4115 || a.GetReason() != "bye" || req.GetPeerId() != "bob" {
		t.Errorf("kick: got %d %v, request %v", status, body, req)
	}
	status, body = e.do("POST", "/1.2/rtm/clients/bob/kick", `{"reason":"`+strings.Repeat("é", 21)+`"}`, master...)
	wantError(t, "long reason", status, body, 400, 1)
}

// TestSDKCalls: the two REST calls the JS SDK makes, with its headers.
func TestSDKCalls(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		if req.GetPeerId() != "alice" {
			return &meshpb.ClientReply{ErrorCode: 4317, ErrorReason: "not a member"}
		}
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Roles: []*meshpb.MemberRole{
			{ClientId: "alice", Role: "Owner"}, {ClientId: "bob", Role: "Manager"}}}}
	}
	sdk := func(token string) []string {
		return []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey, "X-LC-IM-Session-Token: " + token}
	}
	path := `/1.1/classes/_ConversationMemberInfo?client_id=alice&where={"cid":"c1"}`
	status, body := e.do("GET", path, "", sdk(testApp+"/alice")...)
	want := `{"results":[{"cid":"c1","clientId":"alice","objectId":"` + memberInfoID("c1", "alice") + `","role":"Owner"},` +
		`{"cid":"c1","clientId":"bob","objectId":"` + memberInfoID("c1", "bob") + `","role":"Manager"}]}` // keys sorted by the re-encoding
	if got, _ := json.Marshal(body); status != 200 || string(got) != want {
		t.Errorf("member infos: got %d %s, want %s", status, got, want)
	}
	req, _ := e.be.last(t)
	if req.GetAdmin().GetOp() != meshpb.AdminRequest_MEMBER_ROLES || req.GetAdmin().GetCid() != "c1" {
		t.Errorf("member infos request: %v", req)
	}
	// The core is asked to check the token was not revoked (generation 7 is
	// what the fake verifier reads from every token).
	if req.GetPeerId() != "alice" || !req.GetStReopen() || req.GetStGeneration() != 7 {
		t.Errorf("member infos request: peer %q st_reopen %v st_generation %d, want alice, true, 7",
			req.GetPeerId(), req.GetStReopen(), req.GetStGeneration())
	}
	status, body = e.do("GET", `/1.1/classes/_ConversationMemberInfo?where={"cid":"c1","peerId":"bob"}`, "", sdk(testApp+"/alice")...)
	if rows := body.(map[string]any)["results"].([]any); status != 200 || len(rows) != 1 {
		t.Errorf("one member: got %d %v", status, body)
	}
	status, body = e.do("GET", path, "", sdk("other-app/alice")...)
	wantError(t, "token of another app", status, body, 401, 401)
	status, body = e.do("GET", path, "", sdk(testApp+"/bob")...)
	wantError(t, "token of another client", status, body, 401, 401)
	status, body = e.do("GET", `/1.1/classes/_ConversationMemberInfo?where={"cid":"c1"}`, "", sdk(testApp+"/carol")...)
	wantError(t, "not a member", status, body, 403, 4317)
	status, body = e.do("GET", path, "", "X-LC-Id: "+testApp, "X-LC-Key: "+testKey)
	wantError(t, "no token", status, body, 401, 401)
	status, body = e.do("GET", `/1.1/classes/_ConversationMemberInfo?where={}`, "", sdk(testApp+"/alice")...)
	wantError(t, "no cid", status, body, 400, 1)

	status, body = e.do("GET", "/1.1/rtm/notifications?client_id=alice&start_ts=1&notification_type=permanent", "", sdk(testApp+"/alice")...)
	if got, _ := json.Marshal(body); status != 200 || string(got) != `{"hasMore":false,"notifications":[]}` {
		t.Errorf("notifications: got %d %s", status, got)
	}
}

func TestSendQueue(t *testing.T) {
	q := newSendQueue(10, 2) // a turn every 100 ms, two may wait
	t0 := time.Unix(1000, 0)
	for i, want := range []struct {
		wait time.Duration
		ok   bool
	}{{0, true}, {100 * time.Millisecond, true}, {200 * time.Millisecond, true}, {0, false}} {
		wait, ok := q.admit("app", t0)
		if wait != want.wait || ok != want.ok {
			t.Errorf("admit %d: got %v %v, want %v %v", i, wait, ok, want.wait, want.ok)
		}
	}
	if _, ok := q.admit("other", t0); !ok {
		t.Error("another app is refused: queues must be per app")
	}
	if wait, ok := q.admit("app", t0.Add(250*time.Millisecond)); !ok || wait != 50*time.Millisecond {
		t.Errorf("after 250 ms: got %v %v, want 50ms true", wait, ok)
	}
	if wait, ok := newSendQueue(-1, 1).admit("app", t0); !ok || wait != 0 {
		t.Errorf("unlimited: got %v %v", wait, ok)
	}
}

// TestSendQueueOverflow429: beyond the queue bound a send gets 429.
func TestSendQueueOverflow429(t *testing.T) {
	e := newEnv(t, Limits{SendsPerSecond: 0.001, SendQueue: 1})
	e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
		return cmdReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Uid: proto.String("m"), T: proto.Int64(1)}})
	}
	send := `{"from_client":"a","message":"x"}`
	if status, body := e.do("POST", "/1.2/rtm/conversations/c1/messages", send, master...); status != 200 {
		t.Fatalf("first send: got %d %v", status, body)
	}
	// A second one takes the only place in the queue (its turn is 1000 s
	// away)...
	if wait, ok := e.h.queue.admit(testApp, time.Now()); !ok || wait <= 0 {
		t.Fatalf("second admit: got %v %v, want a wait", wait, ok)
	}
	// ...so the third finds the queue full.
	status, body := e.do("POST", "/1.2/rtm/conversations/c1/messages", send, master...)
	wantError(t, "send beyond the queue", status, body, 429, 429)
	if wait, ok := e.h.queue.admit("other-app", time.Now()); !ok || wait != 0 {
		t.Errorf("another app's queue: got %v %v, want no wait", wait, ok)
	}
	if status, body := e.do("GET", "/1.2/rtm/conversations/c1/members", "", master...); status == 429 {
		t.Errorf("non-message operation queued: %v", body)
	}
}
