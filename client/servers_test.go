package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// deadURL is a ws:// URL nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "ws://" + l.Addr().String() + "/"
	l.Close()
	return u
}

// TestReconnectMovesToNextServer: when the server of a session dies, the
// first reconnect attempt goes to the next server of the list, with the
// session token, and the session works there.
func TestReconnectMovesToNextServer(t *testing.T) {
	s1, s2 := newFakeServer(t), newFakeServer(t)
	opts := testOptions(t)
	opts.Servers = []string{s2.url}
	c, fc, _ := dial(t, s1, opts)
	if c.URL() != s1.url {
		t.Fatalf("URL: got %s, want %s", c.URL(), s1.url)
	}
	s1.srv.Close() // the edge dies: its port refuses
	fc.drop()
	fc2 := s2.nextConn(t)
	if sm := fc2.expect(t, lcpb.CommandType_session, lcpb.OpType_open).GetSessionMessage(); !sm.GetR() || sm.GetSt() != "st-1" {
		t.Errorf("reopen on the second server: r=%v st=%q, want true st-1", sm.GetR(), sm.GetSt())
	}
	ev := waitEvent[Reconnected](t, c)
	if ev.URL != s2.url || ev.Attempts != 1 {
		t.Errorf("Reconnected: got %+v, want URL %s after 1 attempt", ev, s2.url)
	}
	if _, err := c.Count(context.Background(), "c1"); err != nil {
		t.Errorf("request on the second server: %v", err)
	}
}

// TestDialTriesEachServer: Dial goes past a server that refuses the
// connection, but not past one that refuses the session.
func TestDialTriesEachServer(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.Servers = []string{s.url}
	c, err := Dial(context.Background(), deadURL(t), opts)
	if err != nil {
		t.Fatalf("Dial with a dead first server: %v", err)
	}
	defer c.Close()
	if c.URL() != s.url {
		t.Errorf("URL: got %s, want %s", c.URL(), s.url)
	}
	refusing := newFakeServer(t)
	refusing.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		if cmd.GetOp() == lcpb.OpType_open {
			fc.reply(cmd, lcpb.NewError(nil, "", lcpb.ErrSignatureFailed, ""))
			return true
		}
		return false
	})
	opts.Servers = []string{s.url}
	_, err = Dial(context.Background(), refusing.url, opts)
	var le *Error
	if !errors.As(err, &le) || le.Code != lcpb.ErrSignatureFailed {
		t.Errorf("Dial refused by the first server: got %v, want 4102", err)
	}
	if _, err := Dial(context.Background(), "", Options{AppID: "a", ClientID: "b"}); !errors.Is(err, ErrNoServer) {
		t.Errorf("Dial without any server: got %v, want ErrNoServer", err)
	}
}

// TestRouter: with Options.Router the client asks /v1/route and connects
// to its server; when that server dies it moves to secondary.
func TestRouter(t *testing.T) {
	s1, s2 := newFakeServer(t), newFakeServer(t)
	var asked int
	router := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked++
		if r.URL.Path != "/v1/route" || r.URL.Query().Get("appId") != "app-1" {
			http.Error(w, "bad route call", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"server": s1.url, "secondary": s2.url, "ttl": 3600})
	}))
	defer router.Close()
	opts := testOptions(t)
	opts.Router = router.URL
	c, err := Dial(context.Background(), "", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fc := s1.nextConn(t)
	fc.expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	s1.srv.Close()
	fc.drop()
	s2.nextConn(t).expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	if ev := waitEvent[Reconnected](t, c); ev.URL != s2.url {
		t.Errorf("Reconnected.URL: got %s, want secondary %s", ev.URL, s2.url)
	}
	if asked == 0 {
		t.Error("the router was never asked")
	}
}

// resyncServer is the fake server of the resync tests and the options of
// a client with Options.Resync: a reopen (r=true) is answered, then gets
// what reopened pushes; every history read is answered by logs.
func resyncServer(t *testing.T, reopened func(fc *fakeConn), logs func(fc *fakeConn, cmd *lcpb.GenericCommand)) (*fakeServer, Options) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.Resync = true
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		switch {
		case cmd.GetCmd() == lcpb.CommandType_session && cmd.GetOp() == lcpb.OpType_open && cmd.GetSessionMessage().GetR():
			s.respond(fc, cmd)
			reopened(fc)
			return true
		case cmd.GetCmd() == lcpb.CommandType_logs:
			logs(fc, cmd)
			return true
		}
		return false
	})
	return s, opts
}

