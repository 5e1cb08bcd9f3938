package mesh

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN is the TLS application protocol of the mesh.
const ALPN = "relaymesh/1"

// Connection tuning. Keepalives every keepAlivePeriod keep idle peers connected;
// a peer silent for maxIdleTimeout (killed, or cut off) is dropped and
// re-dialled on next use, and every stream on it fails. A core learns
// that an edge was killed -9 only this way, and keeps that edge's
// sessions online until then (offline push skips them, session/query
// lists them): 5 s, against 10 s before, with a keepalive every second,
// so only a peer silent for five keepalives in a row is dropped.
const (
	handshakeTimeout  = 5 * time.Second
	dialTimeout       = 3 * time.Second // one dial of an address, shared by its callers
	maxIdleTimeout    = 5 * time.Second
	keepAlivePeriod   = time.Second
	headerTimeout     = 10 * time.Second // to send a stream header
	requestTimeout    = time.Minute      // to send an RPC request after its header
	replyTimeout      = 10 * time.Second // to write an RPC reply to a caller that stopped reading
	maxIncomingStream = 4096             // concurrent streams a peer may open per connection
)

// Application error codes on connections and streams.
const (
	codeNoError   = 0
	codeCanceled  = 1 // the caller's context ended
	codeProtocol  = 2 // malformed header or frame
	codeClosed    = 3 // the node is closing
	codeForbidden = 4 // the peer's role may not do this (role.go)
)

// Sentinel errors. Errors from Call and OpenStream wrap them.
var (
	ErrClosed        = errors.New("mesh: closed")
	ErrRemote        = errors.New("mesh: remote error")
	ErrUnknownMethod = errors.New("mesh: unknown method")
	ErrFrameTooLarge = errors.New("mesh: frame too large")
	ErrProtocol      = errors.New("mesh: protocol error")
	// ErrNotSent wraps a Call that failed before its request was written
	// (no connection to the peer, or no stream on it): the peer cannot have
	// acted on it, so retrying it elsewhere duplicates nothing.
	ErrNotSent = errors.New("mesh: request not sent")
)

// RPCHandler answers one request; peer is the caller's node name.
type RPCHandler func(ctx context.Context, peer string, req []byte) ([]byte, error)

// StreamHandler serves one stream; the stream is closed when it returns.
type StreamHandler func(ctx context.Context, peer string, s *Stream)

// Node is one QUIC endpoint: a UDP socket, mutual TLS, one connection per peer.
//
// Lock order: mu, then nothing (no other lock is taken while holding mu).
type Node struct {
	id      *Identity
	log     *slog.Logger
	udp     *net.UDPConn
	pc      net.PacketConn // what tr runs on: udp, or WithPacketConn's wrapper of it
	tr      *quic.Transport
	ln      *quic.Listener
	clientT *tls.Config
	qconf   *quic.Config

	ctx    context.Context // ends when Close starts
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the node starts

	mu      sync.Mutex
	closed  bool                     // guarded by mu
	rpcs    map[string]RPCHandler    // guarded by mu
	streams map[string]StreamHandler // guarded by mu
	roles   map[string][]Role        // guarded by mu; who may call a method (none: any role)
	dials   map[string]*dial         // guarded by mu; by dialled address
	conns   map[*quic.Conn]struct{}  // guarded by mu; every live connection
	raft    map[string]*raftLayer    // guarded by mu; each raft group's current layer (RaftLayerFor)

	// Test hooks: noMux makes Call take a stream per call (the caller of
	// before mux streams); refuseMux makes the node refuse mux streams as
	// a node from before them does.
	noMux, refuseMux atomic.Bool
	// Calls sent on mux streams and on streams of their own (for tests).
	muxCalls, streamCalls atomic.Int64

	// local: registered for in-process calls and streams (InProcess,
	// local.go); localCalls counts the calls and streams it made in memory.
	local      bool
	localCalls atomic.Int64
}

