package edge

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7", "::ffff:198.51.100.1"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{proxies: trusted}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer's XFF is ignored", "203.0.113.5:4000", []string{"1.2.3.4"}, "203.0.113.5"},
		{"trusted proxy", "10.1.2.3:4000", []string{"198.51.100.20"}, "198.51.100.20"},
		{"chain through trusted proxies", "10.1.2.3:4000", []string{"6.6.6.6, 198.51.100.20, 192.0.2.7"}, "198.51.100.20"},
		{"spoofed leftmost entries are skipped", "10.1.2.3:4000", []string{"6.6.6.6", "198.51.100.20"}, "198.51.100.20"},
		{"trusted proxy without XFF", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"malformed entry stops the walk", "10.1.2.3:4000", []string{"198.51.100.20, garbage, 10.9.9.9"}, "10.9.9.9"},
		{"unparseable peer", "pipe", nil, "invalid IP"},
		{"v4-mapped peer", "[::ffff:10.0.0.1]:4000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"v4-mapped trusted entry", "[::ffff:198.51.100.1]:1", []string{"203.0.113.9"}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.clientIP(r).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad prefix parsed")
	}
	if _, err := ParseTrustedProxies([]string{"not an address"}); err == nil {
		t.Error("a bad address parsed")
	}
}

// The OPEN and every later request carry the client's address: the peer,
// or the X-Forwarded-For client when the peer is a trusted proxy.
func TestRequestsCarrySourceIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		want    string
	}{
		{"untrusted", nil, "127.0.0.1"},
		{"trusted loopback proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "198.51.100.20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.TrustedProxies = tc.trusted })
			h := http.Header{}
			h.Set("X-Forwarded-For", "198.51.100.20")
			ws, _, err := websocket.Dial(context.Background(), env.url, &websocket.DialOptions{
				Subprotocols: []string{lcpb.SubprotocolBinary3}, HTTPHeader: h})
			if err != nil {
				t.Fatal(err)
			}
			codec, _ := lcpb.CodecFor(lcpb.SubprotocolBinary3)
			c := startClient(t, ws, codec)
			c.login(1, "alice")
			c.send(echoCmd(2))
			c.recv()
			c.send(directCmd(3, "hi"))
			waitFor(t, "the direct", func() bool { return len(env.be.requests(meshpb.ClientRequest_COMMAND)) == 1 })
			for _, kind := range []meshpb.ClientRequest_Kind{meshpb.ClientRequest_OPEN, meshpb.ClientRequest_COMMAND} {
				if got := env.be.requests(kind)[0].GetSourceIp(); got != tc.want {
					t.Errorf("%v source_ip: got %q, want %q", kind, got, tc.want)
				}
			}
			c.ws.CloseNow()
			waitFor(t, "CLOSE", func() bool { return len(env.be.requests(meshpb.ClientRequest_CLOSE)) == 1 })
			cl := env.be.requests(meshpb.ClientRequest_CLOSE)[0]
			if cl.GetSourceIp() != tc.want || cl.GetCloseErrorCode() != 0 {
				t.Errorf("CLOSE of a client that hung up: source %q code %d, want %q and 0", cl.GetSourceIp(), cl.GetCloseErrorCode(), tc.want)
			}
		})
	}
}

// A session whose connection the edge drops for idleness is reported with
// READ_TIMEOUT (4107), for _clientOffline's errorCode.
func TestIdleDropReportsReadTimeout(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.IdleTimeout = 200 * time.Millisecond })
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	if got := c.closeStatus(); got != CloseIdle {
		t.Fatalf("close: got %v, want %v", got, CloseIdle)
	}
	waitFor(t, "CLOSE", func() bool { return len(env.be.requests(meshpb.ClientRequest_CLOSE)) == 1 })
	cl := env.be.requests(meshpb.ClientRequest_CLOSE)[0]
	if cl.GetCloseErrorCode() != 4107 || cl.GetCloseErrorMsg() != "READ_TIMEOUT" || len(cl.GetCommand()) != 0 {
		t.Errorf("CLOSE: code %d msg %q command %x, want 4107 READ_TIMEOUT and no command", cl.GetCloseErrorCode(), cl.GetCloseErrorMsg(), cl.GetCommand())
	}
}
