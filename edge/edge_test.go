package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

func TestSubprotocolsEchoedAndFramed(t *testing.T) {
	env := newEnv(t, nil)
	for _, sp := range lcpb.Subprotocols {
		t.Run(sp, func(t *testing.T) {
			c := env.dial(t, sp)
			if got := c.ws.Subprotocol(); got != sp {
				t.Fatalf("got subprotocol %q, want %q", got, sp)
			}
			c.send(echoCmd(41))
			r := c.recv() // checks binary vs text framing
			if r.GetCmd() != lcpb.CommandType_echo || r.GetI() != 41 {
				t.Fatalf("got %v i=%d, want echo i=41", r.GetCmd(), r.GetI())
			}
		})
	}
}

func TestSubprotocolQueryParam(t *testing.T) {
	env := newEnv(t, nil)
	ws, _, err := websocket.Dial(context.Background(), env.url+"/?subprotocol=lc.proto2base64.3", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := ws.Subprotocol(); got != "" {
		t.Fatalf("got echoed subprotocol %q, want none (not offered)", got)
	}
	codec, _ := lcpb.CodecFor(lcpb.SubprotocolBase64v3)
	c := startClient(t, ws, codec)
	c.send(echoCmd(1))
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("got %v, want echo", r.GetCmd())
	}
}

func TestUnknownSubprotocolRefused(t *testing.T) {
	env := newEnv(t, nil)
	for _, offer := range [][]string{nil, {"lc.json.1"}, {"chat"}} {
		ws, resp, err := websocket.Dial(context.Background(), env.url, &websocket.DialOptions{Subprotocols: offer})
		if err == nil {
			ws.CloseNow()
			t.Fatalf("offer %v: dial succeeded, want refusal", offer)
		}
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("offer %v: got response %v, want 400", offer, resp)
		}
	}
	if got := env.srv.Metrics().HandshakesRefused.Load(); got != 3 {
		t.Fatalf("got %d refused handshakes, want 3", got)
	}
}

func TestLoginThenCommandUsesBoundPeer(t *testing.T) {
	env := newEnv(t, nil)
	env.be.setFn(func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		if req.GetKind() != meshpb.ClientRequest_COMMAND {
			return &meshpb.ClientReply{}, nil
		}
		in := new(lcpb.GenericCommand)
		_ = proto.Unmarshal(req.GetCommand(), in)
		out, _ := proto.Marshal(&lcpb.GenericCommand{
			Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_results.Enum(), I: in.I,
			ConvMessage: &lcpb.ConvCommand{Results: &lcpb.JsonObjectMessage{Data: proto.String("[]")}},
		})
		return &meshpb.ClientReply{Commands: [][]byte{out}}, nil
	})
	c := env.dial(t, lcpb.SubprotocolBinary3)
	open := openCmd(1, "alice")
	open.SessionMessage.Tag = proto.String("mobile")
	open.SessionMessage.DeviceId = proto.String("dev-1")
	c.send(open)
	r := c.recv()
	if r.GetOp() != lcpb.OpType_opened || r.GetI() != 1 || r.GetPeerId() != "alice" {
		t.Fatalf("got %v/%v i=%d peer=%q, want session/opened i=1 alice", r.GetCmd(), r.GetOp(), r.GetI(), r.GetPeerId())
	}
	sm := r.GetSessionMessage()
	if sm.GetSt() == "" || sm.GetStTtl() != int32(DefaultLimits.SessionTokenTTL.Seconds()) || r.GetServerTs() == 0 || sm.Code != nil {
		t.Fatalf("opened carries st=%q stTtl=%d serverTs=%d code=%v", sm.GetSt(), sm.GetStTtl(), r.GetServerTs(), sm.Code)
	}
	opens := env.be.requests(meshpb.ClientRequest_OPEN)
	if len(opens) != 1 {
		t.Fatalf("got %d OPEN requests, want 1", len(opens))
	}
	o := opens[0]
	if o.GetAppId() != testApp || o.GetPeerId() != "alice" || o.GetTag() != "mobile" || o.GetDeviceId() != "dev-1" ||
		o.GetConfigBitmap() != 59 || o.GetProtocolVersion() != 3 || o.GetEdgeId() != "edge-test" || o.GetConnId() == 0 || o.GetReconnect() {
		t.Fatalf("OPEN request = %v", o)
	}

	q := &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_query.Enum(), I: proto.Int32(2),
		ConvMessage: &lcpb.ConvCommand{Limit: proto.Int32(10)},
	}
	c.send(q)
	r = c.recv()
	if r.GetOp() != lcpb.OpType_results || r.GetI() != 2 || r.GetPeerId() != "alice" || r.GetService() != lcpb.ServiceIM {
		t.Fatalf("got %v/%v i=%d peer=%q service=%d, want conv/results i=2 alice service 2", r.GetCmd(), r.GetOp(), r.GetI(), r.GetPeerId(), r.GetService())
	}
	cmds := env.be.requests(meshpb.ClientRequest_COMMAND)
	if len(cmds) != 1 {
		t.Fatalf("got %d COMMAND requests, want 1", len(cmds))
	}
	raw, _ := proto.Marshal(q)
	if cmds[0].GetPeerId() != "alice" || cmds[0].GetTag() != "mobile" || cmds[0].GetConnId() != o.GetConnId() || !bytes.Equal(cmds[0].GetCommand(), raw) {
		t.Fatalf("COMMAND request = %v", cmds[0])
	}
}

