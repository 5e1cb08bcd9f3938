package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/edge/corelink"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/rest"
)

// EdgeConfig configures one edge.
type EdgeConfig struct {
	EdgeID   string
	HTTPAddr string         // WebSocket, /v1/route, /healthz, REST API (/1.1/, /1.2/)
	MeshAddr string         // UDP host:port of the edge's mesh node ("127.0.0.1:0" is fine)
	Identity *mesh.Identity // mesh certificate
	Cores    []string       // mesh addresses of the region's cores
	TokenKey []byte         // session-token key shared by every edge of the cluster
	Apps     *apps.Registry
	// PublicURLs answer /v1/route; empty means ws://HTTPAddr/.
	PublicURLs []string
	// Routes, when set, answers /v1/route by the caller's region
	// ([[regions]], Config.Routes) instead of PublicURLs.
	Routes *edge.RouteTable
	Limits edge.Limits
	// TrustedProxies are edge.Config.TrustedProxies.
	TrustedProxies []netip.Prefix
	// REST bounds the REST API (package rest); zero fields take its defaults.
	REST   rest.Limits
	Logger *slog.Logger
	// Collectors are edge.Config.Collectors: more series on /metrics
	// (StartDev passes the in-process core's). Nil with Hooks adds the
	// hook client's.
	Collectors []prometheus.Collector
	// AdminAddr, when set, is the TCP address of the edge's admin
	// listener ([edge] admin_addr; admin.go): /metrics, /healthz, /readyz
	// and /debug/pprof/, and the public port no longer serves /metrics.
	// Empty keeps /metrics on the public port, as before.
	AdminAddr string
	// Hooks, when set, serves the REST API's login signatures for app
	// users (rest.Config.Users; issue 8).
	Hooks *hooks.Client
	// DropDelivery, when > 0, silently drops the DropDelivery-th direct
	// message delivery this edge receives (corelink.Config.DropDelivery).
	// It is a test hook that breaks the delivery path on purpose, so the
	// load tester's ledger can be shown to catch a loss.
	DropDelivery int64
	// PresenceDelay is corelink.Config.PresenceDelay (a TEST HOOK).
	PresenceDelay time.Duration
	// MeshOptions are passed to mesh.Listen (the lab shapes the node's
	// socket with mesh.WithPacketConn).
	MeshOptions []mesh.ListenOption
	// DrainTimeout is how long `relaymesh edge` lets clients told goaway
	// leave on SIGTERM before it closes them (Edge.Drain).
	DrainTimeout time.Duration
	// WebTransport, when set, serves HTTP/3 + WebTransport on UDP at
	// HTTPAddr's host:port (path /wt) with this certificate (edge/wt.go).
	// The caller owns it.
	WebTransport *edge.WTCert
	// TLS serves the HTTP/WebSocket listener over TLS (wss://, https://)
	// with WebTransport's certificate, which it needs ([edge] tls).
	TLS bool
	// Pages are more routes on the HTTP listener, by ServeMux pattern
	// (StartDev serves the chat demo, package web, at /demo/).
	Pages map[string]http.Handler
	// FollowCoreApps makes the edge replace its registry's apps with its
	// cores' (the catalog's) every AppPollInterval (appsync.go); Apps must
	// not be open. `relaymesh edge` sets it, `relaymesh dev` does not.
	FollowCoreApps bool
	// AppPollInterval overrides the interval of FollowCoreApps (tests).
	AppPollInterval time.Duration
}

// Edge is a running edge.
type Edge struct {
	Server *edge.Server
	Node   *mesh.Node
	URL    string // ws:// URL clients use
	// WTURL is the WebTransport URL (https://host:port/wt), "" without
	// EdgeConfig.WebTransport.
	WTURL string
	// AdminURL is http://host:port of the admin listener, "" without
	// EdgeConfig.AdminAddr.
	AdminURL string
	admin    *adminServer
	apps     *edgeAppSync // nil without FollowCoreApps
	link     *corelink.Link
	http     *http.Server
	ln       net.Listener
	wt       *edge.WTServer // nil without WebTransport
	udp      net.PacketConn // wt's socket
	wg       sync.WaitGroup // the HTTP server and the WebTransport listener
}