// unreadPush is an unread push naming tuples.
func unreadPush(tuples ...*lcpb.UnreadTuple) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_unread.Enum(), UnreadMessage: &lcpb.UnreadCommand{Convs: tuples}}
}

// unreadTuple is cid's unread count and its newest message, mid at ts.
func unreadTuple(cid string, unread int32, mid string, ts int64) *lcpb.UnreadTuple {
	return &lcpb.UnreadTuple{Cid: proto.String(cid), Unread: proto.Int32(unread), Mid: proto.String(mid), Timestamp: proto.Int64(ts)}
}

// logItem is a history item of text "x".
func logItem(id, from string, ts int64) *lcpb.LogItem {
	return &lcpb.LogItem{MsgId: proto.String(id), From: proto.String(from), Timestamp: proto.Int64(ts), Data: proto.String("x")}
}

// logsReply answers the history read cmd with items.
func logsReply(fc *fakeConn, cmd *lcpb.GenericCommand, items ...*lcpb.LogItem) {
	fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Logs: items}})
}

// TestResync: after a reconnect the client reads the conversations of the
// unread push from where it was and emits what it missed as Resynced
// messages: not its own, not one it got live since the reopen.
func TestResync(t *testing.T) {
	logs := make(chan *lcpb.LogsCommand, 4)
	s, opts := resyncServer(t, func(fc *fakeConn) {
		// m3 arrives live right after the reopen; the unread push names c1.
		fc.push(directCmd("c1", "m3", "bob", 300))
		fc.push(unreadPush(unreadTuple("c1", 3, "m3", 300)))
	}, func(fc *fakeConn, cmd *lcpb.GenericCommand) {
		logs <- cmd.GetLogsMessage()
		logsReply(fc, cmd, logItem("m2", "bob", 200), logItem("own", "alice", 250), logItem("m3", "bob", 300))
	})
	c, fc, _ := dial(t, s, opts)
	fc.push(directCmd("c1", "m1", "bob", 100))
	if m := waitEvent[Message](t, c); m.ID != "m1" || m.Resynced {
		t.Fatalf("first live message: %+v", m)
	}
	fc.drop()
	var got []string
	for len(got) < 2 {
		m := waitEvent[Message](t, c)
		if m.Resynced != (m.ID == "m2") {
			t.Errorf("message %s: Resynced %v", m.ID, m.Resynced)
		}
		got = append(got, m.ID)
	}
	if strings.Join(got, ",") != "m3,m2" {
		t.Errorf("messages after the reconnect: %v, want m3 (live) then m2 (resynced)", got)
	}
	q := <-logs
	if q.GetCid() != "c1" || q.GetT() != 100 || q.GetDirection() != lcpb.LogsCommand_NEW {
		t.Errorf("history query: cid %s t %d direction %v, want c1 from 100 towards newer", q.GetCid(), q.GetT(), q.GetDirection())
	}
	// Nothing else is emitted: a later live message is the next event.
	fc2 := s.nextConnAfter(t, fc)
	fc2.push(directCmd("c1", "m4", "bob", 400))
	if m := waitEvent[Message](t, c); m.ID != "m4" {
		t.Errorf("after the resync: got %s, want m4 (no duplicate of m3 or own)", m.ID)
	}
}

// TestResyncNothingNewer: a conversation of the unread push whose newest
// message is the last one from others the client had when it lost the
// connection is not read again; one with a newer message is, from there.
func TestResyncNothingNewer(t *testing.T) {
	logs := make(chan *lcpb.LogsCommand, 4)
	s, opts := resyncServer(t, func(fc *fakeConn) {
		// c1's newest is still m1, which the client had; c2 has m6 after
		// the m5 it had.
		fc.push(unreadPush(unreadTuple("c1", 1, "m1", 100), unreadTuple("c2", 2, "m6", 600)))
	}, func(fc *fakeConn, cmd *lcpb.GenericCommand) {
		logs <- cmd.GetLogsMessage()
		logsReply(fc, cmd, logItem("m6", "carol", 600))
	})
	c, fc, _ := dial(t, s, opts)
	fc.push(directCmd("c1", "m1", "bob", 100))
	fc.push(directCmd("c2", "m5", "carol", 500))
	for _, want := range []string{"m1", "m5"} {
		if m := waitEvent[Message](t, c); m.ID != want {
			t.Fatalf("live message: got %s, want %s", m.ID, want)
		}
	}
	fc.drop()
	if m := waitEvent[Message](t, c); m.ID != "m6" || !m.Resynced {
		t.Fatalf("after the reconnect: %+v, want m6 resynced", m)
	}
	if q := <-logs; q.GetCid() != "c2" || q.GetT() != 500 {
		t.Errorf("history query: cid %s from %d, want c2 from 500", q.GetCid(), q.GetT())
	}
	// A later live message is the next event, and no other read came:
	// c1 was not read.
	fc2 := s.nextConnAfter(t, fc)
	fc2.push(directCmd("c2", "m7", "carol", 700))
	if m := waitEvent[Message](t, c); m.ID != "m7" {
		t.Errorf("after the resync: got %s, want m7", m.ID)
	}
	select {
	case q := <-logs:
		t.Errorf("a second history query, of %s from %d: c1 had nothing newer", q.GetCid(), q.GetT())
	default:
	}
}

