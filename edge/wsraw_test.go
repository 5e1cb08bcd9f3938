package edge

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Tests of the raw WebSocket (wsraw.go, wsframe.go) over a raw TCP socket:
// the frames a client sends are built by hand, so they can be anything.

// rawClient is a WebSocket client that writes frames byte by byte as the
// test builds them and reads the server's frames.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

const testWSKey = "dGhlIHNhbXBsZSBub25jZQ=="

func upgradeRequest(subprotocol string) string {
	return "GET / HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + testWSKey + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: " + subprotocol + "\r\n\r\n"
}

// dialRaw upgrades a TCP connection; extra is written with the request
// (frames sent before the answer).
func (e *testEnv) dialRaw(t *testing.T, extra []byte) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write(append([]byte(upgradeRequest(lcpb.SubprotocolBinary3)), extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: got status %d, want 101", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Fatalf("Sec-WebSocket-Accept: got %q, want %q", got, want)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != lcpb.SubprotocolBinary3 {
		t.Fatalf("subprotocol: got %q, want %q", got, lcpb.SubprotocolBinary3)
	}
	return &rawClient{t: t, nc: nc, br: br}
}

// clientFrame builds a masked client frame.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	return clientFrameMask(fin, op, payload, true)
}

func clientFrameMask(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, mbit|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, mbit|127), uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

