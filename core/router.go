package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/query"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Many shards per region (issue 9 step 2, docs/MESH.md "Routing"). A core
// node hosts a replica of every shard of its region, each with its own
// Core; the Router is the node's front for them. Edges send every request
// to the leader of the region's system shard (shard 0, where per-client
// state lives: presence registration, session tokens, devices, global
// broadcasts); that core is the request's router:
//
//   - a request about one conversation goes to the shard its id names
//     (catalog.HomeOf; ids that are not ours live in shard 0): the local
//     Core when this node leads that shard, else the shard's leader over
//     the mesh (meshpb.MethodShard), following not_leader hints;
//   - a new conversation is placed on a shard of the region: round-robin,
//     except a unique one, which goes where its member set already has
//     one (a point read in each shard's local replica) or else to the
//     shard its member-set hash picks, so two creators meet;
//   - a request about many conversations is split and the answers merged:
//     the login (each shard's unread or offline messages, patches and
//     system-conversation pushes), session ends (each shard's wills),
//     conv/query (each shard's first skip+limit rows, sorted and cut
//     again), read receipts for several conversations, REST unread
//     counts, notifications, subscriptions and broadcasts;
//   - the rest (session/query, echo, report, devices, kicks, stats) is
//     the system shard's.
//
// Sessions and chatroom membership live in the node's relay, which every
// Core shares: whichever core leads a shard fans its messages out to the
// edges of the region through it (edges keep a delivery stream and their
// presence on every core).

// RouterShard is one shard a node hosts.
type RouterShard struct {
	Core *Core
	// Leader is the mesh address of the shard's leader as this node's
	// replica knows it, "" when unknown.
	Leader func() string
	// MemberIndex is the raft index of the last membership change this
	// node's replica of the shard applied (shard.FSM.MemberIndex), or a
	// floor for it: the router trusts the catalog's member index for the
	// shard only once the shard's mark has reached it. Nil: never.
	MemberIndex func() uint64
}

// RouterConfig configures a Router.
type RouterConfig struct {
	// Region is the node's region number (catalog.ConvID.Region).
	Region uint8
	// Shards are the region's shards by number: Shards[i] is shard i;
	// Shards[0] is the system shard.
	Shards []RouterShard
	// Self is this node's mesh address.
	Self string
	// Forward sends a request to another core (meshpb.MethodShard). Nil:
	// a shard this node does not lead is unavailable.
	Forward func(ctx context.Context, addr string, req *meshpb.ShardRequest) (*meshpb.ClientReply, error)
	// Remote is the node's link to the other regions (regions.go); nil:
	// this region is the world.
	Remote *Regions
	// Announce, when set, tells this region's other cores of a session
	// that just logged in (MethodPresenceAdd) and returns once they have
	// it, so that a shard led elsewhere pushes to it at once.
	Announce func(ctx context.Context, edgeID string, s *meshpb.PresenceSession)
	// Catalog is the local replica of the catalog (its member index: which
	// shards hold a client's conversations); nil: a login asks every
	// shard.
	Catalog *catalog.Store
	Logger  *slog.Logger
}

// Router routes a node's client requests to the shards of its region.
type Router struct {
	region   uint8
	shards   []RouterShard
	self     string
	forward  func(ctx context.Context, addr string, req *meshpb.ShardRequest) (*meshpb.ClientReply, error)
	remote   *Regions
	announce func(ctx context.Context, edgeID string, s *meshpb.PresenceSession)
	members  memberReader // nil without a catalog
	catalog  *catalog.Store
	log      *slog.Logger
	next     atomic.Uint64 // placement round-robin
	stats    RouterStats
}

// RouterStats are the router's counters (relaymesh_router_* on /metrics).
type RouterStats struct {
	Local     atomic.Uint64 // requests (or parts) served by a local shard core
	Forwarded atomic.Uint64 // requests (or parts) sent to another core
	Split     atomic.Uint64 // requests split over several shards
	Hints     atomic.Uint64 // not_leader answers followed
	Moved     atomic.Uint64 // forwards abandoned because the shard's leader changed (forwardWatched)
	// Logins: the shards but the system shard a login's share was asked
	// of (LoginParts), left out because the member index says the client
	// has nothing there (LoginSkipped), and asked only because the index
	// could not be trusted for them (LoginFallback, a part of LoginParts).
	LoginParts, LoginSkipped, LoginFallback atomic.Uint64
	// UniqueRouted: unique starts sent to the shard the catalog's unique
	// index names.
	UniqueRouted atomic.Uint64
	// Session tokens another region issued: checked with that region
	// (TokenChecks), and refused (TokenRefused: retired there, or the
	// region did not answer; auth.go checkForeignToken).
	TokenChecks, TokenRefused atomic.Uint64
	// TagRefused counts reconnects refused (4111) because another region
	// holds their tag in a session not provably theirs.
	TagRefused atomic.Uint64
	// Logins' shares from other regions (loginregions.go): waited for
	// (LoginRegionsAwaited), answered after the login (LoginRegionsNotAwaited),
	// and the commands such late answers held, pushed to the session
	// (LoginLatePushes).
	LoginRegionsAwaited, LoginRegionsNotAwaited, LoginLatePushes atomic.Uint64
}

// How long a router waits for a shard without a known leader (an
// election takes a second or two), following hints, before it answers
// ErrNotLeader; and the pause between looks.
const (
	routeWait  = 5 * time.Second
	routePause = 50 * time.Millisecond
)

