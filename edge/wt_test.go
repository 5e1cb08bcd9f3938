package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// wtEnv is an edge (fake backend) serving WebSocket over httptest and
// WebTransport on a loopback UDP socket with a dev certificate.
type wtEnv struct {
	*testEnv
	wt   *WTServer
	cert *WTCert
	addr string // UDP host:port
}

func newWTEnv(t *testing.T, mod func(*Config)) *wtEnv {
	t.Helper()
	cert, err := DevWTCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newWTEnvWith(t, mod, WTConfig{Cert: cert})
}

func newWTEnvWith(t *testing.T, mod func(*Config), wc WTConfig) *wtEnv {
	t.Helper()
	e := newEnv(t, mod)
	cert := wc.Cert
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := e.srv.NewWebTransport(wc)
	served := make(chan error, 1)
	go func() { served <- w.Serve(pc) }()
	// Serve is under way once a QUIC handshake completes. webtransport-go's
	// Serve counts itself (a WaitGroup Add) before it listens, and a Close
	// racing that Add is a WaitGroup misuse the race detector reports (a
	// test that closes at once, as TestWTInfoEndpoints does, hit it).
	if cert != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		qc, err := quic.DialAddr(ctx, pc.LocalAddr().String(), pinnedTLS(cert.Hash()), &quic.Config{EnableDatagrams: true})
		cancel()
		if err != nil {
			t.Fatalf("the WebTransport listener does not answer: %v", err)
		}
		qc.CloseWithError(0, "")
	}
	t.Cleanup(func() {
		e.srv.Close()
		if err := w.Close(); err != nil {
			t.Errorf("wt close: %v", err)
		}
		pc.Close()
		if err := <-served; err != nil {
			t.Errorf("wt serve: %v", err)
		}
	})
	return &wtEnv{testEnv: e, wt: w, cert: cert, addr: pc.LocalAddr().String()}
}

// pinnedTLS accepts exactly the certificate with hash h, as a browser given
// serverCertificateHashes does.
func pinnedTLS(h [sha256.Size]byte) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		NextProtos:         []string{http3.NextProtoH3},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || sha256.Sum256(raw[0]) != h {
				return errors.New("certificate hash mismatch")
			}
			return nil
		},
	}
}

// wtClient is a test WebTransport client: one stream of delimited frames,
// datagrams on the side, each read by a goroutine of its own.
type wtClient struct {
	t    *testing.T
	tr   *webtransport.Transport
	sess *webtransport.Session
	str  *webtransport.Stream
	in   chan *lcpb.GenericCommand // stream frames
	dgs  chan *lcpb.GenericCommand // datagrams
	done chan struct{}             // stream reader ended
	err  error                     // valid after done
	wg   sync.WaitGroup
}

type wtDialOpts struct {
	path      string
	protocols []string
	config    *webtransport.Config // client flow control (Safari sends WT_INITIAL_*)
}

