package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// fakeServer is an in-memory LeanCloud endpoint: it accepts the four
// subprotocols, records every inbound command per connection and answers
// with a tiny scripted responder. A test overrides single commands with
// handle (return true when it answered, or chose not to).
type fakeServer struct {
	t     *testing.T
	srv   *httptest.Server
	url   string
	conns chan *fakeConn // every accepted connection, in order

	mu     sync.Mutex
	handle func(fc *fakeConn, cmd *lcpb.GenericCommand) bool // guarded by mu
	health http.HandlerFunc                                  // guarded by mu; serves /healthz when set
	all    []*fakeConn                                       // guarded by mu
	opens  int                                               // guarded by mu
}

type fakeConn struct {
	ws    *websocket.Conn
	codec lcpb.Codec
	got   chan *lcpb.GenericCommand // inbound commands
	text  chan bool                 // per inbound frame: was it a text frame
	wmu   sync.Mutex
	ended chan struct{} // closed when the connection's read ended
	end   error         // why; written before ended is closed
}

func newFakeServer(t *testing.T) *fakeServer {
	s := &fakeServer{t: t, conns: make(chan *fakeConn, 16)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.url = "ws" + strings.TrimPrefix(s.srv.URL, "http")
	t.Cleanup(func() {
		s.mu.Lock()
		for _, fc := range s.all {
			_ = fc.ws.CloseNow()
		}
		s.mu.Unlock()
		s.srv.Close()
	})
	return s
}

func (s *fakeServer) setHandler(h func(fc *fakeConn, cmd *lcpb.GenericCommand) bool) {
	s.mu.Lock()
	s.handle = h
	s.mu.Unlock()
}

func (s *fakeServer) setHealth(h http.HandlerFunc) {
	s.mu.Lock()
	s.health = h
	s.mu.Unlock()
}

func (s *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	health := s.health
	s.mu.Unlock()
	if health != nil && r.URL.Path == "/healthz" {
		health(w, r)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: lcpb.Subprotocols})
	if err != nil {
		return
	}
	codec, err := lcpb.CodecFor(ws.Subprotocol())
	if err != nil {
		_ = ws.Close(websocket.StatusProtocolError, "no subprotocol")
		return
	}
	fc := &fakeConn{ws: ws, codec: codec, got: make(chan *lcpb.GenericCommand, 4096), text: make(chan bool, 4096), ended: make(chan struct{})}
	s.mu.Lock()
	s.all = append(s.all, fc)
	s.mu.Unlock()
	s.conns <- fc
	for {
		typ, b, err := ws.Read(context.Background())
		if err != nil {
			fc.end = err
			close(fc.ended)
			return
		}
		cmd, err := codec.Decode(b, typ == websocket.MessageText)
		if err != nil {
			s.t.Errorf("fake server: bad frame: %v", err)
			return
		}
		fc.text <- typ == websocket.MessageText
		fc.got <- cmd
		s.mu.Lock()
		h := s.handle
		s.mu.Unlock()
		if h != nil && h(fc, cmd) {
			continue
		}
		s.respond(fc, cmd)
	}
}

// respond is the default script.
func (s *fakeServer) respond(fc *fakeConn, cmd *lcpb.GenericCommand) {
	switch cmd.GetCmd() {
	case lcpb.CommandType_session:
		switch cmd.GetOp() {
		case lcpb.OpType_open:
			s.mu.Lock()
			s.opens++
			n := s.opens
			s.mu.Unlock()
			fc.reply(cmd, &lcpb.GenericCommand{
				Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_opened.Enum(),
				PeerId: proto.String(cmd.GetPeerId()), ServerTs: proto.Int64(1700000000000 + int64(n)),
				SessionMessage: &lcpb.SessionCommand{St: proto.String("st-" + strconv.Itoa(n)), StTtl: proto.Int32(3600)},
			})
		case lcpb.OpType_close:
			fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
				SessionMessage: &lcpb.SessionCommand{}})
		case lcpb.OpType_query:
			fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_query_result.Enum(),
				SessionMessage: &lcpb.SessionCommand{OnlineSessionPeerIds: cmd.GetSessionMessage().GetSessionPeerIds()[:1]}})
		}
	case lcpb.CommandType_echo:
		fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum()})
	case lcpb.CommandType_direct:
		fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
			AckMessage: &lcpb.AckCommand{Uid: proto.String("mid-" + cmd.GetDirectMessage().GetDt()[:4]), T: proto.Int64(1700000000123)}})
	case lcpb.CommandType_conv:
		cm := cmd.GetConvMessage()
		out := &lcpb.ConvCommand{Cid: proto.String(cm.GetCid())}
		op := lcpb.OpType_results
		switch cmd.GetOp() {
		case lcpb.OpType_start:
			op, out.Cid, out.Cdate = lcpb.OpType_started, proto.String("conv-1"), proto.String("2024-01-01T00:00:00.000Z")
		case lcpb.OpType_query:
			out.Results = &lcpb.JsonObjectMessage{Data: proto.String(`[{"objectId":"conv-1","m":["a","b"],"name":"n"}]`)}
		case lcpb.OpType_add:
			op, out.AllowedPids = lcpb.OpType_added, cm.GetM()
		case lcpb.OpType_remove:
			op, out.AllowedPids = lcpb.OpType_removed, cm.GetM()
		case lcpb.OpType_update:
			op, out.Udate = lcpb.OpType_updated, proto.String("2024-01-01T00:00:00.000Z")
			out.AttrModified = cm.GetAttr()
		case lcpb.OpType_count:
			op, out.Count = lcpb.OpType_result, proto.Int32(2)
		}
		fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: out})
	case lcpb.CommandType_logs:
		fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{}})
	case lcpb.CommandType_patch:
		fc.reply(cmd, &lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modified.Enum(),
			PatchMessage: &lcpb.PatchCommand{LastPatchTime: proto.Int64(1700000009999)}})
	}
}

// push sends cmd as is; reply sends resp with req's i.
func (fc *fakeConn) push(cmd *lcpb.GenericCommand) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	b, err := fc.codec.Encode(cmd)
	if err != nil {
		panic(err)
	}
	typ := websocket.MessageBinary
	if fc.codec.Base64 {
		typ = websocket.MessageText
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = fc.ws.Write(ctx, typ, b)
}

func (fc *fakeConn) reply(req, resp *lcpb.GenericCommand) {
	resp.I = proto.Int32(req.GetI())
	fc.push(resp)
}

func (fc *fakeConn) drop() { _ = fc.ws.CloseNow() }

const waitLimit = 5 * time.Second

// expect returns the next inbound command with cmd/op, skipping others.
func (fc *fakeConn) expect(t *testing.T, cmd lcpb.CommandType, op lcpb.OpType) *lcpb.GenericCommand {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case c := <-fc.got:
			if c.GetCmd() == cmd && (op == 0 || c.GetOp() == op) {
				return c
			}
		case <-deadline:
			t.Fatalf("fake server: no %v/%v within %v", cmd, op, waitLimit)
			return nil
		}
	}
}

func (s *fakeServer) nextConn(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case fc := <-s.conns:
		return fc
	case <-time.After(waitLimit):
		t.Fatalf("fake server: no connection within %v", waitLimit)
		return nil
	}
}
