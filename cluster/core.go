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
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/relay"
)

// Mesh methods between edges and cores (meshpb.MethodClient,
// meshpb.MethodDeliveries), as cluster named them.
const (
	MethodClient     = meshpb.MethodClient     // rpc: ClientRequest -> ClientReply
	MethodDeliveries = meshpb.MethodDeliveries // stream: EdgeHello, then Delivery frames core -> edge
)

// CoreConfig configures one core node hosting one shard replica.
type CoreConfig struct {
	NodeID   string // raft server id and certificate name
	MeshAddr string // UDP host:port of the mesh node
	// DataDir holds the replicas: shard 0 in DataDir/shard-0
	// (catalog.DefaultShard, as before shards existed), shard k > 0 in
	// DataDir/shards/<region>-<k>.
	DataDir string
	// Region is the region's number (1 when zero) and Shards the number
	// of shards of the region (1 when zero); the node hosts a replica of
	// each (issue 9 step 2: every core of a region hosts every shard).
	// The shard count of a region only grows: a core refuses to start
	// with fewer shards than its data directory holds.
	Region uint8
	Shards int
	// Remote are the other regions (number and cores' mesh addresses):
	// requests about conversations homed there go to them, and pushes of
	// messages committed here go to each once (core.Regions).
	Remote   []core.RemoteRegion
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
	// MetricsAddr, when set, is a TCP address where the core serves its
	// admin listener: /metrics (Core.Gatherer, Prometheus text),
	// /healthz (200 while it leads the shard, else 503), /readyz
	// (ready.go) and /debug/pprof/. Empty serves none.
	MetricsAddr string
	// CommandVersion is core.Config.CommandVersion ([core]
	// command_version).
	CommandVersion int
	// RaftHeartbeatTimeout and RaftElectionTimeout tune how fast a dead
	// leader is replaced (raftstore.Config); zero keeps raftstore's 1 s.
	// `relaymesh core` sets 500ms (DefaultRaftHeartbeatTimeout).
	RaftHeartbeatTimeout, RaftElectionTimeout time.Duration
	// CompactionShare is raftstore.Config.CompactionShare for the shards'
	// state DBs ([core] compaction_share; 0: the default).
	CompactionShare float64
	// HaltBeforeFanout is core.Config.HaltBeforeFanout, a TEST HOOK.
	HaltBeforeFanout string
	// LoginAsksEveryShard makes the router ignore the catalog's member
	// index: a login asks every shard, as before the index (a benchmark
	// knob: BenchmarkLoginFanIn measures both).
	LoginAsksEveryShard bool
	// MeshOptions are passed to mesh.Listen (the lab shapes the node's
	// socket with mesh.WithPacketConn).
	MeshOptions []mesh.ListenOption
	// ConfigApps are the config file's [[apps]] (Config.ConfigApps), and
	// FollowCatalogApps makes the core declare them to the catalog and
	// serve the catalog's apps from then on (appsync.go); Apps must not be
	// open. `relaymesh core` sets both, `relaymesh dev` neither.
	ConfigApps        []meshpb.AppEntry
	FollowCatalogApps bool
}

// Core is a running core node.
type Core struct {
	Node *mesh.Node
	// Replica and Service are the system shard's (shard 0); Replicas and
	// Services are every shard's, by number; Router routes between them.
	Replica  *raftstore.Node
	Service  *core.Core
	Replicas []*raftstore.Node
	Services []*core.Core
	Router   *core.Router
	// Catalog is the node's replica of the catalog (cluster/catalog.go):
	// local reads, writes through its leader.
	Catalog *catalog.Store
	catalog *catalogGroup
	pumps   []*core.MemberPump // one per shard: the member index
	relay   *relay.Relay       // shared by Services
	// sharedLogs is the node's raft log DB (DATA/raftlog) that its
	// replicas without a log of their own keep their logs in; nil until
	// one does.
	sharedLogs *raftstore.LogStore
	// stateCache is the block cache every state DB of the node shares
	// (the shards' and the catalog's); dropped after they closed.
	stateCache *pebble.Cache
	// Regions is the node's link to the other regions; nil without
	// CoreConfig.Remote.
	Regions *core.Regions
	quit    chan struct{} // closed by Close
	// MetricsURL is http://<addr> of the metrics listener, "" without one.
	MetricsURL string
	log        *slog.Logger
	serve      *core.MeshServer // the core's mesh handlers and leader watcher
	ops        *opsServer       // `relaymesh admin`'s rpc (admin.go)
	metrics    *http.Server     // nil without CoreConfig.MetricsAddr
	reg        *prometheus.Registry
	wg         sync.WaitGroup // metrics listener
	// progress is each shard's catch-up gate and meshUp is set once the
	// mesh serves the core's methods (/readyz, ready.go).
	progress []*catchUp
	// catalogProgress is the catalog replica's catch-up gate.
	catalogProgress *catchUp
	meshUp          atomic.Bool
	// configApps and limits are what app-list reports (adminapp.go);
	// appSync keeps Apps on the catalog (appsync.go), nil without
	// FollowCatalogApps.
	configApps []meshpb.AppEntry
	limits     core.Limits
	appSync    *appSync
}

