package rest

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// fakeUsers is a user store: token "tok-<id>" is user <id>; "crash"
// fails; a user named "banned" is refused by the hook.
type fakeUsers struct {
	mu    sync.Mutex
	calls int
	block chan struct{} // when set, VerifyUser waits on it
}

func (f *fakeUsers) HasUserStore(app string) bool { return app != "nostore-app" }

func (f *fakeUsers) VerifyUser(ctx context.Context, app, token string) (hooks.User, error) {
	f.mu.Lock()
	f.calls++
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	switch {
	case token == "crash":
		return hooks.User{}, fmt.Errorf("%w: boom", hooks.ErrFailed)
	case strings.HasPrefix(token, "tok-"):
		id := strings.TrimPrefix(token, "tok-")
		return hooks.User{ObjectID: id, JSON: json.RawMessage(`{"objectId":"` + id + `"}`)}, nil
	}
	return hooks.User{}, hooks.ErrBadToken
}

func (f *fakeUsers) ClientSign(ctx context.Context, app string, user json.RawMessage) (hooks.SignVerdict, error) {
	if strings.Contains(string(user), `"banned"`) {
		return hooks.SignVerdict{Refuse: true, Error: "banned user"}, nil
	}
	return hooks.SignVerdict{}, nil
}

func newSignEnv(t *testing.T, lim Limits, users UserStore) *env {
	e := newEnv(t, lim)
	reg := apps.NewStatic([]apps.App{{ID: testApp, Key: testKey, MasterKey: testMaster}, {ID: "nomaster-app", Key: "k"}, {ID: "nostore-app", Key: "k", MasterKey: "m"}})
	e.h = New(Config{Backend: e.be, Apps: reg, Limits: lim, Users: users, Now: func() time.Time { return time.UnixMilli(1700000000123) }})
	return e
}

var withAppKey = []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey, "Content-Type: application/json"}

func TestSign(t *testing.T) {
	users := &fakeUsers{}
	e := newSignEnv(t, Limits{}, users)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/1.1/rtm/sign", `{"session_token":"tok-u1"}`},
		{"GET", "/1.2/rtm/clients/sign?session_token=tok-u1", ""},
	} {
		status, body := e.do(tc.method, tc.path, tc.body, withAppKey...)
		m, _ := body.(map[string]any)
		if status != 200 || m["client_id"] != "u1" {
			t.Fatalf("%s %s: got %d %v", tc.method, tc.path, status, body)
		}
		ts, ok := m["timestamp"].(float64)
		nonce, _ := m["nonce"].(string)
		if !ok || int64(ts) != 1700000000123 || len(nonce) != signatureNonceLen {
			t.Errorf("timestamp %v (%T) nonce %q: want the number 1700000000123 and a nonce", m["timestamp"], m["timestamp"], nonce)
		}
		mac := hmac.New(sha1.New, []byte(testMaster))
		fmt.Fprintf(mac, "%s:%s::%d:%s", testApp, "u1", int64(ts), nonce)
		if m["signature"] != hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("signature %v is not HMAC-SHA1(master, appid:clientid::ts:nonce)", m["signature"])
		}
	}
	for _, tc := range []struct {
		name    string
		body    string
		headers []string
		status  int
		code    float64
	}{
		{"no token", `{}`, withAppKey, 400, 1},
		{"token too long", `{"session_token":"` + strings.Repeat("x", maxSessionToken+1) + `"}`, withAppKey, 400, 1},
		{"not JSON", `{`, withAppKey, 400, 107},
		{"bad token", `{"session_token":"forged"}`, withAppKey, 401, 211},
		{"hook refuses", `{"session_token":"tok-banned"}`, withAppKey, 403, 142},
		{"store fails", `{"session_token":"crash"}`, withAppKey, 502, 1},
		{"wrong app key", `{"session_token":"tok-u1"}`, []string{"X-LC-Id: " + testApp, "X-LC-Key: wrong"}, 401, 401},
		{"no store", `{"session_token":"tok-u1"}`, []string{"X-LC-Id: nostore-app", "X-LC-Key: k"}, 501, 1},
		{"no master key", `{"session_token":"tok-u1"}`, []string{"X-LC-Id: nomaster-app", "X-LC-Key: k"}, 501, 1},
	} {
		status, body := e.do("POST", "/1.1/rtm/sign", tc.body, tc.headers...)
		wantError(t, tc.name, status, body, tc.status, tc.code)
	}
	status, body := e.do("GET", "/1.2/rtm/clients/sign", "", withAppKey...)
	wantError(t, "GET without token", status, body, 400, 1)
	if got, _ := body.(map[string]any)["error"].(string); got == "" {
		t.Error("no message")
	}
	// Without any user store configured the endpoints say so.
	e = newSignEnv(t, Limits{}, nil)
	status, body = e.do("POST", "/1.1/rtm/sign", `{"session_token":"tok-u1"}`, withAppKey...)
	wantError(t, "no user stores", status, body, 501, 1)
	if msg := body.(map[string]any)["error"].(string); !strings.Contains(msg, "user_verify_url") {
		t.Errorf("the refusal should name the setting: %q", msg)
	}
}