// dial is one connection attempt to an address, shared by concurrent callers.
type dial struct {
	done chan struct{} // closed when conn/err are set
	conn *quic.Conn
	err  error
	mux  *muxPool // the caller's mux streams on conn (mux.go)
}

// ListenOption changes how Listen sets up a node.
type ListenOption func(*listenOptions)

type listenOptions struct {
	wrap  func(*net.UDPConn) net.PacketConn
	local bool // InProcess (local.go)
}

// WithPacketConn runs the node's QUIC transport on wrap(socket) instead of
// the UDP socket itself, so the lab and tests can shape the node's traffic
// (package netem: latency, loss, partitions). The returned conn owns the
// socket: the node closes it, not the socket. quic-go uses whatever
// optional abilities it has (a conn without ReadMsgUDP runs without ECN
// and batching).
func WithPacketConn(wrap func(*net.UDPConn) net.PacketConn) ListenOption {
	return func(o *listenOptions) { o.wrap = wrap }
}

// Listen opens a node on addr (host:port, port 0 picks one).
func Listen(addr string, id *Identity, logger *slog.Logger, opts ...ListenOption) (*Node, error) {
	var lo listenOptions
	for _, o := range opts {
		o(&lo)
	}
	if id == nil || len(id.Cert.Certificate) == 0 || id.Roots == nil {
		return nil, errors.New("mesh: listen: incomplete identity")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", uaddr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen %s: %w", addr, err)
	}
	pc := TolerateLocalDrops(udp)
	if lo.wrap != nil {
		pc = lo.wrap(udp)
	}
	tr := &quic.Transport{Conn: pc, StatelessResetKey: resetKey(id)}
	qconf := &quic.Config{
		HandshakeIdleTimeout:  handshakeTimeout,
		MaxIdleTimeout:        maxIdleTimeout,
		KeepAlivePeriod:       keepAlivePeriod,
		MaxIncomingStreams:    maxIncomingStream,
		MaxIncomingUniStreams: -1,
	}
	log := logger.With("node", id.Name)
	ln, err := tr.Listen(serverTLS(id, log), qconf)
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("mesh: listen %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		id: id, log: log, udp: udp, pc: pc, tr: tr, ln: ln,
		clientT: clientTLS(id, log), qconf: qconf, ctx: ctx, cancel: cancel,
		rpcs:    make(map[string]RPCHandler),
		streams: make(map[string]StreamHandler),
		roles:   make(map[string][]Role),
		dials:   make(map[string]*dial),
		conns:   make(map[*quic.Conn]struct{}),
	}
	if lo.local {
		n.local = true
		localNodes.Store(n.Addr(), n) // local.go
	}
	n.wg.Add(1)
	go n.acceptLoop()
	addLive(n) // metrics.go
	return n, nil
}

// Addr is the node's UDP address, as peers dial it.
func (n *Node) Addr() string { return n.udp.LocalAddr().String() }

// Name is the node's identity name.
func (n *Node) Name() string { return n.id.Name }

// HandleRPC registers h for method, replacing any earlier handler. Only
// peers of the roles listed may call it (none listed: any role); others get
// ErrForbidden and h never runs.
func (n *Node) HandleRPC(method string, h func(ctx context.Context, peer string, req []byte) ([]byte, error), roles ...Role) {
	checkMethod(method)
	n.mu.Lock()
	n.rpcs[method] = h
	n.roles[method] = roles
	n.mu.Unlock()
}

// HandleStream registers h for streams opened with method, for peers of
// the roles listed (none: any role).
func (n *Node) HandleStream(method string, h func(ctx context.Context, peer string, s *Stream), roles ...Role) {
	checkMethod(method)
	n.mu.Lock()
	n.streams[method] = h
	n.roles[method] = roles
	n.mu.Unlock()
}

// Role is the node's own role.
func (n *Node) Role() Role { return n.id.Role }

