package cluster

import (
	"context"
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
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
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
	DataDir  string         // replica data lives in DataDir/shard-0
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
}

// Core is a running core node.
type Core struct {
	Node    *mesh.Node
	Replica *raftstore.Node
	Service *core.Core
	// MetricsURL is http://<addr> of the metrics listener, "" without one.
	MetricsURL string
	log        *slog.Logger
	metrics    *http.Server    // nil without CoreConfig.MetricsAddr
	ctx        context.Context // ends when Close starts: stops watchLeader and a replay
	stop       context.CancelFunc
	wg         sync.WaitGroup // metrics listener, watchLeader
	barriers   sync.WaitGroup // raft barrier waits; raft answers them by Close at the latest
}

// StartCore starts a core node. Close stops it.
func StartCore(cfg CoreConfig) (*Core, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("node", cfg.NodeID)
	node, err := mesh.Listen(cfg.MeshAddr, cfg.Identity, log.With("part", "mesh"))
	if err != nil {
		return nil, fmt.Errorf("cluster: core mesh: %w", err)
	}
	dir := filepath.Join(cfg.DataDir, "shard-0")
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
	c.ctx, c.stop = context.WithCancel(context.Background())
	if cfg.MetricsAddr != "" {
		if err := c.serveMetrics(cfg.MetricsAddr); err != nil {
			svc.Close()
			rep.Close()
			node.Close()
			return nil, err
		}
	}
	// Who may call (mesh/role.go): client requests come from edges (and
	// admin tooling, and cores); only edges open delivery streams.
	node.HandleRPC(MethodClient, c.handleClient, mesh.RoleEdge, mesh.RoleAdmin, mesh.RoleCore)
	node.HandleStream(MethodDeliveries, c.handleDeliveries, mesh.RoleEdge)
	c.watchLeader()
	return c, nil
}

// leaderRecheck is how often watchLeader looks at the leader even when
// raft announced nothing (observations can be dropped).
const leaderRecheck = time.Second

// watchLeader announces every leader change this replica sees to the
// attached edges (core.Core.AnnounceLeader) until Close.
func (c *Core) watchLeader() {
	ch := make(chan raft.Observation, 4)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r := c.Replica.Raft()
	r.RegisterObserver(obs)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer r.DeregisterObserver(obs)
		tick := time.NewTicker(leaderRecheck)
		defer tick.Stop()
		var last string
		var lastTerm, replayed uint64
		for {
			addr, term := c.leaderHint()
			if addr != "" && (addr != last || term != lastTerm) {
				last, lastTerm = addr, term
				c.Service.AnnounceLeader(addr, term)
			}
			if c.Replica.IsLeader() && term != replayed && c.replayFanout() {
				replayed = term
			}
			select {
			case <-c.ctx.Done():
				return
			case <-ch:
			case <-tick.C:
			}
		}
	}()
}

// replayTimeout bounds the barrier and the replay of a new leader.
const replayTimeout = 30 * time.Second

// replayFanout runs when this replica became leader: once every earlier
// entry is applied (raft's barrier), it pushes the messages a previous
// leader may have stored without fanning out (core.Core.ReplayFanout). It
// reports whether it got through; the watcher tries again otherwise.
func (c *Core) replayFanout() bool {
	f := c.Replica.Raft().Barrier(replayTimeout)
	done := make(chan error, 1)
	c.barriers.Go(func() { done <- f.Error() })
	select {
	case err := <-done:
		if err != nil {
			c.log.Warn("fan-out replay: barrier", "err", err)
			return false
		}
	case <-c.ctx.Done():
		return false
	}
	ctx, cancel := context.WithTimeout(c.ctx, replayTimeout)
	defer cancel()
	n, err := c.Service.ReplayFanout(ctx)
	if n > 0 {
		c.log.Info("fan-out replay: pushed messages the previous leader may not have", "messages", n)
	}
	if err != nil {
		c.log.Warn("fan-out replay", "err", err)
		return false
	}
	return true
}

// leaderHint is the leader this replica knows and its raft term.
func (c *Core) leaderHint() (string, uint64) {
	addr, _ := c.Replica.Leader()
	return addr, c.Replica.Raft().CurrentTerm()
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

func (c *Core) handleClient(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("cluster: bad client request from %s: %w", peer, err)
	}
	if !c.Replica.IsLeader() {
		addr, _ := c.Replica.Leader()
		return proto.Marshal(&meshpb.ClientReply{NotLeader: true, Leader: addr})
	}
	if req.Kind == meshpb.ClientRequest_PING {
		return proto.Marshal(&meshpb.ClientReply{})
	}
	rep, err := c.Service.HandleClient(ctx, req)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(rep)
}

// handleDeliveries serves one edge's delivery stream until it ends.
func (c *Core) handleDeliveries(ctx context.Context, peer string, s *mesh.Stream) {
	defer s.Close()
	b, err := s.Recv()
	if err != nil {
		return
	}
	hello := new(meshpb.EdgeHello)
	if err := proto.Unmarshal(b, hello); err != nil || hello.EdgeId == "" {
		c.log.Warn("bad edge hello", "peer", peer, "err", err)
		return
	}
	// Who leads, first: the edge may not know yet (it just started, or
	// its stream to the old leader died with it).
	if addr, term := c.leaderHint(); addr != "" {
		b, _ := proto.Marshal(&meshpb.Delivery{Leader: &meshpb.LinkLeader{Addr: addr, Term: term}})
		if err := s.Send(b); err != nil {
			return
		}
	}
	detach := c.Service.AttachEdge(hello.EdgeId, func(d *meshpb.Delivery) error {
		b, err := proto.Marshal(d)
		if err != nil {
			return err
		}
		return s.Send(b)
	})
	defer detach()
	// Then the edge sends Presence frames; Recv fails when the stream or
	// the connection ends.
	for {
		b, err := s.Recv()
		if err != nil {
			return
		}
		p := new(meshpb.Presence)
		if err := proto.Unmarshal(b, p); err != nil {
			c.log.Warn("bad presence frame", "edge", hello.EdgeId, "err", err)
			return
		}
		c.Service.SyncPresence(hello.EdgeId, p)
	}
}

// Ready reports whether the shard has a leader and the core can serve.
func (c *Core) Ready() bool { return c.Service.Ready() }

// Close stops the core: metrics listener, service, replica, then mesh node.
func (c *Core) Close() error {
	var err error
	c.stop()
	if c.metrics != nil {
		err = c.metrics.Close()
	}
	c.wg.Wait()
	err = errors.Join(err, c.Service.Close())
	err = errors.Join(err, c.Replica.Close())
	c.barriers.Wait() // raft's shutdown answered every barrier
	return errors.Join(err, c.Node.Close())
}
