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
