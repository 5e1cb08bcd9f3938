package edge

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/internal/gopool/gopooltest"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, gopooltest.IgnoreWorkers()) }

// fakeBackend records requests and answers with fn (default: empty reply).
type fakeBackend struct {
	mu   sync.Mutex
	reqs []*meshpb.ClientRequest
	fn   func(*meshpb.ClientRequest) (*meshpb.ClientReply, error)
}

func (b *fakeBackend) Do(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	b.mu.Lock()
	b.reqs = append(b.reqs, proto.Clone(req).(*meshpb.ClientRequest))
	fn := b.fn
	b.mu.Unlock()
	if fn != nil {
		return fn(req)
	}
	return &meshpb.ClientReply{}, nil
}

func (b *fakeBackend) setFn(fn func(*meshpb.ClientRequest) (*meshpb.ClientReply, error)) {
	b.mu.Lock()
	b.fn = fn
	b.mu.Unlock()
}

// requests returns the recorded requests of kind k.
func (b *fakeBackend) requests(k meshpb.ClientRequest_Kind) []*meshpb.ClientRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*meshpb.ClientRequest
	for _, r := range b.reqs {
		if r.GetKind() == k {
			out = append(out, r)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const testApp = "testapp-0123456789abcdef"

type testEnv struct {
	srv *Server
	ts  *httptest.Server
	be  *fakeBackend
	url string
}

// newEnv starts an edge over httptest; mod may adjust the config.
func newEnv(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	be := &fakeBackend{}
	cfg := Config{
		EdgeID:   "edge-test",
		Backend:  be,
		Apps:     apps.NewDev(),
		TokenKey: []byte("test-token-key"),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv := New(cfg)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return &testEnv{srv: srv, ts: ts, be: be, url: "ws" + strings.TrimPrefix(ts.URL, "http")}
}

// client is a test WebSocket client with a background reader, so pings and
// the close handshake are answered while the test waits.
type client struct {
	t     *testing.T
	ws    *websocket.Conn
	codec lcpb.Codec
	in    chan frame
	done  chan struct{}
	err   error // valid after done is closed
}

type frame struct {
	typ websocket.MessageType
	b   []byte
}

func (e *testEnv) dial(t *testing.T, subprotocol string) *client {
	t.Helper()
	ws, _, err := websocket.Dial(context.Background(), e.url, &websocket.DialOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		t.Fatalf("dial %s: %v", subprotocol, err)
	}
	codec, _ := lcpb.CodecFor(subprotocol)
	return startClient(t, ws, codec)
}

func startClient(t *testing.T, ws *websocket.Conn, codec lcpb.Codec) *client {
	c := &client{t: t, ws: ws, codec: codec, in: make(chan frame, 256), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			typ, b, err := ws.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			c.in <- frame{typ, b}
		}
	}()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c
}

func (c *client) send(cmd *lcpb.GenericCommand) {
	c.t.Helper()
	b, err := c.codec.Encode(cmd)
	if err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	typ := websocket.MessageBinary
	if c.codec.Base64 {
		typ = websocket.MessageText
	}
	if err := c.ws.Write(context.Background(), typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	if err := c.ws.Write(context.Background(), typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recvFrame waits for the next frame.
func (c *client) recvFrame() frame {
	c.t.Helper()
	f, err := c.nextFrame(5 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

func (c *client) recv() *lcpb.GenericCommand {
	c.t.Helper()
	cmd, err := c.next(5 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return cmd
}

// nextFrame waits up to wait for the next frame. It reports failures as
// errors, so a goroutine other than the test's may call it (and next).
func (c *client) nextFrame(wait time.Duration) (frame, error) {
	select {
	case f := <-c.in:
		return f, nil
	case <-c.done:
		select {
		case f := <-c.in:
			return f, nil
		default:
		}
		return frame{}, fmt.Errorf("connection closed while waiting for a frame: %v", c.err)
	case <-time.After(wait):
		return frame{}, errors.New("timed out waiting for a frame")
	}
}

// next waits up to wait for the next frame and decodes it.
func (c *client) next(wait time.Duration) (*lcpb.GenericCommand, error) {
	f, err := c.nextFrame(wait)
	if err != nil {
		return nil, err
	}
	wantText := c.codec.Base64
	if (f.typ == websocket.MessageText) != wantText {
		return nil, fmt.Errorf("frame type %v on %s", f.typ, c.codec.Name)
	}
	b := f.b
	if wantText {
		if b, err = base64.StdEncoding.DecodeString(string(f.b)); err != nil {
			return nil, fmt.Errorf("base64: %v", err)
		}
	}
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(b, cmd); err != nil {
		return nil, fmt.Errorf("decode: %v", err)
	}
	return cmd, nil
}

// expectNothing checks that no reply (or HIGH push) is queued for c so
// far. Its positive control is an echo sent now, whose reply must be the
// next frame: the edge handles a connection's frames one at a time, queues
// a frame's replies at HIGH before it reads the next, and pops each
// priority FIFO. NORMAL and LOW pushes may trail the echo's reply: check
// their absence with a marker delivered at LOW (TestDeliver). The duration
// (once a sleep) is unused: the check ends when the reply comes.
func (c *client) expectNothing(time.Duration) {
	c.t.Helper()
	const i = 1 << 30 // above any i the tests send
	c.send(echoCmd(i))
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != i {
		c.t.Fatalf("unexpected frame before the control echo: %v", r)
	}
}

// closeStatus waits for the connection to end and returns the close code.
func (c *client) closeStatus() websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("connection not closed")
	}
	var ce websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code
	}
	return -1
}

func openCmd(i int32, peer string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
		AppId: proto.String(testApp), PeerId: proto.String(peer), I: proto.Int32(i),
		SessionMessage: &lcpb.SessionCommand{Ua: proto.String("js/4.3.1"), ConfigBitmap: proto.Int64(59)},
	}
}

// login opens peer on c and returns the opened reply.
func (c *client) login(i int32, peer string) *lcpb.GenericCommand {
	c.t.Helper()
	c.send(openCmd(i, peer))
	r := c.recv()
	if r.GetCmd() != lcpb.CommandType_session || r.GetOp() != lcpb.OpType_opened {
		c.t.Fatalf("login %s: got %v/%v %v, want session/opened", peer, r.GetCmd(), r.GetOp(), r.GetErrorMessage())
	}
	return r
}

func echoCmd(i int32) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(i)}
}

func directCmd(i int32, msg string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(i),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Msg: proto.String(msg)},
	}
}

