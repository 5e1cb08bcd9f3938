package core

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/push"
)

// sysStart creates a system conversation subscribed by subs and returns
// its id.
func (e *env) sysStart(subs ...string) string {
	e.t.Helper()
	rep, out := e.admin("", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND, System: true},
		convCmd(lcpb.OpType_start, &lcpb.ConvCommand{}))
	wantReplyOK(e.t, "sys start", rep)
	cid := out.GetConvMessage().GetCid()
	rep, _ = e.admin("", &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND},
		convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: subs}))
	wantReplyOK(e.t, "subscribe", rep)
	return cid
}

func sysDirectCmd(cid, text string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}}
}

// TestSysOfflinePush: a broadcast's push goes to the subscribers with no
// online session, a SYS_SEND's to its offline receivers; without push
// nothing is pushed.
func TestSysOfflinePush(t *testing.T) {
	fp := &fakePush{}
	e := newEnvWith(t, func(c *Config) { c.Push = PushConfig{Provider: fp} })
	a := e.client("alice")
	a.open("", false, 0)
	cid := e.sysStart("alice", "bob", "carol")

	rep, _ := e.admin("sys", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_BROADCAST, Cid: cid}, sysDirectCmd(cid, "quiet"))
	wantReplyOK(t, "broadcast without push", rep)
	rep, _ = e.admin("sys", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_BROADCAST, Cid: cid, SysPush: `{"alert":"news"}`},
		sysDirectCmd(cid, "loud"))
	wantReplyOK(t, "broadcast", rep)
	rep, _ = e.admin("sys", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_SEND, Cid: cid, ToClients: []string{"alice", "dave"},
		SysPush: "for you"}, sysDirectCmd(cid, "direct"))
	wantReplyOK(t, "send", rep)

	// Requests are counted when queued, before the admin call returns.
	if n := e.core.IntegrationStats().PushRequests; n != 2 {
		t.Errorf("push requests queued: got %d, want 2", n)
	}
	waitFor(t, "two pushes", func() bool { return len(fp.requests()) == 2 })
	reqs := fp.requests()
	slices.SortFunc(reqs, func(x, y push.Request) int { return int(x.Timestamp - y.Timestamp) })
	for i, want := range []struct {
		to      []string
		payload string
	}{{[]string{"bob", "carol"}, `{"alert":"news"}`}, {[]string{"dave"}, `{"alert":"for you"}`}} {
		if i >= len(reqs) {
			t.Fatalf("pushes: got %d, want 2", len(reqs))
		}
		r := reqs[i]
		if !slices.Equal(r.To, want.to) || string(r.Payload) != want.payload || r.ConvID != cid || r.From != "sys" {
			t.Errorf("push %d: got %+v payload %s, want to %v payload %s", i, r, r.Payload, want.to, want.payload)
		}
	}
	if len(reqs) != 2 {
		t.Errorf("pushes: got %d, want 2", len(reqs))
	}
}

// TestSysWebhookOnce: a client's message to a system conversation reaches
// the webhook once, and a refused one (not a system conversation) never.
func TestSysWebhookOnce(t *testing.T) {
	var mu sync.Mutex
	var got []hooks.SysMessage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []hooks.SysMessage
		json.NewDecoder(r.Body).Decode(&batch)
		mu.Lock()
		got = append(got, batch...)
		mu.Unlock()
	}))
	defer srv.Close()
	e := newEnvWith(t, func(c *Config) {
		c.SysWebhook = hooks.SysConfig{Apps: map[string]hooks.SysApp{testApp: {URL: srv.URL}}}
	})
	a := e.client("alice")
	a.open("", false, 0)
	cid := e.sysStart("alice")
	normal := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	ack := a.sendText(cid, "to the service")
	a.sendText(normal, "to bob")
	// Messages are queued before the ack.
	if n := e.core.SysWebhookStats().Enqueued; n != 1 {
		t.Errorf("webhook messages queued: got %d, want 1", n)
	}
	waitFor(t, "the webhook", func() bool { return e.core.SysWebhookStats().Sent == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].MsgID != ack.GetAckMessage().GetUid() || got[0].Conv.ObjectID != cid || got[0].From != "alice" {
		t.Errorf("webhook: got %+v, want alice's one message to %s", got, cid)
	}
}