// StartEdge starts an edge: its mesh node, its link to the cores
// (edge/corelink: requests, presence and a delivery stream from every
// core) and its HTTP listener. Its Identity must carry the role edge,
// whatever its name (checkRole).
func StartEdge(cfg EdgeConfig) (*Edge, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("edge", cfg.EdgeID)
	if err := checkRole(cfg.Identity, mesh.RoleEdge); err != nil {
		return nil, err
	}
	node, err := mesh.Listen(cfg.MeshAddr, cfg.Identity, log.With("part", "mesh"), cfg.MeshOptions...)
	if err != nil {
		return nil, fmt.Errorf("cluster: edge mesh: %w", err)
	}
	if cfg.TLS && cfg.WebTransport == nil {
		node.Close()
		return nil, errors.New("cluster: edge TLS needs the WebTransport certificate")
	}
	ln, udp, err := listenEdge(cfg.HTTPAddr, cfg.WebTransport != nil)
	if err != nil {
		node.Close()
		return nil, fmt.Errorf("cluster: edge listen: %w", err)
	}
	url := "ws://" + ln.Addr().String() + "/"
	if cfg.TLS {
		url = "wss://" + ln.Addr().String() + "/"
	}
	pub := cfg.PublicURLs
	if len(pub) == 0 {
		pub = []string{url}
	}
	var admin *adminServer
	if cfg.AdminAddr != "" {
		if admin, err = listenAdmin(cfg.AdminAddr); err != nil {
			ln.Close()
			if udp != nil {
				udp.Close()
			}
			node.Close()
			return nil, fmt.Errorf("cluster: edge admin listener: %w", err)
		}
	}
	link := corelink.New(corelink.Config{Node: node, Cores: cfg.Cores, EdgeID: cfg.EdgeID,
		Logger: log.With("part", "link"), DropDelivery: cfg.DropDelivery, PresenceDelay: cfg.PresenceDelay})
	if cfg.Collectors == nil && cfg.Hooks != nil {
		cfg.Collectors = []prometheus.Collector{cfg.Hooks.Collector()} // the user-store and _rtmClientSign counters
	}
	srv := edge.New(edge.Config{
		EdgeID:       cfg.EdgeID,
		Backend:      link,
		Apps:         cfg.Apps,
		TokenKey:     cfg.TokenKey,
		Limits:       cfg.Limits,
		Ready:        link.Ready,
		NotReady:     link.NotReady,
		Collectors:   append([]prometheus.Collector{link.Collector()}, cfg.Collectors...),
		AdminMetrics: admin != nil,
		PublicURLs:   pub,
		Routes:       cfg.Routes,
		Logger:       log.With("part", "edge"),

		TrustedProxies: cfg.TrustedProxies,
	})
	ln = srv.WrapListener(ln) // connections per IP (edge/guard.go)
	if cfg.TLS {
		// WebSocket upgrades need HTTP/1.1; older SDKs speak TLS 1.2.
		tc := cfg.WebTransport.TLSConfig()
		tc.MinVersion = tls.VersionTLS12
		tc.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, tc)
	}
	e := &Edge{Server: srv, Node: node, URL: url, link: link, ln: ln, udp: udp, admin: admin}
	// The catalog's apps, asked of a core before any client is served
	// (appsync.go).
	if cfg.FollowCoreApps && cfg.Apps != nil && !cfg.Apps.Open() {
		every := cfg.AppPollInterval
		if every <= 0 {
			every = AppPollInterval
		}
		e.apps = startEdgeAppSync(node, cfg.EdgeID, cfg.Cores, cfg.Apps, cfg.Hooks, srv.CloseApp, every, log.With("part", "apps"))
	}
	// One listener: the REST API under /1.1/ and /1.2/ (LeanCloud's paths,
	// whose master-key calls go to the shard leader through the same core
	// link as client commands), the edge's own routes and WebSocket
	// everywhere else.
	api := rest.New(rest.Config{
		Backend:     link,
		Apps:        cfg.Apps,
		VerifyToken: srv.VerifySessionToken,
		Limits:      cfg.REST,
		Logger:      log.With("part", "rest"),
		Users:       userStore(cfg.Hooks),
	})
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	mux.Handle("/1.1/", api)
	mux.Handle("/1.2/", api)
	for pattern, h := range cfg.Pages {
		mux.Handle(pattern, h)
	}
	e.http = srv.HTTPServer(mux) // slowloris timeouts (edge/guard.go)
	if udp != nil {
		e.wt = srv.NewWebTransport(edge.WTConfig{Cert: cfg.WebTransport, Handler: mux})
		e.WTURL = "https://" + udp.LocalAddr().String() + edge.WTPath
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := e.wt.Serve(udp); err != nil {
				log.Error("webtransport serve", "err", err)
			}
		}()
	}
	if admin != nil {
		pub := srv.Handler()
		amux := http.NewServeMux()
		amux.Handle("/metrics", srv.MetricsHandler())
		amux.Handle("/healthz", pub)
		amux.Handle("/readyz", pub)
		addPprof(amux)
		admin.serve(amux, log)
		e.AdminURL = admin.url
	}
	link.Start(srv.Deliver)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http serve", "err", err)
		}
	}()
	return e, nil
}