func (e *wtEnv) dialWT(t *testing.T, o wtDialOpts) *wtClient {
	t.Helper()
	if o.path == "" {
		o.path = WTPath
	}
	tr := &webtransport.Transport{TLSClientConfig: pinnedTLS(e.cert.Hash()), ApplicationProtocols: o.protocols, Config: o.config}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rsp, sess, err := tr.Dial(ctx, "https://"+e.addr+o.path, nil)
	if err != nil {
		code := 0
		if rsp != nil {
			code = rsp.StatusCode
		}
		t.Fatalf("dial wt: %v (status %d)", err, code)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	c := &wtClient{t: t, tr: tr, sess: sess, str: str,
		in: make(chan *lcpb.GenericCommand, 256), dgs: make(chan *lcpb.GenericCommand, 256), done: make(chan struct{})}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		defer close(c.done)
		br := bufio.NewReader(str)
		for {
			b, err := readDelimited(br, 1<<20)
			if err != nil {
				c.err = err
				return
			}
			cmd := new(lcpb.GenericCommand)
			if err := proto.Unmarshal(b, cmd); err != nil {
				c.err = fmt.Errorf("undecodable frame from the edge: %w", err)
				return
			}
			c.in <- cmd
		}
	}()
	go func() {
		defer c.wg.Done()
		for {
			b, err := sess.ReceiveDatagram(context.Background())
			if err != nil {
				return
			}
			cmd := new(lcpb.GenericCommand)
			if err := proto.Unmarshal(b, cmd); err != nil {
				t.Errorf("undecodable datagram from the edge: %v", err)
				continue
			}
			c.dgs <- cmd
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *wtClient) close() {
	_ = c.sess.CloseWithError(0, "")
	c.tr.Close()
	c.wg.Wait()
}

func (c *wtClient) send(cmd *lcpb.GenericCommand) {
	c.t.Helper()
	b, err := proto.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(appendDelimited(nil, b))
}

func (c *wtClient) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.str.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wtClient) sendDatagram(cmd *lcpb.GenericCommand) {
	c.t.Helper()
	b, err := proto.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.sess.SendDatagram(b); err != nil {
		c.t.Fatalf("send datagram: %v", err)
	}
}

func (c *wtClient) recv() *lcpb.GenericCommand {
	c.t.Helper()
	select {
	case cmd := <-c.in:
		return cmd
	case <-c.done:
		select {
		case cmd := <-c.in:
			return cmd
		default:
		}
		c.t.Fatalf("stream ended while waiting for a frame: %v", c.err)
	case <-time.After(5 * time.Second):
		c.t.Fatalf("timed out waiting for a frame")
	}
	return nil
}

func (c *wtClient) recvDatagram() *lcpb.GenericCommand {
	c.t.Helper()
	select {
	case cmd := <-c.dgs:
		return cmd
	case <-time.After(5 * time.Second):
		c.t.Fatalf("timed out waiting for a datagram")
	}
	return nil
}

func (c *wtClient) login(i int32, peer string) *lcpb.GenericCommand {
	c.t.Helper()
	c.send(openCmd(i, peer))
	r := c.recv()
	if r.GetCmd() != lcpb.CommandType_session || r.GetOp() != lcpb.OpType_opened {
		c.t.Fatalf("login %s: got %v/%v %v, want session/opened", peer, r.GetCmd(), r.GetOp(), r.GetErrorMessage())
	}
	return r
}

// echo checks the connection still answers, in order.
func (c *wtClient) echo(i int32) {
	c.t.Helper()
	c.send(echoCmd(i))
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != i {
		c.t.Fatalf("got %v, want echo %d", r, i)
	}
}

// closeCode waits for the edge to end the session and returns its error
// code and message.
func (c *wtClient) closeCode() (webtransport.SessionErrorCode, string) {
	c.t.Helper()
	select {
	case <-c.sess.Context().Done():
	case <-time.After(10 * time.Second):
		c.t.Fatalf("session not closed")
	}
	se := sessionError(c.t, c.sess)
	if !se.Remote {
		c.t.Fatalf("session closed locally: %v", se)
	}
	return se.ErrorCode, se.Message
}

// sessionError returns why a closed session ended (its context says only
// "canceled"; the session's calls return the close error).
func sessionError(t *testing.T, sess *webtransport.Session) *webtransport.SessionError {
	t.Helper()
	_, err := sess.AcceptStream(context.Background())
	var se *webtransport.SessionError
	if !errors.As(err, &se) {
		t.Fatalf("session ended with %v, want a session error", err)
	}
	return se
}

func transientCmd(msg string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{
		Cmd:           lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Msg: proto.String(msg), Transient: proto.Bool(true)},
	}
}

// forwarded returns the COMMAND requests whose GenericCommand carries msg.
func forwarded(be *fakeBackend, msg string) int {
	n := 0
	for _, r := range be.requests(meshpb.ClientRequest_COMMAND) {
		cmd := new(lcpb.GenericCommand)
		if proto.Unmarshal(r.GetCommand(), cmd) == nil && cmd.GetDirectMessage().GetMsg() == msg {
			n++
		}
	}
	return n
}

func TestWTLoginAndCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    wtDialOpts
		ver  int32
	}{
		{"no flow control (draft-02 clients)", wtDialOpts{}, 3},
		{"session flow control (Safari's WT_INITIAL_* settings)", wtDialOpts{config: &webtransport.Config{MaxIncomingStreams: 4, MaxIncomingUniStreams: 4, MaxIncomingData: 1 << 20}}, 3},
		{"application protocol lc.protobuf2.1", wtDialOpts{protocols: []string{lcpb.SubprotocolBinary1}}, 1},
		{"?subprotocol=lc.protobuf2.1", wtDialOpts{path: WTPath + "?subprotocol=" + lcpb.SubprotocolBinary1}, 1},
		{"a base64 subprotocol is not served: binary 3", wtDialOpts{path: WTPath + "?subprotocol=" + lcpb.SubprotocolBase64v1}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWTEnv(t, nil)
			e.be.setFn(func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
				if req.GetKind() != meshpb.ClientRequest_COMMAND {
					return &meshpb.ClientReply{}, nil
				}
				ack, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), I: proto.Int32(2),
					AckMessage: &lcpb.AckCommand{Uid: proto.String("m1"), T: proto.Int64(1)}})
				return &meshpb.ClientReply{Commands: [][]byte{ack}}, nil
			})
			c := e.dialWT(t, tc.o)
			opened := c.login(1, "alice")
			if opened.GetPeerId() != "alice" || opened.GetSessionMessage().GetSt() == "" {
				t.Fatalf("opened: %v", opened)
			}
			c.send(directCmd(2, "hello"))
			ack := c.recv()
			if ack.GetCmd() != lcpb.CommandType_ack || ack.GetI() != 2 || ack.GetPeerId() != "alice" || ack.GetService() != lcpb.ServiceIM {
				t.Fatalf("got %v, want ack i=2 with peerId and service filled in", ack)
			}
			opens := e.be.requests(meshpb.ClientRequest_OPEN)
			if len(opens) != 1 || opens[0].GetProtocolVersion() != tc.ver || opens[0].GetPeerId() != "alice" {
				t.Fatalf("OPEN requests %v, want one for alice with protocol version %d", opens, tc.ver)
			}
			if forwarded(e.be, "hello") != 1 {
				t.Fatalf("direct not forwarded once")
			}
			m := e.srv.Metrics()
			waitFor(t, "per-transport counts", func() bool {
				wt, ws := &m.ByTransport[TransportWebTransport], &m.ByTransport[TransportWebSocket]
				return wt.SessionsOpen.Load() == 1 && wt.ConnectionsOpen.Load() == 1 && wt.FramesIn.Load() == 2 &&
					ws.SessionsTotal.Load() == 0 && m.SessionsOpen.Load() == 1
			})
			buf := metricsText(t, m.Collector())
			for _, want := range []string{`relaymesh_edge_transport_sessions{transport="webtransport"} 1`, `relaymesh_edge_transport_sessions{transport="websocket"} 0`} {
				if !strings.Contains(buf, want) {
					t.Fatalf("metrics lack %q:\n%s", want, buf)
				}
			}
			c.close()
			waitFor(t, "CLOSE to the backend", func() bool { return len(e.be.requests(meshpb.ClientRequest_CLOSE)) == 1 })
			waitFor(t, "session gauge back to 0", func() bool {
				return m.ByTransport[TransportWebTransport].SessionsOpen.Load() == 0 && m.ByTransport[TransportWebTransport].ConnectionsOpen.Load() == 0
			})
		})
	}
}

// TestWTSettingsForEveryBrowser reads the HTTP/3 SETTINGS the edge sends
// and checks each browser's requirement (docs/WEBTRANSPORT.md).
func TestWTSettingsForEveryBrowser(t *testing.T) {
	e := newWTEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, e.addr, pinnedTLS(e.cert.Hash()), &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	cc := (&http3.Transport{EnableDatagrams: true}).NewClientConn(qc)
	select {
	case <-cc.ReceivedSettings():
	case <-ctx.Done():
		t.Fatal("no SETTINGS")
	}
	st := cc.Settings()
	if !st.EnableDatagrams || !st.EnableExtendedConnect {
		t.Fatalf("datagrams %v, extended CONNECT %v: want both", st.EnableDatagrams, st.EnableExtendedConnect)
	}
	for _, want := range []struct {
		id   uint64
		who  string
		want func(uint64) bool
	}{
		{0x2b603742, "SETTINGS_ENABLE_WEBTRANSPORT (draft-02: Chromium, older Firefox)", func(v uint64) bool { return v == 1 }},
		{0x14e9cd29, "SETTINGS_WT_MAX_SESSIONS (Safari 26.4+)", func(v uint64) bool { return v >= 1 }},
		{0x2b65, "SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI (Safari)", func(v uint64) bool { return v >= 1 }},
		{0x2b64, "SETTINGS_WT_INITIAL_MAX_STREAMS_UNI (Safari)", func(v uint64) bool { return v >= 1 }},
		{0x2b61, "SETTINGS_WT_INITIAL_MAX_DATA (Safari)", func(v uint64) bool { return v >= 64<<10 }},
		{0x2c7cf000, "SETTINGS_WT_ENABLED (draft-15+: current Firefox)", func(v uint64) bool { return v == 1 }},
	} {
		v, ok := st.Other[want.id]
		if !ok || !want.want(v) {
			t.Errorf("%s (%#x): got %d (present %v)", want.who, want.id, v, ok)
		}
	}
	if _, ok := st.Other[0xc671706a]; ok {
		t.Errorf("draft-07 SETTINGS_WT_MAX_SESSIONS sent; the edge does not speak draft-07")
	}
}

