package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/coder/websocket"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testOptions are fast, logging to t.
func testOptions(t *testing.T) Options {
	return Options{
		AppID: "app-1", ClientID: "alice", Tag: "mobile", DeviceID: "dev-1",
		Logger:       slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond,
		RequestTimeout: 5 * time.Second,
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// dial connects a client to s and returns it with the server side of its
// connection and the session/open the server saw.
func dial(t *testing.T, s *fakeServer, opts Options) (*Client, *fakeConn, *lcpb.GenericCommand) {
	t.Helper()
	c, err := Dial(context.Background(), s.url, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	fc := s.nextConn(t)
	open := fc.expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	return c, fc, open
}

// waitEvent returns the next event of type T, skipping others.
func waitEvent[T Event](t *testing.T, c *Client) T {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				var zero T
				t.Fatalf("events closed while waiting for %T", zero)
			}
			if e, ok := ev.(T); ok {
				return e
			}
			t.Logf("skipping event %#v", ev)
		case <-deadline:
			var zero T
			t.Fatalf("no %T within %v", zero, waitLimit)
		}
	}
}

// checkFor polls cond until it holds or the deadline passes.
func checkFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestOpenHandshake(t *testing.T) {
	for _, sp := range lcpb.Subprotocols {
		t.Run(sp, func(t *testing.T) {
			s := newFakeServer(t)
			opts := testOptions(t)
			opts.Subprotocol = sp
			opts.Signature = func(_ context.Context, id string) (string, int64, string, error) {
				return "sig-" + id, 42, "nonce", nil
			}
			_, fc, open := dial(t, s, opts)
			sm := open.GetSessionMessage()
			checks := []struct {
				name      string
				got, want any
			}{
				{"appId", open.GetAppId(), "app-1"},
				{"peerId", open.GetPeerId(), "alice"},
				{"i", open.GetI(), int32(1)},
				{"ua", sm.GetUa(), UA},
				{"configBitmap", sm.GetConfigBitmap(), int64(59)},
				{"tag", sm.GetTag(), "mobile"},
				{"deviceId", sm.GetDeviceId(), "dev-1"},
				{"r", sm.R != nil && !sm.GetR(), true},
				{"s", sm.GetS(), "sig-alice"},
				{"t", sm.GetT(), int64(42)},
				{"n", sm.GetN(), "nonce"},
				{"st absent", sm.St == nil, true},
				{"lastPatchTime set", sm.GetLastPatchTime() > 0, true},
				{"lastUnreadNotifTime absent", sm.LastUnreadNotifTime == nil, true},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
				}
			}
			if text, wantText := <-fc.text, sp == lcpb.SubprotocolBase64v3 || sp == lcpb.SubprotocolBase64v1; text != wantText {
				t.Errorf("text frame: got %v, want %v", text, wantText)
			}
		})
	}
}

func TestDialRejected(t *testing.T) {
	s := newFakeServer(t)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		fc.reply(cmd, lcpb.NewError(nil, "", lcpb.ErrSignatureFailed, "bad signature"))
		return true
	})
	_, err := Dial(context.Background(), s.url, testOptions(t))
	var le *Error
	if !errors.As(err, &le) || le.Code != lcpb.ErrSignatureFailed {
		t.Fatalf("Dial: got %v, want *Error 4102", err)
	}
}