func checkMethod(method string) {
	if method == "" || len(method) > 255 {
		panic(fmt.Sprintf("mesh: method name must be 1..255 bytes, got %q", method))
	}
}

// Close closes every connection and the socket. Handlers see their context
// end; Close returns after every goroutine of the node has exited.
func (n *Node) Close() error {
	removeLive(n) // metrics.go; before mu (Lock order)
	if n.local {
		localNodes.CompareAndDelete(n.Addr(), n) // no new in-process callers
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	n.closed = true
	conns := make([]*quic.Conn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()

	n.cancel()
	err := n.ln.Close()
	for _, c := range conns {
		c.CloseWithError(codeClosed, "node closing")
	}
	n.wg.Wait()
	if cerr := n.tr.Close(); err == nil {
		err = cerr
	}
	if cerr := n.pc.Close(); err == nil {
		err = cerr
	}
	return err
}

func (n *Node) acceptLoop() {
	defer n.wg.Done()
	for {
		c, err := n.ln.Accept(n.ctx)
		if err != nil {
			return // listener closed
		}
		if !n.track(c) {
			c.CloseWithError(codeClosed, "node closing")
			return
		}
	}
}

// track registers a connection and starts serving the streams its peer
// opens. It reports false if the node is closed.
func (n *Node) track(c *quic.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.conns[c] = struct{}{}
	n.wg.Add(1)
	go n.serveConn(c)
	return true
}

// serveConn accepts the peer's streams until the connection ends.
func (n *Node) serveConn(c *quic.Conn) {
	defer n.wg.Done()
	peer := peerName(c)
	for {
		s, err := c.AcceptStream(n.ctx)
		if err != nil {
			break
		}
		n.wg.Add(1)
		go n.serveStream(c, peer, s)
	}
	if n.ctx.Err() != nil {
		c.CloseWithError(codeClosed, "node closing")
	} else {
		c.CloseWithError(codeNoError, "")
	}
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// conn returns the connection to addr, dialling it if there is none or it
// has failed. Concurrent callers share one dial. cached reports whether the
// connection existed before this call.
func (n *Node) conn(ctx context.Context, addr string) (c *quic.Conn, cached bool, err error) {
	d, cached, err := n.connDial(ctx, addr)
	if err != nil {
		return nil, false, err
	}
	return d.conn, cached, nil
}

// connDial is conn, returning the dial that made the connection.
func (n *Node) connDial(ctx context.Context, addr string) (d *dial, cached bool, err error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, false, ErrClosed
	}
	d = n.dials[addr]
	if d != nil {
		select {
		case <-d.done:
			if d.err != nil || d.conn.Context().Err() != nil {
				d = nil // failed; dial again
			} else {
				cached = true
			}
		default: // dial in progress
		}
	}
	if d == nil {
		d = &dial{done: make(chan struct{})}
		n.dials[addr] = d
		n.wg.Add(1)
		go n.dial(addr, d)
	}
	n.mu.Unlock()

	select {
	case <-d.done:
		if d.err != nil {
			return nil, false, d.err
		}
		return d, cached, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// spawn runs f on a goroutine of the node, unless the node is closed.
func (n *Node) spawn(f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// dial runs one connection attempt. It is bound to the node's lifetime, not
// to a caller's context, since several callers wait for it.
func (n *Node) dial(addr string, d *dial) {
	defer n.wg.Done()
	defer close(d.done)
	fail := func(err error) {
		d.err = fmt.Errorf("mesh: dial %s: %w", addr, err)
		n.mu.Lock()
		if n.dials[addr] == d {
			delete(n.dials, addr)
		}
		n.mu.Unlock()
	}
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		fail(err)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
	defer cancel()
	c, err := n.tr.Dial(ctx, uaddr, n.clientT, n.qconf)
	if err != nil {
		if n.ctx.Err() != nil {
			err = ErrClosed
		}
		fail(err)
		return
	}
	if !n.track(c) {
		c.CloseWithError(codeClosed, "node closing")
		fail(ErrClosed)
		return
	}
	d.conn = c
	d.mux = &muxPool{n: n, c: c}
	n.log.Debug("mesh: connected", "addr", addr, "peer", peerName(c))
}

// forget drops a cached connection that turned out dead.
func (n *Node) forget(addr string, c *quic.Conn) {
	n.mu.Lock()
	if d := n.dials[addr]; d != nil && d.conn == c {
		delete(n.dials, addr)
	}
	n.mu.Unlock()
}

// openStream opens a stream to addr and writes its header. If the cached
// connection cannot open a stream, it is dropped and dialled once more.
func (n *Node) openStream(ctx context.Context, addr string, kind byte, method string) (*quic.Stream, *quic.Conn, error) {
	if len(method) > 255 {
		return nil, nil, fmt.Errorf("mesh: method name of %d bytes, max 255", len(method))
	}
	for attempt := 0; ; attempt++ {
		c, cached, err := n.conn(ctx, addr)
		if err != nil {
			return nil, nil, err
		}
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			n.forget(addr, c)
			if cached && attempt == 0 {
				continue
			}
			return nil, nil, fmt.Errorf("mesh: open stream to %s: %w", addr, err)
		}
		hdr := make([]byte, 0, 2+len(method))
		hdr = append(hdr, kind, byte(len(method)))
		hdr = append(hdr, method...)
		if _, err := s.Write(hdr); err != nil {
			s.CancelRead(codeNoError)
			s.CancelWrite(codeNoError)
			return nil, nil, fmt.Errorf("mesh: open stream to %s: %w", addr, err)
		}
		return s, c, nil
	}
}

func serverTLS(id *Identity, log *slog.Logger) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.Roots,
		NextProtos:   []string{ALPN},
		// The chain is verified by then; the peer must also say its role.
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkPeerRole(cs, log, "client")
		},
	}
}

// checkPeerRole refuses a peer whose certificate carries no role, with a
// log line that says what to do about it.
func checkPeerRole(cs tls.ConnectionState, log *slog.Logger, side string) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // the chain check refuses it
	}
	if _, err := CertRole(cs.PeerCertificates[0]); err != nil {
		log.Warn("mesh: refused a peer certificate without a role; reissue it with `relaymesh pki issue --role` (docs/OPERATIONS.md)",
			"side", side, "peer", certName(cs.PeerCertificates[0]))
		return err
	}
	return nil
}

