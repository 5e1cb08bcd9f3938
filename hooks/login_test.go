package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMessageUpdate(t *testing.T) {
	var srv *hookServer
	srv = newHookServer(t, func(w http.ResponseWriter, r *http.Request, hook string) {
		if r.URL.Path != "/1.1/functions/_messageUpdate" {
			t.Errorf("path: got %q", r.URL.Path)
		}
		switch srv.body(hook)["content"] {
		case "drop":
			io.WriteString(w, `{"result":{"drop":true,"code":9,"detail":"no edits"}}`)
		case "rewrite":
			io.WriteString(w, `{"content":"rewritten","bin":false}`)
		case "fail":
			http.Error(w, "boom", http.StatusBadGateway)
		default:
			io.WriteString(w, `{}`)
		}
	})
	for _, policy := range []Policy{FailOpen, FailClosed} {
		c := srv.client(policy, 0)
		ctx := context.Background()
		v, err := c.MessageUpdate(ctx, "app", MessageUpdate{FromPeer: "a", ConvID: "c", MsgID: "m1", Timestamp: 42, Content: "drop", ToPeers: []string{"b"}})
		if err != nil || !v.Drop || v.Code != CodeUpdateRejected || v.AppCode != 9 || v.Detail != "no edits" {
			t.Errorf("drop: got %+v, %v; want a 4405 drop with appCode 9", v, err)
		}
		got := srv.body(HookMessageUpdate)
		for k, want := range map[string]any{"fromPeer": "a", "convId": "c", "msgId": "m1", "timestamp": float64(42), "recall": false, "system": false, "bin": false} {
			if got[k] != want {
				t.Errorf("event %s: got %v, want %v", k, got[k], want)
			}
		}
		v, err = c.MessageUpdate(ctx, "app", MessageUpdate{Content: "rewrite"})
		if err != nil || v.Drop || v.Content == nil || *v.Content != "rewritten" || v.Bin == nil || *v.Bin {
			t.Errorf("rewrite: got %+v, %v", v, err)
		}
		v, err = c.MessageUpdate(ctx, "app", MessageUpdate{Content: "fail", Recall: true})
		if !errors.Is(err, ErrFailed) {
			t.Errorf("fail: err %v, want ErrFailed", err)
		}
		if v.Drop != (policy == FailClosed) || (v.Drop && v.Code != CodeUpdateRejected) {
			t.Errorf("fail under policy %d: got %+v", policy, v)
		}
		if s := c.Stats()[HookMessageUpdate]; s.Calls != 3 || s.Failures != 1 {
			t.Errorf("stats: got %+v, want 3 calls, 1 failure", s)
		}
	}
}

func TestNotifyHooks(t *testing.T) {
	replies := map[string]string{
		HookClientOnline:        `{"result":true}`, // not a verdict object: fine for a notification
		HookClientOffline:       ``,
		HookConversationStarted: `garbage`,
		HookConversationAdded:   `{}`,
	}
	srv := newHookServer(t, func(w http.ResponseWriter, r *http.Request, hook string) {
		if hook == HookConversationRemoved {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, replies[hook])
	})
	c := srv.client(FailClosed, 0)
	ctx := context.Background()
	if err := c.ClientOnline(ctx, "app", ClientOnline{PeerID: "p", SourceIP: "10.1.2.3", Tag: "mobile", Reconnect: 1}); err != nil {
		t.Errorf("_clientOnline: %v", err)
	}
	if err := c.ClientOffline(ctx, "app", ClientOffline{PeerID: "p", CloseCode: CloseDropped, CloseMsg: "connection lost", ErrorCode: 4107, ErrorMsg: "READ_TIMEOUT"}); err != nil {
		t.Errorf("_clientOffline: %v", err)
	}
	if err := c.ConversationStarted(ctx, "app", ConversationStarted{ConvID: "c1"}); err != nil {
		t.Errorf("_conversationStarted: %v", err)
	}
	if err := c.ConversationAdded(ctx, "app", ConversationChanged{InitBy: "a", ConvID: "c1", Members: []string{"b"}}); err != nil {
		t.Errorf("_conversationAdded: %v", err)
	}
	if err := c.ConversationRemoved(ctx, "app", ConversationChanged{ConvID: "c1"}); !errors.Is(err, ErrFailed) {
		t.Errorf("_conversationRemoved answering 500: err %v, want ErrFailed", err)
	}
	on := srv.body(HookClientOnline)
	for k, want := range map[string]any{"peerId": "p", "sourceIP": "10.1.2.3", "tag": "mobile", "reconnect": float64(1)} {
		if on[k] != want {
			t.Errorf("_clientOnline %s: got %v, want %v", k, on[k], want)
		}
	}
	off := srv.body(HookClientOffline)
	for k, want := range map[string]any{"peerId": "p", "closeCode": float64(2), "closeMsg": "connection lost", "errorCode": float64(4107), "errorMsg": "READ_TIMEOUT"} {
		if off[k] != want {
			t.Errorf("_clientOffline %s: got %v, want %v", k, off[k], want)
		}
	}
	if _, ok := off["sourceIP"]; ok {
		t.Errorf("_clientOffline of a dropped connection carries sourceIP: %v", off)
	}
	if rm := srv.body(HookConversationRemoved); rm["members"] == nil {
		t.Errorf("_conversationRemoved: members must be [] not null: %v", rm)
	}
	st := c.Stats()
	for _, h := range []string{HookClientOnline, HookClientOffline, HookConversationStarted, HookConversationAdded} {
		if st[h] != (Counts{Calls: 1}) {
			t.Errorf("%s stats: got %+v, want 1 call and no failure", h, st[h])
		}
	}
	if st[HookConversationRemoved] != (Counts{Calls: 1, Failures: 1}) {
		t.Errorf("_conversationRemoved stats: got %+v", st[HookConversationRemoved])
	}
}

func TestClientSignReplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		refuse  bool
		reason  string
		failure bool
	}{
		{"true", 200, `{"result":true}`, false, "", false},
		{"empty", 200, ``, false, "", false},
		{"null", 200, `{"result":null}`, false, "", false},
		{"false", 200, `{"result":false,"error":"banned user"}`, true, "banned user", false},
		{"false without reason", 200, `{"result":false}`, true, "refused by _rtmClientSign", false},
		{"object allowing", 200, `{"result":{"result":true}}`, false, "", false},
		{"object refusing", 200, `{"result":{"result":false,"error":"nope"}}`, true, "nope", false},
		{"object without result", 200, `{"result":{"anything":1}}`, false, "", false},
		{"thrown error", 400, `{"code":142,"error":"thrown"}`, true, "thrown", false},
		{"number", 200, `{"result":7}`, false, "", true},
		{"garbage", 200, `<html>`, false, "", true},
		{"array", 200, `[true]`, false, "", true},
		{"server error", 500, `{"code":1,"error":"crash"}`, false, "", true},
		{"4xx without error", 404, `not found`, false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, _ string) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			c := srv.client(FailOpen, 0)
			v, err := c.ClientSign(context.Background(), "app", json.RawMessage(`{"objectId":"u1","sessionToken":"st"}`))
			if (err != nil) != tc.failure {
				t.Fatalf("err: got %v, want failure %v", err, tc.failure)
			}
			if v.Refuse != tc.refuse || v.Error != tc.reason {
				t.Errorf("verdict: got %+v, want refuse %v reason %q", v, tc.refuse, tc.reason)
			}
			if ev := srv.body(HookClientSign); ev["objectId"] != "u1" || ev["sessionToken"] != "st" {
				t.Errorf("event: got %v, want the user JSON", ev)
			}
		})
	}
}

func TestClientSignHangFollowsPolicy(t *testing.T) {
	release := make(chan struct{})
	srv := newHookServer(t, func(w http.ResponseWriter, r *http.Request, _ string) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	for _, policy := range []Policy{FailOpen, FailClosed} {
		c := srv.client(policy, 20*time.Millisecond)
		v, err := c.ClientSign(context.Background(), "app", json.RawMessage(`{"objectId":"u"}`))
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("err: got %v, want ErrTimeout", err)
		}
		if v.Refuse != (policy == FailClosed) {
			t.Errorf("policy %d: got %+v", policy, v)
		}
		if s := c.Stats()[HookClientSign]; s.Timeouts != 1 || s.Drops != int64(btoi(policy == FailClosed)) {
			t.Errorf("policy %d stats: got %+v", policy, s)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestVerifyUser(t *testing.T) {
	var huge = `{"objectId":"u1","pad":"` + strings.Repeat("x", MaxUserBytes) + `"}`
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := Verify(r, testKey); err != nil {
			t.Errorf("user store: Verify: %v", err)
		}
		if r.Method != http.MethodGet || r.Header.Get(HeaderHook) != StatUserVerify {
			t.Errorf("user store: got %s with hook %q", r.Method, r.Header.Get(HeaderHook))
		}
		switch r.Header.Get("X-LC-Session") {
		case "good":
			io.WriteString(w, `{"objectId":"user-1","username":"tom","sessionToken":"stale"}`)
		case "unknown":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":211,"error":"Could not find user."}`)
		case "crash":
			w.WriteHeader(http.StatusInternalServerError)
		case "garbage":
			io.WriteString(w, `not json`)
		case "noid":
			io.WriteString(w, `{"username":"tom"}`)
		case "longid":
			io.WriteString(w, `{"objectId":"`+strings.Repeat("x", 65)+`"}`)
		case "huge":
			io.WriteString(w, huge)
		default:
			t.Errorf("user store: unexpected token %q", r.Header.Get("X-LC-Session"))
		}
	}))
	defer store.Close()
	c := New(Config{Apps: map[string]App{"app": {UserVerifyURL: store.URL, MasterKey: testKey}, "bare": {}}, HTTPClient: store.Client()})
	ctx := context.Background()
	u, err := c.VerifyUser(ctx, "app", "good")
	if err != nil || u.ObjectID != "user-1" {
		t.Fatalf("good: got %+v, %v", u, err)
	}
	var obj map[string]any
	json.Unmarshal(u.JSON, &obj)
	if obj["sessionToken"] != "good" || obj["username"] != "tom" {
		t.Errorf("user JSON: got %v, want the store's object with sessionToken = the token", obj)
	}
	if _, err := c.VerifyUser(ctx, "app", "unknown"); !errors.Is(err, ErrBadToken) || errors.Is(err, ErrFailed) {
		t.Errorf("unknown: got %v, want ErrBadToken", err)
	}
	for _, tok := range []string{"crash", "garbage", "noid", "longid", "huge"} {
		if _, err := c.VerifyUser(ctx, "app", tok); !errors.Is(err, ErrFailed) {
			t.Errorf("%s: got %v, want ErrFailed", tok, err)
		}
	}
	if _, err := c.VerifyUser(ctx, "bare", "good"); !errors.Is(err, ErrNoUserStore) {
		t.Errorf("no store: got %v, want ErrNoUserStore", err)
	}
	if c.HasUserStore("bare") || !c.HasUserStore("app") {
		t.Error("HasUserStore")
	}
	if s := c.Stats()[StatUserVerify]; s.Calls != 7 || s.Failures != 5 {
		t.Errorf("stats: got %+v, want 7 calls, 5 failures", s)
	}
}