func TestCommandsBeforeLogin(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	// Java's push login first: ignored, no reply, connection stays.
	c.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_login.Enum(), AppId: proto.String(testApp), InstallationId: proto.String("inst")})
	c.expectNothing(0)
	c.send(directCmd(5, "hi"))
	wantError(t, c.recv(), lcpb.ErrSessionRequired, proto.Int32(5))
	c.send(echoCmd(6))
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != 6 {
		t.Fatalf("got %v i=%d, want echo i=6", r.GetCmd(), r.GetI())
	}
	if n := len(env.be.requests(meshpb.ClientRequest_COMMAND)); n != 0 {
		t.Fatalf("backend got %d commands, want 0", n)
	}
}

func TestOversizeMessageRejected(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.send(directCmd(3, strings.Repeat("x", 5<<10+1)))
	wantError(t, c.recv(), lcpb.ErrFrameTooLong, proto.Int32(3))
	c.send(directCmd(4, strings.Repeat("x", 5<<10)))
	c.send(echoCmd(5))
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != 5 {
		t.Fatalf("got %v, want echo: connection must stay up", r.GetCmd())
	}
	cmds := env.be.requests(meshpb.ClientRequest_COMMAND)
	if len(cmds) != 1 {
		t.Fatalf("backend got %d commands, want only the 5 KiB one", len(cmds))
	}
}

func TestRateLimit(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.SendsPerMinute = 2; c.Limits.OpsPerMinute = 1 })
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.send(directCmd(2, "a"))
	c.send(directCmd(3, "b"))
	c.send(directCmd(4, "c"))
	wantError(t, c.recv(), lcpb.ErrMessageSentQuotaExceeded, proto.Int32(4))
	// acks are not limited; conv ops have their own bucket.
	for range 3 {
		c.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Cid: proto.String("c1"), Mid: proto.String("m")}})
	}
	conv := func(i int32) *lcpb.GenericCommand {
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_count.Enum(), I: proto.Int32(i), ConvMessage: &lcpb.ConvCommand{Cid: proto.String("c1")}}
	}
	c.send(conv(5))
	c.send(conv(6))
	wantError(t, c.recv(), lcpb.ErrMessageSentQuotaExceeded, proto.Int32(6))
	if got := len(env.be.requests(meshpb.ClientRequest_COMMAND)); got != 2+3+1 {
		t.Fatalf("backend got %d commands, want 6", got)
	}
	if got := env.srv.Metrics().Rejections(lcpb.ErrMessageSentQuotaExceeded); got != 2 {
		t.Fatalf("got %d 4116 rejections counted, want 2", got)
	}
}