func TestConcurrentRequests(t *testing.T) {
	s := newFakeServer(t)
	// Answer conv/count in reverse arrival order once all have arrived,
	// with a count derived from the cid.
	const n = 40
	var mu sync.Mutex
	var held []*lcpb.GenericCommand
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		if cmd.GetOp() != lcpb.OpType_count {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		held = append(held, cmd)
		if len(held) < n {
			return true
		}
		for _, h := range slices.Backward(held) {
			var k int32
			fmt.Sscanf(h.GetConvMessage().GetCid(), "c%d", &k)
			fc.reply(h, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_result.Enum(),
				ConvMessage: &lcpb.ConvCommand{Count: proto.Int32(k * 10)}})
		}
		return true
	})
	c, _, _ := dial(t, s, testOptions(t))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := range n {
		wg.Go(func() {
			got, err := c.Count(context.Background(), fmt.Sprintf("c%d", k))
			if err == nil && got != k*10 {
				err = fmt.Errorf("Count(c%d): got %d, want %d", k, got, k*10)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int32]bool{}
	for _, h := range held {
		if seen[h.GetI()] || h.GetI() < 2 || h.GetI() > n+1 {
			t.Errorf("i %d duplicated or out of 2..%d", h.GetI(), n+1)
		}
		seen[h.GetI()] = true
	}
}

func TestErrorReplies(t *testing.T) {
	s := newFakeServer(t)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		switch {
		case cmd.GetCmd() == lcpb.CommandType_conv:
			fc.reply(cmd, lcpb.NewError(nil, "", lcpb.ErrConversationNotFound, "no such conversation"))
		case cmd.GetCmd() == lcpb.CommandType_direct:
			fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{
				Code: proto.Int32(lcpb.ErrMessageRejectedByApp), Reason: proto.String("hook said no"), AppCode: proto.Int32(7)}})
		case cmd.GetCmd() == lcpb.CommandType_logs:
			fc.reply(cmd, lcpb.NewError(nil, "", lcpb.ErrConvMembershipRequired, ""))
		default:
			return false
		}
		return true
	})
	c, _, _ := dial(t, s, testOptions(t))
	ctx := context.Background()
	tests := []struct {
		name    string
		call    func() error
		code    int32
		appCode int32
	}{
		{"count", func() error { _, err := c.Count(ctx, "x"); return err }, lcpb.ErrConversationNotFound, 0},
		{"join", func() error { return c.Join(ctx, "x") }, lcpb.ErrConversationNotFound, 0},
		{"send ack code", func() error { _, err := c.Send(ctx, "x", "hi", SendOptions{}); return err }, lcpb.ErrMessageRejectedByApp, 7},
		{"history", func() error { _, err := c.History(ctx, "x", HistoryQuery{}); return err }, lcpb.ErrConvMembershipRequired, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("got %v, want *Error", err)
			}
			if le.Code != tt.code || le.AppCode != tt.appCode || le.Reason == "" {
				t.Errorf("got code %d appCode %d reason %q, want %d %d non-empty", le.Code, le.AppCode, le.Reason, tt.code, tt.appCode)
			}
			if Retryable(err) {
				t.Errorf("Retryable(%v) = true, want false", err)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	s := newFakeServer(t)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool { return cmd.GetCmd() == lcpb.CommandType_conv })
	opts := testOptions(t)
	opts.RequestTimeout = 50 * time.Millisecond
	c, _, _ := dial(t, s, opts)
	_, err := c.Count(context.Background(), "x")
	if !errors.Is(err, ErrTimeout) || !Retryable(err) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
}

func TestPushesBecomeEvents(t *testing.T) {
	s := newFakeServer(t)
	c, fc, _ := dial(t, s, testOptions(t))
	svc := proto.Int32(lcpb.ServiceIM)
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), PeerId: proto.String("alice"), Service: svc,
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String("m1"), FromPeerId: proto.String("bob"),
			Timestamp: proto.Int64(100), Msg: proto.String("hello"), MentionPids: []string{"alice"}, Offline: proto.Bool(true)}})
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_members_joined.Enum(), Service: svc,
		ConvMessage: &lcpb.ConvCommand{Cid: proto.String("c1"), InitBy: proto.String("bob"), M: []string{"carol"}}})
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_unread.Enum(), Service: svc, UnreadMessage: &lcpb.UnreadCommand{
		NotifTime: proto.Int64(555), Convs: []*lcpb.UnreadTuple{{Cid: proto.String("c2"), Unread: proto.Int32(3),
			Mid: proto.String("m9"), Timestamp: proto.Int64(90), Mentioned: proto.Bool(true)}}}})
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(), Service: svc,
		PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{{Cid: proto.String("c1"), Mid: proto.String("m1"),
			Timestamp: proto.Int64(100), Recall: proto.Bool(true), Data: proto.String(`{"_lctype":-127}`),
			PatchTimestamp: proto.Int64(200), From: proto.String("bob")}}}})
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_rcp.Enum(), Service: svc,
		RcpMessage: &lcpb.RcpCommand{Cid: proto.String("c1"), Id: proto.String("m0"), T: proto.Int64(300), Read: proto.Bool(true), From: proto.String("bob")}})
	fc.push(lcpb.NewError(nil, "", lcpb.ErrInternal, "oops"))

	want := []Event{
		Message{ConvID: "c1", ID: "m1", From: "bob", Timestamp: 100, Text: "hello", MentionPids: []string{"alice"}, Offline: true},
		ConvEvent{Op: "members_joined", ConvID: "c1", InitBy: "bob", Members: []string{"carol"}},
		Unread{NotifTime: 555, Convs: []UnreadConv{{ConvID: "c2", Count: 3, LastID: "m9", LastTS: 90, Mentioned: true}}},
		Patch{ConvID: "c1", ID: "m1", Timestamp: 100, PatchTimestamp: 200, From: "bob", Text: `{"_lctype":-127}`, Recall: true},
		Receipt{ConvID: "c1", MessageID: "m0", Timestamp: 300, Read: true, From: "bob"},
		ServerError{Err: &Error{Code: lcpb.ErrInternal, Reason: "oops"}},
	}
	for i, w := range want {
		got := waitEvent[Event](t, c)
		if g, w := fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", w); g != w && !deepEqualEvent(got, want[i]) {
			t.Errorf("event %d: got %s, want %s", i, g, w)
		}
	}
	// The unread notifTime goes back on the next login.
	c.mu.Lock()
	lunt, lpt := c.lastUnreadNotifTime, c.lastPatchTime
	c.mu.Unlock()
	if lunt != 555 || lpt < 200 {
		t.Errorf("lastUnreadNotifTime %d lastPatchTime %d, want 555 and >= 200", lunt, lpt)
	}
}