// clientTLS verifies the server's chain against the cluster CA but not its
// host name: nodes dial addresses, and every CA-signed node is a member.
// The server must carry a role too.
func clientTLS(id *Identity, log *slog.Logger) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.Cert},
		NextProtos:         []string{ALPN},
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("mesh: server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots:         id.Roots,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err != nil {
				return err
			}
			return checkPeerRole(cs, log, "server")
		},
	}
}

// resetKey derives the stateless reset key from the node's private key, so a
// restarted node can reset connections its previous incarnation held and
// peers re-dial at once instead of waiting for the idle timeout.
func resetKey(id *Identity) *quic.StatelessResetKey {
	h := sha256.New()
	h.Write([]byte("relaymesh stateless reset\x00"))
	if der, err := x509.MarshalPKCS8PrivateKey(id.Cert.PrivateKey); err == nil {
		h.Write(der)
	} else {
		return nil // unknown key type: resets disabled
	}
	var k quic.StatelessResetKey
	copy(k[:], h.Sum(nil))
	return &k
}

func peerName(c *quic.Conn) string {
	certs := c.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return certName(certs[0])
}

// peerRole is the role of a connection's peer ("" if none, which the
// handshake already refused).
func peerRole(c *quic.Conn) Role {
	certs := c.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	r, _ := CertRole(certs[0])
	return r
}
