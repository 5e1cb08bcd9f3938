package edge

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// Backend is what the edge needs from the core: one call per client request
// (COMMAND), session open (OPEN) and session end (CLOSE).
type Backend interface {
	Do(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error)
}

// Limits bound what one client may do. A zero field takes the LeanCloud
// default shown; a negative rate disables that limit.
type Limits struct {
	// MaxFrameBytes is the WebSocket read limit per message (frame as sent,
	// base64 included). A bigger frame closes the connection with 1009.
	// Default 64 KiB.
	MaxFrameBytes int64
	// MaxMessageBytes bounds message content: direct msg + binaryMsg +
	// pushData, and each patch item's data + binaryMsg. Bigger → cmd:error
	// 4109 FRAME_TOO_LONG with the request's i. Default 5120 (LeanCloud 5 KB).
	MaxMessageBytes int
	// Per-session token buckets, capacity = rate: direct sends, logs
	// queries, and every other forwarded op except ack/read/echo. Over →
	// cmd:error 4116 with i. Defaults 60, 120, 30 per minute.
	SendsPerMinute, LogsPerMinute, OpsPerMinute int
	// QueueLen bounds the outbound queue per connection, in frames.
	// Default 1024.
	QueueLen int
	// IdleTimeout closes a connection with no inbound frame (data, ping or
	// pong) for this long (close code 4107). Must exceed the SDKs' 180 s
	// keepalive; default 400 s (the JS SDK's own 380 s plus slack).
	IdleTimeout time.Duration
	// WriteTimeout bounds one frame write. Default 10 s.
	WriteTimeout time.Duration
	// BackendTimeout bounds one Backend.Do. Default 10 s.
	BackendTimeout time.Duration
	// SessionTokenTTL is the lifetime of a session token (stTtl).
	// Default 48 h.
	SessionTokenTTL time.Duration
	// SessionMaxAge bounds a chain of session tokens: a token issued on a
	// reopen or a refresh never expires later than the login the chain
	// began with plus SessionMaxAge, and a refresh past that is refused
	// with 4112, so a token cannot be kept alive without signing in
	// again. Default SessionTokenTTL (a refresh keeps the first token's
	// expiry).
	SessionMaxAge time.Duration
	// MaxSessionsPerConn bounds IMClients sharing one socket. Default 32.
	MaxSessionsPerConn int
	// MaxConnsPerIP bounds the TCP connections (WrapListener) and the
	// WebSockets (429 before the upgrade) one client IP holds (guard.go).
	// Default 1000; negative: no cap.
	MaxConnsPerIP int
	// LoginTimeout closes an upgraded connection that has not logged in
	// by then with 4108 LOGIN_TIMEOUT. Default 60 s; negative: none.
	LoginTimeout time.Duration
	// SessionOpsPerMinute bounds session/open plus session/refresh per
	// connection, EchoPerMinute echo per connection; over → cmd:error
	// 4116 with i. Defaults 60 and 60 per minute; negative disables.
	SessionOpsPerMinute, EchoPerMinute int
	// DatagramsPerMinute bounds the datagrams a WebTransport session may
	// send (wt.go); over it they are dropped unanswered and counted.
	// Transient directs taken also count against SendsPerMinute.
	// Default 120; negative disables.
	DatagramsPerMinute int
}