func deepEqualEvent(a, b Event) bool {
	ae, aok := a.(ServerError)
	be, bok := b.(ServerError)
	return aok && bok && ae.Err.Code == be.Err.Code && ae.Err.Reason == be.Err.Reason
}

// pushDirect pushes message m<ts> from from into cid, text "x", as the
// server pushes a direct.
func pushDirect(fc *fakeConn, cid, from string, ts int64, transient bool) {
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{
		Cid: proto.String(cid), Id: proto.String(fmt.Sprint("m", ts)), FromPeerId: proto.String(from),
		Timestamp: proto.Int64(ts), Msg: proto.String("x"), Transient: proto.Bool(transient)}})
}

func TestAutoAck(t *testing.T) {
	s := newFakeServer(t)
	c, fc, _ := dial(t, s, testOptions(t))
	pushDirect(fc, "tr", "bob", 50, true)      // transient: no ack
	pushDirect(fc, "self", "alice", 60, false) // own message from another device: no ack
	pushDirect(fc, "c1", "bob", 100, false)
	pushDirect(fc, "c1", "bob", 200, false)
	for range 4 {
		waitEvent[Message](t, c)
	}
	lo, hi := int64(1<<62), int64(0)
	for hi < 200 {
		a := fc.expect(t, lcpb.CommandType_ack, 0)
		am := a.GetAckMessage()
		if a.I != nil || a.GetPeerId() != "alice" || am.GetCid() != "c1" {
			t.Fatalf("ack: got i=%v peerId=%q cid=%q, want no i, alice, c1", a.I, a.GetPeerId(), am.GetCid())
		}
		lo, hi = min(lo, am.GetFromts()), max(hi, am.GetTots())
	}
	if lo != 100 {
		t.Errorf("acked from %d, want 100", lo)
	}
	// Nothing else was acked: the next command after a request is its own.
	if _, err := c.Count(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	for {
		got := <-fc.got
		if got.GetCmd() == lcpb.CommandType_conv {
			break
		}
		if got.GetCmd() == lcpb.CommandType_ack {
			t.Errorf("unexpected ack %v", got.GetAckMessage())
		}
	}
}

func TestReconnect(t *testing.T) {
	s := newFakeServer(t)
	var once sync.Once
	held := make(chan struct{})
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		if cmd.GetOp() == lcpb.OpType_count { // hold it, then drop the connection
			once.Do(func() { close(held) })
			return true
		}
		return false
	})
	c, fc, _ := dial(t, s, testOptions(t))
	errc := make(chan error, 1)
	go func() { _, err := c.Count(context.Background(), "c1"); errc <- err }()
	<-held
	fc.drop()
	if err := <-errc; !errors.Is(err, ErrConnectionLost) || !Retryable(err) {
		t.Errorf("in-flight request: got %v, want ErrConnectionLost", err)
	}
	fc2 := s.nextConn(t)
	open := fc2.expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	sm := open.GetSessionMessage()
	if !sm.GetR() || sm.GetSt() != "st-1" || sm.Tag != nil || sm.GetLastPatchTime() != 1700000000001 {
		t.Errorf("reopen: got r=%v st=%q tag=%v lastPatchTime=%d, want true st-1 none 1700000000001",
			sm.GetR(), sm.GetSt(), sm.Tag, sm.GetLastPatchTime())
	}
	if ev := waitEvent[Disconnected](t, c); !errors.Is(ev.Err, ErrConnectionLost) {
		t.Errorf("Disconnected.Err: got %v, want ErrConnectionLost", ev.Err)
	}
	if ev := waitEvent[Reconnected](t, c); ev.Attempts != 1 || ev.Down <= 0 || ev.URL != s.url {
		t.Errorf("Reconnected: got %+v, want 1 attempt, Down > 0, URL %s", ev, s.url)
	}
	s.setHandler(nil)
	if _, err := c.Count(context.Background(), "c1"); err != nil {
		t.Errorf("request after reconnect: %v", err)
	}
}

