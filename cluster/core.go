package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
)

// Mesh methods between edges and cores (meshpb.MethodClient,
// meshpb.MethodDeliveries), as cluster named them.
const (
	MethodClient     = meshpb.MethodClient     // rpc: ClientRequest -> ClientReply
	MethodDeliveries = meshpb.MethodDeliveries // stream: EdgeHello, then Delivery frames core -> edge
)

// CoreConfig configures one core node hosting one shard replica.
type CoreConfig struct {
	NodeID   string         // raft server id and certificate name
	MeshAddr string         // UDP host:port of the mesh node
	DataDir  string         // replica data lives in DataDir/shard-0 (catalog.DefaultShard)
	Identity *mesh.Identity // mesh certificate
	// Peers are the shard's voters (id -> mesh address), used to bootstrap a
	// new group on first start. Empty means a single-node group of this node.
	Peers  map[string]string
	Apps   *apps.Registry
	Logger *slog.Logger
	// Integrations are the apps' word lists, hooks and offline push
	// (Config.Integrations); zero means the shipped word list only.
	Integrations Integrations
	// Limits bound conversations and logins (core.Limits; zero fields take
	// LeanCloud's defaults).
	Limits core.Limits
	// MetricsAddr, when set, is a TCP address where the core serves
	// /metrics (core.Core.WriteMetrics, Prometheus text) and /healthz (200
	// while it leads the shard, else 503). Empty serves none.
	MetricsAddr string
	// CommandVersion is core.Config.CommandVersion ([core]
	// command_version).
	CommandVersion int
	// RaftHeartbeatTimeout and RaftElectionTimeout tune how fast a dead
	// leader is replaced (raftstore.Config); zero keeps raftstore's 1 s.
	// `relaymesh core` sets 500ms (DefaultRaftHeartbeatTimeout).
	RaftHeartbeatTimeout, RaftElectionTimeout time.Duration
	// HaltBeforeFanout is core.Config.HaltBeforeFanout, a TEST HOOK.
	HaltBeforeFanout string
	// MeshOptions are passed to mesh.Listen (the lab shapes the node's
	// socket with mesh.WithPacketConn).
	MeshOptions []mesh.ListenOption
}

// Core is a running core node.
type Core struct {
	Node    *mesh.Node
	Replica *raftstore.Node
	Service *core.Core
	// MetricsURL is http://<addr> of the metrics listener, "" without one.
	MetricsURL string
	log        *slog.Logger
	serve      *core.MeshServer // the core's mesh handlers and leader watcher
	metrics    *http.Server     // nil without CoreConfig.MetricsAddr
	wg         sync.WaitGroup   // metrics listener
}

// StartCore starts a core node. Close stops it.
func StartCore(cfg CoreConfig) (*Core, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("node", cfg.NodeID)
	node, err := mesh.Listen(cfg.MeshAddr, cfg.Identity, log.With("part", "mesh"), cfg.MeshOptions...)
	if err != nil {
		return nil, fmt.Errorf("cluster: core mesh: %w", err)
	}
	dir := filepath.Join(cfg.DataDir, catalog.DefaultShard)
	var boot []raft.Server
	if !exists(dir) {
		if len(cfg.Peers) == 0 {
			boot = []raft.Server{{ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(node.Addr())}}
		} else {
			for id, addr := range cfg.Peers {
				boot = append(boot, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
			}
		}
	}
	trans := raft.NewNetworkTransport(node.RaftLayer(), 8, 10*time.Second, io.Discard)
	rep, err := raftstore.Open(raftstore.Config{
		NodeID:    cfg.NodeID,
		Dir:       dir,
		Transport: trans,
		Bootstrap: boot,
		SM:        core.NewStateMachine(),
		Logger:    log.With("part", "raft"),

		HeartbeatTimeout: cfg.RaftHeartbeatTimeout,
		ElectionTimeout:  cfg.RaftElectionTimeout,
		// The lease must not exceed the heartbeat timeout (raft refuses it).
		LeaderLeaseTimeout: min(cfg.RaftHeartbeatTimeout, 500*time.Millisecond),
	})
	if err != nil {
		node.Close()
		return nil, fmt.Errorf("cluster: open shard: %w", err)
	}
	integ := cfg.Integrations
	if integ.Push.Queue.Logger == nil {
		integ.Push.Queue.Logger = log.With("part", "push")
	}
	svc := core.New(core.Config{Replica: rep, Apps: cfg.Apps, Logger: log.With("part", "core"), Limits: cfg.Limits,
		Words: integ.Words, Hooks: integ.Hooks, Push: integ.Push, SysWebhook: integ.SysWebhook,
		CommandVersion: cfg.CommandVersion, HaltBeforeFanout: cfg.HaltBeforeFanout, LeaderTerm: rep.Raft().CurrentTerm})
	c := &Core{Node: node, Replica: rep, Service: svc, log: log}
	if cfg.MetricsAddr != "" {
		if err := c.serveMetrics(cfg.MetricsAddr); err != nil {
			svc.Close()
			rep.Close()
			node.Close()
			return nil, err
		}
	}
	c.serve = core.ServeMesh(svc, node, rep, log) // core/mesh.go
	return c, nil
}

// serveMetrics starts the core's HTTP listener for /metrics and /healthz.
func (c *Core) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: core metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := c.Service.WriteMetrics(w); err != nil {
			c.log.Debug("metrics", "err", err)
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !c.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	c.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	c.MetricsURL = "http://" + ln.Addr().String()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := c.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("metrics serve", "err", err)
		}
	}()
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Ready reports whether the shard has a leader and the core can serve.
func (c *Core) Ready() bool { return c.Service.Ready() }

// Close stops the core: leader watcher, metrics listener, service,
// replica, then mesh node.
func (c *Core) Close() error {
	var err error
	c.serve.Stop()
	if c.metrics != nil {
		err = c.metrics.Close()
	}
	c.wg.Wait()
	err = errors.Join(err, c.Service.Close())
	err = errors.Join(err, c.Replica.Close())
	c.serve.Wait() // raft's shutdown answered every barrier
	return errors.Join(err, c.Node.Close())
}