func TestBadSessionToken(t *testing.T) {
	env := newEnv(t, nil)
	expired := issueToken([]byte("test-token-key"), tokenClaims{AppID: testApp, ClientID: "alice", Expiry: time.Now().Add(-time.Minute)})
	foreign := issueToken([]byte("other-key"), tokenClaims{AppID: testApp, ClientID: "alice", Expiry: time.Now().Add(time.Hour)})
	otherPeer := issueToken([]byte("test-token-key"), tokenClaims{AppID: testApp, ClientID: "bob", Expiry: time.Now().Add(time.Hour)})
	c := env.dial(t, lcpb.SubprotocolBinary3)
	for n, st := range []string{"garbage", expired, foreign, otherPeer, strings.Repeat("A", 5000)} {
		o := openCmd(int32(10+n), "alice")
		o.SessionMessage.R = proto.Bool(true)
		o.SessionMessage.St = proto.String(st)
		c.send(o)
		wantError(t, c.recv(), lcpb.ErrSessionTokenExpired, proto.Int32(int32(10+n)))
	}
	// Java reopens without i: the error has no i either.
	o := openCmd(0, "alice")
	o.I = nil
	o.SessionMessage.St = proto.String(expired)
	c.send(o)
	wantError(t, c.recv(), lcpb.ErrSessionTokenExpired, nil)
	if n := len(env.be.requests(meshpb.ClientRequest_OPEN)); n != 0 {
		t.Fatalf("backend got %d OPENs, want 0", n)
	}
}

func TestTokenReconnectRecoversTag(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	o := openCmd(1, "alice")
	o.SessionMessage.Tag = proto.String("mobile")
	c.send(o)
	st := c.recv().GetSessionMessage().GetSt()

	// A second edge with the same key accepts the token too.
	env2 := newEnv(t, nil)
	c2 := env2.dial(t, lcpb.SubprotocolBinary1)
	re := &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), AppId: proto.String(testApp),
		SessionMessage: &lcpb.SessionCommand{R: proto.Bool(true), St: proto.String(st)},
	} // no i, no peerId, no tag: Java's reopen
	c2.send(re)
	r := c2.recv()
	if r.GetOp() != lcpb.OpType_opened || r.I != nil || r.GetPeerId() != "alice" || r.GetSessionMessage().GetSt() == "" {
		t.Fatalf("got %v/%v i=%v peer=%q, want session/opened without i for alice", r.GetCmd(), r.GetOp(), r.I, r.GetPeerId())
	}
	opens := env2.be.requests(meshpb.ClientRequest_OPEN)
	if len(opens) != 1 || opens[0].GetTag() != "mobile" || !opens[0].GetReconnect() || opens[0].GetProtocolVersion() != 1 {
		t.Fatalf("OPEN = %v, want tag mobile, reconnect, version 1", opens)
	}
}

func TestSignatureRequired(t *testing.T) {
	const master = "master-key"
	reg := apps.NewStatic([]apps.App{{ID: testApp, Key: "k", MasterKey: master, SignatureRequired: true}})
	env := newEnv(t, func(c *Config) { c.Apps = reg })
	now := time.Now().UnixMilli()
	good := loginSignature(master, testApp, "alice", now, "nonce1")
	cases := []struct {
		name string
		s    string
		ts   int64
		code int32
	}{
		{"good", good, now, 0},
		{"good uppercase", strings.ToUpper(good), now, 0},
		{"wrong", loginSignature("other", testApp, "alice", now, "nonce1"), now, lcpb.ErrSignatureFailed},
		{"missing", "", now, lcpb.ErrSignatureFailed},
		{"expired", loginSignature(master, testApp, "alice", now-7*3600*1000, "nonce1"), now - 7*3600*1000, lcpb.ErrSignatureFailed},
		{"not hex", "zz", now, lcpb.ErrSignatureFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := env.dial(t, lcpb.SubprotocolBinary3)
			o := openCmd(1, "alice")
			o.SessionMessage.S = proto.String(tc.s)
			o.SessionMessage.T = proto.Int64(tc.ts)
			o.SessionMessage.N = proto.String("nonce1")
			c.send(o)
			r := c.recv()
			if tc.code == 0 {
				if r.GetOp() != lcpb.OpType_opened {
					t.Fatalf("got %v %v, want opened", r.GetCmd(), r.GetErrorMessage())
				}
				return
			}
			wantError(t, r, tc.code, proto.Int32(1))
		})
	}
	// Unknown app and bad clientIds.
	c := env.dial(t, lcpb.SubprotocolBinary3)
	o := openCmd(2, "alice")
	o.AppId = proto.String("nope")
	c.send(o)
	wantError(t, c.recv(), lcpb.ErrAppNotAvailable, proto.Int32(2))
	for _, id := range []string{"", strings.Repeat("a", 65)} {
		c.send(openCmd(3, id))
		wantError(t, c.recv(), lcpb.ErrInvalidLogin, proto.Int32(3))
	}
	c.send(openCmd(4, strings.Repeat("é", 64))) // 64 characters is fine; then signature is missing
	wantError(t, c.recv(), lcpb.ErrSignatureFailed, proto.Int32(4))
}