// DefaultLimits are LeanCloud's published limits.
var DefaultLimits = Limits{
	MaxFrameBytes:      64 << 10,
	MaxMessageBytes:    5 << 10,
	SendsPerMinute:     60,
	LogsPerMinute:      120,
	OpsPerMinute:       30,
	QueueLen:           1024,
	IdleTimeout:        400 * time.Second,
	WriteTimeout:       10 * time.Second,
	BackendTimeout:     10 * time.Second,
	SessionTokenTTL:    48 * time.Hour,
	MaxSessionsPerConn: 32,

	MaxConnsPerIP:       1000,
	LoginTimeout:        60 * time.Second,
	SessionOpsPerMinute: 60,
	EchoPerMinute:       60,
	DatagramsPerMinute:  120,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxFrameBytes == 0 {
		l.MaxFrameBytes = d.MaxFrameBytes
	}
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.SendsPerMinute == 0 {
		l.SendsPerMinute = d.SendsPerMinute
	}
	if l.LogsPerMinute == 0 {
		l.LogsPerMinute = d.LogsPerMinute
	}
	if l.OpsPerMinute == 0 {
		l.OpsPerMinute = d.OpsPerMinute
	}
	if l.QueueLen <= 0 {
		l.QueueLen = d.QueueLen
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.BackendTimeout <= 0 {
		l.BackendTimeout = d.BackendTimeout
	}
	if l.SessionTokenTTL <= 0 {
		l.SessionTokenTTL = d.SessionTokenTTL
	}
	if l.SessionMaxAge <= 0 {
		l.SessionMaxAge = l.SessionTokenTTL
	}
	if l.MaxSessionsPerConn <= 0 {
		l.MaxSessionsPerConn = d.MaxSessionsPerConn
	}
	if l.MaxConnsPerIP == 0 {
		l.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if l.LoginTimeout == 0 {
		l.LoginTimeout = d.LoginTimeout
	}
	if l.SessionOpsPerMinute == 0 {
		l.SessionOpsPerMinute = d.SessionOpsPerMinute
	}
	if l.EchoPerMinute == 0 {
		l.EchoPerMinute = d.EchoPerMinute
	}
	if l.DatagramsPerMinute == 0 {
		l.DatagramsPerMinute = d.DatagramsPerMinute
	}
	return l
}

// Config configures a Server.
type Config struct {
	EdgeID  string
	Backend Backend
	Apps    *apps.Registry
	// TokenKey keys session tokens; every edge of a cluster must share it.
	// Empty means a random key: tokens then only work on this process.
	TokenKey []byte
	Limits   Limits // zero fields = LeanCloud defaults
	// Ready reports readiness for /healthz; nil means always ready.
	Ready func() bool
	// NotReady lists the failing readiness checks for /readyz (ready.go;
	// none: ready); nil falls back to Ready.
	NotReady func() []string
	// Collectors are more series for /metrics, registered with the
	// edge's own (in `relaymesh dev`, the core's counters; cluster's edge,
	// its core link's). They must not repeat a series: New panics, as
	// prometheus.Registry.MustRegister.
	Collectors []prometheus.Collector
	// AdminMetrics leaves /metrics out of Handler: an admin listener
	// serves MetricsHandler instead, away from the clients' port.
	AdminMetrics bool
	// PublicURLs are the WebSocket URLs /v1/route answers (server,
	// secondary). Empty means ws(s)://<request Host>/. Routes, when set,
	// replaces them.
	PublicURLs []string
	// Routes answers /v1/route by the caller's region (route.go); nil
	// answers PublicURLs to everyone.
	Routes *RouteTable
	// TrustedProxies are the load balancers in front of the edge: for a
	// connection from one of them the client IP is taken from
	// X-Forwarded-For (guard.go). Parse with ParseTrustedProxies.
	TrustedProxies []netip.Prefix
	// GoroutineReader serves every WebSocket with a reader goroutine of its
	// own (coder/websocket), as over TLS and off Linux. By default a
	// plain-TCP WebSocket on Linux is framed by the edge and read by an
	// epoll poller (wsraw.go): an idle one parks no goroutine and no read
	// buffer. The environment variable RELAYMESH_WS_READER=goroutine sets
	// it too.
	GoroutineReader bool
	Logger          *slog.Logger
}

// wsReaderEnv names the environment variable that can set
// Config.GoroutineReader.
const wsReaderEnv = "RELAYMESH_WS_READER"

// Server is one edge: it terminates client WebSockets and serves the router
// and health endpoints.
//
// Lock order: Server.mu, then conn.mu, then the outQueue's lock (no path takes two
// of them at once except conn.mu → the outQueue's lock).
type Server struct {
	cfg     Config
	limits  Limits
	log     *slog.Logger
	metrics *Metrics
	reg     *prometheus.Registry // the process part's: metrics, queues, mesh, Go runtime, Config.Collectors
	now     func() time.Time     // injectable for tests
	// testBeforeReady, set by tests only, runs in a login between its
	// session/opened reply and conn.markReady.
	testBeforeReady func(*session)
	nextID          atomic.Uint64

	wg sync.WaitGroup // one per accepted connection (its reader goroutine)

	writers *writerPool // writes raw WebSockets' queued frames (writers.go)

	proxies []netip.Prefix // Config.TrustedProxies
	wsPerIP *ipCounts      // WebSockets and WebTransport sessions per client IP (guard.go)

	wt    atomic.Pointer[WTServer] // the WebTransport listener, when there is one (wt.go)
	ready readyChecks              // /readyz's shared, cached backend checks (ready.go)

	rawWS bool // plain-TCP WebSockets are raw (wsraw.go), read by the poller

	mu     sync.Mutex
	closed bool                              // guarded by mu
	conns  map[uint64]*conn                  // guarded by mu
	peers  map[peerKey]map[*session]struct{} // guarded by mu; bound sessions by (app, clientId)
}

type peerKey struct{ app, peer string }

// New returns a Server. It starts no goroutines.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Apps == nil {
		cfg.Apps = apps.NewDev()
	}
	if len(cfg.TokenKey) == 0 {
		cfg.TokenKey = make([]byte, 32)
		_, _ = rand.Read(cfg.TokenKey)
		cfg.Logger.Warn("edge: no TokenKey configured; session tokens work on this process only")
	}
	if cfg.EdgeID == "" {
		cfg.EdgeID = "edge"
	}
	s := &Server{
		cfg:     cfg,
		limits:  cfg.Limits.withDefaults(),
		log:     cfg.Logger,
		metrics: new(Metrics),
		now:     time.Now,
		conns:   make(map[uint64]*conn),
		writers: newWriterPool(),
		peers:   make(map[peerKey]map[*session]struct{}),
		proxies: cfg.TrustedProxies,
	}
	s.wsPerIP = newIPCounts(s.limits.MaxConnsPerIP)
	s.reg = metric.NewRegistry(append([]prometheus.Collector{s.metrics.Collector(), s.queueCollector(), mesh.Collector()}, cfg.Collectors...)...)
	s.rawWS = !cfg.GoroutineReader && os.Getenv(wsReaderEnv) != "goroutine" && pollerAvailable()
	if s.limits.IdleTimeout < 180*time.Second {
		s.log.Warn("edge: idle timeout below the SDKs' 180 s keepalive; idle clients will be dropped", "idle", s.limits.IdleTimeout)
	}
	return s
}