func encodeCmd(t *testing.T, cmd *lcpb.GenericCommand) []byte {
	t.Helper()
	b, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readFrame reads one server frame; server frames are never masked or
// fragmented here.
func (c *rawClient) readFrame() (op byte, payload []byte, err error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[0]&0x70 != 0 || h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("bad server frame header % x", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

func (c *rawClient) mustFrame() (byte, []byte) {
	c.t.Helper()
	op, p, err := c.readFrame()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return op, p
}

// recvCmd reads the next frame, which must be a binary GenericCommand.
func (c *rawClient) recvCmd() *lcpb.GenericCommand {
	c.t.Helper()
	op, p := c.mustFrame()
	if op != opBinary {
		c.t.Fatalf("got opcode %d (% x), want binary", op, p)
	}
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(p, cmd); err != nil {
		c.t.Fatalf("decode: %v", err)
	}
	return cmd
}

func (c *rawClient) wantEcho(i int32) {
	c.t.Helper()
	if r := c.recvCmd(); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != i {
		c.t.Fatalf("got %v, want echo %d", r, i)
	}
}

// wantClose reads the server's close frame (data frames before it are
// skipped) and checks its code and reason (reason "" = any), then that the
// server closes the socket after the client's answering close.
func (c *rawClient) wantClose(code websocket.StatusCode, reason string) {
	c.t.Helper()
	for {
		op, p := c.mustFrame()
		if op != opClose {
			continue
		}
		if len(p) < 2 {
			c.t.Fatalf("close frame without a code: % x", p)
		}
		got := websocket.StatusCode(binary.BigEndian.Uint16(p))
		if got != code || (reason != "" && string(p[2:]) != reason) {
			c.t.Fatalf("got close %d %q, want %d %q", got, p[2:], code, reason)
		}
		break
	}
	_, _ = c.nc.Write(clientFrame(true, opClose, closePayload(code, "")))
	c.wantEOF()
}

// wantEOF checks the server closes the socket (no frame comes first).
func (c *rawClient) wantEOF() {
	c.t.Helper()
	op, p, err := c.readFrame()
	if err == nil {
		c.t.Fatalf("got frame %d % x, want the socket closed", op, p)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("socket not closed: %v", err)
	}
}

func rawEnv(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	env := newEnv(t, mod)
	if !env.srv.rawWS {
		t.Skip("raw WebSockets are off here (not Linux, or " + wsReaderEnv + "=goroutine)")
	}
	return env
}

func TestRawWSFraming(t *testing.T) {
	env := rawEnv(t, func(c *Config) {
		c.Limits.MaxFrameBytes = 1024
		c.Limits.EchoPerMinute = -1
	})
	echo := func(i int32) []byte { return encodeCmd(t, echoCmd(i)) }

	t.Run("fragmented message", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		b := echo(1)
		c.write(clientFrame(false, opBinary, b[:1]))
		c.write(clientFrame(false, opContinuation, b[1:3]))
		c.write(clientFrame(false, opContinuation, nil))
		c.write(clientFrame(true, opContinuation, b[3:]))
		c.wantEcho(1)
	})
	t.Run("ping mid-fragment", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		b := echo(2)
		c.write(clientFrame(false, opBinary, b[:2]))
		c.write(clientFrame(true, opPing, []byte("are you there")))
		if op, p := c.mustFrame(); op != opPong || string(p) != "are you there" {
			t.Fatalf("got opcode %d %q, want pong with the ping's payload", op, p)
		}
		c.write(clientFrame(true, opPong, []byte("unsolicited")))
		c.write(clientFrame(true, opContinuation, b[2:]))
		c.wantEcho(2)
	})
	t.Run("one byte at a time", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		var all []byte
		all = append(all, clientFrame(true, opPing, []byte("p"))...)
		b := echo(3)
		all = append(all, clientFrame(false, opBinary, b[:3])...)
		all = append(all, clientFrame(true, opContinuation, b[3:])...)
		all = append(all, clientFrame(true, opBinary, echo(4))...)
		for i := range all {
			c.write(all[i : i+1])
		}
		if op, p := c.mustFrame(); op != opPong || string(p) != "p" {
			t.Fatalf("got opcode %d %q, want pong", op, p)
		}
		c.wantEcho(3)
		c.wantEcho(4)
	})
	t.Run("many frames in one write", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		var all []byte
		const n = 300
		for i := range int32(n) {
			all = append(all, clientFrame(true, opBinary, echo(i))...)
			if i%50 == 0 {
				all = append(all, clientFrame(true, opPing, nil)...)
			}
		}
		c.write(all)
		// Replies are queued in order; a pong is written at once, so
		// it may overtake the reply to the frame before its ping.
		pongs := 0
		for i := int32(0); i < n; {
			op, p := c.mustFrame()
			if op == opPong {
				pongs++
				continue
			}
			cmd := new(lcpb.GenericCommand)
			if err := proto.Unmarshal(p, cmd); err != nil || cmd.GetCmd() != lcpb.CommandType_echo || cmd.GetI() != i {
				t.Fatalf("got %v (%v), want echo %d", cmd, err, i)
			}
			i++
		}
		for pongs < n/50 {
			if op, _ := c.mustFrame(); op != opPong {
				t.Fatalf("got opcode %d, want pong", op)
			}
			pongs++
		}
	})
	t.Run("frames sent with the handshake", func(t *testing.T) {
		c := env.dialRaw(t, append(clientFrame(true, opBinary, echo(5)), clientFrame(false, opBinary, echo(6)[:1])...))
		c.wantEcho(5)
		c.write(clientFrame(true, opContinuation, echo(6)[1:]))
		c.wantEcho(6)
	})
	t.Run("message at the limit", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		// 1024 bytes of junk in two fragments: read, refused as a command.
		c.write(clientFrame(false, opBinary, bytes.Repeat([]byte{0xff}, 1000)))
		c.write(clientFrame(true, opContinuation, bytes.Repeat([]byte{0xff}, 24)))
		wantError(t, c.recvCmd(), ErrUnparseable, nil)
		c.write(clientFrame(true, opBinary, echo(7)))
		c.wantEcho(7)
	})
	t.Run("invalid UTF-8 text frame", func(t *testing.T) {
		// Not a close (coder/websocket does not check UTF-8 either): the
		// text frame is base64 that does not decode, 4114.
		c := env.dialRaw(t, nil)
		c.write(clientFrame(true, opText, []byte{0xc3, 0x28, 0xff, 0xfe}))
		wantError(t, c.recvCmd(), ErrUnparseable, nil)
		// Valid base64 in a text frame on a binary subprotocol is read.
		c.write(clientFrame(true, opText, []byte(base64.StdEncoding.EncodeToString(echo(8)))))
		c.wantEcho(8)
	})

	closes := []struct {
		name   string
		frames [][]byte
		code   websocket.StatusCode
		reason string
	}{
		{"oversized frame, header only", [][]byte{{0x82, 0x80 | 126, 0x04, 0x01}}, websocket.StatusMessageTooBig, "read limited at 1025 bytes"},
		{"oversized frame, 64-bit length", [][]byte{{0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0}}, websocket.StatusMessageTooBig, "read limited at 1025 bytes"},
		{"oversized fragmented message", [][]byte{
			clientFrame(false, opBinary, make([]byte, 600)),
			clientFrame(true, opContinuation, make([]byte, 600)),
		}, websocket.StatusMessageTooBig, "read limited at 1025 bytes"},
		{"bad opcode", [][]byte{clientFrame(true, 0x3, nil)}, websocket.StatusProtocolError, ""},
		{"bad control opcode", [][]byte{clientFrame(true, 0xb, nil)}, websocket.StatusProtocolError, ""},
		{"rsv bit", [][]byte{{0x80 | 0x40 | opBinary, 0x80, 1, 2, 3, 4}}, websocket.StatusProtocolError, ""},
		{"continuation without a message", [][]byte{clientFrame(true, opContinuation, []byte("x"))}, websocket.StatusProtocolError, ""},
		{"new message inside a fragmented one", [][]byte{
			clientFrame(false, opBinary, []byte("x")),
			clientFrame(true, opBinary, []byte("y")),
		}, websocket.StatusProtocolError, ""},
		{"fragmented ping", [][]byte{clientFrame(false, opPing, nil)}, websocket.StatusProtocolError, ""},
		{"control frame over 125 bytes", [][]byte{clientFrame(true, opPing, make([]byte, 126))}, websocket.StatusProtocolError, ""},
		{"close payload of one byte", [][]byte{clientFrame(true, opClose, []byte{3})}, websocket.StatusProtocolError, ""},
		{"close with a code not sendable", [][]byte{clientFrame(true, opClose, []byte{0x03, 0xed})}, websocket.StatusProtocolError, ""}, // 1005
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			c := env.dialRaw(t, nil)
			for _, f := range tc.frames {
				c.write(f)
			}
			c.wantClose(tc.code, tc.reason)
		})
	}

	t.Run("unmasked client frame", func(t *testing.T) {
		// Dropped without a close frame, as coder/websocket does.
		c := env.dialRaw(t, nil)
		c.write(clientFrameMask(true, opBinary, echo(9), false))
		c.wantEOF()
	})
	t.Run("client close with code", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		c.write(clientFrame(true, opClose, closePayload(4000, "bye")))
		if op, p := c.mustFrame(); op != opClose || !bytes.Equal(p, closePayload(4000, "bye")) {
			t.Fatalf("got opcode %d % x, want close 4000 \"bye\" back", op, p)
		}
		c.wantEOF()
	})
	t.Run("client close without code", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		c.write(clientFrame(true, opClose, nil))
		if op, p := c.mustFrame(); op != opClose || len(p) != 0 {
			t.Fatalf("got opcode %d % x, want an empty close back", op, p)
		}
		c.wantEOF()
	})
	t.Run("client drops mid-frame", func(t *testing.T) {
		c := env.dialRaw(t, nil)
		c.write(clientFrame(true, opBinary, echo(10))[:5])
		c.nc.Close()
	})
	waitFor(t, "every connection ended", func() bool { return env.srv.metrics.ConnectionsOpen.Load() == 0 })
}

