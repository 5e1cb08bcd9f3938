package loadtest

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// failRT fails the test for any request: the upgrades must not reach
// http.Transport.
type failRT struct{ t *testing.T }

func (f failRT) RoundTrip(r *http.Request) (*http.Response, error) {
	f.t.Errorf("%s %s went to the fallback transport", r.Method, r.URL)
	return nil, errors.New("unexpected")
}

// directClient is an http.Client whose WebSocket handshakes go through
// upgradeRT over d's dial, and whose other requests fail the test.
func directClient(t *testing.T, d *netDialer) *http.Client {
	return &http.Client{Transport: groupRT{upgradeRT{dial: d.dial, other: failRT{t}}}}
}

// TestUpgradeRTEcho: a handshake through upgradeRT with a real
// coder/websocket server: the subprotocol is agreed, messages go both
// ways, and the connection is the netDialer's (tracked, so drop ends it).
func TestUpgradeRTEcho(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"lc.protobuf2.3"}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			typ, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			if err := ws.Write(context.Background(), typ, append([]byte("echo "), b...)); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	d := newNetDialer(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := withGroup("ws"+strings.TrimPrefix(srv.URL, "http")+"/path?x=1", "g1")
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: directClient(t, d), Subprotocols: []string{"lc.protobuf2.3"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols || ws.Subprotocol() != "lc.protobuf2.3" {
		t.Fatalf("status %d, subprotocol %q", resp.StatusCode, ws.Subprotocol())
	}
	for i, msg := range []string{"one", strings.Repeat("x", 20000)} { // the second is longer than every buffer
		if err := ws.Write(ctx, websocket.MessageBinary, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, b, err := ws.Read(ctx)
		if err != nil || string(b) != "echo "+msg {
			t.Fatalf("read %d: %d bytes, %v", i, len(b), err)
		}
	}
	if n := d.drop("g1"); n != 1 {
		t.Fatalf("drop closed %d connections, want 1", n)
	}
	if _, _, err := ws.Read(ctx); err == nil {
		t.Fatal("read after drop: no error")
	}
	if _, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: directClient(t, d)}); !errors.Is(err, errGroupDown) {
		t.Fatalf("dial while the group is down: %v, want errGroupDown", err)
	}
}

// rawServer accepts one connection and runs serve on it.
func rawServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c, bufio.NewReader(c))
	}()
	return "ws://" + ln.Addr().String() + "/"
}

// TestUpgradeRTFramesWithAnswer: a server that writes its first frame in
// the same write as the 101 answer (the handshake's reader buffers it):
// the frame is not lost.
func TestUpgradeRTFramesWithAnswer(t *testing.T) {
	url := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Errorf("read request: %v", err)
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		ans := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n" +
			"\x81\x05hello" + "\x81\x05world" // two unmasked text frames
		if _, err := c.Write([]byte(ans)); err != nil {
			t.Errorf("write: %v", err)
		}
		_, _ = io.Copy(io.Discard, br) // until the client closes
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: directClient(t, newNetDialer(nil))})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	for _, want := range []string{"hello", "world"} {
		_, b, err := ws.Read(ctx)
		if err != nil || string(b) != want {
			t.Fatalf("read %q, %v; want %q", b, err, want)
		}
	}
}

// TestUpgradeRTRefused: an answer that is no 101 fails the dial with its
// status, and the connection is closed.
func TestUpgradeRTRefused(t *testing.T) {
	closed := make(chan error, 1)
	url := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			t.Errorf("read request: %v", err)
		}
		_, _ = c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope"))
		_, err := br.ReadByte() // the client closes: EOF
		closed <- err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: directClient(t, newNetDialer(nil))})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial: %v (response %v), want a failure with 403", err, resp)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "nope" {
		t.Errorf("body %q, want the server's", b)
	}
	select {
	case err := <-closed:
		if err != io.EOF {
			t.Errorf("server read %v, want EOF", err)
		}
	case <-ctx.Done():
		t.Fatal("the refused connection stayed open")
	}
}

// TestUpgradeRTSilentServer: a server that accepts and never answers: the
// dial ends with the context's error, and the connection is closed.
func TestUpgradeRTSilentServer(t *testing.T) {
	closed := make(chan struct{})
	url := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = io.Copy(io.Discard, br)
		close(closed)
	})
	for _, cut := range []string{"deadline", "cancel"} {
		t.Run(cut, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if cut == "cancel" {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
			}
			_, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: directClient(t, newNetDialer(nil))})
			want := context.DeadlineExceeded
			if cut == "cancel" {
				want = context.Canceled
			}
			if !errors.Is(err, want) {
				t.Fatalf("dial: %v, want %v", err, want)
			}
			if cut == "deadline" {
				select {
				case <-closed:
				case <-time.After(10 * time.Second):
					t.Fatal("the unanswered connection stayed open")
				}
			}
		})
	}
}

// TestUpgradeRTOther: requests that are no plain WebSocket upgrade go to
// the other transport.
func TestUpgradeRTOther(t *testing.T) {
	var got []string
	rt := upgradeRT{
		dial: func(context.Context, string, string) (net.Conn, error) {
			t.Error("upgradeRT dialed")
			return nil, errors.New("unexpected")
		},
		other: rtFunc(func(r *http.Request) (*http.Response, error) {
			got = append(got, r.URL.Scheme+" "+r.Header.Get("Upgrade"))
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		}),
	}
	for _, tc := range []struct{ url, upgrade string }{
		{"http://127.0.0.1:1/route", ""},
		{"https://127.0.0.1:1/ws", "websocket"},
		{"http://127.0.0.1:1/h2c", "h2c"},
	} {
		req, _ := http.NewRequest("GET", tc.url, nil)
		if tc.upgrade != "" {
			req.Header.Set("Upgrade", tc.upgrade)
		}
		if _, err := rt.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	if want := "http |https websocket|http h2c"; strings.Join(got, "|") != want {
		t.Fatalf("other got %q, want %q", strings.Join(got, "|"), want)
	}
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BenchmarkHandshake: the client side of one plain WebSocket handshake
// (write the request, read a 101 answer) on a loopback connection to a
// server that answers each with the same bytes.
func BenchmarkHandshake(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: lc.protobuf2.3\r\n\r\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					req.Body.Close()
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "lc.protobuf2.3")
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		resp, _, err := handshake(c, req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