// TestSignFlood: an app's sign requests are bounded by rate and by user-store
// calls in flight; the excess gets 429 at once and never reaches the store.
func TestSignFlood(t *testing.T) {
	users := &fakeUsers{}
	e := newSignEnv(t, Limits{SignsPerSecond: 5, SignsInFlight: -1}, users)
	ok, refused := 0, 0
	for range 20 {
		status, body := e.do("POST", "/1.1/rtm/sign", `{"session_token":"tok-u1"}`, withAppKey...)
		switch status {
		case 200:
			ok++
		case 429:
			refused++
			wantError(t, "flood", status, body, 429, 429)
		default:
			t.Fatalf("got %d %v", status, body)
		}
	}
	if ok != 5 || refused != 15 || users.calls != 5 {
		t.Fatalf("rate 5/s, 20 at once: %d signed, %d refused, %d store calls; want 5, 15, 5", ok, refused, users.calls)
	}

	users = &fakeUsers{block: make(chan struct{})}
	e = newSignEnv(t, Limits{SignsPerSecond: -1, SignsInFlight: 3}, users)
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for range 3 {
		wg.Go(func() {
			status, _ := e.do("POST", "/1.1/rtm/sign", `{"session_token":"tok-u1"}`, withAppKey...)
			codes <- status
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		users.mu.Lock()
		n := users.calls
		users.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d store calls in flight, want 3", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, body := e.do("POST", "/1.1/rtm/sign", `{"session_token":"tok-u1"}`, withAppKey...)
	wantError(t, "a fourth while three are in flight", status, body, 429, 429)
	close(users.block)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("an in-flight sign got %d", c)
		}
	}
	if status, _ := e.do("POST", "/1.1/rtm/sign", `{"session_token":"tok-u1"}`, withAppKey...); status != 200 {
		t.Errorf("after the others finished: got %d, want 200", status)
	}
}

func TestNotificationShapes(t *testing.T) {
	e := newEnv(t, Limits{})
	evs := []*meshpb.NotifEvent{
		{Cmd: "conv", Op: "members_joined", Cid: "c1", ServerTs: 10, InitBy: "tom", M: []string{"jerry"}},
		{Cmd: "conv", Op: "updated", Cid: "c1", ServerTs: 11, InitBy: "tom", Attr: `{"attr.color":"red"}`, AttrModified: `{"attr":{"color":"red"}}`, Udate: "2024-01-01T00:00:00.000Z"},
		{Cmd: "conv", Op: "member_info_changed", Cid: "c1", ServerTs: 12, InitBy: "tom", InfoPid: "jerry", InfoRole: "Manager"},
	}
	rcps := []*meshpb.NotifEvent{{Cmd: "rcp", Cid: "c1", ServerTs: 13, Id: "m1", T: 9, Read: true, From: "jerry"}}
	var asked []*meshpb.AdminRequest
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		a := req.GetAdmin()
		if req.GetPeerId() != "alice" || a.GetOp() != meshpb.AdminRequest_NOTIFICATIONS {
			t.Errorf("backend request: %v", req)
		}
		asked = append(asked, a)
		if a.GetNotifDroppable() {
			return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Notifs: rcps}}
		}
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Notifs: evs, NotifMore: true}}
	}
	sdk := []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey, "X-LC-IM-Session-Token: " + testApp + "/alice"}
	js := func() string {
		_, body := e.do("GET", "/1.1/rtm/notifications?client_id=alice&start_ts=5&notification_type=permanent", "", sdk...)
		b, _ := json.Marshal(body)
		return string(b)
	}()
	wantJS := `{"hasMore":true,"notifications":[` +
		`{"cid":"c1","cmd":"conv","initBy":"tom","m":["jerry"],"notificationType":"permanent","op":"members_joined","serverTs":10},` +
		`{"attr":{"data":"{\"attr.color\":\"red\"}"},"attrModified":{"data":"{\"attr\":{\"color\":\"red\"}}"},"cid":"c1","cmd":"conv","initBy":"tom","notificationType":"permanent","op":"updated","serverTs":11,"udate":"2024-01-01T00:00:00.000Z"},` +
		`{"cid":"c1","cmd":"conv","info":{"pid":"jerry","role":"Manager"},"initBy":"tom","notificationType":"permanent","op":"member_info_changed","serverTs":12}]}`
	if js != wantJS {
		t.Errorf("JS shape:\n got %s\nwant %s", js, wantJS)
	}
	if a := asked[len(asked)-1]; a.GetNotifStartTs() != 5 || a.GetNotifDroppable() {
		t.Errorf("JS request: %v", a)
	}
	_, body := e.do("GET", "/1.1/rtm/notifications?client_id=alice&start_ts=5", "", append(sdk, "User-Agent: LeanCloud-Swift-SDK/17.0")...)
	sw, _ := json.Marshal(body)
	wantSwift := `{"droppable":{"hasMore":false,"notifications":[{"cid":"c1","cmd":"rcp","from":"jerry","id":"m1","read":true,"serverTs":13,"t":9}]},` +
		`"permanent":{"hasMore":true,"notifications":[` +
		`{"cid":"c1","cmd":"conv","initBy":"tom","m":["jerry"],"op":"members-joined","serverTs":10},` +
		`{"attr":{"attr.color":"red"},"attrModified":{"attr":{"color":"red"}},"cid":"c1","cmd":"conv","initBy":"tom","op":"updated","serverTs":11,"udate":"2024-01-01T00:00:00.000Z"},` +
		`{"cid":"c1","cmd":"conv","info":{"pid":"jerry","role":"Manager"},"initBy":"tom","op":"member-info-changed","serverTs":12}]}}`
	if string(sw) != wantSwift {
		t.Errorf("Swift shape:\n got %s\nwant %s", sw, wantSwift)
	}
	_, body = e.do("GET", "/1.1/rtm/notifications?client_id=alice&start_ts=5&notification_type=permanent", "", append(sdk, "User-Agent: LeanCloud-Objc-SDK/12.3.0")...)
	oc, _ := json.Marshal(body)
	if !strings.Contains(string(oc), `"op":"members-joined"`) || !strings.Contains(string(oc), `"attr":{"attr.color":"red"}`) || !strings.Contains(string(oc), `"hasMore":true`) {
		t.Errorf("Objective-C shape: got %s", oc)
	}

	for _, tc := range []struct {
		name, path string
		headers    []string
		status     int
		code       float64
	}{
		{"another client's id", "/1.1/rtm/notifications?client_id=bob&start_ts=0", sdk, 401, 401},
		{"forged token", "/1.1/rtm/notifications?client_id=alice", []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey, "X-LC-IM-Session-Token: forged"}, 401, 401},
		{"token of another app", "/1.1/rtm/notifications?client_id=alice", []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey, "X-LC-IM-Session-Token: other/alice"}, 401, 401},
		{"no token", "/1.1/rtm/notifications?client_id=alice", []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey}, 401, 401},
		{"bad start_ts", "/1.1/rtm/notifications?client_id=alice&start_ts=yesterday", sdk, 400, 1},
		{"negative start_ts", "/1.1/rtm/notifications?client_id=alice&start_ts=-5", sdk, 400, 1},
		{"bad type", "/1.1/rtm/notifications?client_id=alice&notification_type=all", sdk, 400, 1},
		{"master key without client", "/1.1/rtm/notifications", master, 400, 1},
	} {
		n := len(asked)
		status, body := e.do("GET", tc.path, "", tc.headers...)
		wantError(t, tc.name, status, body, tc.status, tc.code)
		if len(asked) != n {
			t.Errorf("%s reached the core", tc.name)
		}
	}
}
