package edge

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestJoinLeaveNeedConversationSignature tries conv/join, conv/leave and the
// SDK's self add/remove without a signature on an app that requires
// conversation signatures: each is refused with 4302 and never reaches the
// backend; the same ops signed go through.
func TestJoinLeaveNeedConversationSignature(t *testing.T) {
	const master = "master-key"
	reg := apps.NewStatic([]apps.App{{ID: testApp, MasterKey: master, ConversationSignatureRequired: true}})
	env := newEnv(t, func(c *Config) { c.Apps = reg })
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "mallory")
	conv := func(i int32, op lcpb.OpType, m []string) *lcpb.GenericCommand {
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), I: proto.Int32(i),
			ConvMessage: &lcpb.ConvCommand{Cid: proto.String("c1"), M: m}}
	}
	attacks := []*lcpb.GenericCommand{
		conv(2, lcpb.OpType_join, nil),
		conv(3, lcpb.OpType_leave, nil),
		conv(4, lcpb.OpType_add, []string{"mallory"}),
		conv(5, lcpb.OpType_remove, []string{"mallory"}),
		conv(6, lcpb.OpType_join, []string{"victim"}),
	}
	for _, a := range attacks {
		c.send(a)
		wantError(t, c.recv(), lcpb.ErrConversationSignature, a.I)
	}
	// A signature over someone else's list does not cover the client itself.
	now := time.Now().UnixMilli()
	j := conv(7, lcpb.OpType_join, nil)
	j.ConvMessage.T, j.ConvMessage.N = proto.Int64(now), proto.String("n1")
	j.ConvMessage.S = proto.String(hmacHex(master, testApp+":mallory:c1:victim:"+itoa(now)+":n1:invite"))
	c.send(j)
	wantError(t, c.recv(), lcpb.ErrConversationSignature, j.I)
	if n := len(env.be.requests(meshpb.ClientRequest_COMMAND)); n != 0 {
		t.Fatalf("%d refused commands reached the backend", n)
	}
	// Positive control: join and leave signed over the client itself.
	for i, op := range []lcpb.OpType{lcpb.OpType_join, lcpb.OpType_leave} {
		action := map[lcpb.OpType]string{lcpb.OpType_join: "invite", lcpb.OpType_leave: "kick"}[op]
		g := conv(int32(10+i), op, nil)
		g.ConvMessage.T, g.ConvMessage.N = proto.Int64(now), proto.String("n2")
		g.ConvMessage.S = proto.String(hmacHex(master, testApp+":mallory:c1:mallory:"+itoa(now)+":n2:"+action))
		c.send(g)
		c.expectNothing(50 * time.Millisecond) // the fake backend answers nothing
	}
	waitFor(t, "signed join and leave forwarded", func() bool { return len(env.be.requests(meshpb.ClientRequest_COMMAND)) == 2 })
}

// TestClientIDRejectsSeparators tries logins whose clientId holds ':' or a
// control character: 4103 INVALID_LOGIN, and no OPEN reaches the backend.
func TestClientIDRejectsSeparators(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	for i, id := range []string{"a:b", "alice\x00", "tab\there", "nl\n", "del\x7f", "\u0085next"} {
		c.send(openCmd(int32(i+1), id))
		wantError(t, c.recv(), lcpb.ErrInvalidLogin, proto.Int32(int32(i+1)))
	}
	if n := len(env.be.requests(meshpb.ClientRequest_OPEN)); n != 0 {
		t.Fatalf("%d bad logins reached the backend", n)
	}
	c.login(20, "alice_ok-"+strings.Repeat("é", 10)) // positive control
}

// TestLoginNonceRejectsSeparators: a login signature whose nonce holds ':'
// is refused with 4102 even when its HMAC matches.
func TestLoginNonceRejectsSeparators(t *testing.T) {
	const master = "master-key"
	reg := apps.NewStatic([]apps.App{{ID: testApp, MasterKey: master, SignatureRequired: true}})
	env := newEnv(t, func(c *Config) { c.Apps = reg })
	c := env.dial(t, lcpb.SubprotocolBinary3)
	now := time.Now().UnixMilli()
	for i, nonce := range []string{"a:b", "n\x01", "ok"} {
		o := openCmd(int32(i+1), "alice")
		o.SessionMessage.S = proto.String(loginSignature(master, testApp, "alice", now, nonce))
		o.SessionMessage.T, o.SessionMessage.N = proto.Int64(now), proto.String(nonce)
		c.send(o)
		r := c.recv()
		if nonce == "ok" {
			if r.GetOp() != lcpb.OpType_opened {
				t.Fatalf("honest login: got %v %v", r.GetCmd(), r.GetErrorMessage())
			}
			continue
		}
		wantError(t, r, lcpb.ErrSignatureFailed, proto.Int32(int32(i+1)))
	}
	if n := len(env.be.requests(meshpb.ClientRequest_OPEN)); n != 1 {
		t.Fatalf("%d OPENs reached the backend, want 1 (the honest one)", n)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