// NewRouter returns a router over cfg.Shards.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if len(cfg.Shards) == 0 || len(cfg.Shards) > 1<<16 {
		return nil, fmt.Errorf("core: router: %d shards", len(cfg.Shards))
	}
	if cfg.Region == 0 {
		cfg.Region = catalog.LegacyShard.Region
	}
	r := &Router{region: cfg.Region, shards: cfg.Shards, self: cfg.Self, forward: cfg.Forward, remote: cfg.Remote, announce: cfg.Announce, log: cfg.Logger}
	if cfg.Catalog != nil {
		r.members, r.catalog = cfg.Catalog, cfg.Catalog
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// System is the core of the region's system shard.
func (r *Router) System() *Core { return r.shards[0].Core }

// Shards is the number of shards of the region.
func (r *Router) Shards() int { return len(r.shards) }

// Shard is the core of shard n, nil if there is none.
func (r *Router) Shard(n int) *Core {
	if n < 0 || n >= len(r.shards) {
		return nil
	}
	return r.shards[n].Core
}

// Stats returns the router's counters.
func (r *Router) Stats() *RouterStats { return &r.stats }

// errNoShard: a conversation id names a shard this region does not have.
var errNoShard = fmt.Errorf("%w: no such shard", shard.ErrConvNotFound)

// home is the region and shard conversation cid of app lives in: this
// region's or another this core knows (regions.go). An id that is not
// ours is looked up among the catalog's imported ids (importroute.go),
// else it is the legacy shard's.
func (r *Router) home(app, cid string) (region uint8, shard int, err error) {
	w := catalog.HomeOf(cid)
	if _, ours := catalog.ParseConvID(cid); !ours && r.catalog != nil {
		if ref, known, err := r.catalog.Lookup(app, cid); err == nil && known {
			w = catalog.ConvID(ref)
		}
	}
	if w.Region != r.region {
		if r.remote.Remote(w.Region) {
			return w.Region, int(w.Shard), nil
		}
		return 0, 0, fmt.Errorf("%w: %s (region %d)", errNoShard, cid, w.Region)
	}
	if int(w.Shard) >= len(r.shards) {
		return 0, 0, fmt.Errorf("%w: %s", errNoShard, cid)
	}
	return r.region, int(w.Shard), nil
}

// regionParts asks every other region for its share of req (region_part,
// MethodRegion), at once; a region that does not answer is left out (a
// region cut off must not fail the others' logins), and logged. A request
// that is itself a region's part goes no further.
func (r *Router) regionParts(ctx context.Context, req *meshpb.ClientRequest) []*meshpb.ClientReply {
	if req.GetRegionPart() || r.remote == nil || len(r.remote.Numbers()) == 0 {
		return nil
	}
	return r.remote.AskEach(ctx, r.remote.Numbers(), meshpb.MethodRegion, r.regionPart(req), "a region's share", "kind", req.GetKind())
}

// regionPart is req as this router asks another region for its share of
// it: that region's part, from this region, with no session token to
// check there (the system shard here checked it).
func (r *Router) regionPart(req *meshpb.ClientRequest) *meshpb.ClientRequest {
	p := proto.Clone(req).(*meshpb.ClientRequest)
	p.RegionPart, p.ShardPart, p.FromRegion = true, false, uint32(r.region)
	p.StGeneration, p.StReopen = 0, false
	return p
}

// HandleRegion serves a request another region's router handed this core
// (MethodRegion, region_part): this region's share of it, over this
// region's shards, never beyond.
func (r *Router) HandleRegion(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	req.RegionPart, req.ShardPart, req.LoginSplit = true, false, true
	switch req.GetKind() {
	case meshpb.ClientRequest_OPEN:
		// Every core here sends its pushes for the client to the asking
		// region before this share is answered (regions.go).
		if n := req.GetFromRegion(); n > 0 && n <= 255 {
			r.remote.MarkEverywhere(ctx, uint8(n), req.GetAppId(), req.GetPeerId(), req.GetTag())
		}
		r.System().kickTagHere(ctx, req) // the same tag logged in elsewhere
		ns := append([]int{0}, r.loginShards(req.GetAppId(), req.GetPeerId())...)
		reps, err := r.scatter(ctx, ns, func(int) *meshpb.ClientRequest { return part(req) })
		if err != nil {
			r.log.Warn("login share for another region", "app", req.GetAppId(), "peer", req.GetPeerId(), "err", err)
		}
		cmds, sys := mergeLoginSplit(reps, req.GetProtocolVersion(), r.System().limits.MaxUnreadConvs)
		return &meshpb.ClientReply{Commands: cmds, SysCommands: sys, Missed: missedOf(reps)}, nil
	case meshpb.ClientRequest_CLOSE:
		if explicitClose(req.GetCommand()) {
			// A logout in another region voids the client's tokens this
			// region issued too, as one here would (auth.go).
			r.System().revokeTokens(ctx, req.GetAppId(), req.GetPeerId())
		}
		_, err := r.scatter(ctx, r.all(), func(int) *meshpb.ClientRequest { return part(req) })
		return &meshpb.ClientReply{}, err
	case meshpb.ClientRequest_ADMIN:
		return r.admin(ctx, req)
	case meshpb.ClientRequest_COMMAND:
		return r.command(ctx, req)
	}
	return &meshpb.ClientReply{ErrorCode: codeFor(errMalformed), ErrorReason: "not a region's part"}, nil
}

// HandleShard serves a request another core's router handed to this node
// for shard n: run by the local core when it leads the shard, else
// not_leader with the leader this replica knows.
func (r *Router) HandleShard(ctx context.Context, n int, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	if n < 0 || n >= len(r.shards) {
		return &meshpb.ClientReply{ErrorCode: codeFor(errNoShard), ErrorReason: fmt.Sprintf("no shard %d", n)}, nil
	}
	sh := r.shards[n]
	if !sh.Core.leads() {
		return &meshpb.ClientReply{NotLeader: true, Leader: sh.Leader()}, nil
	}
	return sh.Core.HandleClient(ctx, req)
}

// Ready reports whether every shard has a leader this node knows of
// (itself or another core) and this node leads the system shard.
func (r *Router) Ready() bool {
	if !r.System().Ready() {
		return false
	}
	for _, sh := range r.shards[1:] {
		if !sh.Core.leads() && sh.Leader() == "" {
			return false
		}
	}
	return true
}

// leads reports whether this core's replica leads its shard.
func (c *Core) leads() bool { return c.replica != nil && c.replica.IsLeader() }

// callHome runs req on the shard cid names: in this region (call) or in
// another (its router, MethodClient).
func (r *Router) callHome(ctx context.Context, region uint8, n int, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	if region != r.region {
		if req.GetKind() == meshpb.ClientRequest_COMMAND && req.GetEdgeId() != "" && req.SessionRoom == nil {
			// The session's chatroom, which only this region's relay
			// knows (chatroom.go).
			room := r.System().relay.RoomOf(req.GetAppId(), req.GetPeerId(), connKey{Edge: req.GetEdgeId(), Conn: req.GetConnId()})
			req.SessionRoom = &room
		}
		rep, err := r.remote.call(ctx, region, meshpb.MethodClient, req)
		if err == nil && rep.GetRoomChanged() && req.SessionRoom != nil {
			r.System().moveRoom(req, rep.GetRoom()) // chatroom.go
		}
		return rep, err
	}
	return r.call(ctx, n, req)
}

// call runs req on shard n: locally when this node leads it, else on its
// leader. A shard with no leader in sight answers ErrNotLeader after
// routeAttempts.
func (r *Router) call(ctx context.Context, n int, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	sh := r.shards[n]
	hint := ""
	deadline := time.Now().Add(routeWait)
	for attempt := 0; attempt == 0 || time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(routePause):
			}
		}
		if sh.Core.leads() {
			r.stats.Local.Add(1)
			return sh.Core.HandleClient(ctx, req)
		}
		addr := hint
		if addr == "" {
			addr = sh.Leader()
		}
		hint = ""
		if addr == "" || addr == r.self || r.forward == nil {
			continue
		}
		r.stats.Forwarded.Add(1)
		rep, err, moved := r.forwardWatched(ctx, sh, addr, &meshpb.ShardRequest{Shard: uint32(n), Request: req})
		if err != nil {
			if !moved {
				return nil, err
			}
			r.stats.Moved.Add(1)
			if !req.RetrySafe() {
				return nil, fmt.Errorf("core: shard %d's leader changed during the request, which is not safe to repeat; outcome unknown: %w", n, err)
			}
			continue // to the new leader
		}
		if !rep.GetNotLeader() {
			return rep, nil
		}
		r.stats.Hints.Add(1)
		hint = rep.GetLeader()
	}
	return nil, fmt.Errorf("%w: shard %d has no leader in reach", ErrNotLeader, n)
}

// errLeaderMoved cancels a forward whose shard got another leader.
var errLeaderMoved = errors.New("core: the shard's leader changed")