func TestWTDatagrams(t *testing.T) {
	e := newWTEnv(t, nil)
	c := e.dialWT(t, wtDialOpts{})
	m := e.srv.Metrics()
	// Before login, even a transient direct is dropped (no stream needed
	// to refuse it).
	c.send(echoCmd(1)) // the stream exists now
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("got %v, want echo", r)
	}
	c.sendDatagram(transientCmd("too early"))
	waitFor(t, "the early datagram dropped", func() bool { return m.DatagramsDropped.Load() == 1 })
	c.login(1, "alice")

	// A transient direct as a datagram is handled like a stream frame.
	c.sendDatagram(transientCmd("typing"))
	waitFor(t, "the datagram forwarded", func() bool { return forwarded(e.be, "typing") == 1 })
	if m.DatagramsIn.Load() != 1 {
		t.Fatalf("DatagramsIn %d, want 1", m.DatagramsIn.Load())
	}
	// Anything else is dropped unanswered: a persistent direct, an echo,
	// garbage.
	persistent := directCmd(0, "not transient")
	persistent.I = nil
	c.sendDatagram(persistent)
	c.sendDatagram(echoCmd(9))
	if err := c.sess.SendDatagram([]byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three more datagrams dropped", func() bool { return m.DatagramsDropped.Load() == 4 })
	c.echo(10) // no reply to any of them came first
	if forwarded(e.be, "not transient") != 0 {
		t.Fatal("a persistent direct sent as a datagram reached the backend")
	}

	// A transient push goes out as a datagram; one too big for a datagram
	// goes on the stream.
	push := func(msg string) {
		b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Msg: proto.String(msg), Transient: proto.Bool(true), FromPeerId: proto.String("bob")}})
		e.srv.Deliver(&meshpb.Delivery{AppId: testApp, Command: b, Targets: []*meshpb.Target{{PeerId: "alice"}}})
	}
	push("bob is typing")
	if d := c.recvDatagram(); d.GetDirectMessage().GetMsg() != "bob is typing" || d.GetPeerId() != "alice" {
		t.Fatalf("datagram %v, want the transient push with peerId alice", d)
	}
	big := strings.Repeat("x", 4000)
	push(big)
	if d := c.recv(); d.GetDirectMessage().GetMsg() != big {
		t.Fatalf("got %v on the stream, want the big transient push", d)
	}
	if m.DatagramsOut.Load() != 1 || m.DatagramsFallback.Load() != 1 {
		t.Fatalf("datagrams out %d, fallback %d: want 1 and 1", m.DatagramsOut.Load(), m.DatagramsFallback.Load())
	}
	// A persistent push never goes as a datagram.
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Msg: proto.String("stored"), Id: proto.String("m1")}})
	e.srv.Deliver(&meshpb.Delivery{AppId: testApp, Command: b, Targets: []*meshpb.Target{{PeerId: "alice"}}})
	if d := c.recv(); d.GetDirectMessage().GetMsg() != "stored" {
		t.Fatalf("got %v, want the persistent push on the stream", d)
	}
}

// TestWTDatagramFlood: a flood of datagrams is cut to
// Limits.DatagramsPerMinute, the rest dropped and counted; the session and
// others keep working.
func TestWTDatagramFlood(t *testing.T) {
	const rate = 10
	e := newWTEnv(t, func(c *Config) { c.Limits.DatagramsPerMinute = rate; c.Limits.SendsPerMinute = -1 })
	c := e.dialWT(t, wtDialOpts{})
	c.login(1, "alice")
	m := e.srv.Metrics()
	const flood = 2000
	for range flood {
		if err := c.sess.SendDatagram(mustMarshal(t, transientCmd("flood"))); err != nil {
			t.Fatal(err)
		}
	}
	c.echo(2) // the stream is served during and after the flood
	// Every datagram the edge read was either taken or dropped; quic-go
	// drops more below us when its queue is full (not counted here).
	waitFor(t, "the flood read", func() bool {
		return m.DatagramsIn.Load() >= rate && m.DatagramsIn.Load()+m.DatagramsDropped.Load() > rate
	})
	time.Sleep(100 * time.Millisecond) // let stragglers in: the bound below must hold after them too
	// The bucket refills at rate per minute: a slow test run may earn one or two more.
	if got := m.DatagramsIn.Load(); got > rate+2 {
		t.Fatalf("%d datagrams handled, want at most %d (+ refill)", got, rate)
	}
	if m.DatagramsDropped.Load() == 0 {
		t.Fatal("nothing dropped")
	}
	if got := int64(forwarded(e.be, "flood")); got != m.DatagramsIn.Load() {
		t.Fatalf("%d forwarded, %d counted in", got, m.DatagramsIn.Load())
	}
	other := e.dialWT(t, wtDialOpts{})
	other.login(1, "bob")
	c.echo(3)
}