// TestResyncRetries: a history read that fails during the resync (a
// reconnect storm's timeout or rate limit) is tried again, and the missed
// message still arrives.
func TestResyncRetries(t *testing.T) {
	var mu sync.Mutex
	reads := 0
	s, opts := resyncServer(t, func(fc *fakeConn) {
		fc.push(unreadPush(unreadTuple("c1", 1, "m2", 200)))
	}, func(fc *fakeConn, cmd *lcpb.GenericCommand) {
		mu.Lock()
		reads++
		n := reads
		mu.Unlock()
		if n <= 2 { // the first two reads fail as a busy server's would
			fc.reply(cmd, lcpb.NewError(nil, "", lcpb.ErrInternal, "busy"))
			return
		}
		logsReply(fc, cmd, logItem("m2", "bob", 200))
	})
	c, fc, _ := dial(t, s, opts)
	fc.push(directCmd("c1", "m1", "bob", 100))
	waitEvent[Message](t, c)
	fc.drop()
	if m := waitEvent[Message](t, c); m.ID != "m2" || !m.Resynced {
		t.Fatalf("after the reconnect: %+v, want m2 resynced", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if reads != 3 {
		t.Errorf("%d history reads, want 3 (two failed)", reads)
	}
	if retries, failures := c.ResyncStats(); retries != 2 || failures != 0 {
		t.Errorf("ResyncStats = %d, %d; want 2 retries, 0 failures", retries, failures)
	}
}

// TestResyncPastOwnMessages: in a conversation the client had nothing
// from others in, the resync reads back past its own messages (the
// unread count leaves them out; a send made while away goes out at the
// reopen, so it is the newest) to the one it missed.
func TestResyncPastOwnMessages(t *testing.T) {
	s, opts := resyncServer(t, func(fc *fakeConn) {
		fc.push(unreadPush(unreadTuple("c1", 1, "own2", 300)))
	}, func(fc *fakeConn, cmd *lcpb.GenericCommand) {
		limit := int(cmd.GetLogsMessage().GetLimit())
		if limit <= 0 {
			limit = 100 // the client leaves LeanCloud's default out
		}
		all := []*lcpb.LogItem{logItem("old", "bob", 50), logItem("own1", "alice", 100), logItem("missed", "bob", 200), logItem("own2", "alice", 300)}
		logsReply(fc, cmd, all[max(0, len(all)-limit):]...)
	})
	c, fc, _ := dial(t, s, opts)
	fc.drop()
	m := waitEvent[Message](t, c)
	if m.ID != "missed" || !m.Resynced {
		t.Fatalf("after the reconnect: %+v, want the missed message, resynced", m)
	}
	// Only what the count says: "old" (before the unread) is not emitted.
	fc2 := s.nextConnAfter(t, fc)
	fc2.push(directCmd("c1", "next", "bob", 400))
	if m := waitEvent[Message](t, c); m.ID != "next" {
		t.Errorf("after the resync: got %s, want next (nothing more resynced)", m.ID)
	}
}

func directCmd(cid, id, from string, ts int64) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{
		Cid: proto.String(cid), Id: proto.String(id), FromPeerId: proto.String(from), Timestamp: proto.Int64(ts), Msg: proto.String("x")}}
}

// nextConnAfter returns the connection after prev.
func (s *fakeServer) nextConnAfter(t *testing.T, prev *fakeConn) *fakeConn {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, fc := range s.all {
		if fc == prev && i+1 < len(s.all) {
			return s.all[i+1]
		}
	}
	t.Fatal("no connection after the dropped one")
	return nil
}