// forwardCheckAfter: a forward to a shard's leader still unanswered after
// this long is checked every forwardCheckEvery against the leader this
// node's replica knows. Once raft names another leader (the old one was
// killed, cut off or deposed: its connection may take writes until the
// mesh's idle timeout and never answer), the forward is abandoned and
// moved reports it; the caller sends a retry-safe request to the new
// leader (the shard deduplicates sends) and fails the others as outcome
// unknown, as the edge's link does (edge/corelink).
const (
	forwardCheckAfter = 250 * time.Millisecond
	forwardCheckEvery = 100 * time.Millisecond
)

// forwardWatched forwards req to addr, shard sh's leader as this node
// knew it, abandoning it if the shard's leader changes meanwhile.
func (r *Router) forwardWatched(ctx context.Context, sh RouterShard, addr string, req *meshpb.ShardRequest) (rep *meshpb.ClientReply, err error, moved bool) {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	var t *time.Timer
	done := false
	check := func() {
		if l := sh.Leader(); l != "" && l != addr || sh.Core.leads() {
			cancel(errLeaderMoved)
			return
		}
		mu.Lock()
		if !done {
			t.Reset(forwardCheckEvery)
		}
		mu.Unlock()
	}
	mu.Lock()
	t = time.AfterFunc(forwardCheckAfter, check)
	mu.Unlock()
	rep, err = r.forward(fctx, addr, req)
	mu.Lock()
	done = true
	t.Stop()
	mu.Unlock()
	moved = err != nil && ctx.Err() == nil && errors.Is(context.Cause(fctx), errLeaderMoved)
	return rep, err, moved
}

// HandleClient routes one request from an edge (this node leads the
// system shard; core/mesh.go answers not_leader otherwise).
func (r *Router) HandleClient(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	// Parts are what a router asks of shards; an edge cannot ask for one
	// (a part OPEN skips the token check, a region's part hands over the
	// client's missed pushes).
	req.ShardPart, req.LoginSplit, req.RegionPart, req.LoginAtMs, req.GoneFromRegion = false, false, false, 0, false
	if len(r.shards) == 1 && (r.remote == nil || len(r.remote.Numbers()) == 0) {
		return r.call(ctx, 0, req)
	}
	switch req.GetKind() {
	case meshpb.ClientRequest_OPEN:
		return r.open(ctx, req)
	case meshpb.ClientRequest_CLOSE:
		return r.close(ctx, req)
	case meshpb.ClientRequest_ADMIN:
		return r.admin(ctx, req)
	case meshpb.ClientRequest_COMMAND:
		return r.command(ctx, req)
	}
	return r.call(ctx, 0, req)
}

// part is a copy of req marked as one shard's part.
func part(req *meshpb.ClientRequest) *meshpb.ClientRequest {
	p := proto.Clone(req).(*meshpb.ClientRequest)
	p.ShardPart = true
	// The router checked the session token against the system shard,
	// which alone keeps token generations (auth.go).
	p.StGeneration, p.StReopen = 0, false
	return p
}

// scatter runs build(n) on every shard n in ns at once and returns the
// replies in the order of ns; the first error wins.
func (r *Router) scatter(ctx context.Context, ns []int, build func(n int) *meshpb.ClientRequest) ([]*meshpb.ClientReply, error) {
	r.stats.Split.Add(1)
	reps := make([]*meshpb.ClientReply, len(ns))
	errs := make([]error, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Go(func() { reps[i], errs[i] = r.call(ctx, n, build(n)) })
	}
	wg.Wait()
	return reps, errors.Join(errs...)
}

// others are the shard numbers but the system shard's.
func (r *Router) others() []int {
	ns := make([]int, 0, len(r.shards)-1)
	for n := 1; n < len(r.shards); n++ {
		ns = append(ns, n)
	}
	return ns
}

// all are every shard number.
func (r *Router) all() []int { return append([]int{0}, r.others()...) }

// ---- login and session end ----

// open registers the session on the system shard (tag kick, token,
// devices, its share of the login) and asks every other shard for its
// share; the shares are merged as one shard would have capped them.
func (r *Router) open(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	req.LoginSplit = true
	req.LoginAtMs = time.Now().UnixMilli() // never the caller's word
	// A session token, checked here or in the region that issued it.
	vouched := req.GetStReopen() && req.GetReconnect()
	// A tagged reconnect asks the other regions whether they hold its tag
	// while a token of another region is checked there, so the two cost
	// one round trip; the answer counts only if the token holds.
	var held chan bool
	if req.GetReconnect() && req.GetTag() != "" && len(r.remote.Numbers()) > 0 {
		held = make(chan bool, 1)
		app, peer, tag, chain := req.GetAppId(), req.GetPeerId(), req.GetTag(), req.GetSessionChain()
		go func() { held <- r.remote.TagHeld(ctx, app, peer, tag, vouched, chain) }()
	}
	if err := r.checkForeignToken(ctx, req); err != nil { // auth.go
		return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}, nil
	}
	req.Vouched = vouched // never the caller's word
	if held != nil && <-held {
		// A reconnect meets its tag held in another region by a session
		// that is not provably its own (any, if it signs in afresh; one
		// of another chain, if it reopens with a token): refused, as
		// relay.Open refuses it here.
		r.stats.TagRefused.Add(1)
		return &meshpb.ClientReply{ErrorCode: codeFor(errTagConflict), ErrorReason: fmt.Sprintf("%v: tag %q (in another region)", errTagConflict, req.GetTag())}, nil
	}
	rep, err := r.call(ctx, 0, req)
	if err != nil || rep.GetErrorCode() != 0 || rep.GetNotLeader() {
		return rep, err
	}
	if r.announce != nil {
		r.announce(ctx, req.GetEdgeId(), &meshpb.PresenceSession{AppId: req.GetAppId(), PeerId: req.GetPeerId(),
			ConnId: req.GetConnId(), Tag: req.GetTag(), ProtocolVersion: req.GetProtocolVersion(), Seq: req.GetPresenceSeq(),
			Chain: req.GetSessionChain()})
	}
	parts, err := r.scatter(ctx, r.loginShards(req.GetAppId(), req.GetPeerId()), func(int) *meshpb.ClientRequest { return part(req) })
	if err != nil {
		// The session is registered; what the other shards have due
		// comes with the next login or the client's own queries. A login
		// that fails here would leave the presence of a client that
		// thinks it is offline.
		r.log.Warn("login: a shard's share", "app", req.GetAppId(), "peer", req.GetPeerId(), "err", err)
	}
	all := append([]*meshpb.ClientReply{rep}, parts...)
	all = append(all, r.loginShares(ctx, req)...) // conversations homed in other regions (loginregions.go)
	lim := r.System().limits
	rep.Commands = mergeLogin(all, req.GetProtocolVersion(), lim.MaxUnreadConvs)
	rep.SysCommands = nil
	return rep, nil
}

