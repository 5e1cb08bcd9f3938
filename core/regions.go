package core

import (
	"context"
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

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// Regions (issue 9 step 4, docs/MESH.md "Regions and relays"): a core
// knows the cores of every other region. Two things cross a region
// boundary:
//
//   - requests: a conversation's id names its home region; the router
//     hands a request about it to that region (MethodClient, following
//     not_leader to its router), and what spans conversations (login,
//     session end, conv/query, unread counts, notifications,
//     session/query) asks each other region for its share
//     (MethodRegion, region_part) and merges;
//   - pushes: a shard leader fans a committed message out to its own
//     region's relay and sends it once to each other region
//     (MethodRegionDeliveries), whose core hands it to its relay, which
//     reaches each of its edges once. Per remote region the pushes wait in
//     one bounded priority queue (relay/pq: HIGH > NORMAL > LOW, LOW shed
//     first, never HIGH while there is room) drained in order by one
//     sender over one mesh stream, so a conversation's pushes keep their
//     order. Every drop is counted per class.
//
// A push skips a region whose presence summary lists none of its
// recipients (the summaries below), and a call to a core killed with no
// close goes on to the next core once that core has answered neither the
// call nor a PING (callCore).

// RemoteRegion is another region: its number and its cores' mesh
// addresses.
type RemoteRegion struct {
	Number uint8
	Cores  []string
}

// Region hop tuning.
const (
	// regionQueueLen bounds the pushes waiting for one remote region.
	regionQueueLen = 1 << 16
	// regionSendTimeout bounds one push frame's write.
	regionSendTimeout = 5 * time.Second
	// regionRetryPause is the pause after every core of a region failed.
	regionRetryPause = 200 * time.Millisecond
	// regionAckWait: a push stream with pushes in flight whose core acked
	// nothing for this long is taken for dead (a core killed with no
	// close: its stream takes writes until the connection's idle timeout)
	// and its pushes go to the next core.
	regionAckWait = 2 * time.Second
	// regionCallWait bounds a request to another region while its router
	// is not found (elections, a core down).
	regionCallWait = 5 * time.Second
	// regionPartWait bounds a region's share of a login, query or
	// session/query: a slow region is left out rather than hold up the
	// others.
	regionPartWait = 3 * time.Second
	// regionProbeEvery: after no core of a region answered a request, the
	// region counts as unreachable (requests to it fail at once, so a
	// region cut off costs the others nothing) until a probe, this often,
	// gets an answer from one of its cores.
	regionProbeEvery = time.Second
	// regionCheckAfter: a call to one core of another region unanswered
	// this long is checked with a PING to the same core; a core that
	// answers neither within regionPingWait is taken for dead (killed with
	// no close: its connection takes writes until the mesh's idle
	// timeout), the call goes on to the region's next core, and the core
	// is tried last, its leader hints ignored, for regionSilentFor. A core
	// that answers the PING is alive and busy (an election behind it):
	// the call keeps waiting for it.
	regionCheckAfter = time.Second
	regionPingWait   = time.Second
	regionSilentFor  = 10 * time.Second
)

// errRegionDown: no core of the region answered lately, and this request
// reached none of them: it was not carried out.
var errRegionDown = errors.New("core: region unreachable")

// errRegionUnknown: the request may have reached a core of the region,
// which did not answer in time; whether it took effect is unknown (the
// edge sends a retry-safe request again, which the home shard
// deduplicates).
var errRegionUnknown = errors.New("core: region did not answer; outcome unknown")

// Regions is a core node's link to the other regions.
type Regions struct {
	self  uint8
	node  *mesh.Node
	relay *relay.Relay
	log   *slog.Logger
	peers map[uint8]*remoteRegion
	order []uint8  // peers' numbers, ascending
	local []string // the mesh addresses of this region's other cores (SetLocalCores)
	warm  warmUp   // regionwarm.go

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // senders and probers

	mu     sync.Mutex
	closed bool // guarded by mu; no prober starts once set

	stats RegionStats
}

// RegionStats are the region hop's counters (relaymesh_region_* on
// /metrics).
type RegionStats struct {
	Sent     atomic.Uint64               // pushes sent to other regions and acked there
	Resent   atomic.Uint64               // pushes sent again on a new stream (not acked on the old)
	Received atomic.Uint64               // pushes received from other regions
	Dropped  [pq.NumClasses]atomic.Int64 // pushes dropped at the hop, by class
	Failed   atomic.Uint64               // pushes dropped because no core of the region took them
	Calls    atomic.Uint64               // requests sent to other regions
	// Unreachable counts requests failed at once because their region
	// did not answer lately (regionProbeEvery).
	Unreachable atomic.Uint64
	Summaries   atomic.Uint64 // presence summaries pulled from other regions
	Skipped     atomic.Uint64 // conversation pushes not sent to a region: no recipient online there
	// Refused counts push streams from other regions this core turned
	// away while its edges were not back yet (regionwarm.go).
	Refused atomic.Uint64
	// SilentCores counts calls to another region's core abandoned because
	// it answered neither the call nor a PING (callCore); the call went on
	// to the next core.
	SilentCores atomic.Uint64
	// TagChecks counts regions asked whether they hold a reconnect's tag
	// (MethodTagHeld); TagSkips those not asked: their summary says the
	// client holds no session with that tag there.
	TagChecks, TagSkips atomic.Uint64
}

type remoteRegion struct {
	num   uint8
	cores []string
	q     *pq.Queue[*meshpb.RegionDelivery]

	mu     sync.Mutex
	router string                      // guarded by mu; the core that last answered as the region's router
	down   bool                        // guarded by mu; unreachable: requests fail at once while a prober looks
	online map[relay.PeerRef][]string  // guarded by mu; the region's presence summary as last pulled: clientId → its sessions' tags
	tagged bool                        // guarded by mu; the summary names tags (PresenceSummary.with_tags)
	pulled time.Time                   // guarded by mu; when a pull last succeeded
	marks  map[relay.PeerRef]loginMark // guarded by mu; logins there not yet in a summary
	silent map[string]time.Time        // guarded by mu; cores that answered neither a call nor a PING, until when they are tried last
}

// NewRegions returns the link of region self's core on node to peers;
// inbound pushes go to rl. Close stops its senders.
func NewRegions(self uint8, node *mesh.Node, rl *relay.Relay, peers []RemoteRegion, log *slog.Logger) (*Regions, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Regions{self: self, node: node, relay: rl, log: log, peers: map[uint8]*remoteRegion{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	for _, p := range peers {
		if p.Number == 0 || p.Number == self || len(p.Cores) == 0 {
			return nil, fmt.Errorf("core: region %d: a remote region needs another number and cores", p.Number)
		}
		if g.peers[p.Number] != nil {
			return nil, fmt.Errorf("core: region %d listed twice", p.Number)
		}
		rr := &remoteRegion{num: p.Number, cores: append([]string(nil), p.Cores...), q: pq.New[*meshpb.RegionDelivery](regionQueueLen, pq.DropNew),
			online: map[relay.PeerRef][]string{}, marks: map[relay.PeerRef]loginMark{}}
		g.peers[p.Number] = rr
		g.order = append(g.order, p.Number)
	}
	sort.Slice(g.order, func(i, j int) bool { return g.order[i] < g.order[j] })
	for _, n := range g.order {
		rr := g.peers[n]
		g.wg.Go(func() { g.send(rr) })
		g.wg.Go(func() { g.pull(rr) })
	}
	return g, nil
}

// Serve registers the inbound side on the node: other regions' cores
// open push streams to this one.
func (g *Regions) Serve() {
	g.node.HandleStream(meshpb.MethodRegionDeliveries, g.serve, mesh.RoleCore)
	g.node.HandleRPC(meshpb.MethodPresenceSummary, g.serveSummary, mesh.RoleCore)
	g.node.HandleRPC(meshpb.MethodPresenceMark, g.serveMark, mesh.RoleCore)
	g.node.HandleRPC(meshpb.MethodRelayEdges, g.serveRelayEdges, mesh.RoleCore)
	g.node.HandleRPC(meshpb.MethodRoomCount, g.serveRoomCount, mesh.RoleCore)
	g.node.HandleRPC(meshpb.MethodTagHeld, g.serveTagHeld, mesh.RoleCore)
}

// RoomCount is how many sessions of the other regions are in chatroom cid
// of app, and with members up to maxRoomMembers of their clientIds from
// each region (MethodRoomCount), asked of every region at once: a
// region's relays hold its own sessions' chatrooms. A region that does
// not answer counts none (it is logged): a count is no reason to wait out
// a region's outage.
func (g *Regions) RoomCount(ctx context.Context, app, cid string, withMembers bool) (int, []string) {
	if g == nil || len(g.order) == 0 {
		return 0, nil
	}
	req := &meshpb.ClientRequest{AppId: app, Admin: &meshpb.AdminRequest{Cid: cid}}
	if !withMembers {
		req.Admin.Limit = roomCountOnly
	}
	total := 0
	var members []string
	for _, rep := range g.AskEach(ctx, g.order, meshpb.MethodRoomCount, req, "a region's chatroom count", "cid", cid) {
		total += int(max(rep.GetAdmin().GetCount(), 0))
		members = append(members, rep.GetAdmin().GetRoomMembers()...)
	}
	return total, members
}

// AskEach calls method with req on a core of each region of ns at once
// and returns the replies of those that answered, in the order of ns. A
// region that does not answer is left out and logged (what, with attrs):
// none of these asks is a reason to wait out a region's outage.
func (g *Regions) AskEach(ctx context.Context, ns []uint8, method string, req *meshpb.ClientRequest, what string, attrs ...any) []*meshpb.ClientReply {
	reps := make([]*meshpb.ClientReply, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Go(func() {
			rep, err := g.call(ctx, n, method, req)
			if err != nil {
				g.log.Warn(what, append([]any{"region", n, "err", err}, attrs...)...)
				return
			}
			reps[i] = rep
		})
	}
	wg.Wait()
	return slices.DeleteFunc(reps, func(rep *meshpb.ClientReply) bool { return rep == nil })
}

// roomCountOnly in a MethodRoomCount request's admin.limit asks for the
// count without the members (conv/count). Zero, as a core of an earlier
// release sends, asks for both.
const roomCountOnly = -1

// serveRoomCount is MethodRoomCount: this region's sessions in a
// chatroom, as this core's relay holds them (every core of a region
// mirrors its edges' chatrooms), and up to maxRoomMembers of their
// clientIds unless the asker wants the count only.
func (g *Regions) serveRoomCount(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil || req.GetAppId() == "" || req.GetAdmin().GetCid() == "" {
		return nil, fmt.Errorf("core: bad chatroom count request from %s: %v", peer, err)
	}
	app, cid := req.GetAppId(), req.GetAdmin().GetCid()
	rep := &meshpb.AdminReply{Count: int64(g.relay.RoomCount(app, cid))}
	if req.GetAdmin().GetLimit() != roomCountOnly {
		rep.RoomMembers = g.relay.RoomMembers(app, cid, maxRoomMembers)
	}
	return proto.Marshal(&meshpb.ClientReply{Admin: rep})
}

// TagHeld reports whether another region holds a session of app/peer
// with tag that is not the client's own (MethodTagHeld): any session when
// the reconnect is not vouched, one of another chain than chain when it
// is (relay.Relay.TagHeld). It asks at once every region where the client
// may be online (its summary, a login marked since, or a summary too old
// to say: wants), so a reconnect of a client online nowhere else costs no
// round trip. A region that does not answer holds none (it is logged): a
// reconnect is no reason to wait out a region's outage, and the client's
// own region decides alone then.
func (g *Regions) TagHeld(ctx context.Context, app, peer, tag string, vouched bool, chain uint64) bool {
	if g == nil || len(g.order) == 0 || tag == "" {
		return false
	}
	if !vouched {
		chain = 0
	} else if chain == 0 {
		return false // an edge of an earlier release: its own, as before chains
	}
	var ask []uint8
	for _, n := range g.order {
		if may, online := g.mayHoldTag(g.peers[n], app, peer, tag); may {
			ask = append(ask, n)
		} else if online {
			g.stats.TagSkips.Add(1)
		}
	}
	g.stats.TagChecks.Add(uint64(len(ask)))
	req := &meshpb.ClientRequest{AppId: app, PeerId: peer, Tag: tag, SessionChain: chain}
	for _, rep := range g.AskEach(ctx, ask, meshpb.MethodTagHeld, req, "a region's tag check", "app", app, "peer", peer) {
		if rep.GetErrorCode() == lcpb.ErrSessionConflict {
			return true
		}
	}
	return false
}

// serveTagHeld is MethodTagHeld: whether this core's relay (which mirrors
// every session of this region's edges) holds a session of the client
// with the tag, other than those of session_chain when that is set.
func (g *Regions) serveTagHeld(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil || req.GetAppId() == "" || req.GetPeerId() == "" || req.GetTag() == "" {
		return nil, fmt.Errorf("core: bad tag check from %s: %v", peer, err)
	}
	if g.relay.TagHeld(req.GetAppId(), req.GetPeerId(), req.GetTag(), req.GetSessionChain()) {
		return proto.Marshal(&meshpb.ClientReply{ErrorCode: lcpb.ErrSessionConflict, ErrorReason: "SESSION_CONFLICT: the tag is held in this region"})
	}
	return proto.Marshal(&meshpb.ClientReply{})
}

// Close stops the senders; pushes still queued are dropped.
func (g *Regions) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	for _, rr := range g.peers {
		rr.q.Close()
	}
	g.wg.Wait()
}

// Remote reports whether region n is another region this core knows.
func (g *Regions) Remote(n uint8) bool { return g != nil && g.peers[n] != nil }

// Numbers lists the other regions, ascending.
func (g *Regions) Numbers() []uint8 {
	if g == nil {
		return nil
	}
	return g.order
}

// Stats returns the region hop's counters.
func (g *Regions) Stats() *RegionStats { return &g.stats }

// Fanout sends a conversation push to every other region (HIGH).
func (g *Regions) Fanout(app string, peers []string, skip connKey, cmd *lcpb.GenericCommand, replay bool) {
	if g == nil || len(g.order) == 0 || len(peers) == 0 {
		return
	}
	b, err := encodeShared(cmd)
	if err != nil {
		return
	}
	for _, n := range g.order {
		rr := g.peers[n]
		if !g.wants(rr, app, peers) {
			g.stats.Skipped.Add(1)
			continue
		}
		g.push(rr, &meshpb.RegionDelivery{AppId: app, Peers: peers, SkipEdge: skip.Edge, SkipConn: skip.Conn,
			Command: b, Replay: replay, FromRegion: uint32(g.self)}, pq.High)
	}
}

// A region's summary counts as fresh this long after its last pull; a
// push to a region whose summary is older goes there whoever is online.
const regionSummaryFresh = 4 * regionSummaryEvery

// regionMarkFor is how long a login mark (MarkOnline) holds: well past
// the next pulls, which then carry the session.
const regionMarkFor = 10 * time.Second

// wants reports whether a conversation push for peers must go to rr: one
// of them is online there (its summary, or a login marked since), or the
// summary is too old to say.
func (g *Regions) wants(rr *remoteRegion, app string, peers []string) bool {
	now := time.Now()
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if now.Sub(rr.pulled) > regionSummaryFresh {
		return true
	}
	for _, p := range peers {
		k := relay.PeerRef{App: app, Peer: p}
		if _, ok := rr.online[k]; ok || rr.markedLocked(k, now) {
			return true
		}
	}
	return false
}

// markedLocked reports whether a login of k in rr was marked and the mark
// still holds (an expired one is dropped). rr.mu is held.
func (rr *remoteRegion) markedLocked(k relay.PeerRef, now time.Time) bool {
	_, ok := rr.markLocked(k, now)
	return ok
}

// markLocked returns the mark of k's logins in rr while it holds (an
// expired one is dropped). rr.mu is held.
func (rr *remoteRegion) markLocked(k relay.PeerRef, now time.Time) (loginMark, bool) {
	m, ok := rr.marks[k]
	if ok && !now.Before(m.until) {
		delete(rr.marks, k)
		return loginMark{}, false
	}
	return m, ok
}

// loginMark records logins of a client in another region that its summary
// may not carry yet: until when it holds, and the tags of those logins
// (tagged: tags is complete; a mark from a core of an earlier release
// names none and says so).
type loginMark struct {
	until  time.Time
	tags   []string
	tagged bool
}

// mayHoldTag reports whether app/peer may hold a session with tag in rr
// (ask): its summary says so, or names no tags (a core of an earlier
// release), or is too old to say, or a login there with that tag was
// marked since (or one whose mark names no tags: a core of an earlier
// release). online is what the summary says of the client.
func (g *Regions) mayHoldTag(rr *remoteRegion, app, peer, tag string) (ask, online bool) {
	now := time.Now()
	k := relay.PeerRef{App: app, Peer: peer}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	tags, on := rr.online[k]
	if now.Sub(rr.pulled) > regionSummaryFresh {
		return true, on
	}
	if m, ok := rr.markLocked(k, now); ok && (!m.tagged || slices.Contains(m.tags, tag)) {
		return true, on
	}
	return on && (!rr.tagged || slices.Contains(tags, tag)), on
}

// SetLocalCores names this region's other cores, which MarkEverywhere
// tells of logins elsewhere.
func (g *Regions) SetLocalCores(addrs []string) {
	if g != nil {
		g.local = addrs
		g.startWarmUp() // regionwarm.go
	}
}

// MarkOnline records on this core that app/peer just logged in in region
// n: pushes for it go there until a summary carries the session. tag is
// the login's ("" for none) when tagged; a mark that is not tagged may
// hold any tag (mayHoldTag).
func (g *Regions) MarkOnline(n uint8, app, peer, tag string, tagged bool) {
	if g == nil {
		return
	}
	rr := g.peers[n]
	if rr == nil {
		return
	}
	now := time.Now()
	k := relay.PeerRef{App: app, Peer: peer}
	rr.mu.Lock()
	m, ok := rr.markLocked(k, now)
	if !ok {
		m.tagged = true
	}
	m.until = now.Add(regionMarkFor)
	m.tagged = m.tagged && tagged
	if tag != "" && !slices.Contains(m.tags, tag) {
		if len(m.tags) < maxMarkTags {
			m.tags = append(m.tags, tag)
		} else {
			m.tagged = false // too many to name: any
		}
	}
	rr.marks[k] = m
	rr.mu.Unlock()
}

// maxMarkTags bounds the tags a login mark names.
const maxMarkTags = 8

// MarkEverywhere marks app/peer online in region n on this core and on
// every other core of this region, and returns once they all have it (or
// regionPartWait passed): a login in n then completes only after every
// shard leader here sends its pushes to n.
func (g *Regions) MarkEverywhere(ctx context.Context, n uint8, app, peer, tag string) {
	if g == nil || g.peers[n] == nil {
		return
	}
	g.MarkOnline(n, app, peer, tag, true)
	if len(g.local) == 0 {
		return
	}
	ref := &meshpb.PeerRef{AppId: app, PeerId: peer}
	if tag != "" {
		ref.Tags = []string{tag}
	}
	b, _ := proto.Marshal(&meshpb.PresenceMark{Region: uint32(n), Peer: ref, WithTags: true})
	ctx, cancel := context.WithTimeout(ctx, regionPartWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, addr := range g.local {
		wg.Go(func() {
			if _, err := g.node.Call(ctx, addr, meshpb.MethodPresenceMark, b); err != nil {
				g.log.Debug("presence mark", "core", addr, "err", err)
			}
		})
	}
	wg.Wait()
}

// serveMark is MethodPresenceMark.
func (g *Regions) serveMark(ctx context.Context, peer string, b []byte) ([]byte, error) {
	m := new(meshpb.PresenceMark)
	if err := proto.Unmarshal(b, m); err != nil || m.GetPeer() == nil || m.GetRegion() > 255 {
		return nil, fmt.Errorf("core: bad presence mark from %s: %v", peer, err)
	}
	tags := m.GetPeer().GetTags()
	if len(tags) > 1 {
		return nil, fmt.Errorf("core: presence mark from %s names %d tags", peer, len(tags))
	}
	tag := ""
	if len(tags) == 1 {
		tag = tags[0]
	}
	g.MarkOnline(uint8(m.GetRegion()), m.GetPeer().GetAppId(), m.GetPeer().GetPeerId(), tag, m.GetWithTags())
	return nil, nil
}

// FanoutAll sends a push for every session of app (a global broadcast)
// to every other region (HIGH).
func (g *Regions) FanoutAll(app string, cmd *lcpb.GenericCommand) {
	if g == nil || len(g.order) == 0 {
		return
	}
	b, err := encodeShared(cmd)
	if err != nil {
		return
	}
	for _, n := range g.order {
		g.push(g.peers[n], &meshpb.RegionDelivery{AppId: app, AllOnline: true, Command: b, FromRegion: uint32(g.self)}, pq.High)
	}
}

// FanoutRoom sends a chatroom push to every other region, in the class of
// its LeanCloud priority.
func (g *Regions) FanoutRoom(app, cid, skipPeer string, blocked []string, priority int32, cmd *lcpb.GenericCommand) {
	if g == nil || len(g.order) == 0 {
		return
	}
	b, err := encodeShared(cmd)
	if err != nil {
		return
	}
	for _, n := range g.order {
		g.push(g.peers[n], &meshpb.RegionDelivery{AppId: app, Room: cid, SkipPeer: skipPeer, Blocked: blocked,
			Priority: priority, Command: b, FromRegion: uint32(g.self)}, pq.ClassOf(priority))
	}
}

// encodeShared encodes a push for every session of a region: peerId is
// set per delivery by the receiving relay.
func encodeShared(cmd *lcpb.GenericCommand) ([]byte, error) {
	c := proto.Clone(cmd).(*lcpb.GenericCommand)
	c.PeerId = nil
	return proto.Marshal(c)
}

func (g *Regions) push(rr *remoteRegion, d *meshpb.RegionDelivery, c pq.Class) {
	if o := rr.q.Push(d, c); o.Dropped() {
		g.stats.Dropped[o.Victim].Add(1)
	}
}

// regionUnackedMax bounds the pushes sent to a region and not yet acked;
// past it the sender waits for acks and the queue fills (and sheds LOW
// first) behind it.
const regionUnackedMax = 4096

// hopStream is one push stream to a core of a remote region and the
// highest seq that core acked.
type hopStream struct {
	st    *mesh.Stream
	addr  string // the core
	acked atomic.Uint64
	ended atomic.Bool // the core ended the stream (it refused pushes, or went away)
}

// send drains rr's queue in order over one stream to a core of rr (its
// router first), keeping every push until that core acks it: when a
// stream fails, the next core (or the same, once back) gets the unacked
// pushes again, marked as a replay, before anything newer. A push is lost
// only to a full queue (counted as dropped by class), never to a stream
// that died with it in flight. A stream that owes acks and acked nothing
// for regionAckWait counts as failed too: a core killed with no close
// leaves a stream that takes writes until the connection's idle timeout.
// The core of a failed stream is tried last: once restarted, it would
// take the pushes again before its edges are back, and ack them having
// delivered nothing.
func (g *Regions) send(rr *remoteRegion) {
	var hs *hopStream
	var unacked []*meshpb.RegionDelivery // in seq order
	var seq uint64
	next := 0
	failed := ""          // the core whose stream last failed: not the first tried again
	var waiting time.Time // since when the stream owes acks and acked nothing
	defer func() {
		if hs != nil {
			hs.st.Close()
		}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// trim drops what the current stream acked.
	trim := func() {
		if hs == nil {
			return
		}
		a := hs.acked.Load()
		i := 0
		for i < len(unacked) && unacked[i].GetSeq() <= a {
			i++
		}
		if i > 0 {
			g.stats.Sent.Add(uint64(i))
			unacked = append(unacked[:0], unacked[i:]...)
			waiting, failed = time.Time{}, ""
		}
		if len(unacked) == 0 {
			waiting = time.Time{}
		} else if waiting.IsZero() {
			waiting = time.Now()
		}
	}
	// drop gives up the current stream: its unacked pushes go to the next
	// core.
	drop := func() {
		hs.st.Close()
		failed = hs.addr
		hs = nil
		waiting = time.Time{}
		next++
	}
	// open opens a stream and sends it every unacked push again; false
	// when no core of rr took them.
	open := func() bool {
		for try := 0; try < len(rr.cores); try++ {
			if rr.cores[next%len(rr.cores)] == failed && len(rr.cores) > 1 {
				next++ // a core that failed is tried again last
			}
			addr := rr.cores[next%len(rr.cores)]
			rr.mu.Lock()
			if rr.router != "" && try == 0 && rr.router != failed {
				addr = rr.router // it registered its logins itself: it holds every session
			}
			rr.mu.Unlock()
			ctx, cancel := context.WithTimeout(g.ctx, regionSendTimeout)
			st, err := g.node.OpenStream(ctx, addr, meshpb.MethodRegionDeliveries)
			cancel()
			if err != nil {
				next++
				continue
			}
			st.SetSendTimeout(regionSendTimeout)
			h := &hopStream{st: st, addr: addr}
			g.wg.Go(func() { // acks in
				for {
					b, err := st.Recv()
					if err != nil {
						h.ended.Store(true)
						return
					}
					a := new(meshpb.RegionAck)
					if proto.Unmarshal(b, a) == nil && a.GetSeq() > h.acked.Load() {
						h.acked.Store(a.GetSeq())
					}
				}
			})
			ok := true
			for _, d := range unacked {
				if !d.GetReplay() && d.GetRoom() == "" && !d.GetAllOnline() {
					d.Replay = true // the edges drop a copy a session already had
				}
				b, _ := proto.Marshal(d)
				if err := st.Send(b); err != nil {
					ok = false
					break
				}
				g.stats.Resent.Add(1)
			}
			if !ok {
				st.Close()
				next++
				continue
			}
			hs = h
			return true
		}
		return false
	}
	ended := 0 // streams in a row the cores ended before acking anything
	for {
		trim()
		if hs != nil && !waiting.IsZero() && time.Since(waiting) > regionAckWait {
			g.log.Warn("region push: no ack from the core; sending its pushes to the next", "region", rr.num, "core", hs.addr, "unacked", len(unacked))
			drop()
		}
		if hs != nil && hs.ended.Load() {
			// A core that just restarted refuses pushes until its edges
			// are back (regionwarm.go); the next core may take them. When
			// every core did, pause as when none answers.
			if hs.acked.Load() == 0 {
				ended++
			} else {
				ended = 0
			}
			drop()
			if ended >= len(rr.cores) {
				ended = 0
				select {
				case <-time.After(regionRetryPause):
				case <-g.ctx.Done():
					return
				}
			}
		}
		if hs == nil && len(unacked) > 0 {
			if !open() {
				g.stats.Failed.Add(1)
				g.log.Warn("region push: no core of the region takes pushes; holding them", "region", rr.num, "unacked", len(unacked))
				select {
				case <-time.After(regionRetryPause):
				case <-g.ctx.Done():
					return
				}
				continue
			}
		}
		if len(unacked) >= regionUnackedMax {
			select {
			case <-tick.C:
			case <-g.ctx.Done():
				return
			}
			continue
		}
		d, _, state := rr.q.Pop()
		switch state {
		case pq.PopDrained, pq.PopOverflow:
			return
		case pq.PopEmpty:
			select {
			case <-rr.q.Notify():
			case <-tick.C: // acks to trim
			case <-g.ctx.Done():
				return
			}
			continue
		}
		seq++
		d.Seq = seq
		unacked = append(unacked, d)
		if hs == nil {
			open() // sends every unacked push, this one included; on failure the loop's top tries again
			continue
		}
		b, err := proto.Marshal(d)
		if err != nil {
			continue
		}
		if err := hs.st.Send(b); err != nil {
			drop() // the loop's top opens the next stream and sends what is unacked
		}
	}
}

// serve reads one other region's push stream into the local relay.
//
// A push is acked once every delivery it made has left this core's relay
// for its edge (relay.Wait): a core that dies before that has not acked
// it, and the sender sends it again to another core.
func (g *Regions) serve(ctx context.Context, peer string, st *mesh.Stream) {
	defer st.Close()
	if !g.presenceReady() { // regionwarm.go: the sender moves to another core
		g.stats.Refused.Add(1)
		g.log.Info("region push stream refused: this core's edges are not back yet", "peer", peer)
		return
	}
	st.SetSendTimeout(regionSendTimeout) // a sender that reads no acks loses its stream
	type pendingAck struct {
		seq   uint64
		waits []relay.Wait
	}
	acks := make(chan pendingAck, 1024)
	done := make(chan struct{})
	defer func() { close(acks); <-done }()
	go func() { // acks out, in order
		defer close(done)
		for p := range acks {
			for _, w := range p.waits {
				for !w.Left() {
					select {
					case <-ctx.Done():
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}
			b, _ := proto.Marshal(&meshpb.RegionAck{Seq: p.seq})
			if err := st.Send(b); err != nil {
				st.Close()
				for range acks { // let the reader finish
				}
				return
			}
		}
	}()
	for {
		b, err := st.Recv()
		if err != nil {
			return
		}
		d := new(meshpb.RegionDelivery)
		if err := proto.Unmarshal(b, d); err != nil {
			g.log.Warn("bad region push", "peer", peer, "err", err)
			return
		}
		waits := g.deliverRegion(peer, d)
		if d.GetSeq() > 0 {
			select {
			case acks <- pendingAck{d.GetSeq(), waits}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// deliverRegion hands one push from another region to the local relay and
// returns where its deliveries wait (none for chatroom pushes, which are
// not tracked).
func (g *Regions) deliverRegion(peer string, d *meshpb.RegionDelivery) []relay.Wait {
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(d.GetCommand(), cmd); err != nil {
		g.log.Warn("bad region push command", "peer", peer, "err", err)
		return nil
	}
	g.stats.Received.Add(1)
	if d.GetRoom() != "" {
		var skip func(string) bool
		if bl := d.GetBlocked(); len(bl) > 0 {
			set := make(map[string]bool, len(bl))
			for _, p := range bl {
				set[p] = true
			}
			skip = func(p string) bool { return set[p] }
		}
		g.relay.FanoutRoom(d.GetAppId(), d.GetRoom(), d.GetSkipPeer(), skip, d.GetPriority(), cmd)
		return nil
	}
	peers := d.GetPeers()
	if d.GetAllOnline() {
		peers = g.relay.OnlinePeers(d.GetAppId())
	}
	return g.relay.Fanout(d.GetAppId(), peers, relay.ConnKey{Edge: d.GetSkipEdge(), Conn: d.GetSkipConn()}, cmd, d.GetReplay())
}

// call sends req to region n: to the core that last answered as its
// router, else to each of its cores, following not_leader hints, until
// one answers or regionCallWait passes. method is MethodClient (the
// region's router serves it) or MethodRegion (any core does).
func (g *Regions) call(ctx context.Context, n uint8, method string, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	rr := g.peers[n]
	if rr == nil {
		return nil, fmt.Errorf("%w: region %d", errNoShard, n)
	}
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	g.stats.Calls.Add(1)
	rr.mu.Lock()
	hint, down := rr.router, rr.down
	rr.mu.Unlock()
	if down {
		g.stats.Unreachable.Add(1)
		return nil, fmt.Errorf("%w: region %d", errRegionDown, n)
	}
	wait := regionCallWait
	if method != meshpb.MethodClient {
		wait = regionPartWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	deadline := time.Now().Add(wait)
	answered := false // some core answered: a reply, an error of its own, or a PING (callCore)
	defer func() {
		if !answered && (ctx.Err() == nil || time.Now().After(deadline)) {
			g.markDown(rr)
		}
	}()
	var lastErr error
	maybe := false // a call may have reached a core
	fail := func(err error) error {
		if maybe {
			return fmt.Errorf("%w: region %d: %v", errRegionUnknown, n, err)
		}
		return fmt.Errorf("%w: region %d: %v", errRegionDown, n, err)
	}
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		addrs := rr.callOrder(hint)
		hint = ""
		for _, addr := range addrs {
			out, err, alive := g.callCore(ctx, rr, addr, method, b)
			answered = answered || alive
			if err != nil {
				if !errors.Is(err, mesh.ErrNotSent) {
					maybe = true
				}
				if ctx.Err() != nil {
					return nil, fail(ctx.Err())
				}
				if errors.Is(err, errRegionSilent) {
					return nil, fail(err)
				}
				lastErr = err
				continue
			}
			rep := new(meshpb.ClientReply)
			if err := proto.Unmarshal(out, rep); err != nil {
				return nil, fmt.Errorf("core: bad reply from region %d: %w", n, err)
			}
			if rep.GetNotLeader() {
				if l := rep.GetLeader(); l != "" && l != addr && !rr.isSilent(l) {
					hint = l
					break
				}
				continue
			}
			if method != meshpb.MethodRoomCount && method != meshpb.MethodTagHeld { // any core answers those
				rr.mu.Lock()
				rr.router = addr
				rr.mu.Unlock()
			}
			return rep, nil
		}
		if hint != "" {
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fail(ctx.Err())
		case <-time.After(routePause * time.Duration(min(attempt+1, 10))):
		}
	}
	return nil, fail(fmt.Errorf("no core in reach: %v", lastErr))
}

// errCoreSilent: a core of another region answered neither a call, for
// regionCheckAfter, nor a PING after it; the call was abandoned (it may
// have reached the core).
var errCoreSilent = errors.New("core: remote core answered neither the call nor a ping")

// errRegionSilent: as errCoreSilent, and no other core of the region
// answered a PING either: the region is taken for unreachable at once.
var errRegionSilent = errors.New("core: no core of the region answered a ping")

// callCore runs one call to addr, a core of rr. A call unanswered for
// regionCheckAfter is checked with a PING to every core of rr at once. If
// addr does not answer it within regionPingWait, the call is abandoned
// with errCoreSilent (errRegionSilent when no core answered), and each
// core that did not answer is marked silent (callOrder). alive reports
// that a core of rr answered: the call (a reply or an error of the core's
// own), or a PING.
func (g *Regions) callCore(ctx context.Context, rr *remoteRegion, addr, method string, b []byte) (out []byte, err error, alive bool) {
	actx, abandon := context.WithCancel(ctx)
	defer abandon()
	var silent, anyAlive atomic.Bool
	check := time.AfterFunc(regionCheckAfter, func() {
		alive := g.pingAll(actx, rr)
		if actx.Err() != nil {
			return
		}
		anyAlive.Store(len(alive) > 0)
		if !alive[addr] {
			silent.Store(true)
			abandon()
		}
	})
	out, err = g.node.Call(actx, addr, method, b)
	check.Stop()
	if err != nil && silent.Load() && ctx.Err() == nil {
		if !anyAlive.Load() {
			g.log.Warn("no core of another region answered a call or a ping: taking it for unreachable", "region", rr.num)
			return nil, fmt.Errorf("%w: %s", errRegionSilent, addr), false
		}
		g.log.Warn("a core of another region answered neither a call nor a ping: trying the next", "region", rr.num, "core", addr)
		return nil, fmt.Errorf("%w: %s", errCoreSilent, addr), true
	}
	return out, err, err == nil || errors.Is(err, mesh.ErrRemote) || anyAlive.Load()
}

// pingAll PINGs every core of rr at once, for regionPingWait at most, and
// returns those that answered; the others are marked silent.
func (g *Regions) pingAll(parent context.Context, rr *remoteRegion) map[string]bool {
	ctx, cancel := context.WithTimeout(parent, regionPingWait)
	defer cancel()
	answered := make([]bool, len(rr.cores))
	var wg sync.WaitGroup
	for i, a := range rr.cores {
		wg.Go(func() {
			_, err := g.node.Call(ctx, a, meshpb.MethodClient, regionPing)
			answered[i] = err == nil
		})
	}
	wg.Wait()
	alive := map[string]bool{}
	for i, a := range rr.cores {
		if answered[i] {
			alive[a] = true
			continue
		}
		if parent.Err() == nil { // not cut short by the call's end
			g.stats.SilentCores.Add(1)
			rr.markSilent(a)
		}
	}
	return alive
}

// regionPing is the PING request callCore checks a silent core with, and
// markDown's prober a region marked unreachable.
var regionPing, _ = proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING})

// callOrder is the order a call tries rr's cores in: hint first (unless
// silent), then the cores that are not silent, then the silent ones.
func (rr *remoteRegion) callOrder(hint string) []string {
	now := time.Now()
	rr.mu.Lock()
	defer rr.mu.Unlock()
	out := make([]string, 0, len(rr.cores)+1)
	quiet := func(a string) bool { until, ok := rr.silent[a]; return ok && now.Before(until) }
	first := hint != "" && !quiet(hint)
	if first {
		out = append(out, hint)
	}
	var last []string
	for _, a := range rr.cores {
		switch {
		case first && a == hint:
		case quiet(a):
			last = append(last, a)
		default:
			out = append(out, a)
		}
	}
	return append(out, last...)
}

// markSilent marks addr as a core to try last for regionSilentFor; it is
// no longer taken for the region's router.
func (rr *remoteRegion) markSilent(addr string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.silent == nil {
		rr.silent = map[string]time.Time{}
	}
	rr.silent[addr] = time.Now().Add(regionSilentFor)
	if rr.router == addr {
		rr.router = ""
	}
}

// isSilent reports whether addr was marked silent lately.
func (rr *remoteRegion) isSilent(addr string) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	until, ok := rr.silent[addr]
	return ok && time.Now().Before(until)
}

// markDown marks rr unreachable and starts its prober, which clears the
// mark once a core of rr answers a PING.
func (g *Regions) markDown(rr *remoteRegion) {
	rr.mu.Lock()
	was := rr.down
	rr.down = true
	rr.mu.Unlock()
	if was {
		return
	}
	g.log.Warn("region unreachable: requests to it fail at once until it answers", "region", rr.num)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.wg.Go(func() {
		t := time.NewTicker(regionProbeEvery)
		defer t.Stop()
		for {
			select {
			case <-g.ctx.Done():
				return
			case <-t.C:
			}
			for _, addr := range rr.cores {
				ctx, cancel := context.WithTimeout(g.ctx, regionProbeEvery)
				_, err := g.node.Call(ctx, addr, meshpb.MethodClient, regionPing)
				cancel()
				if err == nil {
					rr.mu.Lock()
					rr.down = false
					rr.mu.Unlock()
					g.log.Info("region reachable again", "region", rr.num)
					return
				}
			}
		}
	})
}

// Presence summaries (relay/summary.go): every regionSummaryEvery each
// core pulls from one core of every other region the changes of who is
// online there. They serve what a stale answer costs little: an offline
// push is skipped for a client online in another region (OnlineElsewhere).
// A region marked unreachable counts as having nobody online.
const (
	regionSummaryEvery   = 500 * time.Millisecond
	regionSummaryTimeout = 2 * time.Second
)

// OnlineElsewhere reports whether app/peer has a session in another
// region, as the last summaries said.
func (g *Regions) OnlineElsewhere(app, peer string) bool {
	return g.OnlineElsewhereBut(app, peer, 0)
}

// OnlineElsewhereBut is OnlineElsewhere leaving region but (0: none) out.
func (g *Regions) OnlineElsewhereBut(app, peer string, but uint8) bool {
	return g.onlineIn(app, peer, but, false)
}

// ReachedElsewhere reports whether a push for app/peer goes to another
// region: its summary there says the client is online, or a login of it
// there was marked since (MarkOnline).
func (g *Regions) ReachedElsewhere(app, peer string) bool {
	return g.onlineIn(app, peer, 0, true)
}

// onlineIn reports whether a region that is not down, other than but (0:
// none), names app/peer online in its summary or, with marks, in a login
// mark that still holds.
func (g *Regions) onlineIn(app, peer string, but uint8, marks bool) bool {
	if g == nil {
		return false
	}
	now := time.Now()
	k := relay.PeerRef{App: app, Peer: peer}
	for _, n := range g.order {
		if n == but {
			continue
		}
		rr := g.peers[n]
		rr.mu.Lock()
		_, on := rr.online[k]
		on = on || marks && rr.markedLocked(k, now)
		down := rr.down
		rr.mu.Unlock()
		if on && !down {
			return true
		}
	}
	return false
}

// pull keeps rr's summary, polling one of its cores (the next one after a
// failure, which costs a full summary: each core has its own epoch).
func (g *Regions) pull(rr *remoteRegion) {
	t := time.NewTicker(regionSummaryEvery)
	defer t.Stop()
	var epoch string
	var version uint64
	next, fails := 0, 0
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		b, _ := proto.Marshal(&meshpb.PresenceSummaryRequest{Epoch: epoch, Version: version})
		ctx, cancel := context.WithTimeout(g.ctx, regionSummaryTimeout)
		out, err := g.node.Call(ctx, rr.cores[next%len(rr.cores)], meshpb.MethodPresenceSummary, b)
		cancel()
		sum := new(meshpb.PresenceSummary)
		if err == nil {
			err = proto.Unmarshal(out, sum)
		}
		if err != nil {
			next++
			epoch, version = "", 0
			if fails++; fails == 3 {
				g.markDown(rr)
			}
			continue
		}
		fails = 0
		rr.mu.Lock()
		if sum.GetFull() {
			rr.online = make(map[relay.PeerRef][]string, len(sum.GetAdds()))
		}
		rr.tagged = sum.GetWithTags()
		for _, p := range sum.GetAdds() {
			rr.online[relay.PeerRef{App: p.GetAppId(), Peer: p.GetPeerId()}] = p.GetTags()
		}
		for _, p := range sum.GetRemoves() {
			delete(rr.online, relay.PeerRef{App: p.GetAppId(), Peer: p.GetPeerId()})
		}
		rr.pulled = time.Now()
		rr.mu.Unlock()
		epoch, version = sum.GetEpoch(), sum.GetVersion()
		g.stats.Summaries.Add(1)
	}
}

// serveSummary answers another region's pull.
func (g *Regions) serveSummary(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.PresenceSummaryRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("core: bad presence summary request from %s: %w", peer, err)
	}
	epoch, version, full, adds, removes := g.relay.OnlineSince(req.GetEpoch(), req.GetVersion())
	out := &meshpb.PresenceSummary{Epoch: epoch, Version: version, Full: full, WithTags: true}
	for _, p := range adds {
		out.Adds = append(out.Adds, &meshpb.PeerRef{AppId: p.App, PeerId: p.Peer, Tags: p.Tags})
	}
	for _, p := range removes {
		out.Removes = append(out.Removes, &meshpb.PeerRef{AppId: p.App, PeerId: p.Peer})
	}
	return proto.Marshal(out)
}

var (
	descRegionSent        = metric.Counter("relaymesh_region_pushes_sent_total", "Pushes sent to other regions (once per region) and acked there.")
	descRegionResent      = metric.Counter("relaymesh_region_pushes_resent_total", "Pushes sent again to a region on a new stream, unacked on the old one.")
	descRegionReceived    = metric.Counter("relaymesh_region_pushes_received_total", "Pushes received from other regions.")
	descRegionFailed      = metric.Counter("relaymesh_region_pushes_failed_total", "Rounds in which no core of a region took its pushes (they are held and sent again).")
	descRegionCalls       = metric.Counter("relaymesh_region_requests_total", "Requests sent to other regions.")
	descRegionSkipped     = metric.Counter("relaymesh_region_pushes_skipped_total", "Conversation pushes not sent to a region: none of their recipients online there.")
	descRegionSummaries   = metric.Counter("relaymesh_region_summaries_total", "Presence summaries pulled from other regions.")
	descRegionTagChecks   = metric.Counter("relaymesh_region_tag_checks_total", "Other regions asked whether they hold a tagged reconnect's tag.")
	descRegionTagSkips    = metric.Counter("relaymesh_region_tag_skips_total", "Other regions where a tagged reconnect's client is online not asked for its tag: their summary names only other tags.")
	descRegionUnreachable = metric.Counter("relaymesh_region_unreachable_total", "Requests to another region failed at once: no core of it answered lately.")
	descRegionDropped     = metric.Counter("relaymesh_region_pushes_dropped_total", "Pushes dropped at the region hop (queue full), by class.", "class")
	descRegionRefused     = metric.Counter("relaymesh_region_push_streams_refused_total", "Push streams from other regions turned away while this core's edges were not back after its start.")
	descRegionSilent      = metric.Counter("relaymesh_region_silent_cores_total", "Calls to another region's core abandoned for the next core: it answered neither the call nor a ping.")
)

// Collector returns the collector of the region hop's series; nil
// Regions (a single-region node) has none.
func (g *Regions) Collector() prometheus.Collector {
	if g == nil {
		return metric.Collectors{}
	}
	descs := []metric.Desc{descRegionSent, descRegionResent, descRegionReceived, descRegionFailed, descRegionCalls,
		descRegionSkipped, descRegionSummaries, descRegionUnreachable, descRegionDropped, descRegionRefused, descRegionSilent,
		descRegionTagChecks, descRegionTagSkips}
	return metric.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		s := metric.Chan(ch)
		st := &g.stats
		s.Add(descRegionSent, float64(st.Sent.Load()))
		s.Add(descRegionResent, float64(st.Resent.Load()))
		s.Add(descRegionReceived, float64(st.Received.Load()))
		s.Add(descRegionFailed, float64(st.Failed.Load()))
		s.Add(descRegionCalls, float64(st.Calls.Load()))
		s.Add(descRegionSkipped, float64(st.Skipped.Load()))
		s.Add(descRegionSummaries, float64(st.Summaries.Load()))
		s.Add(descRegionTagChecks, float64(st.TagChecks.Load()))
		s.Add(descRegionTagSkips, float64(st.TagSkips.Load()))
		s.Add(descRegionUnreachable, float64(st.Unreachable.Load()))
		s.Add(descRegionRefused, float64(st.Refused.Load()))
		s.Add(descRegionSilent, float64(st.SilentCores.Load()))
		for c := pq.Class(0); c < pq.NumClasses; c++ {
			s.Add(descRegionDropped, float64(st.Dropped[c].Load()), c.String())
		}
	})
}