// Frames bigger than a reader pass's buffer, at the default limit, in
// one write and trickled.
func TestRawWSBigFrames(t *testing.T) {
	env := rawEnv(t, func(c *Config) { c.Limits.EchoPerMinute = -1 })
	limit := int(DefaultLimits.MaxFrameBytes)
	c := env.dialRaw(t, nil)
	junk := bytes.Repeat([]byte{0xff}, limit)
	c.write(clientFrame(true, opBinary, junk))
	wantError(t, c.recvCmd(), ErrUnparseable, nil)
	f := clientFrame(true, opBinary, junk[:limit-100])
	for len(f) > 0 {
		k := min(len(f), 3000)
		c.write(f[:k])
		f = f[k:]
	}
	wantError(t, c.recvCmd(), ErrUnparseable, nil)
	// A message at the limit whose fragments each fit a read, then an echo
	// in the same write.
	var all []byte
	for off := 0; off < limit; off += 1000 {
		op := byte(opContinuation)
		if off == 0 {
			op = opBinary
		}
		all = append(all, clientFrame(off+1000 >= limit, op, junk[off:min(off+1000, limit)])...)
	}
	all = append(all, clientFrame(true, opBinary, encodeCmd(t, echoCmd(1)))...)
	c.write(all)
	wantError(t, c.recvCmd(), ErrUnparseable, nil)
	c.wantEcho(1)
	c.write(clientFrame(true, opBinary, append(junk, 0)))
	c.wantClose(websocket.StatusMessageTooBig, fmt.Sprintf("read limited at %d bytes", limit+1))
}