// loginShards are the shards but the system shard that a login of (app,
// peer) asks for their share: those the catalog's member index says hold
// the client's conversations, and every shard the index cannot be trusted
// for — no catalog, a read that fails, or a shard whose mark (the index up
// to which its leader vouched for its changes, catalog.MemberSet) is below
// the last membership change this node's replica applied. Correctness
// over cost: a shard is left out only when the index vouches for it.
//
// The marks are read before the entries: entries are at least as new as
// the marks read, never older.
func (r *Router) loginShards(app, peer string) []int {
	others := r.others()
	if r.members == nil {
		r.stats.LoginParts.Add(uint64(len(others)))
		return others
	}
	trusted := make([]bool, len(r.shards))
	someTrusted := false
	for _, n := range others {
		if r.IndexVouches(n) {
			trusted[n], someTrusted = true, true
		}
	}
	has := map[uint16]bool{}
	if someTrusted {
		// The client's shards, and those holding the app's global
		// broadcasts (every login gets them: shard.AllClients).
		refs, err := r.members.MemberShards(app, peer)
		all, aerr := r.members.MemberShards(app, shard.AllClients)
		if err = errors.Join(err, aerr); err != nil {
			r.log.Warn("login: member index", "app", app, "peer", peer, "err", err)
			clear(trusted)
		}
		for _, ref := range append(refs, all...) {
			if ref.Region == r.region {
				has[ref.Shard] = true
			}
		}
	}
	out := make([]int, 0, len(others))
	for _, n := range others {
		switch {
		case !trusted[n]:
			r.stats.LoginFallback.Add(1)
			out = append(out, n)
		case has[uint16(n)]:
			out = append(out, n)
		default:
			r.stats.LoginSkipped.Add(1)
		}
	}
	r.stats.LoginParts.Add(uint64(len(out)))
	return out
}

// IndexVouches reports whether the catalog's member index vouches for
// shard n of this region: its mark (catalog.MemberMark) has reached the
// last membership change this node's replica of the shard applied.
func (r *Router) IndexVouches(n int) bool {
	if r.members == nil || n < 0 || n >= len(r.shards) || r.shards[n].MemberIndex == nil {
		return false
	}
	mark, err := r.members.MemberMark(catalog.ShardRef{Region: r.region, Shard: uint16(n)})
	return err == nil && mark > 0 && mark >= r.shards[n].MemberIndex()
}

// mergeLogin merges the shards' login shares: first what other regions
// pushed while the client was online nowhere (ClientReply.missed, in the
// order each region pushed it), then offline messages of at most maxConvs
// conversations (.1), the unread counts of at most maxConvs (.3), newest
// conversations first (after the missed messages, so that a count the SDK
// raised for one of them ends at the share's), then missed patches and
// the system pushes.
func mergeLogin(reps []*meshpb.ClientReply, version int32, maxConvs int) [][]byte {
	cmds, sys := mergeLoginSplit(reps, version, maxConvs)
	return append(append(missedOf(reps), cmds...), sys...)
}

// missedOf is the shares' missed pushes (core/missed.go), in order.
func missedOf(reps []*meshpb.ClientReply) [][]byte {
	var out [][]byte
	for _, rep := range reps {
		out = append(out, rep.GetMissed()...)
	}
	return out
}

// mergeLoginSplit is mergeLogin with the system pushes apart (a region's
// share of a login, ClientReply.sys_commands).
func mergeLoginSplit(reps []*meshpb.ClientReply, version int32, maxConvs int) (cmds, sysOut [][]byte) {
	var (
		unread  *lcpb.GenericCommand
		tuples  []*lcpb.UnreadTuple
		groups  []offlineGroup
		patches [][]byte
		sys     []*lcpb.GenericCommand
	)
	for _, rep := range reps {
		if rep == nil {
			continue
		}
		var cur *offlineGroup
		for _, b := range rep.GetCommands() {
			g := new(lcpb.GenericCommand)
			if proto.Unmarshal(b, g) != nil {
				continue
			}
			switch g.GetCmd() {
			case lcpb.CommandType_unread:
				if unread == nil {
					unread = g
				} else if t := g.GetUnreadMessage().GetNotifTime(); t > unread.GetUnreadMessage().GetNotifTime() {
					unread.UnreadMessage.NotifTime = proto.Int64(t)
				}
				tuples = append(tuples, g.GetUnreadMessage().GetConvs()...)
			case lcpb.CommandType_direct:
				dm := g.GetDirectMessage()
				if cur == nil || cur.cid != dm.GetCid() {
					groups = append(groups, offlineGroup{cid: dm.GetCid()})
					cur = &groups[len(groups)-1]
				}
				cur.cmds = append(cur.cmds, b)
				cur.newest = max(cur.newest, dm.GetTimestamp())
			default:
				patches = append(patches, b)
			}
		}
		for _, b := range rep.GetSysCommands() {
			g := new(lcpb.GenericCommand)
			if proto.Unmarshal(b, g) == nil {
				sys = append(sys, g)
			}
		}
	}
	var out [][]byte
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].newest > groups[j].newest })
	if len(groups) > maxConvs {
		groups = groups[:maxConvs]
	}
	for _, g := range groups {
		out = append(out, g.cmds...)
	}
	if unread != nil {
		sort.SliceStable(tuples, func(i, j int) bool { return tuples[i].GetTimestamp() > tuples[j].GetTimestamp() })
		if len(tuples) > maxConvs {
			tuples = tuples[:maxConvs]
		}
		unread.UnreadMessage.Convs = tuples
		if b, err := proto.Marshal(unread); err == nil {
			out = append(out, b)
		}
	}
	if len(patches) > maxMissedPatches {
		patches = patches[:maxMissedPatches]
	}
	out = append(out, patches...)
	sort.SliceStable(sys, func(i, j int) bool {
		return sys[i].GetDirectMessage().GetTimestamp() < sys[j].GetDirectMessage().GetTimestamp()
	})
	if len(sys) > maxSysLogin {
		sys = sys[:maxSysLogin]
	}
	for _, g := range sys {
		if b, err := proto.Marshal(g); err == nil {
			sysOut = append(sysOut, b)
		}
	}
	return out, sysOut
}

// offlineGroup is one conversation's offline messages in a login share.
type offlineGroup struct {
	cid    string
	newest int64
	cmds   [][]byte
}

// close ends the session on the system shard (presence, hooks, tokens,
// devices, its wills) and settles its wills and marks on every other.
func (r *Router) close(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	rep, err := r.call(ctx, 0, req)
	if _, perr := r.scatter(ctx, r.others(), func(int) *meshpb.ClientRequest { return part(req) }); perr != nil {
		r.log.Warn("session end: a shard's wills", "app", req.GetAppId(), "peer", req.GetPeerId(), "err", perr)
	}
	// Whether the client has a session left in this region (this core's
	// relay; when another core led the close, it may not know yet, and
	// says so: the other regions then go by their summaries, as before).
	req.GoneFromRegion = !r.System().relay.Online(req.GetAppId(), req.GetPeerId())
	r.regionParts(ctx, req) // wills in conversations homed elsewhere
	return rep, err
}

// ---- commands ----