func TestOpenRefusedByBackend(t *testing.T) {
	env := newEnv(t, nil)
	env.be.setFn(func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		switch req.GetPeerId() {
		case "conflict":
			return &meshpb.ClientReply{ErrorCode: lcpb.ErrSessionConflict}, nil
		case "quota":
			return &meshpb.ClientReply{ErrorCode: lcpb.ErrAppQuotaExceeded, ErrorReason: "dau"}, nil
		case "down":
			return nil, errors.New("core unreachable")
		}
		return &meshpb.ClientReply{}, nil
	})
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.send(openCmd(1, "conflict"))
	r := c.recv()
	if r.GetCmd() != lcpb.CommandType_session || r.GetOp() != lcpb.OpType_closed || r.GetI() != 1 || r.GetSessionMessage().GetCode() != lcpb.ErrSessionConflict {
		t.Fatalf("got %v/%v i=%d code=%d, want session/closed{4111} i=1", r.GetCmd(), r.GetOp(), r.GetI(), r.GetSessionMessage().GetCode())
	}
	c.send(openCmd(2, "quota"))
	wantError(t, c.recv(), lcpb.ErrAppQuotaExceeded, proto.Int32(2))
	c.send(openCmd(3, "down"))
	wantError(t, c.recv(), lcpb.ErrInternal, proto.Int32(3))
	c.send(directCmd(4, "x"))
	wantError(t, c.recv(), lcpb.ErrSessionRequired, proto.Int32(4))

	// A failing reconnect closes the socket so native clients retry.
	o := openCmd(5, "down")
	o.SessionMessage.R = proto.Bool(true)
	c.send(o)
	if got := c.closeStatus(); got != websocket.StatusTryAgainLater {
		t.Fatalf("got close %v, want 1013", got)
	}
}

func TestBackendCommandErrors(t *testing.T) {
	env := newEnv(t, nil)
	env.be.setFn(func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		if req.GetKind() != meshpb.ClientRequest_COMMAND {
			return &meshpb.ClientReply{}, nil
		}
		in := new(lcpb.GenericCommand)
		_ = proto.Unmarshal(req.GetCommand(), in)
		if in.GetI() == 2 {
			return nil, errors.New("boom")
		}
		return &meshpb.ClientReply{ErrorCode: lcpb.ErrConversationNotFound}, nil
	})
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.send(directCmd(2, "x"))
	wantError(t, c.recv(), lcpb.ErrInternal, proto.Int32(2))
	c.send(directCmd(3, "x"))
	wantError(t, c.recv(), lcpb.ErrConversationNotFound, proto.Int32(3))
}

func TestEchoAndMalformedFrames(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.sendRaw(websocket.MessageBinary, []byte{0xff, 0xff, 0xff})
	wantError(t, c.recv(), ErrUnparseable, nil)
	c.sendRaw(websocket.MessageText, []byte("not base64!"))
	wantError(t, c.recv(), ErrUnparseable, nil)
	c.send(&lcpb.GenericCommand{I: proto.Int32(9)}) // no cmd
	wantError(t, c.recv(), ErrUnparseable, proto.Int32(9))
	// A base64 text frame on a binary subprotocol decodes, as in the SDK.
	enc, _ := (lcpb.Codec{Base64: true}).Encode(echoCmd(0))
	c.sendRaw(websocket.MessageText, enc)
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo || r.I == nil || r.GetI() != 0 {
		t.Fatalf("got %v i=%v, want echo with i=0", r.GetCmd(), r.I)
	}
	if got := env.srv.Metrics().MalformedFrames.Load(); got != 3 {
		t.Fatalf("got %d malformed frames, want 3", got)
	}
}