// The server's own close: the login deadline sends 4108, waits for the
// client's close, and the socket closes.
func TestRawWSServerClose(t *testing.T) {
	env := rawEnv(t, func(c *Config) { c.Limits.LoginTimeout = 50 * time.Millisecond })
	c := env.dialRaw(t, nil)
	c.wantClose(CloseLoginTimeout, "")
	waitFor(t, "connection ended", func() bool { return env.srv.metrics.ConnectionsOpen.Load() == 0 })
}

// Pings keep an otherwise idle raw WebSocket open past the idle timeout;
// without them it closes with 4107.
func TestRawWSPingKeepsAlive(t *testing.T) {
	env := rawEnv(t, func(c *Config) {
		c.Limits.IdleTimeout = 300 * time.Millisecond
		c.Limits.LoginTimeout = -1
	})
	c := env.dialRaw(t, nil)
	for range 8 {
		time.Sleep(100 * time.Millisecond)
		c.write(clientFrame(true, opPing, []byte("k")))
		if op, p := c.mustFrame(); op != opPong || string(p) != "k" {
			t.Fatalf("got opcode %d %q, want pong", op, p)
		}
	}
	c.wantClose(CloseIdle, "idle timeout")
}

// Thousands of idle raw WebSockets park no goroutine each; then all send
// at once and every one is answered.
func TestRawWSManyIdleThenAll(t *testing.T) {
	env := rawEnv(t, func(c *Config) { c.Limits.MaxConnsPerIP = -1 })
	const n = 2000
	before := runtime.NumGoroutine()
	cs := make([]*rawClient, n)
	for i := range cs {
		cs[i] = env.dialRaw(t, nil)
	}
	waitFor(t, "all connections open", func() bool { return env.srv.metrics.ConnectionsOpen.Load() == n })
	// Each connection's first reader pass (which registers it) ends.
	var g int
	waitFor(t, "no goroutine per idle connection", func() bool {
		g = runtime.NumGoroutine() - before
		return g < n/10
	})
	t.Logf("%d idle connections: %d more goroutines", n, g)
	echo := encodeCmd(t, echoCmd(77))
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f := clientFrame(true, opBinary, echo)
			// Half of them split the frame over two writes.
			if _, err := c.nc.Write(f[:3]); err != nil {
				errs <- err
				return
			}
			if _, err := c.nc.Write(f[3:]); err != nil {
				errs <- err
				return
			}
			op, p, err := c.readFrame()
			if err != nil {
				errs <- err
				return
			}
			cmd := new(lcpb.GenericCommand)
			if op != opBinary || proto.Unmarshal(p, cmd) != nil || cmd.GetI() != 77 {
				errs <- fmt.Errorf("got opcode %d % x, want echo 77", op, p)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range cs {
		c.nc.Close()
	}
	waitFor(t, "all connections ended", func() bool { return env.srv.metrics.ConnectionsOpen.Load() == 0 })
}

// The raw handshake refuses what coder/websocket.Accept refuses, with the
// same status and message.
func TestRawWSHandshakeAsLibrary(t *testing.T) {
	raw := rawEnv(t, nil)
	lib := newEnv(t, func(c *Config) { c.GoroutineReader = true })
	if lib.srv.rawWS {
		t.Fatal("GoroutineReader: still raw")
	}
	base := map[string]string{
		"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": testWSKey,
		"Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": lcpb.SubprotocolBinary3,
	}
	cases := []struct {
		name, method, proto string
		set                 map[string]string
	}{
		{"ok", "GET", "HTTP/1.1", nil},
		{"ok, tokens in odd case", "GET", "HTTP/1.1", map[string]string{"Connection": "keep-alive, UPGRADE", "Upgrade": "WebSocket"}},
		{"no Connection upgrade", "GET", "HTTP/1.1", map[string]string{"Connection": "keep-alive"}},
		{"POST", "POST", "HTTP/1.1", nil},
		{"HTTP/1.0", "GET", "HTTP/1.0", nil},
		{"version 8", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Version": "8"}},
		{"no key", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": ""}},
		{"short key", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}},
		{"subprotocol spelled differently", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Protocol": "x, LC.PROTOBUF2.3"}},
	}
	answer := func(env *testEnv, method, proto string, set map[string]string) (int, http.Header, string) {
		nc, err := net.Dial("tcp", env.ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		var req strings.Builder
		fmt.Fprintf(&req, "%s / %s\r\nHost: edge\r\n", method, proto)
		for k, v := range base {
			if s, ok := set[k]; ok {
				v = s
			}
			if v != "" {
				fmt.Fprintf(&req, "%s: %s\r\n", k, v)
			}
		}
		req.WriteString("Content-Length: 0\r\n\r\n")
		if _, err := nc.Write([]byte(req.String())); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			t.Fatal(err)
		}
		body := ""
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
		}
		return resp.StatusCode, resp.Header, body
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gs, gh, gb := answer(raw, tc.method, tc.proto, tc.set)
			ws, wh, wb := answer(lib, tc.method, tc.proto, tc.set)
			if gs != ws || gb != wb {
				t.Fatalf("raw: %d %q; library: %d %q", gs, gb, ws, wb)
			}
			for _, h := range []string{"Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"} {
				if gh.Get(h) != wh.Get(h) {
					t.Fatalf("%s: raw %q, library %q", h, gh.Get(h), wh.Get(h))
				}
			}
		})
	}
}