// Metrics returns the edge's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Handler serves "/v1/route", "/healthz", "/readyz", "/metrics" (not with
// Config.AdminMetrics: 404), and the WebSocket on every other path.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/route", s.serveRoute)
	mux.HandleFunc("/healthz", s.serveHealth)
	mux.HandleFunc("/readyz", s.serveReady) // ready.go
	if s.cfg.AdminMetrics {
		mux.Handle("/metrics", http.NotFoundHandler())
	} else {
		mux.Handle("/metrics", s.MetricsHandler())
	}
	mux.HandleFunc("/v1/webtransport", s.serveWTInfo) // wt.go
	mux.HandleFunc("/", s.serveWS)
	return mux
}

// RouteTTL is the ttl /v1/route answers, in seconds.
const RouteTTL = 3600

// serveRoute answers the LeanCloud router call. Query parameters (appId,
// secure, features, server, _t, installationId) are ignored: every app gets
// the same edges. secondary is never empty (the Java SDK alternates server
// and secondary and hangs on a missing one) and ttl is a number (Swift).
// With Config.Routes the edges are those of the caller's region (route.go),
// named in the X-Relaymesh-Region header.
func (s *Server) serveRoute(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	urls := s.cfg.PublicURLs
	if len(urls) == 0 {
		scheme := "ws"
		if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
			scheme = "wss"
		}
		urls = []string{scheme + "://" + r.Host + "/"}
	}
	server, secondary := urls[0], urls[0]
	if len(urls) > 1 && urls[1] != "" {
		secondary = urls[1]
	}
	if t := s.cfg.Routes; t != nil {
		var region string
		server, secondary, region = t.Route(s.clientIP(r))
		w.Header().Set("X-Relaymesh-Region", region)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "no-store")
	var wt *wtInfo
	if l := s.wt.Load(); l != nil {
		wt = l.info(server) // the same edge (address) over WebTransport
	}
	_ = json.NewEncoder(w).Encode(struct {
		Server    string  `json:"server"`
		Secondary string  `json:"secondary"`
		TTL       int     `json:"ttl"`
		WT        *wtInfo `json:"wt,omitempty"`
	}{server, secondary, RouteTTL, wt})
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || (s.cfg.Ready != nil && !s.cfg.Ready()) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Gatherer is the edge's metrics registry: its series, the Go runtime's
// and the process's, and Config.Collectors'.
func (s *Server) Gatherer() prometheus.Gatherer { return s.reg }

// MetricsHandler serves the edge's metrics registry in the Prometheus
// exposition formats: /metrics on the public port (Handler), or on an
// admin listener with Config.AdminMetrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // a broken collector spares the rest
	})
}

// Close sends goaway to every session, closes every connection once its
// queue has drained, and returns after all connection goroutines (including
// their Backend CLOSE calls) have exited. Later connections get 503.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
	s.wg.Wait()
	return nil
}

