package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// upgradeRT makes the load tester's plain (ws://) WebSocket handshakes
// itself instead of through net/http's Transport: dial, write the request,
// read the response, hand the connection over. The Transport's machinery
// for pooled keep-alive connections (a goroutine that dials, a read loop
// and a write loop per connection, each growing its stack, and the
// channels between them) costs the load tester CPU at every dial and buys
// nothing for a connection that is upgraded at once; in a reconnect storm
// the load tester shares the machine's cores with the server it measures.
// Every other request (wss://, or no upgrade: the router, certificate
// hashes, Centrifugo's HTTP API) goes to other.
type upgradeRT struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	other http.RoundTripper
}

// handshakeBuffer is the read buffer for the handshake's response: a 101
// answer's headers fit, and a longer line still reads (textproto joins
// what the buffer returns).
const handshakeBuffer = 1024

func (u upgradeRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "http" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return u.other.RoundTrip(r)
	}
	if r.Body != nil && r.Body != http.NoBody {
		_ = r.Body.Close()
		return nil, errors.New("loadtest: a WebSocket handshake request has no body")
	}
	addr := r.URL.Host
	if r.URL.Port() == "" {
		addr = net.JoinHostPort(r.URL.Hostname(), "80")
	}
	ctx := r.Context()
	c, err := u.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The context's end (deadline or cancel) ends a handshake under way:
	// a deadline in the past fails its read or write.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	resp, br, err := handshake(c, r)
	if !stop() || err != nil {
		_ = c.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = bodyCloser{resp.Body, c}
		return resp, nil
	}
	// coder/websocket takes the connection from the body of a 101 answer.
	resp.Body = &upgraded{br: br, Conn: c}
	return resp, nil
}

// handshakeRequestSize is room for a handshake request (~300 bytes), so
// that writing one grows no buffer.
const handshakeRequestSize = 512

// handshake writes r on c and reads the response.
func handshake(c net.Conn, r *http.Request) (*http.Response, *bufio.Reader, error) {
	// Request.Write on a writer without WriteByte (a net.Conn) wraps it
	// in a new 4 KiB bufio.Writer; a bytes.Buffer has WriteByte, and the
	// request goes out in one write all the same.
	buf := bytes.NewBuffer(make([]byte, 0, handshakeRequestSize))
	if err := r.Write(buf); err != nil {
		return nil, nil, err
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, handshakeBuffer)
	resp, err := http.ReadResponse(br, r)
	if err != nil {
		return nil, nil, err
	}
	return resp, br, nil
}

// upgraded is the connection of a 101 answer: what the handshake's reader
// buffered past the answer (frames the server sent at once) is read
// first, then the connection directly, and the buffer is let go.
type upgraded struct {
	br *bufio.Reader
	net.Conn
}

func (u *upgraded) Read(p []byte) (int, error) {
	if u.br != nil {
		if u.br.Buffered() > 0 {
			return u.br.Read(p)
		}
		u.br = nil
	}
	return u.Conn.Read(p)
}

// bodyCloser closes the connection with the body of an answer that is no
// upgrade.
type bodyCloser struct {
	io.ReadCloser
	c net.Conn
}

func (b bodyCloser) Close() error {
	err := b.ReadCloser.Close()
	_ = b.c.Close()
	return err
}