func TestWSParserLimits(t *testing.T) {
	// A header announcing more than the limit is refused before its
	// payload: nothing is buffered for it.
	p := wsParser{limit: 10}
	ev, n := p.next([]byte{0x82, 0x80 | 11})
	if ev.kind != wsError || ev.code != websocket.StatusMessageTooBig || n != 0 {
		t.Fatalf("got %+v %d, want 1009", ev, n)
	}
	// Incomplete headers ask for more without a size; a complete one
	// names the frame's size.
	p = wsParser{limit: 1 << 20}
	for _, b := range [][]byte{{0x82}, {0x82, 0x80 | 126, 1}, {0x82, 0x80 | 127, 0, 0, 0}} {
		if ev, n := p.next(b); ev.kind != wsNeedMore || ev.need != 0 || n != 0 {
			t.Fatalf("% x: got %+v %d, want need more", b, ev, n)
		}
	}
	if ev, _ := p.next([]byte{0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4}); ev.kind != wsNeedMore || ev.need != 8+256 {
		t.Fatalf("got %+v, want need 264", ev)
	}
	// Masking round-trips at every length and alignment.
	for l := range 40 {
		b := make([]byte, l)
		for i := range b {
			b[i] = byte(i * 7)
		}
		f := clientFrame(true, opBinary, b)
		ev, n := (&wsParser{limit: -1}).next(f)
		if ev.kind != wsMessage || n != len(f) || !bytes.Equal(ev.payload, b) {
			t.Fatalf("len %d: got %+v %d", l, ev, n)
		}
	}
}

// A header announcing a frame at the limit holds what came, not the
// frame's size: a thousand sockets sending such headers cost kilobytes.
func TestRawWSPartialHoldsWhatCame(t *testing.T) {
	w := &rawWS{}
	w.p.limit = DefaultLimits.MaxFrameBytes
	hdr := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4} // 64 KiB, masked
	if w.feed(hdr) {
		t.Fatal("reader ended on a header")
	}
	if len(w.partial) != len(hdr) || cap(w.partial) > 64 {
		t.Fatalf("partial: len %d cap %d, want the %d header bytes", len(w.partial), cap(w.partial), len(hdr))
	}
	for range 100 {
		if w.feed(make([]byte, 100)) {
			t.Fatal("reader ended mid-frame")
		}
	}
	if got := len(w.partial); got != len(hdr)+100*100 || cap(w.partial) > 2*got+64 {
		t.Fatalf("partial: len %d cap %d after 10,000 payload bytes", got, cap(w.partial))
	}
}