// command routes a client's GenericCommand.
func (r *Router) command(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
		return r.call(ctx, 0, req) // the system shard answers the malformed command
	}
	rt, err := r.route(req.GetAppId(), req.GetPeerId(), cmd)
	if err != nil {
		return encodeReply(lcpb.NewError(cmd.I, req.GetPeerId(), codeFor(err), err.Error())), nil
	}
	switch rt.kind {
	case routeQuery:
		return r.convQuery(ctx, req, cmd)
	case routeRead:
		return r.readMany(ctx, req, cmd)
	case routeSessionQuery:
		return r.sessionQuery(ctx, req, cmd)
	case routeSessionClose:
		rep, err := r.call(ctx, 0, req)
		if err == nil {
			// Its wills on the other shards and regions are dropped, as
			// the system shard dropped its own (will.go).
			end := part(req)
			end.Kind = meshpb.ClientRequest_CLOSE
			if _, perr := r.scatter(ctx, r.others(), func(int) *meshpb.ClientRequest { return end }); perr != nil {
				r.log.Warn("session close: a shard's wills", "app", req.GetAppId(), "peer", req.GetPeerId(), "err", perr)
			}
			r.regionParts(ctx, end)
		}
		return rep, err
	}
	if cmd.GetCmd() == lcpb.CommandType_conv && cmd.GetOp() == lcpb.OpType_start && isUnique(cmd.GetConvMessage()) {
		region, n, inCatalog := r.uniqueInCatalog(req.GetAppId(), req.GetPeerId(), cmd.GetConvMessage())
		_, here := r.uniqueHere(req.GetAppId(), req.GetPeerId(), cmd.GetConvMessage())
		switch {
		case inCatalog && !req.GetRegionPart():
			// The set's conversation, by the catalog: its shard answers
			// (existing), or, if the claim is stale there, makes the
			// set's new one (unique.go).
			r.stats.UniqueRouted.Add(1)
			rt.region, rt.shard = region, n
		case req.GetRegionPart() && !here:
			return &meshpb.ClientReply{}, nil // another region's lookup: never create here
		case !here && !req.GetRegionPart():
			if rep := r.uniqueElsewhere(ctx, req); rep != nil {
				return rep, nil
			}
		}
	}
	rep, err := r.callHome(ctx, rt.region, rt.shard, req)
	if errors.Is(err, errRegionDown) {
		// The home region does not answer: tell the client now (4200,
		// try again later) rather than let the edge retry until its
		// deadline.
		return encodeReply(lcpb.NewError(cmd.I, req.GetPeerId(), lcpb.ErrInternal, err.Error())), nil
	}
	return rep, err
}

type routeKind int

const (
	routeOne          routeKind = iota // one shard: route.region, route.shard
	routeQuery                         // conv/query: every shard and region, merged
	routeRead                          // read of several conversations: split
	routeSessionClose                  // session/close: system shard, then every shard's wills
	routeSessionQuery                  // session/query: every region's sessions
)

type route struct {
	kind   routeKind
	region uint8
	shard  int
}

// route is where a client command goes.
func (r *Router) route(app, peer string, cmd *lcpb.GenericCommand) (route, error) {
	one := func(cid string) (route, error) {
		region, n, err := r.home(app, cid)
		return route{kind: routeOne, region: region, shard: n}, err
	}
	switch cmd.GetCmd() {
	case lcpb.CommandType_direct:
		return one(cmd.GetDirectMessage().GetCid())
	case lcpb.CommandType_ack:
		return one(cmd.GetAckMessage().GetCid())
	case lcpb.CommandType_logs:
		return one(cmd.GetLogsMessage().GetCid())
	case lcpb.CommandType_read:
		rm := cmd.GetReadMessage()
		if len(rm.GetConvs()) > 0 || len(rm.GetCids()) > 0 {
			return route{kind: routeRead}, nil
		}
		return one(rm.GetCid())
	case lcpb.CommandType_patch:
		if ps := cmd.GetPatchMessage().GetPatches(); len(ps) > 0 {
			return one(ps[0].GetCid())
		}
	case lcpb.CommandType_conv:
		cm := cmd.GetConvMessage()
		switch cmd.GetOp() {
		case lcpb.OpType_start: // homed in the creator's region
			return route{kind: routeOne, region: r.region, shard: r.place(app, peer, cm)}, nil
		case lcpb.OpType_query:
			return route{kind: routeQuery}, nil
		}
		return one(cm.GetCid())
	case lcpb.CommandType_blacklist:
		if cid := cmd.GetBlacklistMessage().GetSrcCid(); cid != "" {
			return one(cid)
		}
	case lcpb.CommandType_session:
		switch cmd.GetOp() {
		case lcpb.OpType_close:
			return route{kind: routeSessionClose}, nil
		case lcpb.OpType_query:
			return route{kind: routeSessionQuery}, nil
		}
	}
	return route{kind: routeOne, region: r.region, shard: 0}, nil
}

