package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// App settings follow the catalog (issue 9 "app settings", issue 12 `admin
// app`). A production core declares its config file's [[apps]] to the
// catalog at bootstrap (catalog.PutApp with IfAbsent: the catalog wins
// once it has an app); once its bootstrap is in, the core's registry
// serves exactly the catalog's apps, tombstones refused, and follows every
// change its replica applies (appSync). Edges ask one of their cores for
// the apps every AppPollInterval (meshpb.MethodApps, edgeAppSync) and
// replace their registry's with them; until a core answers, an edge serves
// its config file's apps. `relaymesh dev` (an open registry) does neither.

// Intervals of the app sync: a core looks at its catalog replica every
// appCheckInterval (and reads its apps only when the replica applied
// something), an edge asks a core every AppPollInterval.
const (
	appCheckInterval = 200 * time.Millisecond
	AppPollInterval  = time.Second
	// edgeFirstWait bounds each core's answer when an edge starts (it
	// asks before it serves).
	edgeFirstWait = time.Second
)

// appSync keeps a core's registry on its catalog replica's apps.
type appSync struct {
	reg   *apps.Registry
	hooks *hooks.Client // nil: none to follow
	g     *catalogGroup
	log   *slog.Logger

	mu   sync.Mutex
	ok   bool              // guarded by mu: the registry follows the catalog
	gen  string            // guarded by mu: the generation of list
	list []meshpb.AppEntry // guarded by mu: the catalog's apps, tombstones included
	// edges are the nodes that asked for the apps lately, by edge id
	// (AppsRequest.Edge; else certificate name): the generation each
	// serves since (at most maxTrackedEdges).
	edges map[string]edgeSeen // guarded by mu
	quit  chan struct{}
	wg    sync.WaitGroup
}

// edgeSeen is an edge's last MethodApps call.
type edgeSeen struct {
	gen  string // what it serves after the answer
	cert string // its certificate's name
	at   time.Time
}

// maxEdgeIDLen bounds the edge id an apps call names (longer: the call
// is tracked by its certificate's name).
const maxEdgeIDLen = 256

// maxTrackedEdges bounds appSync.edges; beyond it, the calls not seen for
// the longest are forgotten.
const maxTrackedEdges = 1024

// startAppSync starts following the catalog's apps into reg.
func startAppSync(g *catalogGroup, reg *apps.Registry, h *hooks.Client, log *slog.Logger) *appSync {
	s := &appSync{reg: reg, hooks: h, g: g, log: log, quit: make(chan struct{}), edges: map[string]edgeSeen{}}
	s.wg.Go(s.run)
	return s
}

func (s *appSync) run() {
	tick := time.NewTicker(appCheckInterval)
	defer tick.Stop()
	// A replica that holds apps from before a restart is followed at once,
	// quorum or not (a deleted app must not come back, nor an old key,
	// while the catalog elects a leader). A new replica is followed once
	// the bootstrap is in: until then the catalog may lack the config
	// file's apps, which the registry serves meanwhile.
	restored := false
	if list, err := s.g.store.Apps(); err == nil && len(list) > 0 {
		restored = true
	}
	var last uint64
	for first := true; ; first = false {
		if !first {
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
		if !restored && !s.g.booted.Load() {
			continue
		}
		idx := s.g.rep.AppliedIndex()
		if s.ready() && idx == last {
			continue
		}
		list, err := catalogApps(s.g.store)
		if err != nil {
			s.log.Warn("apps: reading the catalog", "err", err)
			if list == nil {
				continue
			}
		}
		last = idx
		s.set(list)
	}
}

// set makes the registry serve list and records it for the edges.
func (s *appSync) set(list []meshpb.AppEntry) {
	gen := appsGen(list)
	s.mu.Lock()
	same := s.ok && gen == s.gen
	s.ok, s.gen, s.list = true, gen, list
	s.mu.Unlock()
	if !same {
		n, _ := applyApps(s.reg, s.hooks, list) // a core holds no client connections
		s.log.Info("apps: following the catalog", "apps", n, "gen", gen)
	}
}

// applyApps makes reg serve exactly the live apps of list, and h (when
// set) call their hooks, and returns how many, and the apps it no longer
// serves.
func applyApps(reg *apps.Registry, h *hooks.Client, list []meshpb.AppEntry) (int, []string) {
	live := make(map[string]bool, len(list))
	for _, a := range list {
		if h != nil {
			h.SetHooks(a.ID, a.Settings.Hooks, a.Settings.HookBaseURL, a.Settings.MasterKey)
		}
		if a.Settings.Deleted {
			continue
		}
		live[a.ID] = true
		reg.Put(appOf(a.ID, a.Settings))
	}
	var gone []string
	for _, a := range reg.List() {
		if !live[a.ID] {
			reg.Delete(a.ID)
			gone = append(gone, a.ID)
		}
	}
	return len(live), gone
}

// appsGen names a list of apps: the hash of its JSON.
func appsGen(list []meshpb.AppEntry) string {
	b, _ := json.Marshal(list)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func (s *appSync) ready() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok
}

// handle serves MethodApps.
func (s *appSync) handle(ctx context.Context, peer string, b []byte) ([]byte, error) {
	var req meshpb.AppsRequest
	if len(b) > 4<<10 || json.Unmarshal(b, &req) != nil {
		return json.Marshal(meshpb.AppsReply{})
	}
	s.mu.Lock()
	rep := meshpb.AppsReply{Ready: s.ok, Gen: s.gen}
	serves := req.Have
	if s.ok && req.Have == s.gen {
		rep.Same = true
	} else if s.ok {
		rep.Apps = s.list
		serves = s.gen
	}
	key := peer
	if req.Edge != "" && len(req.Edge) <= maxEdgeIDLen {
		key = req.Edge
	}
	s.seenLocked(key, peer, serves, time.Now())
	s.mu.Unlock()
	return json.Marshal(rep)
}

// seenLocked records the call of edge key, whose certificate is cert.
func (s *appSync) seenLocked(key, cert, gen string, now time.Time) {
	if _, ok := s.edges[key]; !ok && len(s.edges) >= maxTrackedEdges {
		oldest, at := "", now
		for name, e := range s.edges {
			if e.at.Before(at) {
				oldest, at = name, e.at
			}
		}
		delete(s.edges, oldest)
	}
	s.edges[key] = edgeSeen{gen: gen, cert: cert, at: now}
}

// view is the generation this core serves and the edges it saw.
func (s *appSync) view(now time.Time) (string, []meshpb.EdgeApps) {
	if s == nil {
		return "", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]meshpb.EdgeApps, 0, len(s.edges))
	for name, e := range s.edges {
		ea := meshpb.EdgeApps{Edge: name, Gen: e.gen, AgoMs: now.Sub(e.at).Milliseconds()}
		if e.cert != name {
			ea.Cert = e.cert
		}
		out = append(out, ea)
	}
	slices.SortFunc(out, func(a, b meshpb.EdgeApps) int { return strings.Compare(a.Edge, b.Edge) })
	return s.gen, out
}