// listenEdge listens on addr over TCP and, with wt, over UDP at the same
// host:port (HTTP/3 for WebTransport). With port 0 it retries until the
// TCP port it is given is free over UDP too.
func listenEdge(addr string, wt bool) (net.Listener, net.PacketConn, error) {
	_, port, _ := net.SplitHostPort(addr)
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", addr)
		if err != nil || !wt {
			return ln, nil, err
		}
		uaddr, err := net.ResolveUDPAddr("udp", ln.Addr().String())
		if err != nil {
			ln.Close()
			return nil, nil, err
		}
		udp, err := net.ListenUDP("udp", uaddr)
		if err == nil {
			return ln, mesh.TolerateLocalDrops(udp), nil
		}
		ln.Close()
		if port != "0" || try == 20 {
			return nil, nil, fmt.Errorf("webtransport needs udp %s as well: %w", ln.Addr(), err)
		}
	}
}

// userStore is h as a rest.UserStore, nil (not a nil pointer) without hooks.
func userStore(h *hooks.Client) rest.UserStore {
	if h == nil {
		return nil
	}
	return h
}

// Drain takes the edge out of service (edge.Server.Drain): goaway to
// every session, then up to timeout for the clients to leave, then Close.
// It reports how many connections were still open at the deadline.
func (e *Edge) Drain(timeout time.Duration) (forced int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	before := e.Server.Metrics().DrainForced.Load()
	_ = e.Server.Drain(ctx) // its error only says some were closed at the deadline
	return e.Server.Metrics().DrainForced.Load() - before, e.Close()
}

// Close stops accepting clients, says goaway to them, and stops the links.
func (e *Edge) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.Server.Close()
	err = errors.Join(err, e.http.Shutdown(ctx))
	if e.wt != nil {
		err = errors.Join(err, e.wt.Close())
		e.udp.Close()
	}
	e.apps.close()
	e.link.Close()
	e.wg.Wait()
	if e.admin != nil {
		err = errors.Join(err, e.admin.close())
	}
	return errors.Join(err, e.Node.Close())
}

// AppsGen is the generation of the catalog's apps the edge serves, ""
// while it serves its config file's (or does not follow its cores').
func (e *Edge) AppsGen() string {
	if e.apps == nil {
		return ""
	}
	return e.apps.Gen()
}

// Sentinel errors of the edge's core link (edge/corelink), as cluster
// named them before the link moved.
var (
	ErrNoLeader       = corelink.ErrNoLeader
	ErrOutcomeUnknown = corelink.ErrOutcomeUnknown
)

// checkRole refuses to start a node whose mesh certificate is not of the
// role it is started as. The role is the certificate's URI SAN, never its
// name: `relaymesh pki issue` and the dev PKI only guess it from a name
// that starts with core, edge or admin, so an edge certificate named
// gateway-1 must be issued with --role edge. Without this check an edge
// started with a core certificate logged clients in (the core's client
// rpc takes cores too) and reported ready, while every core refused its
// delivery stream (edges only) and dropped every delivery to it.
func checkRole(id *mesh.Identity, want mesh.Role) error {
	if id == nil {
		return fmt.Errorf("cluster: no mesh identity for this %s (see `relaymesh pki`)", want)
	}
	if id.Role != want {
		return fmt.Errorf("cluster: mesh certificate %q carries the role %q, not %q: this %s needs a certificate of role %s, whatever its name (relaymesh pki issue --name %s --role %s)",
			id.Name, id.Role, want, want, want, id.Name, want)
	}
	return nil
}