func TestReconnectTokenExpired(t *testing.T) {
	s := newFakeServer(t)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		if cmd.GetOp() == lcpb.OpType_open && cmd.GetSessionMessage().GetSt() != "" {
			fc.reply(cmd, lcpb.NewError(nil, "", lcpb.ErrSessionTokenExpired, ""))
			return true
		}
		return false
	})
	c, fc, _ := dial(t, s, testOptions(t))
	fc.drop()
	fc2 := s.nextConn(t)
	if st := fc2.expect(t, lcpb.CommandType_session, lcpb.OpType_open).GetSessionMessage().GetSt(); st != "st-1" {
		t.Errorf("first reopen st: got %q, want st-1", st)
	}
	sm := fc2.expect(t, lcpb.CommandType_session, lcpb.OpType_open).GetSessionMessage()
	if !sm.GetR() || sm.St != nil || sm.GetTag() != "mobile" || sm.GetDeviceId() != "dev-1" {
		t.Errorf("second reopen: got r=%v st=%v tag=%q deviceId=%q, want true, none, mobile, dev-1", sm.GetR(), sm.St, sm.GetTag(), sm.GetDeviceId())
	}
	waitEvent[Reconnected](t, c)
}

func TestKickEndsClient(t *testing.T) {
	s := newFakeServer(t)
	c, fc, _ := dial(t, s, testOptions(t))
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
		SessionMessage: &lcpb.SessionCommand{Code: proto.Int32(lcpb.ErrSessionConflict), Reason: proto.String("tag conflict")}})
	ev := waitEvent[Closed](t, c)
	if ev.Code != lcpb.ErrSessionConflict || ev.Reason != "tag conflict" {
		t.Errorf("Closed: got %+v, want 4111 tag conflict", ev)
	}
	// Events closes only after the supervisor exited, so no reconnect can follow.
	for range c.Events() {
	}
	select {
	case <-s.conns:
		t.Error("client reconnected after a kick")
	default:
	}
	_, err := c.Count(context.Background(), "c1")
	var le *Error
	if !errors.Is(err, ErrSessionClosed) || !errors.As(err, &le) || le.Code != lcpb.ErrSessionConflict {
		t.Errorf("request after kick: got %v, want ErrSessionClosed with 4111", err)
	}
}

func TestGoawayReconnectsAtOnce(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.ReconnectMin, opts.ReconnectMax = time.Hour, time.Hour // only an immediate reconnect passes
	c, fc, _ := dial(t, s, opts)
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_goaway.Enum()})
	s.nextConn(t).expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	waitEvent[Reconnected](t, c)
}

// TestGoawayKeepsRequestsInFlight: a request in flight when the server
// says goaway still gets its reply on the old connection, which the
// client then closes itself (normal closure); a request made after the
// goaway goes on the new connection.
func TestGoawayKeepsRequestsInFlight(t *testing.T) {
	s := newFakeServer(t)
	held := make(chan *lcpb.GenericCommand, 1)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		if cmd.GetCmd() == lcpb.CommandType_direct && strings.Contains(cmd.GetDirectMessage().GetMsg(), "held") {
			held <- cmd // answered by the test, after the goaway
			return true
		}
		return false
	})
	opts := testOptions(t)
	opts.ReconnectMin, opts.ReconnectMax = time.Hour, time.Hour // only an immediate reconnect passes
	c, fc, _ := dial(t, s, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, "c1", TextMessage("held"), SendOptions{})
		sent <- err
	}()
	req := <-held
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_goaway.Enum()})
	fc2 := s.nextConn(t)
	fc2.expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	waitEvent[Reconnected](t, c)
	// A new request goes on the new connection.
	if _, err := c.Count(ctx, "c1"); err != nil {
		t.Fatalf("request after goaway: %v", err)
	}
	fc2.expect(t, lcpb.CommandType_conv, lcpb.OpType_count)
	select {
	case err := <-sent:
		t.Fatalf("the held send ended before its reply: %v", err)
	default:
	}
	// The old connection is still open: the reply reaches the send.
	fc.reply(req, &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
		AckMessage: &lcpb.AckCommand{Uid: proto.String("mid-held"), T: proto.Int64(1700000000123)}})
	if err := <-sent; err != nil {
		t.Fatalf("send in flight at goaway: %v", err)
	}
	// Then the client closes the old connection itself, normally.
	select {
	case <-fc.ended:
		if websocket.CloseStatus(fc.end) != websocket.StatusNormalClosure {
			t.Errorf("old connection ended with %v, want a normal closure", fc.end)
		}
	case <-time.After(5 * time.Second):
		t.Error("the client kept the old connection open after its last reply")
	}
}