// Deliver writes a push from a core to the target sessions on this edge.
// It never blocks: frames go to each connection's bounded queue under the
// overflow rule. Each copy gets peerId = the target's clientId and
// service = 2 when unset. A target with end_session is unbound after its
// frame is queued (tag kick); the core has already dropped it, so no CLOSE
// is sent for it.
func (s *Server) Deliver(d *meshpb.Delivery) {
	if d == nil {
		return
	}
	s.metrics.Deliveries.Add(1)
	f, ok := scanCommand(d.GetCommand()) // pushwire.go
	if !ok || len(d.GetCommand()) == 0 {
		s.metrics.BadReplies.Add(1)
		return
	}
	prio := pq.ClassOf(d.GetPriority())
	dgram := f.cmd == lcpb.CommandType_direct && f.transient
	var at int64 // a message's first copies are timed (Metrics.Delivery), not a replay's
	if f.cmd == lcpb.CommandType_direct && !d.GetReplay() {
		at = f.timestamp
	}
	type hit struct {
		ss  *session
		end bool
	}
	var hits []hit
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for _, t := range d.GetTargets() {
		found := false
		for ss := range s.peers[peerKey{d.GetAppId(), t.GetPeerId()}] {
			if t.GetConnId() == 0 || ss.c.id == t.GetConnId() {
				hits = append(hits, hit{ss, t.GetEndSession()})
				found = true
			}
		}
		if !found {
			s.metrics.DeliveryMisses.Add(1)
		}
	}
	s.mu.Unlock()
	if len(hits) == 0 {
		return
	}
	// One encoding for every copy: the command without peerId, then per
	// target that field appended (protobuf takes fields in any order, and
	// field 4 appears once), so a copy costs an append, not a Marshal.
	shared := sharedPush(d.GetCommand(), f)
	fan := len(hits) > 1 // copies for the writer pool's fan-out lane
	var last *session    // a client's sessions on one connection share bytes
	var b []byte
	for _, h := range hits {
		if last == nil || last.peerID != h.ss.peerID {
			b = withPeerID(shared, h.ss.peerID)
		}
		last = h.ss
		if h.ss.c.deliver(h.ss, outFrame{b: b, p: prio, dgram: dgram, fan: fan, at: at}, h.end) {
			s.metrics.DeliveredFrames.Add(1)
		}
		if h.end {
			s.unbind(h.ss)
		}
	}
}

// withPeerID returns cmd (an encoded GenericCommand without peerId) with
// peerId = peer appended, in a new slice.
func withPeerID(cmd []byte, peer string) []byte {
	b := make([]byte, len(cmd), len(cmd)+1+protowire.SizeVarint(uint64(len(peer)))+len(peer))
	copy(b, cmd)
	b = protowire.AppendTag(b, 4, protowire.BytesType) // GenericCommand.peerId
	return protowire.AppendString(b, peer)
}

// bind registers ss with its connection and the peer index.
func (s *Server) bind(ss *session) {
	c := ss.c
	c.mu.Lock()
	ss.bound = true
	c.sessions = append(c.sessions, ss)
	c.mu.Unlock()
	s.mu.Lock()
	k := peerKey{ss.appID, ss.peerID}
	set := s.peers[k]
	if set == nil {
		set = make(map[*session]struct{})
		s.peers[k] = set
	}
	set[ss] = struct{}{}
	s.mu.Unlock()
	s.metrics.SessionsOpen.Add(1)
	s.metrics.SessionsTotal.Add(1)
	if c.t != nil {
		tm := s.metrics.transport(c.t.kind())
		tm.SessionsOpen.Add(1)
		tm.SessionsTotal.Add(1)
	}
}

