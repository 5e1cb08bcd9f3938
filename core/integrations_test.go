package core

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/push"
)

// newEnvWith is newEnv with cfg adjusted by set.
func newEnvWith(t *testing.T, set func(*Config)) *env {
	t.Helper()
	e := &env{t: t, rep: newFakeReplica(t), edge: &fakeEdge{}}
	e.now.Store(1_700_000_000_000)
	cfg := Config{Replica: e.rep, Apps: apps.NewDev(), Now: func() time.Time {
		return time.UnixMilli(e.now.Add(1))
	}}
	set(&cfg)
	e.core = New(cfg)
	detach := e.core.AttachEdge("e1", e.edge.send)
	t.Cleanup(func() {
		detach()
		e.core.Close()
	})
	return e
}

// hookServer answers hooks with the reply its handler returns for a hook
// name and records every event.
type hookServer struct {
	*httptest.Server
	reply func(hook string, ev map[string]any) any

	mu  sync.Mutex
	got map[string][]map[string]any // guarded by mu
}

func newHookServer(t *testing.T, reply func(hook string, ev map[string]any) any) *hookServer {
	h := &hookServer{reply: reply, got: map[string][]map[string]any{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.Header.Get("X-Relaymesh-Hook")
		var ev map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &ev)
		h.mu.Lock()
		h.got[name] = append(h.got[name], ev)
		h.mu.Unlock()
		out := any(map[string]any{})
		if h.reply != nil {
			if v := h.reply(name, ev); v != nil {
				out = v
			}
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) events(hook string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got[hook])
}

func (h *hookServer) client() *hooks.Client {
	return hooks.New(hooks.Config{Apps: map[string]hooks.App{testApp: {BaseURL: h.URL}}, Timeout: 2 * time.Second})
}

// fakePush records push requests.
type fakePush struct {
	mu  sync.Mutex
	got []push.Request // guarded by mu
}

func (p *fakePush) Push(_ context.Context, r push.Request) error {
	p.mu.Lock()
	p.got = append(p.got, r)
	p.mu.Unlock()
	return nil
}

func (p *fakePush) requests() []push.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func isDirect(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_direct }

func TestSensitiveWords(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []string
		want    string
	}{
		{"group", []string{"bob", "carol"}, "you *** ok"},
		{"one to one", []string{"bob"}, "you bastard ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a, b := e.client("alice"), e.client("bob")
			a.open("", false, 0)
			b.open("", false, 0)
			cid := a.start(tc.members, "", false).ConvMessage.GetCid()
			mustOK(t, a.sendText(cid, "you bastard ok"))
			got := e.edge.waitPush(t, "bob", b.conn, isDirect)
			if m := got.DirectMessage.GetMsg(); m != tc.want {
				t.Errorf("delivered: got %q, want %q", m, tc.want)
			}
			logs := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
			if len(logs) != 1 || logs[0].GetData() != tc.want {
				t.Errorf("history: got %v, want %q", logs, tc.want)
			}
		})
	}
}

func TestSensitiveWordsTypedMessage(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"bob", "carol"}, "", false).ConvMessage.GetCid()
	mustOK(t, a.sendText(cid, `{"_lctype":-1,"_lctext":"SHIT happens","_lcattrs":{"k":"shit"}}`))
	logs := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
	if want := `{"_lctype":-1,"_lctext":"*** happens","_lcattrs":{"k":"shit"}}`; len(logs) != 1 || logs[0].GetData() != want {
		t.Errorf("history: got %v, want %s", logs, want)
	}
	if got := e.core.IntegrationStats(); got.Filtered != 1 || got.FilterHits != 1 {
		t.Errorf("stats: got %+v, want 1 filtered, 1 hit", got)
	}
}