// TestGoawayGraceFails: a request whose reply never comes on a retired
// connection fails with ErrGoaway (retryable) after the grace, and the
// client goes on with its new connection.
func TestGoawayGraceFails(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 5 s grace")
	}
	s := newFakeServer(t)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		return cmd.GetCmd() == lcpb.CommandType_direct // never answered
	})
	opts := testOptions(t)
	opts.RequestTimeout = 15 * time.Second // longer than the grace
	c, fc, _ := dial(t, s, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, "c1", TextMessage("never"), SendOptions{})
		sent <- err
	}()
	fc.expect(t, lcpb.CommandType_direct, 0)
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_goaway.Enum()})
	s.nextConn(t).expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	if err := <-sent; !errors.Is(err, ErrGoaway) || !errors.Is(err, ErrConnectionLost) {
		t.Errorf("unanswered send on a retired connection: %v, want ErrGoaway", err)
	}
	if _, err := c.Count(ctx, "c1"); err != nil {
		t.Errorf("request on the new connection: %v", err)
	}
}

func TestNoReconnectOption(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.NoReconnect = true
	c, fc, _ := dial(t, s, opts)
	fc.drop()
	if ev := waitEvent[Closed](t, c); ev.Code != 0 {
		t.Errorf("Closed.Code: got %d, want 0", ev.Code)
	}
}

func TestKeepAliveAndIdle(t *testing.T) {
	s := newFakeServer(t)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		return cmd.GetCmd() == lcpb.CommandType_echo // never answer: the link looks dead
	})
	opts := testOptions(t)
	opts.KeepAlive, opts.IdleTimeout = 10*time.Millisecond, 100*time.Millisecond
	c, fc, _ := dial(t, s, opts)
	if e := fc.expect(t, lcpb.CommandType_echo, 0); e.GetI() == 0 {
		t.Error("echo without i")
	}
	waitEvent[Reconnected](t, c)
}