// sessionQuery answers which clientIds are online in any region: this
// region's system core, then every other region's, united in the order
// asked.
func (r *Router) sessionQuery(ctx context.Context, req *meshpb.ClientRequest, cmd *lcpb.GenericCommand) (*meshpb.ClientReply, error) {
	rep, err := r.call(ctx, 0, req)
	remote := r.regionParts(ctx, req)
	if err != nil || len(remote) == 0 || len(rep.GetCommands()) != 1 {
		return rep, err
	}
	online := map[string]bool{}
	for _, x := range append([]*meshpb.ClientReply{rep}, remote...) {
		if len(x.GetCommands()) != 1 {
			continue
		}
		g := new(lcpb.GenericCommand)
		if proto.Unmarshal(x.GetCommands()[0], g) != nil {
			continue
		}
		for _, id := range g.GetSessionMessage().GetOnlineSessionPeerIds() {
			online[id] = true
		}
	}
	g := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(rep.GetCommands()[0], g); err != nil || g.GetSessionMessage() == nil {
		return rep, nil // an error reply: as it is
	}
	ids := []string{}
	for _, id := range cmd.GetSessionMessage().GetSessionPeerIds() {
		if online[id] && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	g.SessionMessage.OnlineSessionPeerIds = ids
	return encodeReply(g), nil
}

// place picks the shard of a new conversation (docs/MESH.md "Shards").
func (r *Router) place(app, peer string, cm *lcpb.ConvCommand) int {
	n := len(r.shards)
	if isUnique(cm) {
		if i, ok := r.uniqueHere(app, peer, cm); ok {
			return i
		}
		h := shard.UniqueMemberHash(cm.GetM(), peer)
		var v uint64
		for i := 0; i < 8 && i < len(h); i++ {
			v = v<<4 | uint64(hexVal(h[i]))
		}
		return int(v % uint64(n))
	}
	return int(r.next.Add(1) % uint64(n))
}

// isUnique reports whether a conv/start asks for the unique conversation
// of its member set.
func isUnique(cm *lcpb.ConvCommand) bool {
	return cm.GetUnique() && !cm.GetTransient() && !cm.GetTempConv()
}

// uniqueHere finds the shard of this region holding the unique
// conversation of cm's member set with peer (created under any shard
// count): a point read in each local replica.
func (r *Router) uniqueHere(app, peer string, cm *lcpb.ConvCommand) (int, bool) {
	h := shard.UniqueMemberHash(cm.GetM(), peer)
	for i, sh := range r.shards {
		if cid, ok, err := shard.UniqueConv(sh.Core.state(), app, h); err == nil && ok && cid != "" {
			return i, true
		}
	}
	return 0, false
}

// uniqueInCatalog is where the catalog's unique index (read locally)
// says the unique conversation of cm's member set with peer lives.
func (r *Router) uniqueInCatalog(app, peer string, cm *lcpb.ConvCommand) (region uint8, n int, ok bool) {
	if r.catalog == nil {
		return 0, 0, false
	}
	cid, ok, err := r.catalog.UniqueCid(app, catalogHash(append(slices.Clone(cm.GetM()), peer)))
	if err != nil || !ok {
		return 0, 0, false
	}
	region, n, err = r.home(app, cid)
	return region, n, err == nil
}

// uniqueElsewhere asks every other region for the unique conversation of
// a conv/start's member set: the first region that has it answers the
// start (conv/started, existing), and the conversation stays homed there,
// so two creators in two regions meet. Nil when no region has it. (Two
// first starts at once in two regions still make two; the catalog's
// unique index closes that race.)
func (r *Router) uniqueElsewhere(ctx context.Context, req *meshpb.ClientRequest) *meshpb.ClientReply {
	for _, rep := range r.regionParts(ctx, req) {
		if len(rep.GetCommands()) == 0 {
			continue
		}
		g := new(lcpb.GenericCommand)
		if proto.Unmarshal(rep.GetCommands()[0], g) == nil && g.GetCmd() == lcpb.CommandType_conv && g.GetOp() == lcpb.OpType_started {
			return rep
		}
	}
	return nil
}

func hexVal(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}

// readMany splits a read of several conversations by shard.
func (r *Router) readMany(ctx context.Context, req *meshpb.ClientRequest, cmd *lcpb.GenericCommand) (*meshpb.ClientReply, error) {
	by := map[int][]*lcpb.ReadTuple{}
	var ns []int
	remote := map[uint8][]*lcpb.ReadTuple{}
	// cid and cids (read to the last message) become tuples without a
	// message: the core reads them the same way (Core.read).
	rm := cmd.GetReadMessage()
	tuples := rm.GetConvs()
	if rm.Cid != nil || len(rm.GetCids()) > 0 {
		tuples = slices.Clone(tuples)
		for _, cid := range append([]string{rm.GetCid()}, rm.GetCids()...) {
			if cid != "" {
				tuples = append(tuples, &lcpb.ReadTuple{Cid: proto.String(cid)})
			}
		}
	}
	for _, t := range tuples {
		region, n, err := r.home(req.GetAppId(), t.GetCid())
		if err != nil {
			continue // nothing to mark there
		}
		if region != r.region {
			remote[region] = append(remote[region], t)
			continue
		}
		if _, ok := by[n]; !ok {
			ns = append(ns, n)
		}
		by[n] = append(by[n], t)
	}
	with := func(ts []*lcpb.ReadTuple) *meshpb.ClientRequest {
		p := proto.Clone(req).(*meshpb.ClientRequest)
		c := proto.Clone(cmd).(*lcpb.GenericCommand)
		c.ReadMessage.Convs, c.ReadMessage.Cid, c.ReadMessage.Cids = ts, nil, nil
		p.Command, _ = proto.Marshal(c)
		return p
	}
	var errs []error
	for region, ts := range remote { // that region's router splits them
		if _, err := r.callHome(ctx, region, 0, with(ts)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(ns) > 0 {
		_, err := r.scatter(ctx, ns, func(n int) *meshpb.ClientRequest { return with(by[n]) })
		errs = append(errs, err)
	}
	return &meshpb.ClientReply{}, errors.Join(errs...)
}

// convQuery runs conv/query on every shard and merges the rows: each
// shard returns its first skip+limit rows in the query's order, the
// router sorts their union the same way and cuts skip and limit again.
func (r *Router) convQuery(ctx context.Context, req *meshpb.ClientRequest, cmd *lcpb.GenericCommand) (*meshpb.ClientReply, error) {
	cm := cmd.GetConvMessage()
	sys, app := r.System(), req.GetAppId()
	refuse := func(err error) (*meshpb.ClientReply, error) {
		return encodeReply(lcpb.NewError(cmd.I, req.GetPeerId(), codeFor(err), err.Error())), nil
	}
	// Bounds first, once (the parts check again and pass).
	_, keys, err := sys.parseQuery(cm)
	if err != nil {
		return refuse(err)
	}
	limit := int(cm.GetLimit())
	if cm.Limit == nil || limit <= 0 {
		limit = defaultQueryLimit
	}
	limit = min(limit, maxQueryLimit)
	skip := max(int(cm.GetSkip()), 0)
	sub := proto.Clone(cmd).(*lcpb.GenericCommand)
	sub.ConvMessage.Skip = proto.Int32(0)
	sub.ConvMessage.Limit = proto.Int32(int32(min(skip+limit, 1<<30)))
	b, err := proto.Marshal(sub)
	if err != nil {
		return nil, err
	}
	// The app's query budget and the scan cap are the node's, for the
	// query as a whole (query.go): the system core's meter keeps them.
	if !sys.queries.Admit(app, sys.now()) {
		sys.queries.Refuse(query.RefusedBudget)
		return refuse(fmt.Errorf("%w: %w", errQueryFailed, errQueryBudget))
	}
	reps, err := r.scatter(ctx, r.all(), func(int) *meshpb.ClientRequest {
		p := part(req)
		p.Command = b
		return p
	})
	if err != nil {
		return nil, err
	}
	sub2 := proto.Clone(req).(*meshpb.ClientRequest)
	sub2.Command = b
	reps = append(reps, r.regionParts(ctx, sub2)...) // every other region's first skip+limit rows
	var examined int64
	for _, rep := range reps {
		examined += rep.GetQueryExamined()
	}
	sys.queries.Charge(app, int(examined), sys.now())
	if max := sys.limits.MaxQueryScan; examined > int64(max) {
		sys.queries.Refuse(query.RefusedScan)
		return refuse(fmt.Errorf("%w: the query would examine more than %d conversations; narrow it by objectId or m", errQueryFailed, max))
	}
	rows := []map[string]any{}
	for _, rep := range reps {
		if len(rep.GetCommands()) == 0 {
			return rep, nil
		}
		g := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(rep.GetCommands()[0], g); err != nil {
			return nil, fmt.Errorf("%w: shard reply: %v", errInternal, err)
		}
		if g.GetCmd() == lcpb.CommandType_error {
			return rep, nil // a refusal (bounds, budget) is the answer
		}
		got, err := decodeRows(g.GetConvMessage().GetResults().GetData())
		if err != nil {
			return nil, fmt.Errorf("%w: shard rows: %v", errInternal, err)
		}
		rows = append(rows, got...)
	}
	query.Sort(rows, keys)
	if skip >= len(rows) {
		rows = rows[:0]
	} else {
		rows = rows[skip:]
	}
	if len(rows) > limit {
		rows = rows[:limit]
	}
	out, err := json.Marshal(rows)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	g := &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_results.Enum(),
		PeerId: proto.String(req.GetPeerId()), I: cmd.I,
		ConvMessage: &lcpb.ConvCommand{Results: &lcpb.JsonObjectMessage{Data: proto.String(string(out))}}}
	rep := encodeReply(g)
	if req.GetRegionPart() { // for the asking region's cap and budget
		rep.QueryExamined = examined
	}
	return rep, nil
}

// decodeRows reads a conv/query result array as the shard built it
// (numbers kept exact, as query.Decode keeps them).
func decodeRows(data string) ([]map[string]any, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(data), &raw); err != nil {
		return nil, err
	}
	rows := make([]map[string]any, 0, len(raw))
	for _, b := range raw {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var row map[string]any
		if err := d.Decode(&row); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// ---- the server API ----

// admin routes a REST operation.
func (r *Router) admin(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	a := req.GetAdmin()
	if req.GetStGeneration() != 0 || req.GetStReopen() {
		// Only the system shard of the region that issued the token
		// keeps its generation (auth.go).
		err := r.checkForeignToken(ctx, req)
		if err == nil {
			err = r.System().checkTokenGeneration(req)
		}
		if err != nil {
			return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}, nil
		}
		req.StGeneration, req.StReopen = 0, false
	}
	byCid := func() (*meshpb.ClientReply, error) {
		region, n, err := r.home(req.GetAppId(), a.GetCid())
		if err != nil {
			return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}, nil
		}
		if region != r.region {
			rep, err := r.callHome(ctx, region, n, req)
			if errors.Is(err, errRegionDown) {
				return &meshpb.ClientReply{ErrorCode: lcpb.ErrInternal, ErrorReason: err.Error()}, nil
			}
			return rep, err
		}
		return r.call(ctx, n, part(req))
	}
	switch a.GetOp() {
	case meshpb.AdminRequest_COMMAND:
		cmd := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
			return r.call(ctx, 0, req)
		}
		rt, err := r.route(req.GetAppId(), req.GetPeerId(), cmd)
		if err != nil {
			return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}, nil
		}
		switch rt.kind {
		case routeQuery:
			rep, err := r.convQuery(ctx, req, cmd)
			return adminError(rep), err
		case routeRead:
			return r.readMany(ctx, req, cmd)
		}
		return r.callHome(ctx, rt.region, rt.shard, req)
	case meshpb.AdminRequest_DELETE_CONVERSATION, meshpb.AdminRequest_DELETE_MESSAGE,
		meshpb.AdminRequest_MEMBER_ROLES, meshpb.AdminRequest_SYS_SEND, meshpb.AdminRequest_SYS_MESSAGES,
		meshpb.AdminRequest_SYS_SUBSCRIBERS, meshpb.AdminRequest_SYS_USER_MESSAGES,
		meshpb.AdminRequest_SYS_DELETE_USER_MESSAGE, meshpb.AdminRequest_TEMP_SHUTUP:
		return byCid()
	case meshpb.AdminRequest_IMPORT:
		// Conversations are placed (importroute.go); messages go to their
		// conversation's shard (import.go), as does a request the shard
		// refuses whole.
		var in importRequest
		if json.Unmarshal(a.GetImportJson(), &in) == nil && len(in.Convs) > 0 && len(in.Msgs) == 0 && !in.Probe &&
			len(in.Convs) <= shard.MaxImportConvs {
			rep, err := r.importConvs(ctx, req, in.Convs)
			if err != nil {
				return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}, nil
			}
			return rep, nil
		}
		return byCid()
	case meshpb.AdminRequest_SYS_BROADCAST:
		if a.GetCid() == "" { // a global broadcast: the system shard's
			return r.call(ctx, 0, req)
		}
		return byCid()
	case meshpb.AdminRequest_UNREAD_COUNT:
		if a.GetCid() != "" {
			return byCid()
		}
		reps, err := r.everywhere(ctx, req)
		if err != nil {
			return nil, err
		}
		var total int64
		for _, rep := range reps {
			if rep.GetErrorCode() != 0 {
				return rep, nil
			}
			total += rep.GetAdmin().GetCount()
		}
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Count: total}}, nil
	case meshpb.AdminRequest_WORDS_SET:
		// Every shard filters its own messages with the app's list.
		reps, err := r.scatter(ctx, r.all(), func(int) *meshpb.ClientRequest { return part(req) })
		if err != nil {
			return nil, err
		}
		for _, rep := range reps {
			if rep.GetErrorCode() != 0 {
				return rep, nil
			}
		}
		return reps[0], nil
	case meshpb.AdminRequest_SYS_BROADCASTS:
		if a.GetCid() != "" {
			return byCid()
		}
		return r.mergeSysRows(ctx, req, func(x, y *meshpb.SysRow) bool { return x.GetTimestamp() > y.GetTimestamp() }, int(a.GetSysSkip()))
	case meshpb.AdminRequest_SYS_SUBSCRIPTIONS:
		if a.GetSysReversed() {
			return r.mergeSysRows(ctx, req, func(x, y *meshpb.SysRow) bool {
				return x.GetTimestamp() > y.GetTimestamp() || x.GetTimestamp() == y.GetTimestamp() && x.GetCid() > y.GetCid()
			}, 0)
		}
		return r.mergeSysRows(ctx, req, func(x, y *meshpb.SysRow) bool {
			return x.GetTimestamp() < y.GetTimestamp() || x.GetTimestamp() == y.GetTimestamp() && x.GetCid() < y.GetCid()
		}, 0)
	case meshpb.AdminRequest_SYS_DELETE_BROADCAST:
		if a.GetCid() != "" {
			return byCid()
		}
		reps, err := r.scatter(ctx, r.all(), func(int) *meshpb.ClientRequest { return part(req) })
		if err != nil {
			return nil, err
		}
		for _, rep := range reps { // the shard that had it answers
			if rep.GetErrorCode() == 0 {
				return rep, nil
			}
		}
		return reps[0], nil
	case meshpb.AdminRequest_NOTIFICATIONS:
		return r.notifications(ctx, req)
	case meshpb.AdminRequest_KICK, meshpb.AdminRequest_STATS:
		// Sessions live in every region: each kicks or counts its own.
		rep, err := r.call(ctx, 0, req)
		if err != nil || rep.GetErrorCode() != 0 {
			return rep, err
		}
		for _, x := range r.regionParts(ctx, req) {
			if rep.Admin == nil {
				rep.Admin = &meshpb.AdminReply{}
			}
			rep.Admin.Count += x.GetAdmin().GetCount()
			rep.Admin.CountToday += x.GetAdmin().GetCountToday()
		}
		return rep, nil
	}
	// KICK, STATS, WORDS_GET, devices: the system shard's.
	return r.call(ctx, 0, req)
}