// wantError checks cmd is cmd:error with code and i (nil: no i).
func wantError(t *testing.T, cmd *lcpb.GenericCommand, code int32, i *int32) {
	t.Helper()
	if cmd.GetCmd() != lcpb.CommandType_error {
		t.Fatalf("got cmd %v, want error %d", cmd.GetCmd(), code)
	}
	if got := cmd.GetErrorMessage().GetCode(); got != code {
		t.Fatalf("got error code %d (%s), want %d", got, cmd.GetErrorMessage().GetReason(), code)
	}
	if cmd.GetErrorMessage().Reason == nil {
		t.Fatalf("error without reason")
	}
	if (i == nil) != (cmd.I == nil) || (i != nil && *i != cmd.GetI()) {
		t.Fatalf("got i %v, want %v", cmd.I, i)
	}
}

// loginSignature is the test oracle for login signatures: hex
// HMAC-SHA1(masterKey, "appid:clientid::timestamp:nonce").
func loginSignature(masterKey, appID, clientID string, ts int64, nonce string) string {
	m := hmac.New(sha1.New, []byte(masterKey))
	fmt.Fprintf(m, "%s:%s::%d:%s", appID, clientID, ts, nonce)
	return hex.EncodeToString(m.Sum(nil))
}

// hmacHex signs msg like LeanCloud: hex HMAC-SHA1 keyed with the master key.
func hmacHex(masterKey, msg string) string {
	m := hmac.New(sha1.New, []byte(masterKey))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}