func TestCommandShapes(t *testing.T) {
	s := newFakeServer(t)
	c, fc, _ := dial(t, s, testOptions(t))
	ctx := context.Background()
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct {
		name  string
		call  func(t *testing.T)
		cmd   lcpb.CommandType
		op    lcpb.OpType
		check func(t *testing.T, got *lcpb.GenericCommand)
	}{
		{"create", func(t *testing.T) {
			cid, err := c.CreateConversation(ctx, []string{"zed", "bob", "alice", "bob"}, "chat", map[string]any{"k": 1}, true)
			if err != nil || cid != "conv-1" {
				t.Errorf("got %q, %v; want conv-1", cid, err)
			}
		}, lcpb.CommandType_conv, lcpb.OpType_start, func(t *testing.T, g *lcpb.GenericCommand) {
			cm := g.GetConvMessage()
			if !slices.Equal(cm.GetM(), []string{"alice", "bob", "zed"}) || cm.GetAttr().GetData() != `{"k":1,"name":"chat"}` || !cm.GetUnique() || cm.Transient != nil {
				t.Errorf("got m=%v attr=%s unique=%v transient=%v", cm.GetM(), cm.GetAttr().GetData(), cm.GetUnique(), cm.Transient)
			}
		}},
		{"query", func(t *testing.T) {
			rows, err := c.QueryConversations(ctx, map[string]any{"m": "bob"}, "-lm", 10, 5)
			if err != nil || len(rows) != 1 || rows[0]["objectId"] != "conv-1" {
				t.Errorf("got %v, %v", rows, err)
			}
		}, lcpb.CommandType_conv, lcpb.OpType_query, func(t *testing.T, g *lcpb.GenericCommand) {
			cm := g.GetConvMessage()
			if cm.GetWhere().GetData() != `{"m":"bob"}` || cm.GetSort() != "-lm" || cm.GetLimit() != 10 || cm.GetSkip() != 5 || cm.Flag == nil {
				t.Errorf("got %v", cm)
			}
		}},
		{"join", func(t *testing.T) {
			if err := c.Join(ctx, "c1"); err != nil {
				t.Error(err)
			}
		}, lcpb.CommandType_conv, lcpb.OpType_add, func(t *testing.T, g *lcpb.GenericCommand) {
			if cm := g.GetConvMessage(); cm.GetCid() != "c1" || !slices.Equal(cm.GetM(), []string{"alice"}) {
				t.Errorf("got %v", cm)
			}
		}},
		{"remove", func(t *testing.T) {
			r, err := c.RemoveMembers(ctx, "c1", []string{"bob"})
			if err != nil || !slices.Equal(r.Allowed, []string{"bob"}) {
				t.Errorf("got %+v, %v", r, err)
			}
		}, lcpb.CommandType_conv, lcpb.OpType_remove, func(t *testing.T, g *lcpb.GenericCommand) {
			if cm := g.GetConvMessage(); cm.GetCid() != "c1" || !slices.Equal(cm.GetM(), []string{"bob"}) {
				t.Errorf("got %v", cm)
			}
		}},
		{"update", func(t *testing.T) {
			if err := c.UpdateConversation(ctx, "c1", map[string]any{"name": "x"}); err != nil {
				t.Error(err)
			}
		}, lcpb.CommandType_conv, lcpb.OpType_update, func(t *testing.T, g *lcpb.GenericCommand) {
			if cm := g.GetConvMessage(); cm.GetAttr().GetData() != `{"name":"x"}` {
				t.Errorf("got %v", cm)
			}
		}},
		{"send", func(t *testing.T) {
			sent, err := c.Send(ctx, "c1", TextMessage("hi"), SendOptions{Receipt: true, Priority: PriorityHigh, MentionPids: []string{"bob"}})
			if err != nil || sent.Timestamp != 1700000000123 || sent.ID != "mid-"+sent.DT[:4] {
				t.Errorf("got %+v, %v", sent, err)
			}
		}, lcpb.CommandType_direct, 0, func(t *testing.T, g *lcpb.GenericCommand) {
			d := g.GetDirectMessage()
			if d.GetCid() != "c1" || d.GetMsg() != `{"_lctype":-1,"_lctext":"hi"}` || !d.GetR() || d.Transient != nil ||
				g.GetPriority() != 1 || !uuid.MatchString(d.GetDt()) || !slices.Equal(d.GetMentionPids(), []string{"bob"}) || g.PeerId != nil {
				t.Errorf("got %v priority %d peerId %v", d, g.GetPriority(), g.PeerId)
			}
		}},
		{"send binary transient", func(t *testing.T) {
			if _, err := c.Send(ctx, "c1", "", SendOptions{Binary: []byte{1, 2}, Transient: true, DT: "dt-fixed"}); err != nil {
				t.Error(err)
			}
		}, lcpb.CommandType_direct, 0, func(t *testing.T, g *lcpb.GenericCommand) {
			d := g.GetDirectMessage()
			if d.Msg != nil || !slices.Equal(d.GetBinaryMsg(), []byte{1, 2}) || !d.GetTransient() || d.GetDt() != "dt-fixed" {
				t.Errorf("got %v", d)
			}
		}},
		{"history", func(t *testing.T) {
			if _, err := c.History(ctx, "c1", HistoryQuery{StartTS: 10, StartMID: "m1", EndTS: 20, EndIncluded: true, Limit: 30, LCType: -1}); err != nil {
				t.Error(err)
			}
		}, lcpb.CommandType_logs, 0, func(t *testing.T, g *lcpb.GenericCommand) {
			l := g.GetLogsMessage()
			if l.GetCid() != "c1" || l.GetT() != 10 || l.GetMid() != "m1" || l.GetTt() != 20 || !l.GetTtIncluded() || l.TIncluded != nil ||
				l.GetL() != 30 || l.GetLctype() != -1 || l.GetDirection() != lcpb.LogsCommand_NEW {
				t.Errorf("got %v", l)
			}
		}},
		{"recall", func(t *testing.T) {
			if err := c.Recall(ctx, "c1", "m1", 100); err != nil {
				t.Error(err)
			}
		}, lcpb.CommandType_patch, lcpb.OpType_modify, func(t *testing.T, g *lcpb.GenericCommand) {
			p := g.GetPatchMessage().GetPatches()[0]
			if p.GetCid() != "c1" || p.GetMid() != "m1" || p.GetTimestamp() != 100 || !p.GetRecall() || p.Data != nil || g.GetPatchMessage().LastPatchTime == nil {
				t.Errorf("got %v", g.GetPatchMessage())
			}
		}},
		{"edit", func(t *testing.T) {
			if err := c.Edit(ctx, "c1", "m1", 100, "new"); err != nil {
				t.Error(err)
			}
		}, lcpb.CommandType_patch, lcpb.OpType_modify, func(t *testing.T, g *lcpb.GenericCommand) {
			p := g.GetPatchMessage()
			if p.GetPatches()[0].GetData() != "new" || p.GetPatches()[0].GetRecall() || p.GetLastPatchTime() != 1700000009999 {
				t.Errorf("got %v", p)
			}
		}},
		{"read", func(t *testing.T) {
			if err := c.Read(ctx, "c1"); err != nil {
				t.Error(err)
			}
		}, lcpb.CommandType_read, 0, func(t *testing.T, g *lcpb.GenericCommand) {
			rt := g.GetReadMessage().GetConvs()[0]
			if g.I != nil || rt.GetCid() != "c1" || rt.GetTimestamp() != 1700000000123 || rt.Mid != nil {
				t.Errorf("got i=%v %v, want the last sent message's timestamp and no mid", g.I, rt)
			}
		}},
		{"online", func(t *testing.T) {
			got, err := c.Online(ctx, []string{"bob", "carol"})
			if err != nil || !slices.Equal(got, []string{"bob"}) {
				t.Errorf("got %v, %v", got, err)
			}
		}, lcpb.CommandType_session, lcpb.OpType_query, func(t *testing.T, g *lcpb.GenericCommand) {
			if ids := g.GetSessionMessage().GetSessionPeerIds(); !slices.Equal(ids, []string{"bob", "carol"}) {
				t.Errorf("got %v", ids)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call(t)
			tt.check(t, fc.expect(t, tt.cmd, tt.op))
		})
	}
}

func TestCloseSendsSessionClose(t *testing.T) {
	s := newFakeServer(t)
	c, fc, _ := dial(t, s, testOptions(t))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fc.expect(t, lcpb.CommandType_session, lcpb.OpType_close)
	if _, ok := <-c.Events(); ok {
		t.Error("Events still open after Close")
	}
	if _, err := c.Count(context.Background(), "c1"); !errors.Is(err, ErrClosed) {
		t.Errorf("request after Close: got %v, want ErrClosed", err)
	}
}

func TestEventOverflowCounts(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.EventBuffer, opts.EventOverflowWait = 2, time.Millisecond
	c, fc, _ := dial(t, s, opts)
	for i := range 5 {
		fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_rcp.Enum(), RcpMessage: &lcpb.RcpCommand{Id: proto.String(fmt.Sprint(i))}})
	}
	checkFor(t, "3 dropped events", func() bool { return c.Dropped() == 3 })
	for i := range 2 {
		if r := waitEvent[Receipt](t, c); r.MessageID != fmt.Sprint(i) {
			t.Errorf("kept receipt %d: got %s", i, r.MessageID)
		}
	}
}