// StartCore starts a core node. Close stops it.
func StartCore(cfg CoreConfig) (*Core, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("node", cfg.NodeID)
	if err := checkRole(cfg.Identity, mesh.RoleCore); err != nil {
		return nil, err
	}
	node, err := mesh.Listen(cfg.MeshAddr, cfg.Identity, log.With("part", "mesh"), cfg.MeshOptions...)
	if err != nil {
		return nil, fmt.Errorf("cluster: core mesh: %w", err)
	}
	region, shards := cfg.Region, cfg.Shards
	if region == 0 {
		region = catalog.LegacyShard.Region
	}
	if shards <= 0 {
		shards = 1
	}
	if have := existingShards(cfg.DataDir, region); have > shards {
		node.Close()
		return nil, fmt.Errorf("cluster: %s holds %d shards of region %d, configured %d: a region's shards are never removed", cfg.DataDir, have, region, shards)
	}
	integ := cfg.Integrations
	follow := cfg.FollowCatalogApps && cfg.Apps != nil && !cfg.Apps.Open()
	if follow && integ.Hooks == nil { // the catalog may give an app hooks
		integ.Hooks = hooks.New(hooks.Config{})
	}
	if integ.Push.Queue.Logger == nil {
		integ.Push.Queue.Logger = log.With("part", "push")
	}
	c := &Core{Node: node, log: log, quit: make(chan struct{}), relay: relay.New(relay.Config{Logger: log.With("part", "relay")}),
		configApps: cfg.ConfigApps, limits: cfg.Limits, stateCache: raftstore.NewStateCache()}
	fail := func(err error) (*Core, error) {
		if c.Regions != nil {
			c.Regions.Close()
		}
		c.closeShards()
		node.Close() // first: its handlers read the catalog
		c.appSync.close()
		if c.catalog != nil {
			c.catalog.close()
		}
		c.stateCache.Unref()
		return nil, err
	}
	// The catalog's replica (cluster/catalog.go).
	self := cfg.Peers[cfg.NodeID]
	if self == "" {
		self = node.Addr()
	}
	local := []string{self}
	if len(cfg.Peers) > 0 {
		local = local[:0]
		for _, addr := range cfg.Peers {
			local = append(local, addr)
		}
		sort.Strings(local)
	}
	var remote []remoteCores
	for _, r := range cfg.Remote {
		if len(r.Cores) > 0 {
			remote = append(remote, remoteCores{number: r.Number, cores: r.Cores})
		}
	}
	raftTimes := func(rc *raftstore.Config) {
		rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.RaftHeartbeatTimeout, cfg.RaftElectionTimeout
		rc.LeaderLeaseTimeout = min(cfg.RaftHeartbeatTimeout, 500*time.Millisecond)
		rc.StateCache = c.stateCache
	}
	plan := planCatalog(region, shards, local, remote)
	if follow { // the config file's apps, for the catalog to keep if it has none of that id
		if plan.topo.Apps, err = catalogSpecs(cfg.ConfigApps); err != nil {
			return fail(fmt.Errorf("cluster: apps: %w", err))
		}
	}
	if c.catalog, err = openCatalog(node, cfg.DataDir, self, plan, raftTimes, log.With("part", "catalog")); err != nil {
		return fail(err)
	}
	if follow { // appsync.go
		c.appSync = startAppSync(c.catalog, cfg.Apps, integ.Hooks, log.With("part", "apps"))
		node.HandleRPC(meshpb.MethodApps, c.appSync.handle, mesh.RoleEdge, mesh.RoleCore)
	}
	c.catalogProgress = &catchUp{start: c.catalog.rep.Raft().LastIndex()}
	c.Catalog = c.catalog.store
	if len(cfg.Remote) > 0 {
		g, err := core.NewRegions(region, node, c.relay, cfg.Remote, log.With("part", "regions"))
		if err != nil {
			return fail(fmt.Errorf("cluster: %w", err))
		}
		c.Regions = g
	}
	var rshards []core.RouterShard
	for n := 0; n < shards; n++ {
		dir, group := shardDir(cfg.DataDir, region, n)
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
		trans := raft.NewNetworkTransport(node.RaftLayerFor(group), 8, 10*time.Second, io.Discard)
		rlog := log.With("part", "raft")
		if n > 0 {
			rlog = rlog.With("shard", n)
		}
		// The raft log: in the node's shared log DB (one WAL, one fsync
		// for the groups that commit together; issue 9 step 2b), unless
		// the replica has its own from before (dir/raft).
		var logs *raftstore.LogStore
		if !exists(filepath.Join(dir, "raft")) {
			if c.sharedLogs == nil {
				if c.sharedLogs, err = raftstore.OpenLogStore(filepath.Join(cfg.DataDir, "raftlog"), nil); err != nil {
					trans.Close()
					return fail(fmt.Errorf("cluster: shared raft log: %w", err))
				}
			}
			logs = c.sharedLogs.Group(fmt.Sprintf("shard-%d-%d", region, n))
		}
		fsm := core.NewStateMachine()
		rep, err := raftstore.Open(raftstore.Config{
			NodeID:    cfg.NodeID,
			Dir:       dir,
			LogStore:  logs,
			Transport: trans,
			Bootstrap: boot,
			SM:        fsm,
			Logger:    rlog,

			HeartbeatTimeout: cfg.RaftHeartbeatTimeout,
			ElectionTimeout:  cfg.RaftElectionTimeout,
			// The lease must not exceed the heartbeat timeout (raft refuses it).
			LeaderLeaseTimeout: min(cfg.RaftHeartbeatTimeout, 500*time.Millisecond),
			StateCache:         c.stateCache,
			CompactionShare:    cfg.CompactionShare,
		})
		if err != nil {
			trans.Close()
			return fail(fmt.Errorf("cluster: open shard %d: %w", n, err))
		}
		var system *core.Core
		if n > 0 {
			system = c.Services[0]
		}
		clog := log.With("part", "core")
		if n > 0 {
			clog = clog.With("shard", n)
		}
		svc := core.New(core.Config{Replica: rep, Apps: cfg.Apps, Logger: clog, Limits: cfg.Limits,
			Words: integ.Words, Hooks: integ.Hooks, Push: integ.Push, SysWebhook: integ.SysWebhook,
			CommandVersion: cfg.CommandVersion, HaltBeforeFanout: cfg.HaltBeforeFanout, LeaderTerm: rep.Raft().CurrentTerm,
			Home: catalog.ConvID{Region: region, Shard: uint16(n)}, Relay: c.relay, System: system, Remote: c.Regions,
			Catalog: c.Catalog})
		c.Replicas, c.Services = append(c.Replicas, rep), append(c.Services, svc)
		// The entries before the applied index were applied by an earlier
		// process: any of them may have changed memberships.
		fsm.FloorMemberIndex(rep.AppliedIndex())
		c.pumps = append(c.pumps, core.NewMemberPump(catalog.ShardRef{Region: region, Shard: uint16(n)}, rep, fsm, c.Catalog, log.With("part", "members", "shard", n)))
		c.progress = append(c.progress, &catchUp{start: rep.Raft().LastIndex()})
		rshards = append(rshards, core.RouterShard{Core: svc, Leader: func() string { a, _ := rep.Leader(); return a },
			MemberIndex: fsm.MemberIndex})
	}
	c.Replica, c.Service = c.Replicas[0], c.Services[0]
	// This region's other cores: the shard voters but this node.
	var others []string
	for id, addr := range cfg.Peers {
		if id != cfg.NodeID {
			others = append(others, addr)
		}
	}
	sort.Strings(others)
	c.Regions.SetLocalCores(others)
	var announce func(ctx context.Context, edgeID string, ps *meshpb.PresenceSession)
	if len(others) > 0 {
		announce = core.Announce(node, others, time.Second)
	}
	index := c.Catalog
	if cfg.LoginAsksEveryShard {
		index = nil
	}
	rt, err := core.NewRouter(core.RouterConfig{Region: region, Shards: rshards, Self: node.Addr(),
		Forward: core.Forward(node), Remote: c.Regions, Announce: announce, Catalog: index, Logger: log.With("part", "router")})
	if err != nil {
		return fail(err)
	}
	c.Router = rt
	c.reg = metric.NewRegistry(c.Collector(), mesh.Collector())
	if cfg.MetricsAddr != "" {
		if err := c.serveMetrics(cfg.MetricsAddr); err != nil {
			return fail(err)
		}
	}
	c.serveOps(cfg)                                       // admin.go
	c.serve = core.ServeShards(rt, node, c.Replicas, log) // core/mesh.go
	c.meshUp.Store(true)
	return c, nil
}

