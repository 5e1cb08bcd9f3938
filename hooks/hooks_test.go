package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/relaymesh/relaymesh/metric"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "master-key"

// hookServer serves every hook with handle after checking the signature;
// received request bodies are kept by hook name.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte // guarded by mu
	t      *testing.T
}

func newHookServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, hook string)) *hookServer {
	s := &hookServer{bodies: make(map[string][]byte), t: t}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := Verify(r, testKey); err != nil {
			t.Errorf("receiver: Verify: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		hook := r.Header.Get(HeaderHook)
		if got := r.Header.Get("X-LC-Id"); got != "app" {
			t.Errorf("X-LC-Id: got %q, want %q", got, "app")
		}
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies[hook] = body
		s.mu.Unlock()
		handle(w, r, hook)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hookServer) body(hook string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m map[string]any
	if err := json.Unmarshal(s.bodies[hook], &m); err != nil {
		s.t.Fatalf("body of %s: %v", hook, err)
	}
	return m
}

func (s *hookServer) client(policy Policy, timeout time.Duration) *Client {
	return New(Config{
		Apps:       map[string]App{"app": {BaseURL: s.URL, MasterKey: testKey}},
		Policy:     policy,
		Timeout:    timeout,
		HTTPClient: s.Client(),
	})
}

func reply(body string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, _ string) { io.WriteString(w, body) }
}

func TestMessageReceivedRewrite(t *testing.T) {
	srv := newHookServer(t, func(w http.ResponseWriter, r *http.Request, hook string) {
		if r.URL.Path != "/1.1/functions/_messageReceived" {
			t.Errorf("path: got %q", r.URL.Path)
		}
		io.WriteString(w, `{"result":{"content":"{\"_lctext\":\"clean\"}","toPeers":["b"]}}`)
	})
	c := srv.client(PolicyDefault, 0)
	v, err := c.MessageReceived(context.Background(), "app", MessageReceived{
		FromPeer: "a", ConvID: "conv1", ToPeers: []string{"b", "c"},
		Content: `{"_lctext":"dirty"}`, Timestamp: 1700000000000, SourceIP: "10.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if v.Drop || v.Content == nil || *v.Content != `{"_lctext":"clean"}` || len(v.ToPeers) != 1 || v.ToPeers[0] != "b" || v.Bin != nil {
		t.Errorf("verdict: got %+v", v)
	}
	got := srv.body(HookMessageReceived)
	for k, want := range map[string]any{
		"fromPeer": "a", "convId": "conv1", "content": `{"_lctext":"dirty"}`,
		"timestamp": float64(1700000000000), "sourceIP": "10.0.0.1", "transient": false, "bin": false,
	} {
		if got[k] != want {
			t.Errorf("event field %s: got %v, want %v", k, got[k], want)
		}
	}
	if peers, _ := got["toPeers"].([]any); len(peers) != 2 {
		t.Errorf("event toPeers: got %v", got["toPeers"])
	}
	if s := c.Stats()[HookMessageReceived]; s != (Counts{Calls: 1}) {
		t.Errorf("stats: got %+v, want 1 call", s)
	}
}

func TestMessageReceivedDrop(t *testing.T) {
	srv := newHookServer(t, reply(`{"drop":true,"code":123,"detail":"no swearing"}`))
	c := srv.client(PolicyDefault, 0)
	v, err := c.MessageReceived(context.Background(), "app", MessageReceived{FromPeer: "a", ConvID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	want := MessageVerdict{Drop: true, Code: 4402, AppCode: 123, Detail: "no swearing"}
	if v.Drop != want.Drop || v.Code != want.Code || v.AppCode != want.AppCode || v.Detail != want.Detail {
		t.Errorf("verdict: got %+v, want %+v", v, want)
	}
	if s := c.Stats()[HookMessageReceived]; s != (Counts{Calls: 1, Drops: 1}) {
		t.Errorf("stats: got %+v, want 1 call 1 drop", s)
	}
	// toPeers is sent as [] rather than null.
	if peers, ok := srv.body(HookMessageReceived)["toPeers"].([]any); !ok || len(peers) != 0 {
		t.Errorf("toPeers: got %v, want []", srv.body(HookMessageReceived)["toPeers"])
	}
}

func TestTimeoutFailsOpen(t *testing.T) {
	release := make(chan struct{})
	srv := newHookServer(t, func(w http.ResponseWriter, r *http.Request, _ string) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release) // before srv.Close (cleanup), which waits for handlers
	c := srv.client(PolicyDefault, 20*time.Millisecond)
	v, err := c.MessageReceived(context.Background(), "app", MessageReceived{})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrFailed) {
		t.Errorf("err: got %v, want ErrTimeout and ErrFailed", err)
	}
	if v.Drop || v.Content != nil || v.ToPeers != nil {
		t.Errorf("fail open: got %+v, want the zero verdict", v)
	}
	if s := c.Stats()[HookMessageReceived]; s != (Counts{Calls: 1, Failures: 1, Timeouts: 1}) {
		t.Errorf("stats: got %+v, want 1 call, 1 failure, 1 timeout", s)
	}
}

func TestFailClosed(t *testing.T) {
	srv := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, _ string) {
		http.Error(w, `{"code":1,"error":"boom"}`, http.StatusInternalServerError)
	})
	c := srv.client(FailClosed, 0)
	ctx := context.Background()

	v, err := c.MessageReceived(ctx, "app", MessageReceived{})
	if !errors.Is(err, ErrStatus) || !v.Drop || v.Code != CodeMessageRejected {
		t.Errorf("_messageReceived: got %+v, %v; want a 4402 drop and ErrStatus", v, err)
	}
	cv, err := c.ConversationAdd(ctx, "app", ConversationMembers{InitBy: "a", Members: []string{"b"}, ConvID: "c"})
	if !errors.Is(err, ErrFailed) || !cv.Reject || cv.Code != CodeConversationRejected {
		t.Errorf("_conversationAdd: got %+v, %v; want a 4305 reject", cv, err)
	}
	// _receiversOffline always fails open.
	ov, err := c.ReceiversOffline(ctx, "app", ReceiversOffline{})
	if err == nil || ov.Skip || ov.PushMessage != nil {
		t.Errorf("_receiversOffline: got %+v, %v; want the zero verdict and an error", ov, err)
	}
	st := c.Stats()
	if s := st[HookMessageReceived]; s != (Counts{Calls: 1, Failures: 1, Drops: 1}) {
		t.Errorf("stats: got %+v", s)
	}
	if s := st[HookConversationAdd]; s != (Counts{Calls: 1, Failures: 1, Drops: 1}) {
		t.Errorf("stats: got %+v", s)
	}
}

func TestPolicyPerApp(t *testing.T) {
	srv := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, _ string) {
		w.WriteHeader(http.StatusBadGateway)
	})
	c := New(Config{
		Apps: map[string]App{
			"app":  {BaseURL: srv.URL, MasterKey: testKey, Policy: FailOpen},
			"app2": {URLs: map[string]string{HookConversationStart: srv.URL}, Policy: PolicyDefault},
		},
		Policy:     FailClosed,
		HTTPClient: srv.Client(),
	})
	if v, err := c.ConversationStart(context.Background(), "app", ConversationStart{}); err == nil || v.Reject {
		t.Errorf("app with FailOpen: got %+v, %v", v, err)
	}
	if c.Enabled("app2", HookMessageReceived) || !c.Enabled("app2", HookConversationStart) {
		t.Error("Enabled: wrong answer for app2")
	}
}