func TestHookMessageReceived(t *testing.T) {
	hs := newHookServer(t, func(hook string, ev map[string]any) any {
		if hook != hooks.HookMessageReceived {
			return nil
		}
		switch ev["content"] {
		case "drop me":
			return map[string]any{"drop": true, "code": 1234, "detail": "not today"}
		case "rewrite me":
			return map[string]any{"content": "rewritten"}
		}
		return nil
	})
	e := newEnvWith(t, func(c *Config) { c.Hooks = hs.client() })
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()

	g := a.sendText(cid, "drop me")
	wantError(t, g, lcpb.ErrMessageRejectedByApp)
	if em := g.GetErrorMessage(); em.GetAppCode() != 1234 || em.GetAppMsg() != "not today" {
		t.Errorf("appCode/appMsg: got %d %q, want 1234 %q", em.GetAppCode(), em.GetAppMsg(), "not today")
	}
	mustOK(t, a.sendText(cid, "rewrite me"))
	if got := e.edge.waitPush(t, "bob", b.conn, isDirect).DirectMessage.GetMsg(); got != "rewritten" {
		t.Errorf("delivered: got %q, want %q", got, "rewritten")
	}
	logs := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})
	if len(logs) != 1 || logs[0].GetData() != "rewritten" {
		t.Errorf("history: got %v, want only the rewritten message", logs)
	}
	evs := hs.events(hooks.HookMessageReceived)
	if len(evs) != 2 || evs[0]["fromPeer"] != "alice" || evs[0]["convId"] != cid {
		t.Errorf("events: got %v", evs)
	}
	// _messageSent runs after delivery, off the request path.
	waitFor(t, "_messageSent", func() bool { return len(hs.events(hooks.HookMessageSent)) == 1 })
	if ev := hs.events(hooks.HookMessageSent)[0]; ev["content"] != "rewritten" || !slices.Equal(toStrings(ev["onlinePeers"]), []string{"bob"}) {
		t.Errorf("_messageSent: got %v", ev)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestHookMessageReceivedFailClosed(t *testing.T) {
	hs := newHookServer(t, nil)
	hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) })
	hc := hooks.New(hooks.Config{Apps: map[string]hooks.App{testApp: {
		URLs: map[string]string{hooks.HookMessageReceived: hs.URL}, Policy: hooks.FailClosed}}})
	e := newEnvWith(t, func(c *Config) { c.Hooks = hc })
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	wantError(t, a.sendText(cid, "hi"), lcpb.ErrMessageRejectedByApp)
	if got := e.core.IntegrationStats().Hooks[hooks.HookMessageReceived]; got.Failures != 1 || got.Drops != 1 {
		t.Errorf("hook counts: got %+v, want 1 failure, 1 drop", got)
	}
}

