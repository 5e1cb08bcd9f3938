package core

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
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

// rawOpen sends a session open as open does, without waiting for the
// login's background seen record.
func (c *client) rawOpen() *meshpb.ClientReply {
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
		SessionMessage: &lcpb.SessionCommand{}})
	rep, err := c.e.core.HandleClient(context.Background(), c.req(meshpb.ClientRequest_OPEN, b))
	if err != nil || rep.GetErrorCode() != 0 {
		c.e.t.Errorf("open %s: %v %v", c.peer, err, rep)
	}
	return rep
}

// TestFirstLoginSeenInBackground: a first login with nothing due is
// answered while its seen record is held in raft, and the record lands
// after; records that come while one is in raft wait and go in together,
// one raft entry; past maxSeenAsync records in flight a login waits for its
// own. A first login with a broadcast due waits for its record, so a login
// after it does not get the broadcast again.
func TestFirstLoginSeenInBackground(t *testing.T) {
	e := newEnv(t)
	cid := e.sysStart("late")
	rep, _ := e.admin("sys", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_BROADCAST, Cid: cid}, sysDirectCmd(cid, "news"))
	wantReplyOK(t, "broadcast", rep)

	old := maxSeenAsync
	maxSeenAsync = 3
	defer func() { maxSeenAsync = old }()
	gate := make(chan struct{})
	e.rep.gate.Store(&gate)
	released := false
	release := func() {
		if !released {
			released = true
			e.rep.gate.Store(nil)
			close(gate)
		}
	}
	defer release()

	entered := e.rep.entered.Load()
	for _, peer := range []string{"new1", "new2", "new3"} {
		done := make(chan *meshpb.ClientReply, 1)
		go func() { done <- e.client(peer).rawOpen() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the first login waited for its seen record", peer)
		}
	}
	// The records the seen loop took first are held in raft as one entry;
	// the rest wait behind it.
	waitFor(t, "a seen record held in raft", func() bool { return e.rep.entered.Load() == entered+1 })
	e.core.mu.Lock()
	inFlight := e.core.seenInFlight
	e.core.mu.Unlock()
	if inFlight != 3 {
		t.Errorf("seen records in flight: %d, want 3", inFlight)
	}
	if n := e.core.stats.SeenAsync.Load(); n != 3 {
		t.Errorf("seen records in the background: %d, want 3", n)
	}

	// A fourth first login past the bound, and the subscriber with a
	// broadcast due: both wait for their records.
	fourth := make(chan *meshpb.ClientReply, 1)
	go func() { fourth <- e.client("new4").rawOpen() }()
	late := make(chan *meshpb.ClientReply, 1)
	go func() { late <- e.client("late").rawOpen() }()
	waitFor(t, "three entries held in raft", func() bool { return e.rep.entered.Load() == entered+3 })
	time.Sleep(100 * time.Millisecond)
	select {
	case <-fourth:
		t.Fatal("a first login past the bound did not wait for its seen record")
	case <-late:
		t.Fatal("a login with a broadcast due did not wait for its seen record")
	default:
	}
	release()
	for name, ch := range map[string]chan *meshpb.ClientReply{"new4": fourth, "late": late} {
		select {
		case r := <-ch:
			if name == "late" {
				if got := countDirects(t, r); got != 1 {
					t.Errorf("late's login: %d offline directs, want the broadcast", got)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the login did not end once raft went on", name)
		}
	}
	waitSeenRecords(t, e.core)
	// The three background records took one raft entry (the loop took
	// the queue after all three came) or two (one or two while raft was
	// held, the rest together after), not three; the two in line one
	// each.
	if got := e.rep.entered.Load() - entered; got != 3 && got != 4 {
		t.Errorf("raft entries for the five seen records: %d, want 3 or 4 (5: a record a raft entry)", got)
	}
	for _, peer := range []string{"new1", "new2", "new3", "new4", "late"} {
		if _, ok, err := shard.LastSeen(e.rep.State(), testApp, peer); err != nil || !ok {
			t.Errorf("%s: no seen record after the login (%v)", peer, err)
		}
	}
	if n := e.core.stats.SeenAsync.Load(); n != 3 {
		t.Errorf("seen records in the background: %d, want 3", n)
	}
	// The broadcast is not given again.
	if got := countDirects(t, e.client("late").rawOpen()); got != 0 {
		t.Errorf("late's second login: %d offline directs, want none", got)
	}
}

// countDirects counts the directs among a reply's commands.
func countDirects(t *testing.T, r *meshpb.ClientReply) int {
	n := 0
	for _, g := range decodeAll(t, r) {
		if g.GetCmd() == lcpb.CommandType_direct {
			n++
		}
	}
	return n
}
