package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Every session of a worker dials through the worker's netDialer, passed as
// client.Options.HTTPClient. It gives the load tester three abilities:
//
//   - source addresses: each TCP connection binds the next of
//     Config.SourceIPs, spreading clients over more 4-tuples than one
//     source address allows;
//   - a network switch per session group (named by the lt_group query
//     parameter of the session's URL, which the edge ignores): drop closes
//     the group's connections at once and refuses its dials until up;
//   - slow readers (group slowGroup, chatroom.go) get a receive buffer of
//     slowReadBuffer bytes and, on Linux, a small MSS (netdial_linux.go), so
//     their TCP window fills after a few frames, the edge's socket send
//     buffer stays small, and the backlog builds in the edge's
//     per-connection queue rather than in the kernels' socket buffers.
//

const groupParam = "lt_group"

// slowReadBuffer is a slow reader's SO_RCVBUF (Linux doubles it).
const slowReadBuffer = 4096

type groupKey struct{}

var errGroupDown = errors.New("loadtest: network down for this group (reconnect scenario)")

type netDialer struct {
	ips  []netip.Addr // immutable
	next atomic.Uint64
	base http.RoundTripper // immutable: WebSocket handshakes direct (upgradeRT), the rest via http.Transport

	mu    sync.Mutex
	conns map[*trackedConn]struct{} // guarded by mu
	down  map[string]bool           // guarded by mu
	wt    map[string][]*session     // guarded by mu; WebTransport sessions per group (trackWT)
}

func newNetDialer(ips []netip.Addr) *netDialer {
	d := &netDialer{ips: ips, conns: make(map[*trackedConn]struct{}), down: make(map[string]bool)}
	d.base = upgradeRT{dial: d.dial, other: &http.Transport{
		DialContext:         d.dial,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: -1,
		DisableKeepAlives:   true,
	}}
	return d
}

// client returns an http.Client whose connections go through d.
func (d *netDialer) client() *http.Client { return &http.Client{Transport: groupRT{d.base}} }

// groupRT moves the lt_group query parameter into the request context so
// dial can see it.
type groupRT struct{ next http.RoundTripper }

func (g groupRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if grp := r.URL.Query().Get(groupParam); grp != "" {
		r = r.WithContext(context.WithValue(r.Context(), groupKey{}, grp))
	}
	return g.next.RoundTrip(r)
}

func (d *netDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	grp, _ := ctx.Value(groupKey{}).(string)
	d.mu.Lock()
	down := d.down[grp]
	d.mu.Unlock()
	if down {
		return nil, errGroupDown
	}
	nd := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if grp == slowGroup {
		nd.Control = slowControl
	}
	if len(d.ips) > 0 {
		ip := d.ips[(d.next.Add(1)-1)%uint64(len(d.ips))]
		nd.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
	}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && grp == slowGroup {
		_ = tc.SetReadBuffer(slowReadBuffer) // best effort; the read delay still applies
	}
	tc := &trackedConn{Conn: c, d: d, group: grp}
	d.mu.Lock()
	d.conns[tc] = struct{}{}
	d.mu.Unlock()
	return tc, nil
}

// drop closes every connection of group and refuses its dials until up.
func (d *netDialer) drop(group string) int {
	d.mu.Lock()
	d.down[group] = true
	var victims []*trackedConn
	for c := range d.conns {
		if c.group == group {
			victims = append(victims, c)
		}
	}
	wt := d.wt[group]
	d.mu.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
	n := len(victims)
	for _, s := range wt { // WebTransport sessions: their sockets are down now
		if s.cl != nil && s.cl.Drop() {
			n++
		}
	}
	return n
}

// trackWT registers a WebTransport session of a group, whose connection
// drop ends (client.Drop) while its socket refuses traffic
// (lossyConn).
func (d *netDialer) trackWT(s *session) {
	grp := groupOf(s.target)
	d.mu.Lock()
	if d.wt == nil {
		d.wt = make(map[string][]*session)
	}
	d.wt[grp] = append(d.wt[grp], s)
	d.mu.Unlock()
}

func (d *netDialer) isDown(group string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.down[group]
}

// groupOf is the lt_group parameter of a target URL.
func groupOf(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return ""
	}
	return u.Query().Get(groupParam)
}

func (d *netDialer) up(group string) {
	d.mu.Lock()
	delete(d.down, group)
	d.mu.Unlock()
}

type trackedConn struct {
	net.Conn
	d     *netDialer
	group string
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.d.mu.Lock()
		delete(c.d.conns, c)
		c.d.mu.Unlock()
	})
	return c.Conn.Close()
}

// withGroup adds the lt_group parameter to a target URL.
func withGroup(target, group string) string {
	if group == "" {
		return target
	}
	sep := "?"
	for i := range len(target) {
		if target[i] == '?' {
			sep = "&"
			break
		}
	}
	return target + sep + groupParam + "=" + group
}

// PortWarning returns a warning, or "", when the run would open more
// connections from one source address to one target than Linux's
// connect() finds local ports for quickly. It tries the even ports of
// net.ipv4.ip_local_port_range first (14,116 in the default range); once
// those are taken by connections to the same destination, each further
// connect walks all of them in the kernel: ~1 ms of CPU a dial here
// against ~20 µs, on the machine the load tester shares with the server.
// Config.SourceIPs spreads the connections.
func PortWarning(cfg Config) string {
	even := evenPorts(localPortRange())
	per := cfg.Sessions / max(len(cfg.SourceIPs), 1) / max(len(cfg.Targets), 1)
	if per <= even {
		return ""
	}
	return fmt.Sprintf("%d connections from one source address to one target, past the %d even local ports connect() tries first (each further dial walks them in the kernel, ~1 ms of CPU); spread them with --source-ips, e.g. 127.0.0.1-127.0.0.8", per, even)
}

// evenPorts counts the even ports from lo to hi.
func evenPorts(lo, hi int) int { return hi/2 - (lo+1)/2 + 1 }

// localPortRange is net.ipv4.ip_local_port_range, or Linux's default.
func localPortRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var l, h int
	if n, _ := fmt.Sscan(string(b), &l, &h); n == 2 && l > 0 && h >= l {
		return l, h
	}
	return lo, hi
}