// TestReadDelay: with Options.ReadDelay the reader pauses after every
// push, so n pushes take at least (n-1)·ReadDelay to become events, of
// which the test sees (n-2)·ReadDelay at least (the pause after the first
// began before the test saw its event); Close during a pause returns
// (goleak checks the reader exited).
func TestReadDelay(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.ReadDelay = 40 * time.Millisecond
	c, fc, _ := dial(t, s, opts)
	const n = 5
	for i := range n {
		fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_rcp.Enum(), RcpMessage: &lcpb.RcpCommand{Id: proto.String(fmt.Sprint(i))}})
	}
	waitEvent[Receipt](t, c)
	t0 := time.Now()
	for range n - 1 {
		waitEvent[Receipt](t, c)
	}
	if got, want := time.Since(t0), (n-2)*opts.ReadDelay; got < want {
		t.Errorf("%d pushes read in %v, want at least %v", n, got, want)
	}
	fc.push(&lcpb.GenericCommand{Cmd: lcpb.CommandType_rcp.Enum(), RcpMessage: &lcpb.RcpCommand{Id: proto.String("last")}})
	waitEvent[Receipt](t, c) // the reader is now pausing
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second},
		{1, time.Second, 2 * time.Second},
		{4, 8 * time.Second, 16 * time.Second},
		{5, 15 * time.Second, 30 * time.Second},
		{60, 15 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			if d := backoff(tt.n, time.Second, 30*time.Second); d < tt.lo || d > tt.hi {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tt.n, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestDialContextOnlyBoundsDial(t *testing.T) {
	s := newFakeServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Dial(ctx, s.url, testOptions(t))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Count(context.Background(), "c1"); err != nil {
		t.Errorf("request after the Dial context ended: %v", err)
	}
}

func TestFatalCloseCode(t *testing.T) {
	s := newFakeServer(t)
	c, fc, _ := dial(t, s, testOptions(t))
	go fc.ws.Close(lcpb.ErrInvalidLogin, "invalid login")
	if ev := waitEvent[Closed](t, c); ev.Code != lcpb.ErrInvalidLogin {
		t.Errorf("Closed.Code: got %d, want %d", ev.Code, lcpb.ErrInvalidLogin)
	}
	for range c.Events() {
	}
}

// TestAckThrottle: acks go as the JS SDK throttles them. The first goes at
// once; those recorded within the interval wait, batched one per
// conversation, and Close sends what is still held back before
// session/close.
func TestAckThrottle(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.AckInterval = time.Hour // nothing but Close ends this interval
	c, fc, _ := dial(t, s, opts)
	direct := func(cid string, ts int64) {
		pushDirect(fc, cid, "bob", ts, false)
		waitEvent[Message](t, c) // the reader records the ack before it emits
	}
	ackOf := func(a *lcpb.GenericCommand) string {
		am := a.GetAckMessage()
		return fmt.Sprintf("%s %d-%d", am.GetCid(), am.GetFromts(), am.GetTots())
	}
	direct("c1", 100)
	if got := ackOf(fc.expect(t, lcpb.CommandType_ack, 0)); got != "c1 100-100" {
		t.Fatalf("first ack %q, want c1 100-100 at once", got)
	}
	direct("c1", 200)
	direct("c2", 400)
	direct("c1", 300)
	// Held back: the next command the server sees is this request's.
	if _, err := c.Count(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	for got := range fc.got {
		if got.GetCmd() == lcpb.CommandType_conv {
			break
		}
		t.Errorf("before the interval ended: %v %v", got.GetCmd(), got.GetAckMessage())
	}
	go c.Close()
	acks := map[string]bool{}
	for got := range fc.got {
		if got.GetCmd() == lcpb.CommandType_session && got.GetOp() == lcpb.OpType_close {
			break
		}
		if got.GetCmd() != lcpb.CommandType_ack || got.I != nil || got.GetPeerId() != "alice" {
			t.Fatalf("on close: got %v i=%v peerId=%q, want acks without i from alice", got.GetCmd(), got.I, got.GetPeerId())
		}
		acks[ackOf(got)] = true
	}
	if want := map[string]bool{"c1 200-300": true, "c2 400-400": true}; fmt.Sprint(acks) != fmt.Sprint(want) {
		t.Errorf("acks sent on close %v, want %v (one per conversation, before session/close)", acks, want)
	}
}

// TestAckThrottleTrailing: acks held back by the interval go when it ends,
// without anything else to send.
func TestAckThrottleTrailing(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.AckInterval = 50 * time.Millisecond
	_, fc, _ := dial(t, s, opts)
	push := func(ts int64) { pushDirect(fc, "c1", "bob", ts, false) }
	push(1)
	if am := fc.expect(t, lcpb.CommandType_ack, 0).GetAckMessage(); am.GetFromts() != 1 || am.GetTots() != 1 {
		t.Fatalf("first ack %d-%d, want 1-1", am.GetFromts(), am.GetTots())
	}
	// An interval starts with that ack: these wait for its end.
	for ts := int64(2); ts <= 20; ts++ {
		push(ts)
	}
	next := int64(2)
	for next <= 20 {
		am := fc.expect(t, lcpb.CommandType_ack, 0).GetAckMessage()
		if am.GetFromts() != next || am.GetTots() < am.GetFromts() {
			t.Fatalf("ack %d-%d, want one from %d on (each message acked once, in order)", am.GetFromts(), am.GetTots(), next)
		}
		next = am.GetTots() + 1
	}
}

// TestStuckWrite: a write that makes no progress for RequestTimeout ends
// the connection (the writer's watchdog), with an error that says so, and
// the client reconnects.
func TestStuckWrite(t *testing.T) {
	s := newFakeServer(t)
	block := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(block) }) }
	t.Cleanup(unblock)
	s.setHandler(func(fc *fakeConn, cmd *lcpb.GenericCommand) bool {
		if cmd.GetCmd() == lcpb.CommandType_direct {
			<-block // the server stops reading: the client's writes fill the socket
			return true
		}
		return false
	})
	opts := testOptions(t)
	opts.RequestTimeout = 500 * time.Millisecond
	c, _, _ := dial(t, s, opts)
	// 1,024 frames of 30 KiB (under the fake server's read limit, 32 KiB):
	// far more than the socket buffers on both ends hold.
	big := strings.Repeat("x", 30<<10)
	for range 1024 {
		go func() { _, _ = c.Send(context.Background(), "c1", TextMessage(big), SendOptions{}) }()
	}
	d := waitEvent[Disconnected](t, c)
	if !errors.Is(d.Err, ErrConnectionLost) || !strings.Contains(d.Err.Error(), "write: no progress for 500ms") {
		t.Fatalf("disconnected with %v, want ErrConnectionLost from the write watchdog", d.Err)
	}
	unblock()
	waitEvent[Reconnected](t, c)
}

// TestAckNoThrottle: with a negative AckInterval every message is acked
// as soon as the writer is free, the first as the later ones.
func TestAckNoThrottle(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t)
	opts.AckInterval = -time.Millisecond
	c, fc, _ := dial(t, s, opts)
	for ts := int64(1); ts <= 5; ts++ {
		pushDirect(fc, "c1", "bob", ts, false)
		waitEvent[Message](t, c)
		// Each before the next message is pushed: nothing holds it back.
		if am := fc.expect(t, lcpb.CommandType_ack, 0).GetAckMessage(); am.GetFromts() != ts || am.GetTots() != ts {
			t.Fatalf("ack %d-%d, want %d-%d", am.GetFromts(), am.GetTots(), ts, ts)
		}
	}
}