// shardDir is where shard n of region keeps its replica, and the name of
// its raft group on the mesh (mesh.Node.RaftLayerFor).
func shardDir(data string, region uint8, n int) (dir, group string) {
	if n == 0 { // the layout and raft streams of before shards existed
		return filepath.Join(data, catalog.DefaultShard), ""
	}
	name := fmt.Sprintf("%d-%d", region, n)
	return filepath.Join(data, "shards", name), "shard-" + name
}

// existingShards is how many shards of region data holds replicas of
// (1 + the highest shard number found).
func existingShards(data string, region uint8) int {
	have := 0
	if exists(filepath.Join(data, catalog.DefaultShard)) {
		have = 1
	}
	ents, _ := os.ReadDir(filepath.Join(data, "shards"))
	for _, e := range ents {
		var r, n int
		if _, err := fmt.Sscanf(e.Name(), "%d-%d", &r, &n); err == nil && r == int(region) && n+1 > have {
			have = n + 1
		}
	}
	return have
}

// closeShards closes the services, then the replicas, then the relay they
// shared.
func (c *Core) closeShards() error {
	var err error
	for _, p := range c.pumps {
		p.Stop()
	}
	c.pumps = nil
	for i := len(c.Services) - 1; i >= 0; i-- {
		err = errors.Join(err, c.Services[i].Close())
	}
	for _, rep := range c.Replicas {
		err = errors.Join(err, rep.Close())
	}
	if c.sharedLogs != nil {
		err = errors.Join(err, c.sharedLogs.Close())
	}
	c.relay.Close()
	return err
}