// everywhere runs req's part on every shard of the region and asks every
// other region for its share.
func (r *Router) everywhere(ctx context.Context, req *meshpb.ClientRequest) ([]*meshpb.ClientReply, error) {
	reps, err := r.scatter(ctx, r.all(), func(int) *meshpb.ClientRequest { return part(req) })
	if err != nil {
		return nil, err
	}
	return append(reps, r.regionParts(ctx, req)...), nil
}

// adminError turns a cmd:error reply into the server API's error_code and
// error_reason (ADMIN never answers cmd:error, admin.go).
func adminError(rep *meshpb.ClientReply) *meshpb.ClientReply {
	if rep == nil || len(rep.GetCommands()) != 1 {
		return rep
	}
	g := new(lcpb.GenericCommand)
	if proto.Unmarshal(rep.GetCommands()[0], g) != nil || g.GetCmd() != lcpb.CommandType_error {
		return rep
	}
	return &meshpb.ClientReply{ErrorCode: g.GetErrorMessage().GetCode(), ErrorReason: g.GetErrorMessage().GetReason()}
}

// mergeSysRows scatters a listing of system-conversation rows, sorts the
// union by less and cuts skip and limit again (each shard was asked for
// skip+limit rows from the start).
func (r *Router) mergeSysRows(ctx context.Context, req *meshpb.ClientRequest, less func(x, y *meshpb.SysRow) bool, skip int) (*meshpb.ClientReply, error) {
	a := req.GetAdmin()
	limit := int(a.GetLimit())
	reps, err := r.scatter(ctx, r.all(), func(int) *meshpb.ClientRequest {
		p := part(req)
		if skip > 0 {
			p.Admin.SysSkip = 0
			if limit > 0 {
				p.Admin.Limit = int32(skip + limit)
			}
		}
		return p
	})
	if err != nil {
		return nil, err
	}
	var rows []*meshpb.SysRow
	for _, rep := range reps {
		if rep.GetErrorCode() != 0 {
			return rep, nil
		}
		rows = append(rows, rep.GetAdmin().GetSysRows()...)
	}
	sort.SliceStable(rows, func(i, j int) bool { return less(rows[i], rows[j]) })
	if skip >= len(rows) {
		rows = nil
	} else {
		rows = rows[skip:]
	}
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{SysRows: rows}}, nil
}