// unbind removes ss; it reports false when ss was already unbound.
func (s *Server) unbind(ss *session) bool {
	c := ss.c
	c.mu.Lock()
	if !ss.bound {
		c.mu.Unlock()
		return false
	}
	ss.bound = false
	for i, o := range c.sessions {
		if o == ss {
			c.sessions = append(c.sessions[:i], c.sessions[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	s.mu.Lock()
	k := peerKey{ss.appID, ss.peerID}
	if set := s.peers[k]; set != nil {
		delete(set, ss)
		if len(set) == 0 {
			delete(s.peers, k)
		}
	}
	s.mu.Unlock()
	s.metrics.SessionsOpen.Add(-1)
	if c.t != nil {
		s.metrics.transport(c.t.kind()).SessionsOpen.Add(-1)
	}
	return true
}

// subprotocol picks the connection's subprotocol: the first one the client
// offers in Sec-WebSocket-Protocol that we speak (echoed back exactly), or
// else the ?subprotocol= query parameter (WeChat mini programs cannot set
// the header; nothing is echoed then).
func chooseSubprotocol(r *http.Request) (codec lcpb.Codec, echo bool, ok bool) {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if c, err := lcpb.CodecFor(strings.TrimSpace(p)); err == nil {
				return c, true, true
			}
		}
	}
	if c, err := lcpb.CodecFor(r.URL.Query().Get("subprotocol")); err == nil {
		return c, false, true
	}
	return lcpb.Codec{}, false, false
}

// serveWS upgrades to a WebSocket and starts the connection's reader on a
// goroutine of its own, then returns: net/http's handler goroutine, with
// the request, its headers and the stack grown while parsing them, would
// otherwise stay parked for the connection's whole life. A request without
// a known subprotocol is refused with HTTP 400 before the upgrade (the
// legacy JSON protocol of SDK 2.x is not served).
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		if r.URL.Path == "/" {
			http.Error(w, "relaymesh edge: connect with a LeanCloud realtime SDK (WebSocket)", http.StatusUpgradeRequired)
			return
		}
		http.NotFound(w, r)
		return
	}
	codec, echo, ok := chooseSubprotocol(r)
	if !ok {
		s.metrics.HandshakesRefused.Add(1)
		http.Error(w, "relaymesh: unsupported or missing WebSocket subprotocol; offer one of "+strings.Join(lcpb.Subprotocols, ", "), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.metrics.HandshakesRefused.Add(1)
		http.Error(w, "relaymesh: edge shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	ip := s.clientIP(r)
	if !s.wsPerIP.acquire(ip) {
		s.wg.Done()
		s.metrics.ConnsOverIPCap.Add(1)
		http.Error(w, "relaymesh: too many connections from this address", http.StatusTooManyRequests)
		return
	}
	started := false
	defer func() {
		if !started {
			s.wsPerIP.release(ip)
			s.wg.Done()
		}
	}()

	if s.rawWS && r.TLS == nil {
		started = s.serveRawWS(w, r, codec, echo, func() {
			s.wsPerIP.release(ip)
			s.wg.Done()
		})
		return
	}
	wst := &wsTransport{codec: codec}
	c := newConn(s, codec, wst)
	opts := &websocket.AcceptOptions{
		InsecureSkipVerify: true, // no Origin check: native SDKs send none, browsers any
		CompressionMode:    websocket.CompressionDisabled,
		OnPingReceived: func(context.Context, []byte) bool {
			c.touch()
			return true
		},
		OnPongReceived: func(context.Context, []byte) { c.touch() },
	}
	if echo {
		opts.Subprotocols = []string{codec.Name}
	}
	ws, err := websocket.Accept(smallBufWriter{ResponseWriter: w, cork: &wst.sock, writes: &s.metrics.SocketWrites}, r, opts)
	if err != nil {
		c.cancel()
		s.log.Debug("edge: accept failed", "err", err)
		return
	}
	ws.SetReadLimit(s.limits.MaxFrameBytes)
	wst.ws = ws
	c.remote = r.RemoteAddr
	if ip := s.clientIP(r); ip.IsValid() {
		c.ip = ip.String() // hooks' sourceIP (guard.go)
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.cancel()
		_ = ws.Close(websocket.StatusGoingAway, "edge shutting down")
		return
	}
	s.conns[c.id] = c
	s.mu.Unlock()
	started = true
	s.openConn(c)
	go func() {
		defer s.wg.Done()
		defer s.wsPerIP.release(ip)
		s.runConn(c)
	}()
}

// openConn counts a registered connection and starts its login deadline.
func (s *Server) openConn(c *conn) {
	tm := s.metrics.transport(c.t.kind())
	s.metrics.ConnectionsOpen.Add(1)
	s.metrics.ConnectionsTotal.Add(1)
	tm.ConnectionsOpen.Add(1)
	tm.ConnectionsTotal.Add(1)
	c.startLoginTimer() // guard.go
}

// runConn serves a connection opened by openConn until it ends.
func (s *Server) runConn(c *conn) {
	c.run()
	s.connEnded(c)
}

// connEnded forgets a connection that has ended.
func (s *Server) connEnded(c *conn) {
	tm := s.metrics.transport(c.t.kind())
	s.mu.Lock()
	delete(s.conns, c.id)
	s.mu.Unlock()
	s.metrics.ConnectionsOpen.Add(-1)
	tm.ConnectionsOpen.Add(-1)
}

// BackendFunc adapts a function to Backend.
type BackendFunc func(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error)

// Do calls f.
func (f BackendFunc) Do(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	return f(ctx, req)
}