// Failed is closed when any of the node's shard replicas stops after a
// fatal apply error; Err then says which and why. It is never closed once
// the core is closed.
func (c *Core) Failed() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.quit)}}
		for _, rep := range append(slices.Clone(c.Replicas), c.catalog.rep) {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(rep.Failed())})
		}
		if i, _, _ := reflect.Select(cases); i > 0 {
			close(ch)
		}
	}()
	return ch
}

// Err is the error of the first shard replica that stopped, nil if none.
func (c *Core) Err() error {
	for n, rep := range c.Replicas {
		if err := rep.Err(); err != nil {
			return fmt.Errorf("shard %d: %w", n, err)
		}
	}
	if err := c.catalog.rep.Err(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// Collector returns the collector of the core node's series: its shard
// cores' (summed, core.Collector), the regions', each shard's raft state
// (raftmetrics.go), the router's and the catalog's.
func (c *Core) Collector() prometheus.Collector {
	return metric.Collectors{core.Collector(c.Services), c.Regions.Collector(), c.raftCollector(), c.pebbleCollector(), c.Router.Collector(), c.catalogCollector()}
}

// Gatherer is the core's metrics registry (Collector, the mesh's, the Go
// runtime's and the process's): what its admin listener serves.
func (c *Core) Gatherer() prometheus.Gatherer { return c.reg }

// WriteMetrics writes what the admin listener's /metrics serves, in the
// Prometheus text format (tests and tools read it in process).
func (c *Core) WriteMetrics(w io.Writer) error { return metric.WriteText(w, c.reg) }

var (
	descCatalogLeader  = metric.Gauge("relaymesh_catalog_leader", "1 while this core's catalog replica leads the catalog's raft group.")
	descCatalogReady   = metric.Gauge("relaymesh_catalog_ready", "1 once the catalog has a leader this core knows and its declared topology is in.")
	descCatalogApplied = metric.Gauge("relaymesh_catalog_applied_index", "Raft index of the last catalog entry this core's replica applied.")
	descCatalogVoters  = metric.Gauge("relaymesh_catalog_voters", "Voters in the catalog's raft configuration as this core's replica holds it.")
	descCatalogPlanned = metric.Gauge("relaymesh_catalog_voters_planned", "Voters this core's configuration plans for the catalog (its leader moves the voters there).")
	descCatalogChanges = metric.Counter("relaymesh_catalog_voter_changes_total", "Changes of the catalog's voters this core made as its leader: promote (a planned non-voter), demote (a voter not planned), transfer (leadership handed over before this core's own demotion).", "change")
	descMemberSets     = metric.Counter("relaymesh_core_member_sets_total", "Member index updates (catalog MemberSet) this core's shard leaders committed.")
	descMemberFailures = metric.Counter("relaymesh_core_member_set_failures_total", "Member index update rounds that failed and were retried (catalog unreachable, shard unknown yet).")
)

// catalogCollector returns the collector of the catalog replica's and
// the member pumps' series.
func (c *Core) catalogCollector() prometheus.Collector {
	descs := []metric.Desc{descCatalogLeader, descCatalogReady, descCatalogApplied, descCatalogVoters, descCatalogPlanned, descCatalogChanges, descMemberSets, descMemberFailures}
	return metric.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		var sets, failures uint64
		for _, p := range c.pumps {
			sets += p.Sets()
			failures += p.Failures()
		}
		s := metric.Chan(ch)
		s.Add(descCatalogLeader, b2f(c.catalog.rep.IsLeader()))
		s.Add(descCatalogReady, b2f(c.catalog.Ready()))
		s.Add(descCatalogApplied, float64(c.catalog.rep.AppliedIndex()))
		voters := 0
		if f := c.catalog.rep.Raft().GetConfiguration(); f.Error() == nil {
			for _, sv := range f.Configuration().Servers {
				if sv.Suffrage == raft.Voter {
					voters++
				}
			}
		}
		s.Add(descCatalogVoters, float64(voters))
		s.Add(descCatalogPlanned, float64(len(c.catalog.voters)))
		for _, op := range []voterOp{voterPromote, voterDemote, voterTransfer} {
			s.Add(descCatalogChanges, float64(c.catalog.changes[op].Load()), op.String())
		}
		s.Add(descMemberSets, float64(sets))
		s.Add(descMemberFailures, float64(failures))
	})
}