// notifications merges the stored conversation events of every shard,
// oldest first, at most the limit asked.
func (r *Router) notifications(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	reps, err := r.everywhere(ctx, req)
	if err != nil {
		return nil, err
	}
	var evs []*meshpb.NotifEvent
	more := false
	for _, rep := range reps {
		if rep.GetErrorCode() != 0 {
			return rep, nil
		}
		evs = append(evs, rep.GetAdmin().GetNotifs()...)
		more = more || rep.GetAdmin().GetNotifMore()
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].GetServerTs() < evs[j].GetServerTs() })
	class := shard.NotifPermanent
	if req.GetAdmin().GetNotifDroppable() {
		class = shard.NotifDroppable
	}
	lim := int(req.GetAdmin().GetNotifLimit())
	if kept := shard.NotifKept(class); lim <= 0 || lim > kept { // as one shard pages (notif.go)
		lim = kept
	}
	if len(evs) > lim {
		evs, more = evs[:lim], true
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Notifs: evs, NotifMore: more}}, nil
}

var (
	descRouterShards        = metric.Gauge("relaymesh_router_shards", "Shards (raft groups) of the region this core hosts a replica of.")
	descRouterLed           = metric.Gauge("relaymesh_router_shards_led", "Shards whose raft leader is this core.")
	descRouterLocal         = metric.Counter("relaymesh_router_local_total", "Requests or request parts the router ran on a shard this core leads.")
	descRouterFwd           = metric.Counter("relaymesh_router_forwarded_total", "Requests or request parts the router sent to another core's shard leader.")
	descRouterSplit         = metric.Counter("relaymesh_router_split_total", "Requests the router split over several shards (login, queries, receipts).")
	descRouterHints         = metric.Counter("relaymesh_router_not_leader_hints_total", "not_leader answers the router followed to another core.")
	descRouterMoved         = metric.Counter("relaymesh_router_moved_total", "Forwards to a shard leader abandoned because the shard got another leader meanwhile (retry-safe requests go to the new one).")
	descLoginParts          = metric.Counter("relaymesh_router_login_parts_total", "Shards but the system shard asked for a login's share.")
	descLoginSkipped        = metric.Counter("relaymesh_router_login_skipped_total", "Shards a login did not ask: the catalog's member index vouches the client has nothing there.")
	descLoginFallback       = metric.Counter("relaymesh_router_login_fallback_total", "Shards a login asked only because the member index could not be trusted for them (behind or unavailable).")
	descUniqueRouted        = metric.Counter("relaymesh_router_unique_routed_total", "Unique conversation starts sent to the shard the catalog's unique index names.")
	descTokenChecks         = metric.Counter("relaymesh_router_foreign_tokens_total", "Session-token reopens with a token another region issued, checked with that region.")
	descTokenRefused        = metric.Counter("relaymesh_router_foreign_tokens_refused_total", "Session tokens of another region refused with 4112: retired there by a kick or logout, or that region did not answer (the client signs in again).")
	descTagRefused          = metric.Counter("relaymesh_router_reconnects_tag_refused_total", "Reconnects refused with 4111 because another region holds their tag in a session not provably theirs (any session, for a reconnect without a valid token; one of another chain, for one with a token).")
	descLoginRegionsAwaited = metric.Counter("relaymesh_router_login_regions_awaited_total", "Other regions' login shares a login waited for: regions the member index names for the client (every other region when the index cannot say).")
	descLoginRegionsLate    = metric.Counter("relaymesh_router_login_regions_not_awaited_total", "Other regions' login shares that answered after the login (not waited for: the member index names nothing of the client there).")
	descLoginLatePushes     = metric.Counter("relaymesh_router_login_late_pushes_total", "Commands (unread counts, offline messages, patches) of login shares not waited for, pushed to the session after session/opened.")
	descUniqueWon           = metric.Counter("relaymesh_core_unique_won_total", "New unique conversations whose claim won the catalog's unique index (this node's shard leaders).")
	descUniqueLost          = metric.Counter("relaymesh_core_unique_lost_total", "New unique conversations that lost the catalog's unique index to another one: deleted, the winner answered.")
	descUniqueUnreach       = metric.Counter("relaymesh_core_unique_unreached_total", "New unique conversations kept without the catalog's unique index (it did not answer).")
)

// Collector returns the collector of the router's series: the shards of
// the region, which of them this node leads, and the router's counters.
// The shard cores' series are core.Collector's (summed over the shards).
func (r *Router) Collector() prometheus.Collector {
	descs := []metric.Desc{descRouterShards, descRouterLed, descRouterLocal, descRouterFwd, descRouterSplit,
		descRouterHints, descRouterMoved, descLoginParts, descLoginSkipped, descLoginFallback, descUniqueRouted,
		descTokenChecks, descTokenRefused, descTagRefused, descLoginRegionsAwaited, descLoginRegionsLate, descLoginLatePushes, descUniqueWon, descUniqueLost, descUniqueUnreach}
	return metric.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		led := 0
		var won, lost, unreached uint64
		for _, sh := range r.shards {
			if sh.Core.leads() {
				led++
			}
			won += sh.Core.uniq.won.Load()
			lost += sh.Core.uniq.lost.Load()
			unreached += sh.Core.uniq.unreached.Load()
		}
		s := metric.Chan(ch)
		s.Add(descRouterShards, float64(len(r.shards)))
		s.Add(descRouterLed, float64(led))
		s.Add(descRouterLocal, float64(r.stats.Local.Load()))
		s.Add(descRouterFwd, float64(r.stats.Forwarded.Load()))
		s.Add(descRouterSplit, float64(r.stats.Split.Load()))
		s.Add(descRouterHints, float64(r.stats.Hints.Load()))
		s.Add(descRouterMoved, float64(r.stats.Moved.Load()))
		s.Add(descLoginParts, float64(r.stats.LoginParts.Load()))
		s.Add(descLoginSkipped, float64(r.stats.LoginSkipped.Load()))
		s.Add(descLoginFallback, float64(r.stats.LoginFallback.Load()))
		s.Add(descUniqueRouted, float64(r.stats.UniqueRouted.Load()))
		s.Add(descTokenChecks, float64(r.stats.TokenChecks.Load()))
		s.Add(descTokenRefused, float64(r.stats.TokenRefused.Load()))
		s.Add(descTagRefused, float64(r.stats.TagRefused.Load()))
		s.Add(descLoginRegionsAwaited, float64(r.stats.LoginRegionsAwaited.Load()))
		s.Add(descLoginRegionsLate, float64(r.stats.LoginRegionsNotAwaited.Load()))
		s.Add(descLoginLatePushes, float64(r.stats.LoginLatePushes.Load()))
		s.Add(descUniqueWon, float64(won))
		s.Add(descUniqueLost, float64(lost))
		s.Add(descUniqueUnreach, float64(unreached))
	})
}
