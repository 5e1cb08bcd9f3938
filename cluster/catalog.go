package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
)

// The catalog's raft group (issue 9 step 3b; docs/MESH.md "Catalog").
// Every core runs a replica in DATA/catalog, its raft streams on the mesh
// as group "catalog". Servers are named by their mesh address (a core
// does not know the ids of other regions' cores, only their addresses).
//
// Voters (at most five): with one region, its cores ([core] peers, or
// this core alone; the five lowest addresses of a bigger region); with
// two ([[core.remote_regions]]), the two lowest-addressed cores of each;
// with three or more, the lowest-addressed core of each of the first five
// regions by number. Every other core is a non-voter the leader adds, so
// every core reads the catalog locally. Each core
// bootstraps the group on its first start with the same voters; later
// the leader moves the voters to its configuration's plan when the
// configuration changes (a region added: catalogvoters.go). Each core
// applies the declared topology (catalogTopology) with catalog.Bootstrap
// until it is in, idempotently.
//
// Writes from a core that does not lead go to the leader over the mesh
// (meshpb.MethodCatalog); reads are the local replica's and may lag.

// CatalogGroup is the raft group's name on the mesh.
const CatalogGroup = "catalog"

// catalogWait bounds one forwarded write; catalogNoLeader is how long a
// write waits for the group to have a leader.
const (
	catalogWait     = 10 * time.Second
	catalogNoLeader = 1500 * time.Millisecond
)

