package edge

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Slow and idle connections, and connections per client IP.
//
// An edge faces the internet, so what a client may hold without logging
// in is bounded at every stage:
//
//   - TCP: WrapListener closes a new connection at once when its remote IP
//     already holds Limits.MaxConnsPerIP connections (trusted proxies,
//     which carry many clients, are not capped here).
//   - HTTP: HTTPServer sets ReadHeaderTimeout, ReadTimeout, WriteTimeout and
//     IdleTimeout. They end a request that trickles in (slowloris) or a
//     keep-alive connection left idle. They do not touch upgraded
//     WebSockets: net/http clears a connection's deadlines when it is
//     hijacked (http.conn.hijackLocked), and the WebSocket library sets
//     none of its own; the WebSocket has its own idle timeout (4107).
//   - WebSocket: serveWS refuses the upgrade with 429 when the client IP
//     (from X-Forwarded-For when the peer is a trusted proxy) already holds
//     MaxConnsPerIP WebSockets; an upgraded connection that has not logged
//     in (session/open, or LeanCloud Push's login with a known appId)
//     within Limits.LoginTimeout is closed with 4108 LOGIN_TIMEOUT.
//   - Frames: session/open and session/refresh share a per-connection
//     bucket (Limits.SessionOpsPerMinute), echo has its own
//     (Limits.EchoPerMinute); over either, cmd:error 4116 with the
//     request's i, as for the other client rates.

// Close code of a connection that did not log in in time (LeanCloud
// LOGIN_TIMEOUT).
const CloseLoginTimeout = 4108

// HTTP server timeouts of an edge's listener (HTTPServer).
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second // headers and body; REST bodies are ≤ 64 KiB
	httpWriteTimeout      = 2 * time.Minute  // a REST answer, queueing included
	httpIdleTimeout       = 60 * time.Second // keep-alive between requests
	httpMaxHeaderBytes    = 64 << 10
)

// HTTPServer returns the http.Server for an edge's listener serving h, with
// the timeouts above.
func (s *Server) HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
	}
}

// ipCounts counts connections per client IP, up to a cap.
type ipCounts struct {
	max int // < 0: no cap

	mu sync.Mutex
	n  map[netip.Addr]int // guarded by mu
}

func newIPCounts(max int) *ipCounts { return &ipCounts{max: max, n: make(map[netip.Addr]int)} }

// acquire counts one more connection of ip, or reports false at the cap.
func (c *ipCounts) acquire(ip netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max >= 0 && c.n[ip] >= c.max {
		return false
	}
	c.n[ip]++
	return true
}

func (c *ipCounts) release(ip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip] <= 1 {
		delete(c.n, ip)
		return
	}
	c.n[ip]--
}

// WrapListener caps the TCP connections each remote IP holds on ln at
// Limits.MaxConnsPerIP; trusted proxies are not capped. A connection over
// the cap is closed as soon as it is accepted.
func (s *Server) WrapListener(ln net.Listener) net.Listener {
	if s.limits.MaxConnsPerIP < 0 {
		return ln
	}
	return &capListener{Listener: ln, s: s, counts: newIPCounts(s.limits.MaxConnsPerIP)}
}

type capListener struct {
	net.Listener
	s      *Server
	counts *ipCounts
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrIP(c.RemoteAddr().String())
		if !ip.IsValid() || l.s.trusted(ip) {
			return c, nil
		}
		if !l.counts.acquire(ip) {
			l.s.metrics.ConnsOverIPCap.Add(1)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: func() { l.counts.release(ip) }}, nil
	}
}

// countedConn releases its count once, on the first Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// addrIP parses the IP of a host:port (the zero Addr when it does not).
func addrIP(hostport string) netip.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// trusted reports whether ip is one of Config.TrustedProxies.
func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the IP a request comes from: the peer's address, or, when
// the peer is a trusted proxy, the rightmost X-Forwarded-For entry that is
// not itself a trusted proxy (entries further left are the client's own
// claims and could be anything).
func (s *Server) clientIP(r *http.Request) netip.Addr {
	ip := addrIP(r.RemoteAddr)
	if !ip.IsValid() || !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // malformed: stop at the proxy we know
		}
		h = h.Unmap()
		if !s.trusted(h) {
			return h
		}
		ip = h
	}
	return ip
}

// ParseTrustedProxies parses CIDRs or single IPs (Config.TrustedProxies).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, v := range list {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// startLoginTimer closes c with 4108 unless it logs in within
// Limits.LoginTimeout; loggedIn stops it.
func (c *conn) startLoginTimer() {
	d := c.srv.limits.LoginTimeout
	if d < 0 {
		return
	}
	c.loginTimer = time.AfterFunc(d, func() {
		if c.loggedIn.Load() {
			return
		}
		c.srv.metrics.LoginTimeouts.Add(1)
		c.fail(CloseLoginTimeout, "LOGIN_TIMEOUT: no session/open in time")
	})
}

// markLoggedIn stops the login deadline.
func (c *conn) markLoggedIn() {
	if c.loggedIn.CompareAndSwap(false, true) && c.loginTimer != nil {
		c.loginTimer.Stop()
	}
}