func TestSessionCloseAndRefresh(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refresh.Enum(), I: proto.Int32(2),
		SessionMessage: &lcpb.SessionCommand{St: proto.String("old")}})
	r := c.recv()
	if r.GetOp() != lcpb.OpType_refreshed || r.GetI() != 2 || r.GetSessionMessage().GetSt() == "" || r.GetSessionMessage().GetStTtl() <= 0 {
		t.Fatalf("got %v i=%d %v, want refreshed with st", r.GetOp(), r.GetI(), r.GetSessionMessage())
	}
	if _, err := verifyToken([]byte("test-token-key"), r.GetSessionMessage().GetSt(), time.Now()); err != nil {
		t.Fatalf("refreshed st does not verify: %v", err)
	}
	c.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), I: proto.Int32(3)})
	r = c.recv()
	if r.GetOp() != lcpb.OpType_closed || r.GetI() != 3 || r.GetPeerId() != "alice" || r.GetSessionMessage() == nil || r.GetSessionMessage().Code != nil {
		t.Fatalf("got %v i=%d peer=%q sm=%v, want closed i=3 with no code", r.GetOp(), r.GetI(), r.GetPeerId(), r.GetSessionMessage())
	}
	if n := len(env.be.requests(meshpb.ClientRequest_CLOSE)); n != 1 {
		t.Fatalf("got %d CLOSE, want 1", n)
	}
	c.send(directCmd(4, "x"))
	wantError(t, c.recv(), lcpb.ErrSessionRequired, proto.Int32(4))
}

func TestSeveralClientsShareSocket(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.login(2, "bob")
	d := directCmd(3, "from bob")
	d.PeerId = proto.String("bob")
	c.send(d)
	c.send(directCmd(4, "from alice"))
	d = directCmd(5, "from carol")
	d.PeerId = proto.String("carol")
	c.send(d)
	wantError(t, c.recv(), lcpb.ErrSessionRequired, proto.Int32(5))
	cmds := env.be.requests(meshpb.ClientRequest_COMMAND)
	if len(cmds) != 2 || cmds[0].GetPeerId() != "bob" || cmds[1].GetPeerId() != "alice" {
		t.Fatalf("got commands %v, want bob then alice", cmds)
	}
}

func TestDeliver(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c2 := env.dial(t, lcpb.SubprotocolBase64v3)
	c2.login(1, "alice")
	connID := env.be.requests(meshpb.ClientRequest_OPEN)[0].GetConnId()
	push, _ := proto.Marshal(&lcpb.GenericCommand{
		Cmd:           lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String("m1"), Msg: proto.String("hi"), Timestamp: proto.Int64(1)},
	})
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "alice"}}, Command: push})
	for _, cl := range []*client{c, c2} {
		r := cl.recv()
		if r.GetCmd() != lcpb.CommandType_direct || r.GetPeerId() != "alice" || r.GetService() != lcpb.ServiceIM || r.GetDirectMessage().GetId() != "m1" {
			t.Fatalf("got %v peer=%q service=%d, want direct for alice with service 2", r.GetCmd(), r.GetPeerId(), r.GetService())
		}
	}
	// conn_id picks one session; other apps and peers get nothing.
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "alice", ConnId: connID}, {PeerId: "bob"}}, Command: push})
	env.srv.Deliver(&meshpb.Delivery{AppId: "other", Targets: []*meshpb.Target{{PeerId: "alice"}}, Command: push})
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_direct {
		t.Fatalf("got %v, want direct", r.GetCmd())
	}
	// A marker to both sessions, delivered last at LOW, is the positive
	// control: Deliver queues on each connection before it returns and the
	// writer pops HIGH, NORMAL, LOW, FIFO within each, so anything the two
	// deliveries above put on c2, or a second frame on c, comes before it.
	marker, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String("marker"), Msg: proto.String("m"), Timestamp: proto.Int64(2)}})
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "alice"}}, Command: marker, Priority: 3})
	for name, cl := range map[string]*client{"other session": c2, "picked session": c} {
		if r := cl.recv(); r.GetDirectMessage().GetId() != "marker" {
			t.Fatalf("%s: got %v %q before the marker, want nothing", name, r.GetCmd(), r.GetDirectMessage().GetId())
		}
	}

	// Tag kick: session/closed{4111} then the session is unbound.
	kick, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
		SessionMessage: &lcpb.SessionCommand{Code: proto.Int32(lcpb.ErrSessionConflict), Reason: proto.String("kicked")}})
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "alice", ConnId: connID, EndSession: true}}, Command: kick, Priority: 1})
	r := c.recv()
	if r.GetOp() != lcpb.OpType_closed || r.GetSessionMessage().GetCode() != lcpb.ErrSessionConflict || r.GetPeerId() != "alice" {
		t.Fatalf("got %v code=%d, want closed 4111", r.GetOp(), r.GetSessionMessage().GetCode())
	}
	c.send(directCmd(7, "x"))
	wantError(t, c.recv(), lcpb.ErrSessionRequired, proto.Int32(7))
	if got := env.srv.Metrics().SessionsOpen.Load(); got != 1 {
		t.Fatalf("got %d open sessions, want 1", got)
	}
}