func (s *appSync) close() {
	if s == nil {
		return
	}
	close(s.quit)
	s.wg.Wait()
}

// edgeAppSync keeps an edge's registry on its cores' apps.
type edgeAppSync struct {
	node  *mesh.Node
	id    string // the edge's id, named in each call (AppsRequest.Edge)
	cores []string
	reg   *apps.Registry
	hooks *hooks.Client // nil: none to follow
	// closeApp ends the sessions of an app no longer served
	// (edge.Server.CloseApp); nil: none.
	closeApp func(appID string) int
	log      *slog.Logger
	every    time.Duration

	mu  sync.Mutex
	gen string // guarded by mu: the generation the registry serves, "" none yet

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startEdgeAppSync asks the cores, one after the other, for their apps
// every interval.
func startEdgeAppSync(node *mesh.Node, edgeID string, cores []string, reg *apps.Registry, h *hooks.Client, closeApp func(string) int,
	every time.Duration, log *slog.Logger) *edgeAppSync {
	s := &edgeAppSync{node: node, id: edgeID, cores: cores, reg: reg, hooks: h, closeApp: closeApp, log: log, every: every}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.first(edgeFirstWait)
	s.wg.Go(s.run)
	return s
}

func (s *edgeAppSync) run() {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for i := 0; ; i++ {
		if len(s.cores) > 0 {
			s.poll(s.cores[i%len(s.cores)], 3*s.every)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// first asks every core at once, within wait, and takes the first answer
// of one that follows the catalog: an edge starting serves the catalog's
// apps, not its config file's (a key rotated or an app deleted since),
// unless no core could tell it.
func (s *edgeAppSync) first(wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	type answer struct {
		core string
		rep  *meshpb.AppsReply
	}
	ch := make(chan answer, len(s.cores))
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, c := range s.cores {
		wg.Go(func() { ch <- answer{c, s.fetch(ctx, c)} })
	}
	for range s.cores {
		a := <-ch
		if a.rep != nil && a.rep.Ready && a.rep.Gen != "" {
			s.apply(a.core, a.rep)
			return true
		}
	}
	s.log.Warn("apps: no core answered with the catalog's apps; serving the config file's until one does")
	return false
}

// poll asks one core, within wait; a core that does not answer, or does
// not follow the catalog yet, leaves the registry as it is.
func (s *edgeAppSync) poll(core string, wait time.Duration) {
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	defer cancel()
	if rep := s.fetch(ctx, core); rep != nil && rep.Ready && rep.Gen != "" {
		s.apply(core, rep)
	}
}

// fetch asks one core for its apps (nil: no answer).
func (s *edgeAppSync) fetch(ctx context.Context, core string) *meshpb.AppsReply {
	s.mu.Lock()
	have := s.gen
	s.mu.Unlock()
	b, _ := json.Marshal(meshpb.AppsRequest{Have: have, Edge: s.id})
	out, err := s.node.Call(ctx, core, meshpb.MethodApps, b)
	if err != nil {
		s.log.Debug("apps: ask core", "core", core, "err", err)
		return nil
	}
	var rep meshpb.AppsReply
	if err := json.Unmarshal(out, &rep); err != nil {
		s.log.Warn("apps: bad reply", "core", core, "err", err)
		return nil
	}
	return &rep
}

// apply makes the registry serve a core's answer (nothing to do when it
// says the edge's generation is current).
func (s *edgeAppSync) apply(core string, rep *meshpb.AppsReply) {
	if rep.Same {
		return
	}
	n, gone := applyApps(s.reg, s.hooks, rep.Apps)
	s.mu.Lock()
	s.gen = rep.Gen
	s.mu.Unlock()
	s.log.Info("apps: following the catalog", "core", core, "apps", n, "gen", rep.Gen)
	if s.closeApp != nil {
		for _, id := range gone {
			if k := s.closeApp(id); k > 0 {
				s.log.Info("apps: ended the sessions of an app no longer served", "app", id, "sessions", k)
			}
		}
	}
}

// Gen is the generation of apps the edge serves ("" while it serves its
// config file's).
func (s *edgeAppSync) Gen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

func (s *edgeAppSync) close() {
	if s == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}
