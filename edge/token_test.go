package edge

import (
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func refreshCmd(i int32) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refresh.Enum(), I: proto.Int32(i)}
}

func reopenCmd(i int32, st string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(i),
		AppId: proto.String(testApp), SessionMessage: &lcpb.SessionCommand{St: proto.String(st), R: proto.Bool(true)}}
}

// TestRefreshCannotOutliveLogin walks a refresh and reopen chain on a
// clock: every token keeps the first login's bound (login +
// SessionMaxAge), and a refresh at or past it gets 4112.
func TestRefreshCannotOutliveLogin(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Unix(1_800_000_000, 0)
	clock.Store(t0.UnixNano())
	env := newEnv(t, func(c *Config) { c.Limits.SessionTokenTTL, c.Limits.SessionMaxAge = time.Hour, 2*time.Hour })
	env.srv.now = func() time.Time { return time.Unix(0, clock.Load()) }
	key := []byte("test-token-key")
	claims := func(st string, at time.Time) tokenClaims {
		t.Helper()
		cl, err := verifyToken(key, st, at)
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		return cl
	}
	c := env.dial(t, lcpb.SubprotocolBinary3)
	st := c.login(1, "alice").GetSessionMessage().GetSt()
	if cl := claims(st, t0); !cl.Expiry.Equal(t0.Add(time.Hour)) || !cl.Login.Equal(t0) {
		t.Fatalf("first token: %+v", cl)
	}
	// 90 minutes on: the refresh expires at the bound, 30 minutes away.
	clock.Store(t0.Add(90 * time.Minute).UnixNano())
	c.send(refreshCmd(2))
	r := c.recv()
	if r.GetOp() != lcpb.OpType_refreshed {
		t.Fatalf("refresh: %v", r)
	}
	if cl := claims(r.GetSessionMessage().GetSt(), t0.Add(90*time.Minute)); !cl.Expiry.Equal(t0.Add(2*time.Hour)) || r.GetSessionMessage().GetStTtl() != 1800 {
		t.Fatalf("refreshed token: expiry %v ttl %d, want %v and 1800", cl.Expiry, r.GetSessionMessage().GetStTtl(), t0.Add(2*time.Hour))
	}
	// A reopen with it on another socket keeps the bound too.
	c2 := env.dial(t, lcpb.SubprotocolBinary3)
	c2.send(reopenCmd(3, r.GetSessionMessage().GetSt()))
	o := c2.recv()
	if o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("reopen: %v", o)
	}
	if cl := claims(o.GetSessionMessage().GetSt(), t0.Add(90*time.Minute)); !cl.Expiry.Equal(t0.Add(2*time.Hour)) || !cl.Login.Equal(t0) {
		t.Fatalf("reopened token: %+v, want expiry at login+2h", cl)
	}
	// At the bound: refresh refused with 4112 on both sockets.
	clock.Store(t0.Add(2 * time.Hour).UnixNano())
	c.send(refreshCmd(4))
	wantError(t, c.recv(), lcpb.ErrSessionTokenExpired, proto.Int32(4))
	c2.send(refreshCmd(5))
	wantError(t, c2.recv(), lcpb.ErrSessionTokenExpired, proto.Int32(5))
	// And the chain's last token no longer opens.
	c3 := env.dial(t, lcpb.SubprotocolBinary3)
	c3.send(reopenCmd(6, o.GetSessionMessage().GetSt()))
	wantError(t, c3.recv(), lcpb.ErrSessionTokenExpired, proto.Int32(6))
	// Positive control: a fresh login starts a new chain.
	if cl := claims(c3.login(7, "alice").GetSessionMessage().GetSt(), t0.Add(2*time.Hour)); !cl.Login.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("fresh login: %+v", cl)
	}
}

// TestReopenCarriesTokenGeneration: the generation of the OPEN reply goes
// into the token, comes back with a reopen as st_generation, and a core's
// 4112 refusal reaches the client as cmd:error 4112 (never session/closed,
// which would log native SDKs out for good).
func TestReopenCarriesTokenGeneration(t *testing.T) {
	env := newEnv(t, nil)
	env.be.setFn(func(r *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		if r.GetKind() == meshpb.ClientRequest_OPEN && r.GetStReopen() && r.GetStGeneration() != 7 {
			return &meshpb.ClientReply{ErrorCode: lcpb.ErrSessionTokenExpired, ErrorReason: "revoked"}, nil
		}
		return &meshpb.ClientReply{SessionGeneration: 7}, nil
	})
	c := env.dial(t, lcpb.SubprotocolBinary3)
	st := c.login(1, "alice").GetSessionMessage().GetSt()
	cl, err := verifyToken([]byte("test-token-key"), st, time.Now())
	if err != nil || cl.Gen != 7 {
		t.Fatalf("token gen %d (%v), want 7", cl.Gen, err)
	}
	c2 := env.dial(t, lcpb.SubprotocolBinary3)
	c2.send(reopenCmd(2, st))
	if r := c2.recv(); r.GetOp() != lcpb.OpType_opened {
		t.Fatalf("reopen with the current generation: %v", r)
	}
	opens := env.be.requests(meshpb.ClientRequest_OPEN)
	if last := opens[len(opens)-1]; !last.GetStReopen() || last.GetStGeneration() != 7 {
		t.Fatalf("reopen OPEN: st_reopen %v st_generation %d", last.GetStReopen(), last.GetStGeneration())
	}
	if first := opens[0]; first.GetStReopen() {
		t.Fatal("a signed login was flagged as a token reopen")
	}
	// The login drew a chain; the token carries it and the reopen keeps it.
	if first, last := opens[0], opens[len(opens)-1]; first.GetSessionChain() == 0 || cl.Chain != first.GetSessionChain() || last.GetSessionChain() != first.GetSessionChain() {
		t.Fatalf("chains: login %x, token %x, reopen %x; want one nonzero chain", first.GetSessionChain(), cl.Chain, last.GetSessionChain())
	}
	c4 := env.dial(t, lcpb.SubprotocolBinary3)
	c4.login(4, "alice")
	if opens := env.be.requests(meshpb.ClientRequest_OPEN); opens[len(opens)-1].GetSessionChain() == cl.Chain {
		t.Fatal("a second login drew the first one's chain")
	}
	// The same token under a newer generation: 4112 as cmd:error.
	cl.Gen = 6
	old := issueToken([]byte("test-token-key"), cl)
	c3 := env.dial(t, lcpb.SubprotocolBinary3)
	c3.send(reopenCmd(3, old))
	wantError(t, c3.recv(), lcpb.ErrSessionTokenExpired, proto.Int32(3))
}