func TestNoHookConfigured(t *testing.T) {
	c := New(Config{Apps: map[string]App{"app": {URLs: map[string]string{HookMessageSent: "http://127.0.0.1:1"}}}})
	v, err := c.MessageReceived(context.Background(), "app", MessageReceived{})
	if err != nil || v.Drop {
		t.Errorf("got %+v, %v; want default verdict", v, err)
	}
	if _, err := c.ConversationStart(context.Background(), "other", ConversationStart{}); err != nil {
		t.Errorf("unknown app: %v", err)
	}
	for name, s := range c.Stats() {
		if s != (Counts{}) {
			t.Errorf("%s: got %+v, want no calls", name, s)
		}
	}
}

func TestReplies(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		wantErr    error
		check      func(t *testing.T, v OfflineVerdict)
	}{
		{"empty body", "", 200, nil, func(t *testing.T, v OfflineVerdict) {
			if v.Skip || v.PushMessage != nil || v.OfflinePeers != nil {
				t.Errorf("got %+v, want zero", v)
			}
		}},
		{"204", "", 204, nil, nil},
		{"result null", `{"result":null}`, 200, nil, nil},
		{"object push", `{"pushMessage":{"alert":"hi","badge":"Increment"},"force":true}`, 200, nil, func(t *testing.T, v OfflineVerdict) {
			if string(v.PushMessage) != `{"alert":"hi","badge":"Increment"}` || !v.Force {
				t.Errorf("got %+v", v)
			}
		}},
		{"string holding an object", `{"result":{"pushMessage":"{\"alert\":\"hi\"}","offlinePeers":["x"]}}`, 200, nil, func(t *testing.T, v OfflineVerdict) {
			if string(v.PushMessage) != `{"alert":"hi"}` || len(v.OfflinePeers) != 1 {
				t.Errorf("got %+v", v)
			}
		}},
		{"plain string", `{"pushMessage":"you have \"mail\""}`, 200, nil, func(t *testing.T, v OfflineVerdict) {
			if string(v.PushMessage) != `{"alert":"you have \"mail\""}` {
				t.Errorf("got %s", v.PushMessage)
			}
		}},
		{"skip", `{"skip":true}`, 200, nil, func(t *testing.T, v OfflineVerdict) {
			if !v.Skip {
				t.Errorf("got %+v", v)
			}
		}},
		{"push not object", `{"pushMessage":42}`, 200, ErrBadReply, nil},
		{"not json", `ok`, 200, ErrBadReply, nil},
		{"array", `[]`, 200, ErrBadReply, nil},
		{"result not object", `{"result":true}`, 200, ErrBadReply, nil},
		{"too large", `{"x":"` + strings.Repeat("a", MaxReplyBytes) + `"}`, 200, ErrBadReply, nil},
		{"401", `{"code":401,"error":"Unauthorized."}`, 401, ErrStatus, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, _ string) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			v, err := srv.client(PolicyDefault, 0).ReceiversOffline(context.Background(), "app", ReceiversOffline{ConvID: "c"})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrFailed) {
					t.Errorf("err: got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, v)
			}
		})
	}
}