// serveMetrics starts the core's admin HTTP listener: /metrics, /healthz,
// /readyz (ready.go) and /debug/pprof/.
func (c *Core) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: core metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler(c.reg, c.log))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !c.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", edge.ReadyHandler(c.NotReady))
	addPprof(mux)
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
// It does not wait for the catalog: a login falls back to every shard
// while the member index cannot be trusted (CatalogReady).
func (c *Core) Ready() bool { return c.Router.Ready() }

// CatalogReady reports whether the catalog's group has a leader this
// node knows and the node's declared topology is in it.
func (c *Core) CatalogReady() bool { return c.catalog.Ready() }

// CatalogReplica is the node's replica of the catalog's group.
func (c *Core) CatalogReplica() *raftstore.Node { return c.catalog.rep }

// handOffTimeout bounds a core's hand-off of its leaderships on Close
// (each transfer takes about an election timeout; they run at once).
const handOffTimeout = 5 * time.Second

// HandOff moves the leadership of every shard this core leads, and the
// catalog's, to another voter, all at once, and returns once they moved
// or timeout passed. It returns how many moved; failures are logged (a
// shard that keeps its leader here loses it on close, as after a crash).
func (c *Core) HandOff(timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	reps := slices.Clone(c.Replicas)
	names := make([]string, len(reps))
	for i := range reps {
		names[i] = fmt.Sprintf("shard %d", i)
	}
	if c.catalog != nil {
		reps, names = append(reps, c.catalog.rep), append(names, "catalog")
	}
	var moved atomic.Int64
	var wg sync.WaitGroup
	for i, rep := range reps {
		if !rep.IsLeader() {
			continue
		}
		wg.Go(func() {
			ok, err := rep.HandOff(ctx)
			if err != nil {
				c.log.Warn("leadership hand-off failed", "group", names[i], "err", err)
				return
			}
			if ok {
				moved.Add(1)
				_, to := rep.Leader()
				c.log.Info("leadership handed off", "group", names[i], "to", to)
			}
		})
	}
	wg.Wait()
	return int(moved.Load())
}

// Close stops the core: leader watcher, metrics listener, member pumps,
// services, shard replicas, mesh node, then the catalog's replica.
func (c *Core) Close() error {
	var err error
	// Leadership first, while this core still serves: a shard it leads
	// gets a new leader before it goes, so its clients' sends move over
	// at once instead of after an election timeout.
	c.HandOff(handOffTimeout)
	close(c.quit)
	c.ops.stop()
	c.serve.Stop()
	if c.metrics != nil {
		err = c.metrics.Close()
	}
	c.wg.Wait()
	if c.Regions != nil {
		c.Regions.Close()
	}
	err = errors.Join(err, c.closeShards())
	c.serve.Wait() // raft's shutdown answered every barrier
	err = errors.Join(err, c.Node.Close())
	c.appSync.close()
	// The catalog last: the node's handlers (the router's logins, the
	// catalog's rpc) read it until the node has closed.
	err = errors.Join(err, c.catalog.close())
	c.stateCache.Unref() // every state DB on it is closed
	return err
}
