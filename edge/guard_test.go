package edge

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// realEdge serves an edge on a real TCP listener through WrapListener and
// HTTPServer, as cluster.StartEdge does; mod may shorten the HTTP server's
// timeouts for the test.
func realEdge(t *testing.T, lim Limits, proxies []netip.Prefix, mod func(*http.Server)) (*Server, string) {
	t.Helper()
	srv := New(Config{EdgeID: "edge-test", Backend: &fakeBackend{}, TokenKey: []byte("k"), Limits: lim, TrustedProxies: proxies})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer(srv.Handler())
	if mod != nil {
		mod(hs)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(srv.WrapListener(ln))
	}()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		<-done
	})
	return srv, ln.Addr().String()
}

// closedByServer polls c until the server has closed it (EOF or reset), or
// fails after d.
func closedByServer(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // e.g. a 408 answer before the close
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v", d)
		}
		return
	}
}

func TestHTTPServerTimeoutsSet(t *testing.T) {
	hs := New(Config{Backend: &fakeBackend{}, TokenKey: []byte("k")}).HTTPServer(http.NotFoundHandler())
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.WriteTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("edge HTTP server without slowloris bounds: %+v", hs)
	}
}

// TestSlowlorisHeadersClosed: a raw TCP client that trickles request
// headers a byte at a time is cut off by the header timeout, while a
// WebSocket upgraded on the same server outlives every HTTP timeout (net/http
// clears deadlines on hijack).
func TestSlowlorisHeadersClosed(t *testing.T) {
	const short = 300 * time.Millisecond
	_, addr := realEdge(t, Limits{}, nil, func(hs *http.Server) {
		hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout, hs.IdleTimeout = short, short, short, short
	})
	// Positive control first: an upgraded WebSocket, logged in, idle for
	// several times every HTTP timeout, still answers.
	ws, _, err := websocket.Dial(context.Background(), "ws://"+addr+"/", &websocket.DialOptions{Subprotocols: []string{lcpb.SubprotocolBinary3}})
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := lcpb.CodecFor(lcpb.SubprotocolBinary3)
	c := startClient(t, ws, codec)
	c.login(1, "alice")

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one header byte every 50 ms, never finishing
		hdr := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: " + strings.Repeat("a", 1000)
		for i := 0; i < len(hdr); i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := slow.Write([]byte{hdr[i]}); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	closedByServer(t, slow, 10*time.Second)
	t.Logf("slowloris closed after %v", time.Since(start).Round(time.Millisecond))

	time.Sleep(3 * short) // the WebSocket now idles past every HTTP timeout
	c.send(echoCmd(2))
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != 2 {
		t.Fatalf("upgraded WebSocket after the HTTP timeouts: got %v", r)
	}
}