func mustMarshal(t *testing.T, cmd *lcpb.GenericCommand) []byte {
	t.Helper()
	b, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWTBadInput: what a client may put on the stream that no SDK would.
func TestWTBadInput(t *testing.T) {
	for _, tc := range []struct {
		name     string
		send     func(c *wtClient)
		wantCode webtransport.SessionErrorCode // 0: the session stays up
		check    func(t *testing.T, c *wtClient)
	}{
		{
			name: "undecodable frame: 4114, session stays",
			send: func(c *wtClient) { c.sendRaw(appendDelimited(nil, []byte{0xff, 0xff, 0xff, 0x01})) },
			check: func(t *testing.T, c *wtClient) {
				wantError(t, c.recv(), ErrUnparseable, nil)
				c.echo(5)
			},
		},
		{
			name: "empty frame: 4114 missing cmd",
			send: func(c *wtClient) { c.sendRaw([]byte{0}) },
			check: func(t *testing.T, c *wtClient) {
				wantError(t, c.recv(), ErrUnparseable, nil)
				c.echo(5)
			},
		},
		{
			name:     "length prefix over MaxFrameBytes: 1009",
			send:     func(c *wtClient) { c.sendRaw([]byte{0x81, 0x80, 0x04}) }, // 65537 = 64 KiB + 1
			wantCode: webtransport.SessionErrorCode(websocket.StatusMessageTooBig),
		},
		{
			name:     "huge length prefix: 1009 without allocating",
			send:     func(c *wtClient) { c.sendRaw([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}) },
			wantCode: webtransport.SessionErrorCode(websocket.StatusMessageTooBig),
		},
		{
			name:     "length prefix that is no varint: 1002",
			send:     func(c *wtClient) { c.sendRaw(bytes.Repeat([]byte{0xff}, 11)) },
			wantCode: webtransport.SessionErrorCode(websocket.StatusProtocolError),
		},
		{
			name: "stream closed mid-frame: 1002",
			send: func(c *wtClient) {
				c.sendRaw([]byte{100, 1, 2, 3})
				c.str.Close()
			},
			wantCode: webtransport.SessionErrorCode(websocket.StatusProtocolError),
		},
		{
			name: "stream closed between frames: 1000",
			send: func(c *wtClient) {
				c.send(echoCmd(4))
				c.str.Close()
			},
			wantCode: webtransport.SessionErrorCode(websocket.StatusNormalClosure),
			check: func(t *testing.T, c *wtClient) {
				if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo {
					t.Fatalf("got %v, want the echo written before the close", r)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWTEnv(t, nil)
			c := e.dialWT(t, wtDialOpts{})
			c.login(1, "alice")
			tc.send(c)
			if tc.check != nil {
				tc.check(t, c)
			}
			if tc.wantCode != 0 {
				code, msg := c.closeCode()
				if code != tc.wantCode || msg == "" {
					t.Fatalf("closed with %d %q, want %d with a reason", code, msg, tc.wantCode)
				}
				waitFor(t, "CLOSE to the backend", func() bool { return len(e.be.requests(meshpb.ClientRequest_CLOSE)) == 1 })
			}
			// The edge still serves others, on both transports.
			o := e.dialWT(t, wtDialOpts{})
			o.login(1, "bob")
			o.echo(2)
			ws := e.dial(t, lcpb.SubprotocolBinary3)
			ws.login(1, "carol")
		})
	}
}

// TestWTBadSessions: requests that must not become sessions.
func TestWTBadSessions(t *testing.T) {
	e := newWTEnv(t, nil)
	// A GET over HTTP/3 to /wt is not a session.
	h3 := &http3.Transport{TLSClientConfig: pinnedTLS(e.cert.Hash())}
	defer h3.Close()
	rsp, err := (&http.Client{Transport: h3}).Get("https://" + e.addr + WTPath)
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /wt over HTTP/3: %d, want 405", rsp.StatusCode)
	}
	// A session on another path is refused.
	tr := &webtransport.Transport{TLSClientConfig: pinnedTLS(e.cert.Hash())}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rsp, sess, err := tr.Dial(ctx, "https://"+e.addr+"/elsewhere", nil)
	if err == nil {
		sess.CloseWithError(0, "")
		t.Fatal("a session on /elsewhere was accepted")
	}
	if rsp == nil || rsp.StatusCode != http.StatusNotFound {
		t.Fatalf("session on /elsewhere: %v, want 404", rsp)
	}
	// A client that never opens its stream is closed at the login deadline.
	e2 := newWTEnv(t, func(c *Config) { c.Limits.LoginTimeout = 200 * time.Millisecond })
	tr2 := &webtransport.Transport{TLSClientConfig: pinnedTLS(e2.cert.Hash())}
	defer tr2.Close()
	_, idle, err := tr2.Dial(ctx, "https://"+e2.addr+WTPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-idle.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("idle session not closed")
	}
	if se := sessionError(t, idle); se.ErrorCode != CloseLoginTimeout {
		t.Fatalf("idle session ended with %v, want code %d", se, CloseLoginTimeout)
	}
	if e2.srv.Metrics().LoginTimeouts.Load() != 1 {
		t.Fatal("login timeout not counted")
	}
}

// TestWTGoAwayOnClose: Close says goaway to a WebTransport session and
// closes it with 1001, as for WebSocket.
func TestWTGoAwayOnClose(t *testing.T) {
	e := newWTEnv(t, nil)
	c := e.dialWT(t, wtDialOpts{})
	c.login(1, "alice")
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		e.srv.Close()
	}()
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_goaway || r.GetPeerId() != "alice" {
		t.Fatalf("got %v, want goaway for alice", r)
	}
	if code, _ := c.closeCode(); code != webtransport.SessionErrorCode(CloseShutdown) {
		t.Fatalf("closed with %d, want %d", code, CloseShutdown)
	}
	<-closed
}

