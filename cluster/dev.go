package cluster

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/rest"
	"github.com/relaymesh/relaymesh/web"
)

// DevConfig configures `relaymesh dev`: one region in one process.
type DevConfig struct {
	DataDir string // default ./data
	Addr    string // HTTP/WebSocket listen address, default 127.0.0.1:8080
	// MeshAddr is the core's UDP mesh address. Default: the HTTP host with
	// the HTTP port + 1 (raft remembers it, so it must be stable).
	MeshAddr string
	Apps     *apps.Registry // default: any appId, created on first use
	Limits   edge.Limits
	REST     rest.Limits
	// TrustedProxies are EdgeConfig.TrustedProxies.
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger
	// Integrations are the apps' word lists, hooks and offline push
	// (Config.Integrations); zero means the shipped word list only.
	Integrations Integrations
	// DropDelivery is EdgeConfig.DropDelivery (a test hook; 0 = off).
	DropDelivery int64
	// CoreLimits is CoreConfig.Limits.
	CoreLimits core.Limits
	// Shards is CoreConfig.Shards: the raft groups of the dev region (1
	// when zero).
	Shards int
	// LoginAsksEveryShard is CoreConfig.LoginAsksEveryShard (a benchmark
	// knob).
	LoginAsksEveryShard bool
	// MeshOverQUIC makes the core and the edge talk over QUIC on loopback,
	// as before stop 23, instead of in memory (mesh.InProcess: they share
	// the process). A benchmark knob: BENCHMARKS.md compares the two.
	MeshOverQUIC bool
	// NoWebTransport turns off the edge's WebTransport listener (on by
	// default, with a self-signed certificate kept in DataDir/wt).
	NoWebTransport bool
	// TLS serves the HTTP/WebSocket port over TLS too (wss://), with the
	// self-signed WebTransport certificate (EdgeConfig.TLS).
	TLS bool
	// AdminAddr, when set, is the TCP address of the admin listener
	// (admin.go): /metrics (the edge's and the core's series), /healthz,
	// /readyz (the core's checks and the edge's) and /debug/pprof/. Port 0
	// picks one (Dev.AdminURL). Keep it on loopback.
	AdminAddr string
}

// devReadyWait bounds how long StartDev waits for the shards' leaders.
const devReadyWait = 15 * time.Second

// Dev is a running dev region.
type Dev struct {
	Core *Core
	Edge *Edge
	// WTCert is the edge's self-signed WebTransport certificate (nil
	// with NoWebTransport).
	WTCert *edge.WTCert
	// AdminURL is http://host:port of the admin listener, "" without
	// DevConfig.AdminAddr.
	AdminURL string
	admin    *adminServer
}