func TestHookConversations(t *testing.T) {
	hs := newHookServer(t, func(hook string, ev map[string]any) any {
		switch {
		case hook == hooks.HookConversationStart && slices.Contains(toStrings(ev["members"]), "mallory"),
			hook == hooks.HookConversationAdd && slices.Contains(toStrings(ev["members"]), "mallory"),
			hook == hooks.HookConversationRemove,
			hook == hooks.HookConversationUpdate && ev["attr"] != nil:
			return map[string]any{"reject": true, "code": 7, "detail": "no"}
		}
		return nil
	})
	e := newEnvWith(t, func(c *Config) { c.Hooks = hs.client() })
	a := e.client("alice")
	a.open("", false, 0)

	wantError(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"mallory"}})), lcpb.ErrConversationRejectedByApp)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	for _, tc := range []struct {
		name string
		cmd  *lcpb.GenericCommand
	}{
		{"add", convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"mallory"}})},
		{"remove", convCmd(lcpb.OpType_remove, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}})},
		{"update", convCmd(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid),
			Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"name":"x"}`)}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := a.do(tc.cmd)
			wantError(t, g, lcpb.ErrConversationRejectedByApp)
			if g.GetErrorMessage().GetAppCode() != 7 {
				t.Errorf("appCode: got %d, want 7", g.GetErrorMessage().GetAppCode())
			}
		})
	}
	mustOK(t, a.do(convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"carol"}})))
	mustOK(t, a.do(convCmd(lcpb.OpType_mute, &lcpb.ConvCommand{Cid: proto.String(cid)})))
	if got := len(hs.events(hooks.HookConversationUpdate)); got != 2 {
		t.Errorf("_conversationUpdate calls: got %d, want 2 (update, mute)", got)
	}
}

func TestOfflinePush(t *testing.T) {
	hs := newHookServer(t, func(hook string, ev map[string]any) any {
		if hook == hooks.HookReceiversOffline && ev["content"] == "three" {
			return map[string]any{"pushMessage": map[string]any{"alert": "from hook"}}
		}
		return nil
	})
	fp := &fakePush{}
	e := newEnvWith(t, func(c *Config) {
		c.Hooks = hs.client()
		c.Push = PushConfig{Provider: fp, Templates: map[string]string{testApp: `{"alert":"${fromClientId} in ${convId}"}`}}
	})
	a, b, d := e.client("alice"), e.client("bob"), e.client("dave")
	a.open("", false, 0)
	b.open("", false, 0)
	d.open("", false, 0)
	// carol never logs in; dave mutes the conversation, then goes offline.
	cid := a.start([]string{"bob", "carol", "dave"}, "", false).ConvMessage.GetCid()
	mustOK(t, d.do(convCmd(lcpb.OpType_mute, &lcpb.ConvCommand{Cid: proto.String(cid)})))
	d.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum()})

	send := func(text, pushData string) {
		t.Helper()
		dm := &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}
		if pushData != "" {
			dm.PushData = proto.String(pushData)
		}
		mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: dm}))
	}
	// LeanCloud's order: the hook's pushMessage, then pushData, then the
	// template.
	send("one", `{"alert":"custom","badge":"Increment"}`)
	send("two", "")
	send("three", `{"alert":"custom"}`)
	waitFor(t, "three pushes", func() bool { return len(fp.requests()) == 3 })
	reqs := fp.requests() // workers run in parallel: order by message
	slices.SortFunc(reqs, func(x, y push.Request) int { return int(x.Timestamp - y.Timestamp) })
	for i, want := range []string{`{"alert":"custom","badge":"Increment"}`, `{"alert":"alice in ` + cid + `"}`, `{"alert":"from hook"}`} {
		r := reqs[i]
		if string(r.Payload) != want || !slices.Equal(r.To, []string{"carol"}) || r.From != "alice" || r.ConvID != cid {
			t.Errorf("push %d: got %+v payload %s, want to [carol] payload %s", i, r, r.Payload, want)
		}
	}
	if evs := hs.events(hooks.HookReceiversOffline); len(evs) != 3 || !slices.Equal(toStrings(evs[0]["offlinePeers"]), []string{"carol", "dave"}) {
		t.Errorf("_receiversOffline: got %v, want offlinePeers [carol dave]", evs)
	}
	waitFor(t, "push counter", func() bool { return e.core.IntegrationStats().PushRequests == 3 })
	if s := e.core.IntegrationStats(); s.AfterOverflow != 0 || s.Push.Sent != 3 {
		t.Errorf("stats: got %+v", s)
	}
}

func TestNoPushToChatroomsOrTransient(t *testing.T) {
	fp := &fakePush{}
	e := newEnvWith(t, func(c *Config) {
		c.Push = PushConfig{Provider: fp, Templates: map[string]string{testApp: `{"alert":"x"}`}}
	})
	a := e.client("alice")
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	// A chatroom bob joined, then left offline (his session ended: he is
	// still a member for the reconnect grace): no push either.
	room := mustOK(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{Transient: proto.Bool(true)}))).ConvMessage.GetCid()
	b := e.client("bob")
	b.open("", false, 0)
	mustOK(t, b.conv(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(room), M: []string{"bob"}}))
	b.close()
	mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("typing"), Transient: proto.Bool(true)}}))
	mustOK(t, a.sendText(room, "in the room"))
	// The message that is pushed, sent last, is the positive control.
	real := mustOK(t, a.sendText(cid, "real")).AckMessage
	waitFor(t, "one push", func() bool { return len(fp.requests()) == 1 })
	e.core.Close() // waits for the workers and the push queue
	if got := fp.requests(); len(got) != 1 || got[0].ConvID != cid || got[0].Timestamp != real.GetT() {
		t.Errorf("pushes: got %+v, want only the one for %q at %d (no chatroom or transient message pushed)", got, "real", real.GetT())
	}
}