// TestWTSlowConsumer: a session whose queue overflows with HIGH frames gets
// goaway and 1013, as on WebSocket (TestSlowConsumerOverflowCloses).
func TestWTSlowConsumer(t *testing.T) {
	e := newWTEnv(t, func(c *Config) { c.Limits.QueueLen = 4 })
	c := e.dialWT(t, wtDialOpts{})
	c.login(1, "alice")
	var conn *conn
	e.srv.mu.Lock()
	for x := range e.srv.peers[peerKey{testApp, "alice"}] {
		conn = x.c
	}
	e.srv.mu.Unlock()
	overflowed := false
	for range 1_000_000 {
		o := conn.q.Push(outFrame{b: []byte{0x08, 0x0e}, p: PriorityHigh}, PriorityHigh)
		conn.kick() // as enqueue does
		if o.Result == pq.Overflowed {
			overflowed = true
			break
		}
	}
	if !overflowed {
		t.Fatal("queue never overflowed")
	}
	for {
		if r := c.recv(); r.GetCmd() == lcpb.CommandType_goaway {
			if r.GetPeerId() != "alice" {
				t.Fatalf("goaway for %q, want alice", r.GetPeerId())
			}
			break
		}
	}
	if code, _ := c.closeCode(); code != webtransport.SessionErrorCode(CloseSlowConsumer) {
		t.Fatalf("closed with %d, want %d", code, CloseSlowConsumer)
	}
	if got := e.srv.Metrics().OverflowCloses.Load(); got != 1 {
		t.Fatalf("got %d overflow closes, want 1", got)
	}
}

