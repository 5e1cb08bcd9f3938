package edge

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestCloseApp: the sessions of a deleted app end with session/closed
// 4100 and an explicit CLOSE to the core; another app's stay.
func TestCloseApp(t *testing.T) {
	env := newEnv(t, nil)
	a := env.dial(t, lcpb.SubprotocolBinary3)
	a.login(1, "alice")
	a.login(2, "bob") // two sessions on one connection
	other := env.dial(t, lcpb.SubprotocolBinary3)
	open := openCmd(1, "carol")
	open.AppId = proto.String("other-app")
	other.send(open)
	if r := other.recv(); r.GetOp() != lcpb.OpType_opened {
		t.Fatalf("other app's login: got %v", r.GetOp())
	}

	if n := env.srv.CloseApp(testApp); n != 2 {
		t.Fatalf("CloseApp: ended %d sessions, want 2", n)
	}
	peers := map[string]bool{}
	for range 2 {
		r := a.recv()
		if r.GetCmd() != lcpb.CommandType_session || r.GetOp() != lcpb.OpType_closed || r.GetSessionMessage().GetCode() != lcpb.ErrAppNotAvailable {
			t.Fatalf("got %v/%v code %d, want session/closed 4100", r.GetCmd(), r.GetOp(), r.GetSessionMessage().GetCode())
		}
		peers[r.GetPeerId()] = true
	}
	if !peers["alice"] || !peers["bob"] {
		t.Errorf("closed sessions: %v, want alice and bob", peers)
	}
	closes := env.be.requests(meshpb.ClientRequest_CLOSE)
	if len(closes) != 2 {
		t.Fatalf("backend CLOSEs: %d, want 2", len(closes))
	}
	for _, c := range closes {
		if c.GetAppId() != testApp || len(c.GetCommand()) == 0 {
			t.Errorf("CLOSE %s/%s with command %q, want an explicit close of %s", c.GetAppId(), c.GetPeerId(), c.GetCommand(), testApp)
		}
	}
	a.send(directCmd(7, "x"))
	wantError(t, a.recv(), lcpb.ErrSessionRequired, proto.Int32(7))
	if got := env.srv.Metrics().SessionsOpen.Load(); got != 1 {
		t.Errorf("open sessions: %d, want 1 (the other app's)", got)
	}
	if n := env.srv.CloseApp(testApp); n != 0 {
		t.Errorf("CloseApp again: %d, want 0", n)
	}
}

// TestSessionEndsWhileOpening: a session that ends (app closed, tag kick)
// after its session/opened reply is queued but before it is marked ready
// still gets its session/closed notice, and the push held before it; the
// client has read opened and would otherwise think the session lives.
func TestSessionEndsWhileOpening(t *testing.T) {
	push, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String("early"), Msg: proto.String("hi"), Timestamp: proto.Int64(1)}})
	kick, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
		SessionMessage: &lcpb.SessionCommand{Code: proto.Int32(lcpb.ErrSessionConflict), Reason: proto.String("kicked")}})
	late, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String("late"), Msg: proto.String("hi"), Timestamp: proto.Int64(2)}})
	for _, tc := range []struct {
		name string
		end  func(env *testEnv, ss *session)
		code int32
	}{
		{"app closed", func(env *testEnv, ss *session) {
			if n := env.srv.CloseApp(testApp); n != 1 {
				t.Errorf("CloseApp: ended %d sessions, want 1", n)
			}
		}, lcpb.ErrAppNotAvailable},
		{"tag kick", func(env *testEnv, ss *session) {
			env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: ss.peerID, EndSession: true}}, Command: kick, Priority: 1})
		}, lcpb.ErrSessionConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, nil)
			hooked := make(chan struct{})
			env.srv.testBeforeReady = func(ss *session) {
				// The reader goroutine, between the opened reply and ready.
				// HIGH, as the notice is: one lane, so FIFO.
				env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: ss.peerID}}, Command: push, Priority: 1})
				tc.end(env, ss)
				// Ended: what comes now is for no session.
				env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: ss.peerID}}, Command: late, Priority: 1})
				close(hooked)
			}
			c := env.dial(t, lcpb.SubprotocolBinary3)
			c.login(1, "alice")
			<-hooked
			if r := c.recv(); r.GetCmd() != lcpb.CommandType_direct || r.GetDirectMessage().GetId() != "early" {
				t.Fatalf("got %v/%v %q, want the push held before the end", r.GetCmd(), r.GetOp(), r.GetDirectMessage().GetId())
			}
			r := c.recv()
			if r.GetCmd() != lcpb.CommandType_session || r.GetOp() != lcpb.OpType_closed || r.GetSessionMessage().GetCode() != tc.code || r.GetPeerId() != "alice" {
				t.Fatalf("got %v/%v code %d peer %q, want session/closed %d for alice", r.GetCmd(), r.GetOp(), r.GetSessionMessage().GetCode(), r.GetPeerId(), tc.code)
			}
			// The next reply is the error for a send without a session: the
			// late push was not written.
			c.send(directCmd(7, "x"))
			wantError(t, c.recv(), lcpb.ErrSessionRequired, proto.Int32(7))
			if got := env.srv.Metrics().SessionsOpen.Load(); got != 0 {
				t.Errorf("open sessions: %d, want 0", got)
			}
		})
	}
}