// StartDev starts a core and an edge in this process; they talk over QUIC on
// loopback, as separate processes would.
func StartDev(cfg DevConfig) (*Dev, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.Apps == nil {
		cfg.Apps = apps.NewDev()
	}
	if cfg.MeshAddr == "" {
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("cluster: --addr %q: %w", cfg.Addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("cluster: --addr %q needs a fixed port (the mesh uses port+1)", cfg.Addr)
		}
		cfg.MeshAddr = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	// The admin port first: a taken port fails before anything is written.
	var admin *adminServer
	if cfg.AdminAddr != "" {
		a, err := listenAdmin(cfg.AdminAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: dev admin listener: %w", err)
		}
		admin = a
	}
	fail := func(err error) (*Dev, error) {
		if admin != nil {
			admin.ln.Close()
		}
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fail(fmt.Errorf("cluster: data dir: %w", err))
	}
	ids, err := mesh.EnsureDevPKI(filepath.Join(cfg.DataDir, "pki"), "core-1", "edge-1")
	if err != nil {
		return fail(fmt.Errorf("cluster: pki: %w", err))
	}
	key, err := LoadOrCreateKey(filepath.Join(cfg.DataDir, "session-token.key"))
	if err != nil {
		return fail(err)
	}
	var wt *edge.WTCert
	if !cfg.NoWebTransport {
		if wt, err = edge.DevWTCert(filepath.Join(cfg.DataDir, "wt")); err != nil {
			return fail(fmt.Errorf("cluster: webtransport certificate: %w", err))
		}
	}
	c, err := StartCore(CoreConfig{
		NodeID:   "core-1",
		MeshAddr: cfg.MeshAddr,
		DataDir:  filepath.Join(cfg.DataDir, "core-1"),
		Identity: ids["core-1"],
		Apps:     cfg.Apps,
		Logger:   cfg.Logger,
		Limits:   cfg.CoreLimits,
		Shards:   cfg.Shards,

		LoginAsksEveryShard: cfg.LoginAsksEveryShard,

		Integrations: cfg.Integrations,
		MeshOptions:  devMeshOptions(cfg),
	})
	if err != nil {
		return fail(err)
	}
	// Serve once every shard has elected its leader (a second or so each,
	// in parallel), so the first requests find them.
	// The catalog too: a login uses its member index from the start.
	for deadline := time.Now().Add(devReadyWait); !(c.Ready() && c.CatalogReady()) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	e, err := StartEdge(EdgeConfig{
		EdgeID:   "edge-1",
		HTTPAddr: cfg.Addr,
		MeshAddr: "127.0.0.1:0",
		Identity: ids["edge-1"],
		Cores:    []string{c.Node.Addr()},
		TokenKey: key,
		Apps:     cfg.Apps,
		Limits:   cfg.Limits,
		REST:     cfg.REST,
		Logger:   cfg.Logger,

		TrustedProxies: cfg.TrustedProxies,

		Collectors:   []prometheus.Collector{c.Collector()}, // the core's counters on the edge's /metrics
		DropDelivery: cfg.DropDelivery,

		Hooks: cfg.Integrations.Hooks, // app users (issue 8): the core's client, one set of counters

		WebTransport: wt,
		TLS:          cfg.TLS,

		Pages: map[string]http.Handler{"/demo": web.Handler(), web.Path: web.Handler()}, // the chat demo

		MeshOptions: devMeshOptions(cfg),
	})
	if err != nil {
		c.Close()
		return fail(err)
	}
	d := &Dev{Core: c, Edge: e, WTCert: wt, admin: admin}
	if admin != nil {
		mux := http.NewServeMux()
		pub := e.Server.Handler()
		mux.Handle("/metrics", e.Server.MetricsHandler()) // the edge's series and the core's (Collectors)
		mux.Handle("/healthz", pub)
		mux.HandleFunc("/readyz", edge.ReadyHandler(func() []string { return append(c.NotReady(), e.link.NotReady()...) }))
		addPprof(mux)
		admin.serve(mux, cfg.Logger)
		d.AdminURL = admin.url
	}
	return d, nil
}

// DevExposureWarning returns the warning `relaymesh dev` prints to stderr
// when addr is reachable from other machines ("" when it is loopback
// only). open says whether every appId is served without keys, which
// makes the exposure worse: anyone who reaches the port is every app's
// master.
func DevExposureWarning(addr string, open bool) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return ""
	}
	what := "with the apps of --config"
	if open {
		what = "with OPEN apps: any appId, no keys, no signatures, the REST API's master key is any string"
	}
	bar := strings.Repeat("!", 78)
	return fmt.Sprintf("%s\n!! WARNING: relaymesh dev is listening on %s, reachable from other machines,\n"+
		"!! %s.\n!! relaymesh dev is for a laptop: bind --addr 127.0.0.1:PORT, or run\n"+
		"!! `relaymesh core` and `relaymesh edge` with a config file (docs/OPERATIONS.md).\n%s\n", bar, addr, what, bar)
}

// Close stops the admin listener, the edge, then the core.
func (d *Dev) Close() error {
	var err error
	if d.admin != nil {
		err = d.admin.close()
	}
	return errors.Join(err, d.Edge.Close(), d.Core.Close())
}

// LoadOrCreateKey reads a 32-byte secret from path, creating it on first use.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cluster: read key: %w", err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("cluster: write key: %w", err)
	}
	return b, nil
}

// devMeshOptions: the dev core and edge share the process, so their mesh
// calls and streams run in memory (mesh.InProcess), unless
// cfg.MeshOverQUIC.
func devMeshOptions(cfg DevConfig) []mesh.ListenOption {
	if cfg.MeshOverQUIC {
		return nil
	}
	return []mesh.ListenOption{mesh.InProcess()}
}