// FuzzWSParser: any bytes, split anywhere, give the same events as whole,
// and the parser never takes more than it is given.
func FuzzWSParser(f *testing.F) {
	f.Add(clientFrame(true, opBinary, []byte("hello")), 3)
	f.Add(append(clientFrame(false, opText, []byte("he")), clientFrame(true, opContinuation, []byte("llo"))...), 7)
	f.Add(append(clientFrame(true, opPing, []byte("p")), clientFrame(true, opClose, closePayload(1000, "x"))...), 1)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		run := func(chunks [][]byte) []string {
			p := wsParser{limit: 512}
			var out []string
			var buf []byte
			for _, ch := range chunks {
				buf = append(buf, ch...)
				for {
					in := bytes.Clone(buf) // next unmasks in place
					ev, n := p.next(in)
					if n < 0 || n > len(in) {
						t.Fatalf("used %d of %d", n, len(in))
					}
					if ev.kind == wsNeedMore {
						if ev.need != 0 && ev.need <= len(in) {
							t.Fatalf("need %d with %d held", ev.need, len(in))
						}
						break
					}
					out = append(out, fmt.Sprintf("%d %q %v %d %s", ev.kind, ev.payload, ev.text, ev.code, ev.reason))
					if ev.kind == wsError || ev.kind == wsClose {
						return out
					}
					buf = buf[n:]
				}
			}
			return out
		}
		whole := run([][]byte{data})
		if split < 0 {
			split = -split
		}
		if len(data) > 0 {
			split %= len(data) + 1
		} else {
			split = 0
		}
		parts := run([][]byte{data[:split], data[split:]})
		if fmt.Sprint(whole) != fmt.Sprint(parts) {
			t.Fatalf("whole: %v\nsplit at %d: %v", whole, split, parts)
		}
	})
}

// plainListener hands out connections that offer no file descriptor.
type plainListener struct{ net.Listener }

type plainConn struct{ net.Conn }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return plainConn{c}, nil
}

// A raw WebSocket whose socket offers no descriptor is read by a goroutine
// (readBlocking), with the same framing.
func TestRawWSWithoutDescriptor(t *testing.T) {
	be := &fakeBackend{}
	srv := New(Config{EdgeID: "edge-test", Backend: be, TokenKey: []byte("k"), Limits: Limits{EchoPerMinute: -1}})
	if !srv.rawWS {
		t.Skip("raw WebSockets are off here (not Linux, or " + wsReaderEnv + "=goroutine)")
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Listener = plainListener{ts.Listener}
	ts.Start()
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	env := &testEnv{srv: srv, ts: ts, be: be}
	echo := encodeCmd(t, echoCmd(1))
	c := env.dialRaw(t, clientFrame(false, opBinary, echo[:2]))
	c.write(clientFrame(true, opPing, []byte("x")))
	if op, p := c.mustFrame(); op != opPong || string(p) != "x" {
		t.Fatalf("got opcode %d %q, want pong", op, p)
	}
	c.write(clientFrame(true, opContinuation, echo[2:]))
	c.wantEcho(1)
	c.write(clientFrame(true, 0x3, nil))
	c.wantClose(websocket.StatusProtocolError, "")
	waitFor(t, "connection ended", func() bool { return srv.metrics.ConnectionsOpen.Load() == 0 })
}

// A connection's first reader pass reads into a firstReadBufSize buffer
// (the pass that carries the session open holds it until the core
// answers). A first frame bigger than that, with another behind it in the
// same write, is read whole; later passes take the bigger buffer.
func TestRawWSFirstReadBigger(t *testing.T) {
	env := rawEnv(t, func(c *Config) { c.Limits.EchoPerMinute = -1 })
	c := env.dialRaw(t, nil)
	padded := func(i int32) []byte { // an echo with an unknown field of 3 KiB
		b := encodeCmd(t, echoCmd(i))
		b = protowire.AppendTag(b, 1000, protowire.BytesType)
		return protowire.AppendBytes(b, bytes.Repeat([]byte{'x'}, 3*firstReadBufSize))
	}
	for i := int32(1); i <= 5; i += 2 {
		c.write(append(clientFrame(true, opBinary, padded(i)), clientFrame(true, opBinary, encodeCmd(t, echoCmd(i+1)))...))
		c.wantEcho(i)
		c.wantEcho(i + 1)
	}
}