func TestWTInfoEndpoints(t *testing.T) {
	e := newWTEnv(t, func(c *Config) { c.PublicURLs = []string{"wss://im.example.com/", "wss://im2.example.com/"} })
	get := func(path string, v any) {
		t.Helper()
		rsp, err := http.Get(e.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		if rsp.StatusCode != 200 || rsp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d, CORS %q", path, rsp.StatusCode, rsp.Header.Get("Access-Control-Allow-Origin"))
		}
		if err := json.NewDecoder(rsp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	h := e.cert.Hash()
	wantHash := []wtHash{{Algorithm: "sha-256", Value: h[:]}}
	var info wtInfo
	get("/v1/webtransport", &info)
	if info.URL != "https://im.example.com/wt" || fmt.Sprint(info.CertificateHashes) != fmt.Sprint(wantHash) {
		t.Fatalf("/v1/webtransport: %+v, want https://im.example.com/wt and %v", info, wantHash)
	}
	var route struct {
		Server string  `json:"server"`
		WT     *wtInfo `json:"wt"`
	}
	get("/v1/route", &route)
	if route.WT == nil || route.WT.URL != "https://im.example.com/wt" || fmt.Sprint(route.WT.CertificateHashes) != fmt.Sprint(wantHash) {
		t.Fatalf("/v1/route wt: %+v", route.WT)
	}
	// Without a WebTransport listener: no wt field, 404.
	plain := newEnv(t, nil)
	rsp, err := http.Get(plain.ts.URL + "/v1/webtransport")
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusNotFound {
		t.Fatalf("/v1/webtransport without WebTransport: %d, want 404", rsp.StatusCode)
	}
	rsp, err = http.Get(plain.ts.URL + "/v1/route")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if strings.Contains(string(body), `"wt"`) {
		t.Fatalf("/v1/route without WebTransport: %s", body)
	}
}

func TestWTURLFor(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/":        "https://127.0.0.1:8080/wt",
		"wss://im.example.com/":       "https://im.example.com/wt",
		"wss://im.example.com:8443/x": "https://im.example.com:8443/wt",
		"wss://":                      "",
		"https://x/":                  "",
	} {
		if got := wtURLFor(in); got != want {
			t.Errorf("wtURLFor(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWTPerIPCap: WebTransport sessions count against MaxConnsPerIP with
// WebSockets.
func TestWTPerIPCap(t *testing.T) {
	e := newWTEnv(t, func(c *Config) { c.Limits.MaxConnsPerIP = 1 })
	ws := e.dial(t, lcpb.SubprotocolBinary3)
	ws.login(1, "alice")
	tr := &webtransport.Transport{TLSClientConfig: pinnedTLS(e.cert.Hash())}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rsp, sess, err := tr.Dial(ctx, "https://"+e.addr+WTPath, nil)
	if err == nil {
		sess.CloseWithError(0, "")
		t.Fatal("a WebTransport session over the per-IP cap was accepted")
	}
	if rsp == nil || rsp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("over the cap: %v, want 429", rsp)
	}
	if m := e.srv.Metrics(); m.ConnsOverIPCap.Load() != 1 || m.WTRefused.Load() != 1 {
		t.Fatalf("over-cap %d, wt refused %d: want 1 and 1", m.ConnsOverIPCap.Load(), m.WTRefused.Load())
	}
}

// TestWTManySessions: sessions log in, send on the stream and as datagrams,
// and receive pushes concurrently; the edge then shuts down under them.
// Every session gets goaway and 1001; nothing leaks (TestMain's goleak).
func TestWTManySessions(t *testing.T) {
	const n = 24
	e := newWTEnv(t, func(c *Config) { c.Limits.SendsPerMinute = -1; c.Limits.DatagramsPerMinute = -1 })
	clients := make([]*wtClient, n)
	for i := range clients {
		clients[i] = e.dialWT(t, wtDialOpts{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer := fmt.Sprintf("p%d", i)
			b, _ := proto.Marshal(openCmd(1, peer))
			if _, err := c.str.Write(appendDelimited(nil, b)); err != nil {
				errs <- err
				return
			}
			select {
			case r := <-c.in:
				if r.GetOp() != lcpb.OpType_opened {
					errs <- fmt.Errorf("%s: %v", peer, r)
					return
				}
			case <-time.After(10 * time.Second):
				errs <- fmt.Errorf("%s: no opened", peer)
				return
			}
			for k := range 5 {
				b, _ := proto.Marshal(directCmd(int32(10+k), peer))
				if _, err := c.str.Write(appendDelimited(nil, b)); err != nil {
					errs <- err
					return
				}
				_ = c.sess.SendDatagram(mustMarshalNoT(transientCmd(peer + "-typing")))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Pushes to everyone while they send.
	tb, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Msg: proto.String("hi"), Id: proto.String("m")}})
	for i := range n {
		e.srv.Deliver(&meshpb.Delivery{AppId: testApp, Command: tb, Targets: []*meshpb.Target{{PeerId: fmt.Sprintf("p%d", i)}}})
	}
	waitFor(t, "every direct forwarded", func() bool {
		return len(e.be.requests(meshpb.ClientRequest_COMMAND)) >= 5*n
	})
	if got := e.srv.Metrics().ByTransport[TransportWebTransport].SessionsOpen.Load(); got != n {
		t.Fatalf("%d sessions open, want %d", got, n)
	}
	e.srv.Close()
	for i, c := range clients {
		sawGoaway := false
		for !sawGoaway {
			select {
			case r := <-c.in:
				sawGoaway = r.GetCmd() == lcpb.CommandType_goaway
			case <-c.done:
				for !sawGoaway && len(c.in) > 0 {
					sawGoaway = (<-c.in).GetCmd() == lcpb.CommandType_goaway
				}
				if !sawGoaway {
					t.Fatalf("p%d: stream ended without goaway", i)
				}
			}
		}
		if code, _ := c.closeCode(); code != webtransport.SessionErrorCode(CloseShutdown) {
			t.Fatalf("p%d: closed with %d, want %d", i, code, CloseShutdown)
		}
	}
	if got := len(e.be.requests(meshpb.ClientRequest_CLOSE)); got != n {
		t.Fatalf("%d CLOSE requests, want %d", got, n)
	}
}

func mustMarshalNoT(cmd *lcpb.GenericCommand) []byte {
	b, _ := proto.Marshal(cmd)
	return b
}

// TestWTIdleTimeout: a WebTransport session is idle-closed with 4107 like a
// WebSocket; datagrams count as activity.
func TestWTIdleTimeout(t *testing.T) {
	const idle = time.Second
	e := newWTEnv(t, func(c *Config) {
		c.Limits.IdleTimeout = idle
		c.Limits.DatagramsPerMinute = -1
		c.Limits.SendsPerMinute = -1
	})
	c := e.dialWT(t, wtDialOpts{})
	c.login(1, "alice")
	// Datagrams alone keep it open past several idle periods.
	start := time.Now()
	for time.Since(start) < 3*idle {
		c.sendDatagram(transientCmd("typing"))
		time.Sleep(idle / 10)
	}
	select {
	case <-c.sess.Context().Done():
		t.Fatal("closed while datagrams kept coming")
	default:
	}
	// Then silence: 4107.
	if code, _ := c.closeCode(); code != webtransport.SessionErrorCode(CloseIdle) {
		t.Fatalf("closed with %d, want %d", code, CloseIdle)
	}
	if e.srv.Metrics().IdleCloses.Load() != 1 {
		t.Fatal("idle close not counted")
	}
}

// BenchmarkWTFrame: one frame through the delimited writer and reader.
func BenchmarkWTFrame(b *testing.B) {
	cmd, _ := proto.Marshal(directCmd(1, strings.Repeat("x", 200)))
	var buf []byte
	var stream bytes.Buffer
	br := bufio.NewReaderSize(&stream, wtReadBufSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendDelimited(buf[:0], cmd)
		stream.Write(buf)
		if _, err := readDelimited(br, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWTCertRenewedWhileRunning: the listener's refresher renews a dev
// certificate with under 2 days left; the new one is served and announced,
// and a client pinned to the old hash no longer gets in.
func TestWTCertRenewedWhileRunning(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	cert, err := devWTCert(t.TempDir(), clk.now)
	if err != nil {
		t.Fatal(err)
	}
	e := newWTEnvWith(t, nil, WTConfig{Cert: cert, RefreshEvery: 10 * time.Millisecond})
	old := cert.Hash()
	c := e.dialWT(t, wtDialOpts{})
	c.login(1, "alice")

	clk.add(12 * 24 * time.Hour) // under 2 days left
	announced := func() [sha256.Size]byte {
		rsp, err := http.Get(e.ts.URL + "/v1/webtransport")
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		var in wtInfo
		if err := json.NewDecoder(rsp.Body).Decode(&in); err != nil || len(in.CertificateHashes) != 1 {
			t.Fatalf("/v1/webtransport: %+v %v", in, err)
		}
		return [sha256.Size]byte(in.CertificateHashes[0].Value)
	}
	waitFor(t, "the renewed certificate announced", func() bool { return announced() != old })
	if announced() != cert.Hash() {
		t.Fatal("announced hash is not the served certificate's")
	}
	// The session opened before the renewal carries on.
	c.echo(2)
	// New sessions get the new certificate: pinned to it they get in,
	// pinned to the old one they do not.
	n := e.dialWT(t, wtDialOpts{})
	n.login(1, "bob")
	tr := &webtransport.Transport{TLSClientConfig: pinnedTLS(old)}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, sess, err := tr.Dial(ctx, "https://"+e.addr+WTPath, nil); err == nil {
		sess.CloseWithError(0, "")
		t.Fatal("a client pinned to the old hash got in")
	}
}