// catalogGroup is a core's replica of the catalog.
type catalogGroup struct {
	rep    *raftstore.Node
	node   *mesh.Node
	self   string   // this core's address, its server id
	all    []string // every core of every region (addresses)
	voters []string // the plan's voters (addresses)
	store  *catalog.Store
	log    *slog.Logger
	booted atomic.Bool
	// changes counts the leader's loop's changes (catalogvoters.go).
	changes voterChanges
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// catalogNodeID is the catalog's node id of the core at mesh address addr.
func catalogNodeID(addr string) string {
	var b strings.Builder
	b.WriteString("core-")
	for _, r := range addr {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		case r == '[' || r == ']':
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > catalog.MaxNameLen {
		s = s[:catalog.MaxNameLen]
	}
	return s
}

// catalogPlan is who votes in the catalog and what each core declares.
type catalogPlan struct {
	voters []string // addresses
	all    []string
	topo   catalog.Topology
}

// planCatalog works out the catalog's voters and this region's declared
// topology from a core's configuration. local are this region's cores'
// addresses (sorted).
func planCatalog(region uint8, shards int, local []string, remote []remoteCores) catalogPlan {
	var p catalogPlan
	local = slices.Sorted(slices.Values(local))
	p.all = append(p.all, local...)
	top := region
	byNum := map[uint8][]string{region: local}
	for _, r := range remote {
		cs := slices.Clone(r.cores)
		slices.Sort(cs)
		p.all = append(p.all, cs...)
		byNum[r.number] = cs
		top = max(top, r.number)
	}
	// Voters: the first catalogVoters regions by number, each its
	// catalogVoters/regions lowest-addressed cores (at least one): with one
	// region up to five of its cores, with two two each (a core lost is
	// survived), with three or more one each.
	nums := slices.Sorted(maps.Keys(byNum))
	voting := nums[:min(len(nums), catalogVoters)]
	per := max(1, catalogVoters/len(voting))
	for _, n := range voting {
		cs := byNum[n]
		p.voters = append(p.voters, cs[:min(len(cs), per)]...)
	}
	slices.Sort(p.voters)
	p.voters = slices.Compact(p.voters)
	slices.Sort(p.all)
	p.all = slices.Compact(p.all)
	// Regions 1..top in number order, so that the catalog numbers them as
	// the configuration does (it numbers regions in the order they join);
	// a number no core declares is a region without nodes.
	for n := 1; n <= int(top); n++ {
		spec := catalog.RegionSpec{Name: fmt.Sprintf("region-%d", n)}
		for _, addr := range byNum[uint8(n)] {
			spec.Nodes = append(spec.Nodes, catalog.NodeSpec{ID: catalogNodeID(addr), Role: catalog.RoleCore, Mesh: addr})
		}
		if uint8(n) == region { // a region declares its own shards
			var voters []string
			for _, addr := range local[:min(len(local), catalog.MaxVoters)] {
				voters = append(voters, catalogNodeID(addr))
			}
			for range shards {
				spec.Shards = append(spec.Shards, catalog.ShardSpec{Voters: voters, Open: true})
			}
		}
		p.topo.Regions = append(p.topo.Regions, spec)
	}
	return p
}

// catalogVoters bounds the catalog's voters (DESIGN.md: at most five).
const catalogVoters = 5

// remoteCores is another region's number and cores.
type remoteCores struct {
	number uint8
	cores  []string
}

// openCatalog opens the core's catalog replica and starts its
// bootstrap, its leader's member changes (catalogvoters.go) and its write
// handler.
func openCatalog(node *mesh.Node, dataDir, self string, plan catalogPlan, raftCfg func(*raftstore.Config), log *slog.Logger) (*catalogGroup, error) {
	dir := filepath.Join(dataDir, "catalog")
	var boot []raft.Server
	if !exists(dir) && slices.Contains(plan.voters, self) {
		for _, v := range plan.voters {
			boot = append(boot, raft.Server{ID: raft.ServerID(v), Address: raft.ServerAddress(v)})
		}
	}
	trans := raft.NewNetworkTransport(node.RaftLayerFor(CatalogGroup), 4, 10*time.Second, io.Discard)
	// StateWAL: a restarted replica reads what it had applied at once,
	// before the group has a leader again (a region cut off restarts
	// with its catalog, not an empty one).
	cfg := raftstore.Config{NodeID: self, Dir: dir, Transport: trans, Bootstrap: boot, SM: catalog.New(),
		Logger: log.With("part", "raft"), StateWAL: true}
	if raftCfg != nil {
		raftCfg(&cfg)
	}
	rep, err := raftstore.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: open catalog: %w", err)
	}
	g := &catalogGroup{rep: rep, node: node, self: self, all: plan.all, voters: plan.voters, log: log}
	g.store = catalog.NewStore(rep.State(), g)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	node.HandleRPC(meshpb.MethodCatalog, g.handle, mesh.RoleCore)
	node.HandleRPC(meshpb.MethodCatalogProgress, g.handleProgress, mesh.RoleCore)
	g.wg.Go(func() { g.bootstrap(plan.topo) })
	g.wg.Go(g.manageMembers)
	return g, nil
}

// bootstrap applies the declared topology until it is in, then the
// config file's apps (bootstrapApps).
func (g *catalogGroup) bootstrap(topo catalog.Topology) {
	apps := topo.Apps
	topo.Apps = nil
	for {
		ctx, cancel := context.WithTimeout(g.ctx, catalogWait)
		err := g.store.Bootstrap(ctx, topo)
		var put []string
		if err == nil {
			put, err = g.bootstrapApps(ctx, apps)
		}
		if err == nil {
			err = g.awaitApps(ctx, put)
		}
		cancel()
		if err == nil {
			g.booted.Store(true)
			g.log.Info("catalog bootstrapped", "regions", len(topo.Regions))
			return
		}
		g.log.Debug("catalog bootstrap", "err", err)
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// bootstrapApps puts each app the catalog does not have (IfAbsent: the
// catalog's settings win over a config file's once it has the app; an app
// this replica holds already is not proposed again). An app the catalog
// refuses (too many apps, settings too big) is logged and left out: it
// must not keep the topology's bootstrap from completing. put are the
// apps it proposed and the catalog took.
func (g *catalogGroup) bootstrapApps(ctx context.Context, apps []catalog.AppSpec) (put []string, err error) {
	for _, a := range apps {
		if _, ok, err := g.store.GetApp(a.ID); err == nil && ok {
			continue
		}
		_, err := g.store.Apply(ctx, &catalog.PutApp{ID: a.ID, Settings: a.Settings, IfAbsent: true})
		var ce *catalog.Error
		switch {
		case errors.As(err, &ce):
			g.log.Warn("catalog: config app refused", "app", a.ID, "err", err)
		case err != nil:
			return nil, fmt.Errorf("catalog: bootstrap app %s: %w", a.ID, err)
		default:
			put = append(put, a.ID)
		}
	}
	return put, nil
}

// awaitApps waits until this core's replica holds the apps ids: a write
// forwarded to the leader is answered once it committed there, maybe
// before this replica applied it, and the registry follows this replica
// once the bootstrap is in (appSync). Without the wait, a core that does
// not lead the catalog served no app for a moment after its first start,
// and logins there failed with 4100 (seen in CI on a busy machine).
func (g *catalogGroup) awaitApps(ctx context.Context, ids []string) error {
	for _, id := range ids {
		for {
			if _, ok, err := g.store.GetApp(id); err == nil && ok {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("catalog: app %s not applied here yet: %w", id, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// Ready reports whether the group has a leader this replica knows and
// the declared topology is in.
func (g *catalogGroup) Ready() bool {
	_, id := g.rep.Leader()
	return id != "" && g.booted.Load()
}

// close stops the group's goroutines and its replica.
func (g *catalogGroup) close() error {
	g.cancel()
	g.wg.Wait()
	return g.rep.Close()
}

// CatalogReply is the answer to a MethodCatalog call (JSON): the result,
// a refusal (Refusal names the catalog sentinel), another failure, or
// not_leader with the leader this replica knows.
type CatalogReply struct {
	Result    *catalog.Result `json:"r,omitempty"`
	Refusal   string          `json:"k,omitempty"`
	Detail    string          `json:"d,omitempty"`
	Err       string          `json:"e,omitempty"`
	NotLeader bool            `json:"nl,omitempty"`
	Leader    string          `json:"l,omitempty"`
}

var refusals = map[string]error{
	"bad_command": catalog.ErrBadCommand, "invalid": catalog.ErrInvalid, "too_long": catalog.ErrTooLong,
	"too_many": catalog.ErrTooMany, "not_found": catalog.ErrNotFound, "conflict": catalog.ErrConflict,
	"in_use": catalog.ErrInUse,
}

func refusalName(err error) string {
	for k, v := range refusals {
		if errors.Is(err, v) {
			return k
		}
	}
	return ""
}

// handle serves MethodCatalog: another core's write, proposed here if
// this replica leads. A command that does not decode, or of a version
// this code does not apply, is refused before it reaches the log.
func (g *catalogGroup) handle(ctx context.Context, peer string, req []byte) ([]byte, error) {
	reply := func(r CatalogReply) ([]byte, error) { return json.Marshal(r) }
	refuse := func(err error) ([]byte, error) {
		var ce *catalog.Error
		if errors.As(err, &ce) {
			return reply(CatalogReply{Refusal: refusalName(ce.Err), Detail: ce.Detail})
		}
		if k := refusalName(err); k != "" {
			return reply(CatalogReply{Refusal: k, Detail: err.Error()})
		}
		return reply(CatalogReply{Err: err.Error()})
	}
	if len(req) > catalog.MaxCommandBytes {
		return refuse(&catalog.Error{Err: catalog.ErrTooLong, Detail: fmt.Sprintf("command: %d bytes, at most %d", len(req), catalog.MaxCommandBytes)})
	}
	v, _, err := catalog.Decode(req)
	if err == nil && v > catalog.Version {
		err = fmt.Errorf("%w: version %d, this core applies up to %d", catalog.ErrBadCommand, v, catalog.Version)
	}
	if err != nil {
		return refuse(err)
	}
	if !g.rep.IsLeader() {
		addr, _ := g.rep.Leader()
		return reply(CatalogReply{NotLeader: true, Leader: addr})
	}
	ctx, cancel := context.WithTimeout(ctx, catalogWait)
	defer cancel()
	res, err := g.rep.Propose(ctx, req)
	if errors.Is(err, raftstore.ErrNotLeader) {
		addr, _ := g.rep.Leader()
		return reply(CatalogReply{NotLeader: true, Leader: addr})
	}
	if err != nil {
		return refuse(err)
	}
	r, ok := res.(*catalog.Result)
	if !ok {
		return refuse(fmt.Errorf("catalog: unexpected result %T", res))
	}
	return reply(CatalogReply{Result: r})
}

// Propose is catalog.Proposer over the group: on the leader, its replica;
// elsewhere, the leader over the mesh, following not_leader, until ctx
// ends.
func (g *catalogGroup) Propose(ctx context.Context, cmd []byte) (any, error) {
	hint := ""
	var noLeader time.Time // since when no leader is known
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("cluster: catalog: %w", ctx.Err())
			case <-g.ctx.Done():
				return nil, fmt.Errorf("cluster: catalog: %w", raftstore.ErrClosed)
			case <-time.After(50 * time.Millisecond):
			}
		}
		if g.rep.IsLeader() {
			v, err := g.rep.Propose(ctx, cmd)
			if errors.Is(err, raftstore.ErrNotLeader) && !errors.Is(err, raftstore.ErrClosed) {
				continue
			}
			return v, err
		}
		addr := hint
		if addr == "" {
			addr, _ = g.rep.Leader()
		}
		hint = ""
		if addr == "" || addr == g.self {
			// An election takes a second or so; a group without a leader
			// for longer (no quorum in reach) fails the write now rather
			// than at the caller's deadline.
			if noLeader.IsZero() {
				noLeader = time.Now()
			} else if time.Since(noLeader) > catalogNoLeader {
				return nil, fmt.Errorf("cluster: catalog: %w: none in reach for %v", raftstore.ErrNotLeader, catalogNoLeader)
			}
			continue
		}
		noLeader = time.Time{}
		out, err := g.node.Call(ctx, addr, meshpb.MethodCatalog, cmd)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("cluster: catalog: %w", err)
			}
			continue // the leader moved or went: look again
		}
		var r CatalogReply
		if err := json.Unmarshal(out, &r); err != nil {
			return nil, fmt.Errorf("cluster: catalog: bad reply from %s: %w", addr, err)
		}
		switch {
		case r.NotLeader:
			hint = r.Leader
		case r.Result != nil:
			return r.Result, nil
		case r.Refusal != "":
			sentinel := refusals[r.Refusal]
			if sentinel == nil {
				sentinel = catalog.ErrBadCommand
			}
			return nil, &catalog.Error{Err: sentinel, Detail: r.Detail}
		default:
			return nil, fmt.Errorf("cluster: catalog: %s: %s", addr, r.Err)
		}
	}
}