// TestConnsPerIPCapped: an IP that holds MaxConnsPerIP TCP connections has
// the next one closed at accept; when one ends, a new one is let in.
func TestConnsPerIPCapped(t *testing.T) {
	srv, addr := realEdge(t, Limits{MaxConnsPerIP: 3}, nil, nil)
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The server must have accepted the three before the fourth counts.
	waitFor(t, "three connections counted", func() bool {
		over, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer over.Close()
		over.SetReadDeadline(time.Now().Add(time.Second))
		_, err = over.Read(make([]byte, 1))
		return err == io.EOF || (err != nil && !isTimeout(err))
	})
	if n := srv.Metrics().ConnsOverIPCap.Load(); n < 1 {
		t.Fatalf("ConnsOverIPCap = %d", n)
	}
	// Positive control: the held connections still work, and after one
	// closes a new connection is served.
	if _, err := held[0].Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(held[0]), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("held connection: %v %v", resp, err)
	}
	resp.Body.Close()
	held[1].Close()
	waitFor(t, "a slot freed", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestWebSocketsPerClientIP: behind a trusted proxy the cap applies per
// X-Forwarded-For client; from an untrusted peer X-Forwarded-For is
// ignored, so rotating it does not get past the cap.
func TestWebSocketsPerClientIP(t *testing.T) {
	dial := func(addr, xff string) (*websocket.Conn, int) {
		h := http.Header{}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		ws, resp, err := websocket.Dial(context.Background(), "ws://"+addr+"/",
			&websocket.DialOptions{Subprotocols: []string{lcpb.SubprotocolBinary3}, HTTPHeader: h})
		if err != nil {
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws, 101
	}
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	_, addr := realEdge(t, Limits{MaxConnsPerIP: 2}, proxy, nil)
	for i, want := range []int{101, 101, 429} {
		if _, got := dial(addr, "198.51.100.7"); got != want {
			t.Fatalf("client A conn %d: status %d, want %d", i, got, want)
		}
	}
	// A spoofed left-most entry does not change who the proxy says it is.
	if _, got := dial(addr, "203.0.113.9, 198.51.100.7"); got != 429 {
		t.Fatalf("spoofed XFF: status %d, want 429", got)
	}
	if _, got := dial(addr, "198.51.100.8"); got != 101 { // positive control: another client
		t.Fatalf("client B: status %d, want 101", got)
	}

	_, direct := realEdge(t, Limits{MaxConnsPerIP: 2}, nil, nil)
	dial(direct, "192.0.2.1")
	dial(direct, "192.0.2.2")
	// The third TCP connection from 127.0.0.1 is over the cap whatever it
	// claims: refused at accept (the dial fails) or with 429.
	h := http.Header{"X-Forwarded-For": {"192.0.2.3"}}
	ws, resp, err := websocket.Dial(context.Background(), "ws://"+direct+"/",
		&websocket.DialOptions{Subprotocols: []string{lcpb.SubprotocolBinary3}, HTTPHeader: h})
	if err == nil {
		ws.CloseNow()
		t.Fatal("untrusted peer got past the cap by rotating X-Forwarded-For")
	}
	if resp != nil && resp.StatusCode != 429 {
		t.Fatalf("untrusted peer over the cap: status %d", resp.StatusCode)
	}
}

// TestLoginDeadline: a WebSocket that never logs in is closed with 4108;
// one that logs in (session/open, or a push login with a served appId)
// stays.
func TestLoginDeadline(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.LoginTimeout = 200 * time.Millisecond })
	idle := env.dial(t, lcpb.SubprotocolBinary3)
	// A push login naming an app relaymesh does not serve does not count.
	junk := env.dial(t, lcpb.SubprotocolBinary3)
	junk.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_login.Enum(), AppId: proto.String(strings.Repeat("x", 100))})
	good := env.dial(t, lcpb.SubprotocolBinary3)
	good.login(1, "alice")
	push := env.dial(t, lcpb.SubprotocolBinary3)
	push.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_login.Enum(), AppId: proto.String(testApp)})

	if got := idle.closeStatus(); got != CloseLoginTimeout {
		t.Fatalf("idle connection: close %d, want %d", got, CloseLoginTimeout)
	}
	if got := junk.closeStatus(); got != CloseLoginTimeout {
		t.Fatalf("junk push login: close %d, want %d", got, CloseLoginTimeout)
	}
	if n := len(env.be.requests(meshpb.ClientRequest_OPEN)); n != 1 {
		t.Fatalf("%d OPENs, want 1", n)
	}
	// Positive controls, well past the deadline.
	good.send(echoCmd(2))
	if r := good.recv(); r.GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("logged-in connection: got %v", r)
	}
	push.send(echoCmd(3))
	if r := push.recv(); r.GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("push-logged-in connection: got %v", r)
	}
	if n := env.srv.Metrics().LoginTimeouts.Load(); n != 2 {
		t.Fatalf("LoginTimeouts = %d, want 2", n)
	}
}

// TestSessionOpsAndEchoRateLimited floods session/open, session/refresh and
// echo on one connection: past the bucket each gets 4116 with its i, and no
// refused open reaches the backend.
func TestSessionOpsAndEchoRateLimited(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.SessionOpsPerMinute, c.Limits.EchoPerMinute = 3, 2 })
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	c.login(2, "alice") // reopen on the same socket
	c.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refresh.Enum(), I: proto.Int32(3)})
	if r := c.recv(); r.GetOp() != lcpb.OpType_refreshed {
		t.Fatalf("refresh within the limit: %v", r)
	}
	for i := int32(4); i < 8; i++ {
		if i%2 == 0 {
			c.send(openCmd(i, "alice"))
		} else {
			c.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refresh.Enum(), I: proto.Int32(i)})
		}
		wantError(t, c.recv(), lcpb.ErrMessageSentQuotaExceeded, proto.Int32(i))
	}
	if n := len(env.be.requests(meshpb.ClientRequest_OPEN)); n != 2 {
		t.Fatalf("%d OPENs reached the backend, want 2", n)
	}
	for i := int32(10); i < 14; i++ {
		c.send(echoCmd(i))
		r := c.recv()
		if i < 12 {
			if r.GetCmd() != lcpb.CommandType_echo || r.GetI() != i {
				t.Fatalf("echo %d within the limit: %v", i, r)
			}
			continue
		}
		wantError(t, r, lcpb.ErrMessageSentQuotaExceeded, proto.Int32(i))
	}
	// Positive control: the session still works for other commands.
	c.send(directCmd(20, "hi"))
	waitFor(t, "direct forwarded", func() bool { return len(env.be.requests(meshpb.ClientRequest_COMMAND)) == 1 })
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(2, t0)
	first, second, third := b.take(t0), b.take(t0), b.take(t0)
	if !first || !second || third {
		t.Fatalf("takes at t0: %v %v %v, want exactly 2", first, second, third)
	}
	if !b.take(t0.Add(30 * time.Second)) { // refills 1 per 30 s
		t.Fatal("want a token after 30 s")
	}
	if b.take(t0.Add(30 * time.Second)) {
		t.Fatal("want no second token after 30 s")
	}
	off := newBucket(-1, t0)
	for range 100 {
		if !off.take(t0) {
			t.Fatal("disabled bucket refused")
		}
	}
}