func TestConversationHooks(t *testing.T) {
	srv := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, hook string) {
		switch hook {
		case HookConversationStart:
			io.WriteString(w, `{"reject":true,"code":9,"detail":"too many"}`)
		case HookConversationUpdate:
			io.WriteString(w, `{"attr":{"name":"clean"},"mute":true}`)
		default:
			io.WriteString(w, `{}`)
		}
	})
	c := srv.client(PolicyDefault, 0)
	ctx := context.Background()
	v, err := c.ConversationStart(ctx, "app", ConversationStart{InitBy: "a", Members: []string{"a", "b"}})
	if err != nil || !v.Reject || v.Code != 4305 || v.AppCode != 9 || v.Detail != "too many" {
		t.Errorf("_conversationStart: got %+v, %v", v, err)
	}
	if attr, ok := srv.body(HookConversationStart)["attr"].(map[string]any); !ok || len(attr) != 0 {
		t.Errorf("_conversationStart attr: got %v, want {}", srv.body(HookConversationStart)["attr"])
	}
	if v, err := c.ConversationRemove(ctx, "app", ConversationMembers{InitBy: "a", Members: []string{"b"}, ConvID: "c"}); err != nil || v.Reject {
		t.Errorf("_conversationRemove: got %+v, %v", v, err)
	}
	if got := srv.body(HookConversationRemove); got["convId"] != "c" || got["initBy"] != "a" {
		t.Errorf("_conversationRemove event: got %v", got)
	}
	uv, err := c.ConversationUpdate(ctx, "app", ConversationUpdate{InitBy: "a", ConvID: "c", Attr: json.RawMessage(`{"name":"dirty"}`)})
	if err != nil || uv.Reject || string(uv.Attr) != `{"name":"clean"}` || uv.Mute != nil {
		t.Errorf("_conversationUpdate attr: got %+v, %v", uv, err)
	}
	if _, ok := srv.body(HookConversationUpdate)["mute"]; ok {
		t.Error("_conversationUpdate with attr sent a mute field")
	}
	mute := false
	uv, err = c.ConversationUpdate(ctx, "app", ConversationUpdate{InitBy: "a", ConvID: "c", Mute: &mute})
	if err != nil || uv.Mute == nil || !*uv.Mute || uv.Attr != nil {
		t.Errorf("_conversationUpdate mute: got %+v, %v", uv, err)
	}
	if err := c.MessageSent(ctx, "app", MessageSent{MsgID: "m1"}); err != nil {
		t.Errorf("_messageSent: %v", err)
	}
	if got := srv.body(HookMessageSent); got["msgId"] != "m1" {
		t.Errorf("_messageSent event: got %v", got)
	}
	text, err := metric.Text(c.Collector())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`relaymesh_hook_calls_total{hook="_conversationUpdate"} 2`,
		`relaymesh_hook_drops_total{hook="_conversationStart"} 1`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("metrics: missing %q in\n%s", line, text)
		}
	}
	if problems, err := testutil.CollectAndLint(c.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if n := testutil.CollectAndCount(c.Collector(), "relaymesh_hook_calls_total"); n != len(statNames) {
		t.Errorf("hook call series: got %d, want one per hook (%d)", n, len(statNames))
	}
}

func TestParentContextCanceled(t *testing.T) {
	srv := newHookServer(t, reply(`{}`))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := srv.client(PolicyDefault, 0)
	_, err := c.MessageReceived(ctx, "app", MessageReceived{})
	if !errors.Is(err, ErrFailed) || errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want ErrFailed wrapping context.Canceled, not ErrTimeout", err)
	}
}

// TestSetHooksConcurrent: SetHooks while hooks are looked up (run with
// -race); the hook key and policy stay as configured.
func TestSetHooksConcurrent(t *testing.T) {
	c := New(Config{Apps: map[string]App{"a": {HookKey: "hk", Policy: FailClosed, URLs: map[string]string{HookMessageReceived: "http://x/1"}}}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			c.SetHooks("a", map[string]string{HookMessageReceived: fmt.Sprintf("http://x/%d", i)}, "", "mk")
		}
	}()
	for range 1000 {
		if !c.Enabled("a", HookMessageReceived) {
			t.Fatal("hook disabled while its URL was replaced")
		}
		_ = c.policyFor("a")
	}
	<-done
	a, _ := c.app("a")
	if a.HookKey != "hk" || c.policyFor("a") != FailClosed || a.MasterKey != "mk" || a.URLs[HookMessageReceived] != "http://x/999" {
		t.Errorf("after SetHooks: %+v", a)
	}
	c.SetHooks("a", nil, "", "")
	if c.Enabled("a", HookMessageReceived) {
		t.Error("SetHooks without URLs left the hook enabled")
	}
}