func TestDeliveryDuringOpenIsHeldUntilOpened(t *testing.T) {
	var env *testEnv
	push, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Id: proto.String("early")}})
	env = newEnv(t, nil)
	env.be.setFn(func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		if req.GetKind() == meshpb.ClientRequest_OPEN {
			env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: req.GetPeerId()}}, Command: push})
			unread, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_unread.Enum(), UnreadMessage: &lcpb.UnreadCommand{NotifTime: proto.Int64(5)}})
			return &meshpb.ClientReply{Commands: [][]byte{unread}}, nil
		}
		return &meshpb.ClientReply{}, nil
	})
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_unread || r.GetPeerId() != "alice" || r.GetService() != 2 {
		t.Fatalf("got %v peer %q, want unread for alice second", r.GetCmd(), r.GetPeerId())
	}
	if r := c.recv(); r.GetDirectMessage().GetId() != "early" {
		t.Fatalf("got %v, want the early direct third", r.GetCmd())
	}
}

func TestDropClosesSessions(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.login(2, "bob")
	c.ws.CloseNow()
	waitFor(t, "CLOSE for both sessions", func() bool { return len(env.be.requests(meshpb.ClientRequest_CLOSE)) == 2 })
	waitFor(t, "connection gauge", func() bool { return env.srv.Metrics().ConnectionsOpen.Load() == 0 })
	if got := env.srv.Metrics().SessionsOpen.Load(); got != 0 {
		t.Fatalf("got %d open sessions, want 0", got)
	}
}

func TestPingPongAndIdleTimeout(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.IdleTimeout = 300 * time.Millisecond })
	alive := env.dial(t, lcpb.SubprotocolBinary3)
	idle := env.dial(t, lcpb.SubprotocolBinary3)
	for range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := alive.ws.Ping(ctx); err != nil {
			cancel()
			t.Fatalf("ping: %v", err)
		}
		cancel()
		time.Sleep(75 * time.Millisecond)
	}
	if got := idle.closeStatus(); got != CloseIdle {
		t.Fatalf("idle connection: got close %v, want %v", got, CloseIdle)
	}
	alive.send(echoCmd(1))
	if r := alive.recv(); r.GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("pinging connection: got %v, want echo", r.GetCmd())
	}
}

