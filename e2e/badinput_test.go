package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// raw is a bare WebSocket speaking lc.protobuf2.3, for sending what no SDK
// would.
type raw struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialRaw(t *testing.T, ctx context.Context, url string, subprotocols ...string) (*raw, *http.Response, error) {
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &raw{t: t, ws: ws}, resp, nil
}

func (r *raw) sendBytes(ctx context.Context, b []byte) {
	r.t.Helper()
	if err := r.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *raw) send(ctx context.Context, c *lcpb.GenericCommand) {
	r.t.Helper()
	b, err := proto.Marshal(c)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendBytes(ctx, b)
}

// next reads commands until one with a cmd other than the pushes in skip.
func (r *raw) next(ctx context.Context) *lcpb.GenericCommand {
	r.t.Helper()
	for {
		_, b, err := r.ws.Read(ctx)
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		c := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(b, c); err != nil {
			r.t.Fatalf("server sent an undecodable frame: %v", err)
		}
		if c.GetCmd() == lcpb.CommandType_unread {
			continue // the login notification
		}
		return c
	}
}

func wantError(t *testing.T, what string, c *lcpb.GenericCommand, code int32, i *int32) {
	t.Helper()
	if c.GetCmd() != lcpb.CommandType_error {
		t.Fatalf("%s: got %v/%v, want cmd error %d", what, c.GetCmd(), c.GetOp(), code)
	}
	if got := c.GetErrorMessage().GetCode(); got != code {
		t.Fatalf("%s: error code %d (%s), want %d", what, got, c.GetErrorMessage().GetReason(), code)
	}
	if c.GetErrorMessage().GetReason() == "" {
		t.Fatalf("%s: error without a reason (proto2 required)", what)
	}
	if (i == nil) != (c.I == nil) || (i != nil && *i != *c.I) {
		t.Fatalf("%s: i = %v, want %v", what, c.I, i)
	}
}

// TestBadInput drives a real relaymesh dev with frames no SDK sends. Each
// gets a LeanCloud error code or a clean close; the process stays up and no
// state changes.
func TestBadInput(t *testing.T) {
	p := startDev(t, t.TempDir(), freeAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Wrong subprotocol: refused before the upgrade.
	if _, resp, err := dialRaw(t, ctx, p.URL, "lc.json.3"); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown subprotocol: err %v, status %v; want HTTP 400", err, resp)
	}

	r, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.ws.Subprotocol(); got != lcpb.SubprotocolBinary3 {
		t.Fatalf("echoed subprotocol %q, want %q", got, lcpb.SubprotocolBinary3)
	}
	// Malformed protobuf: an i-less error.
	r.sendBytes(ctx, []byte{0x0f, 0xff, 0xff})
	c := r.next(ctx)
	if c.GetCmd() != lcpb.CommandType_error || c.I != nil {
		t.Fatalf("malformed frame: got %v (i=%v), want an i-less error", c.GetCmd(), c.I)
	}
	// A command before login.
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_start.Enum(), I: proto.Int32(5),
		ConvMessage: &lcpb.ConvCommand{M: []string{"x", "y"}}})
	wantError(t, "before login", r.next(ctx), lcpb.ErrSessionRequired, proto.Int32(5))
	// Malformed clientId.
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(6),
		AppId: proto.String("bad-app"), PeerId: proto.String(strings.Repeat("x", 65)), SessionMessage: &lcpb.SessionCommand{}})
	wantError(t, "65-char clientId", r.next(ctx), lcpb.ErrInvalidLogin, proto.Int32(6))
	// Log in properly.
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(7),
		AppId: proto.String("bad-app"), PeerId: proto.String("mallory"), SessionMessage: &lcpb.SessionCommand{Ua: proto.String("raw")}})
	if c := r.next(ctx); c.GetCmd() != lcpb.CommandType_session || c.GetOp() != lcpb.OpType_opened || c.GetPeerId() != "mallory" {
		t.Fatalf("login: got %v/%v peer %q", c.GetCmd(), c.GetOp(), c.GetPeerId())
	}
	// Unknown command and unknown op.
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_pubsub.Enum(), I: proto.Int32(8)})
	if c := r.next(ctx); c.GetCmd() != lcpb.CommandType_error || c.GetI() != 8 {
		t.Fatalf("unknown command: got %v i=%v, want error with i=8", c.GetCmd(), c.I)
	}
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_subscribe.Enum(), I: proto.Int32(9)})
	if c := r.next(ctx); c.GetCmd() != lcpb.CommandType_error || c.GetI() != 9 {
		t.Fatalf("unknown conv op: got %v i=%v, want error with i=9", c.GetCmd(), c.I)
	}
	// A message to a conversation that does not exist: no state created.
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(10),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("nope"), Msg: proto.String("hi")}})
	wantError(t, "send to unknown conversation", r.next(ctx), lcpb.ErrInvalidMessagingTarget, proto.Int32(10))
	// An oversize message (> 5 KiB): rejected, connection stays.
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(11),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("nope"), Msg: proto.String(strings.Repeat("x", 5121))}})
	wantError(t, "oversize message", r.next(ctx), lcpb.ErrFrameTooLong, proto.Int32(11))
	// Still alive: echo answers with the same i.
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(12)})
	if c := r.next(ctx); c.GetCmd() != lcpb.CommandType_echo || c.GetI() != 12 {
		t.Fatalf("echo after bad input: got %v i=%v", c.GetCmd(), c.I)
	}
	// An oversize frame closes the connection (1009), nothing more. The
	// server may close before the client has written the whole frame, so
	// the write itself may fail; then the connection must be gone too.
	werr := r.ws.Write(ctx, websocket.MessageBinary, make([]byte, 200<<10))
	_, _, rerr := r.ws.Read(ctx)
	switch {
	case websocket.CloseStatus(rerr) == websocket.StatusMessageTooBig:
	case werr != nil && rerr != nil:
		t.Logf("oversize frame: the server closed mid-write (%v)", werr)
	default:
		t.Fatalf("oversize frame: write err %v, read err %v; want close 1009", werr, rerr)
	}

	// The service is up and the app has no conversations: nothing changed.
	g := dial(t, ctx, p.URL, "bad-app", "auditor")
	rows, err := g.QueryConversations(ctx, map[string]any{}, "", 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 0 {
		t.Fatalf("bad input created %d conversations: %v", len(rows), rows)
	}
	if _, err := g.CreateConversation(ctx, []string{"x"}, "ok", nil, false); err != nil {
		t.Fatalf("service unusable after bad input: %v", err)
	}
	_ = client.TextMessage
}