func TestCloseSendsGoaway(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.login(2, "bob")
	done := make(chan struct{})
	go func() {
		env.srv.Close()
		close(done)
	}()
	got := map[string]bool{}
	for range 2 {
		r := c.recv()
		if r.GetCmd() != lcpb.CommandType_goaway || r.GetService() != lcpb.ServiceIM {
			t.Fatalf("got %v service %d, want goaway service 2", r.GetCmd(), r.GetService())
		}
		got[r.GetPeerId()] = true
	}
	if !got["alice"] || !got["bob"] {
		t.Fatalf("goaway peers %v, want alice and bob", got)
	}
	if code := c.closeStatus(); code != CloseShutdown {
		t.Fatalf("got close %v, want going away", code)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if n := len(env.be.requests(meshpb.ClientRequest_CLOSE)); n != 2 {
		t.Fatalf("got %d CLOSE, want 2", n)
	}
	// New connections are refused after Close.
	if _, resp, err := websocket.Dial(context.Background(), env.url, &websocket.DialOptions{Subprotocols: []string{lcpb.SubprotocolBinary3}}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Close: err=%v resp=%v, want 503", err, resp)
	}
}

func TestRouteHealthMetrics(t *testing.T) {
	ready := false
	env := newEnv(t, func(c *Config) {
		c.PublicURLs = []string{"wss://edge1.example.com/"}
		c.Ready = func() bool { return ready }
	})
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(env.ts.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get("/v1/route?appId=x&secure=1&_t=1")
	var route map[string]any
	if err := json.Unmarshal(body, &route); err != nil || resp.StatusCode != 200 {
		t.Fatalf("route: %d %s %v", resp.StatusCode, body, err)
	}
	if route["server"] != "wss://edge1.example.com/" || route["secondary"] != "wss://edge1.example.com/" {
		t.Fatalf("route = %v, want server and non-empty secondary", route)
	}
	if ttl, ok := route["ttl"].(float64); !ok || ttl != 3600 {
		t.Fatalf("ttl = %#v, want number 3600", route["ttl"])
	}
	if resp, _ := get("/healthz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz not ready: got %d, want 503", resp.StatusCode)
	}
	ready = true
	if resp, b := get("/healthz"); resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "ok" {
		t.Fatalf("healthz ready: got %d %q", resp.StatusCode, b)
	}
	env.srv.Metrics().Reject(4116)
	if _, b := get("/metrics"); !bytes.Contains(b, []byte(`relaymesh_edge_rejections_total{code="4116"} 1`)) ||
		!bytes.Contains(b, []byte(`relaymesh_edge_dropped_frames_total{priority="low"} 0`)) ||
		!bytes.Contains(b, []byte("\nprocess_resident_memory_bytes ")) {
		t.Fatalf("metrics:\n%s", b)
	}

	// Without PublicURLs the route points back at the request host.
	env2 := newEnv(t, nil)
	resp, err := http.Get(env2.ts.URL + "/v1/route")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r2 map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&r2)
	want := "ws" + strings.TrimPrefix(env2.ts.URL, "http") + "/"
	if r2["server"] != want || r2["secondary"] != want {
		t.Fatalf("route = %v, want %s twice", r2, want)
	}
}

func TestFrameCapClosesConnection(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.MaxFrameBytes = 1024 })
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.send(directCmd(2, strings.Repeat("x", 2000)))
	if got := c.closeStatus(); got != websocket.StatusMessageTooBig {
		t.Fatalf("got close %v, want 1009", got)
	}
	waitFor(t, "CLOSE after the drop", func() bool { return len(env.be.requests(meshpb.ClientRequest_CLOSE)) == 1 })
}

func TestSlowConsumerOverflowCloses(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.QueueLen = 4 })
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	var ss *session
	env.srv.mu.Lock()
	for x := range env.srv.peers[peerKey{testApp, "alice"}] {
		ss = x
	}
	env.srv.mu.Unlock()
	// Push HIGH frames far faster than the writer can drain them.
	conn := ss.c
	overflowedOK := false
	for range 1_000_000 {
		o := conn.q.Push(outFrame{b: []byte{0x08, 0x0e}, p: PriorityHigh}, PriorityHigh)
		conn.kick() // as enqueue does
		if o.Result == pq.Overflowed {
			overflowedOK = true
			break
		}
	}
	if !overflowedOK {
		t.Fatal("queue never overflowed")
	}
	// The client may see some echo frames written before the overflow was
	// noticed, then a goaway, then the close.
	for {
		r := c.recv()
		if r.GetCmd() == lcpb.CommandType_goaway {
			if r.GetPeerId() != "alice" {
				t.Fatalf("goaway for %q, want alice", r.GetPeerId())
			}
			break
		}
	}
	if got := c.closeStatus(); got != CloseSlowConsumer {
		t.Fatalf("got close %v, want %v", got, CloseSlowConsumer)
	}
	if got := env.srv.Metrics().OverflowCloses.Load(); got != 1 {
		t.Fatalf("got %d overflow closes, want 1", got)
	}
}
