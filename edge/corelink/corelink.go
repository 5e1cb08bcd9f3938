// Package corelink is the edge's link to the cores of its region, over the
// mesh (edge → mesh, DESIGN.md "the house"): the edge.Backend (and
// rest.Backend) of an edge process. It sends each client request to the
// shard leader and follows it through leader changes (this file), keeps
// every core told which sessions the edge holds (presence.go), keeps a
// delivery stream open to every core and hands what arrives to the edge
// server (stream.go), and drops the replayed copies of a push a session
// already had (replay.go).
package corelink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// How the link fails over when the leader dies (issue 8):
//
//   - Leader knowledge: the last core that answered as leader, replaced by
//     a newer hint. Hints come from not_leader answers, from every core's
//     LinkLeader frames on the delivery streams (sent on attach and on
//     every leader change the core sees, with the raft term: a hint with a
//     lower term than one already followed is ignored), and from
//     discovery.
//   - Discovery asks every core at once (PING, discoveryTimeout each) and
//     takes the first that answers as leader; a dead core costs nothing but
//     its own probe. It runs when no leader is known, when a call to the
//     leader fails, and in the background when a call to the leader has
//     been waiting probeAfter.
//   - A request in flight when the leader changes, or whose call fails, is
//     sent again to the new leader when that cannot do it twice: it never
//     left the edge (mesh.ErrNotSent, not_leader), or it is retry-safe
//     (retrySafe: reads, session open/close, cursor moves, and sends,
//     which the shard deduplicates on the client's dt or the request's
//     idempotency_key). Other requests whose outcome is unknown fail at
//     once (ErrOutcomeUnknown) instead of waiting out their deadline.
//   - Every attempt is bounded by the request's context (the edge's
//     BackendTimeout) and every mesh dial and write by mesh's deadlines, so
//     a dead, stuck or slow core never holds up requests to the others.
//
// Lock order: Link.mu, then nothing.

// Link tuning.
const (
	// defaultCallTimeout bounds a request whose context has no deadline.
	defaultCallTimeout = 15 * time.Second
	// discoveryTimeout bounds one PING of a core during discovery.
	discoveryTimeout = time.Second
	// probeAfter: a call to the leader still unanswered after this long
	// starts a discovery in the background, which moves retry-safe
	// requests if another core has taken over.
	probeAfter = time.Second
	// probeTick is how often the calls in flight are checked for one
	// waiting probeAfter (watchSlow): a probe starts probeAfter to
	// probeAfter+probeTick after its call.
	probeTick = probeAfter / 10
	// retryPause is the first pause between attempts when no new leader
	// is known yet; it doubles up to maxRetryPause.
	retryPause    = 20 * time.Millisecond
	maxRetryPause = 500 * time.Millisecond
)

// Sentinel errors of the core link.
var (
	// ErrNoLeader is returned when no core answered as leader in time.
	ErrNoLeader = errors.New("corelink: no shard leader")
	// ErrOutcomeUnknown: the request reached a core that failed or lost
	// the lead before answering, and it is not safe to send again; it may
	// or may not have taken effect.
	ErrOutcomeUnknown = errors.New("corelink: outcome unknown (the shard leader failed during the request)")
	// errLeaderChanged cancels an attempt whose target is no longer the
	// leader.
	errLeaderChanged = errors.New("corelink: shard leader changed")
)

// linkStats are the core link's counters (relaymesh_edge_link_* on
// /metrics).
type linkStats struct {
	retries          atomic.Uint64 // requests sent again to another (or the same) core
	moved            atomic.Uint64 // attempts cancelled by a leader change and sent again
	unknown          atomic.Uint64 // requests failed with ErrOutcomeUnknown
	leaderChanges    atomic.Uint64 // times the link followed a new leader
	discoveries      atomic.Uint64 // discovery rounds run
	probesSkipped    atomic.Uint64 // probes that started no round: one had just ended
	presenceResyncs  atomic.Uint64 // full presence lists sent (attach or overflow)
	presenceOverflow atomic.Uint64 // presence queues that overflowed into a resync
}

// Config configures a Link.
type Config struct {
	Node   *mesh.Node // the edge's mesh node
	Cores  []string   // mesh addresses of the region's cores
	EdgeID string     // named in EdgeHello on every delivery stream
	Logger *slog.Logger
	// DropDelivery, when > 0, silently drops the DropDelivery-th direct
	// message delivery the link receives. It is a test hook that breaks
	// the delivery path on purpose, so the load tester's ledger can be
	// shown to catch a loss.
	DropDelivery int64
	// PresenceDelay, when > 0, holds every presence frame this long
	// before it is sent: a TEST HOOK that widens the window in which only
	// the router core knows a new session (core/router.go tells the
	// others itself), so tests can show that nothing depends on it.
	PresenceDelay time.Duration
}

// Link is the edge's edge.Backend: it sends each request to the shard
// leader among the region's cores and keeps them told of the edge's
// sessions.
type Link struct {
	node    *mesh.Node
	cores   []string
	edgeID  string
	log     *slog.Logger
	stats   linkStats
	replays replayFilter // replay.go

	dropAt     int64         // Config.DropDelivery; read-only
	presDelay  time.Duration // Config.PresenceDelay; read-only
	deliveries atomic.Int64  // direct-message deliveries received, for dropAt

	wg      sync.WaitGroup // discovery rounds
	streams sync.WaitGroup // delivery loops (stream.go)
	cancel  context.CancelFunc

	// sendTimeout bounds one presence frame's write, in ns
	// (presenceSendTimeout; tests raise it).
	sendTimeout atomic.Int64

	mu       sync.Mutex
	leader   string                                 // guarded by mu; "" when unknown
	term     uint64                                 // guarded by mu; raft term of the newest LinkLeader followed
	changed  chan struct{}                          // guarded by mu; closed (and replaced) when leader changes
	round    *discovery                             // guarded by mu; the discovery running, nil if none
	found    time.Time                              // guarded by mu; when the last discovery ended
	inflight map[*attempt]struct{}                  // guarded by mu
	watching bool                                   // guarded by mu; watchSlow runs
	closed   bool                                   // guarded by mu; Close was called
	sessions map[sessionKey]*meshpb.PresenceSession // guarded by mu; logged-in sessions of this edge
	opening  map[sessionKey]*meshpb.PresenceSession // guarded by mu; OPENs sent, not answered yet
	seq      uint64                                 // guarded by mu; presence sequence number of the last OPEN (presence.go)
	presence map[string]*presenceQueue              // guarded by mu; by core address, while its stream is up
	refused  map[string]string                      // guarded by mu; cores that refused the delivery stream (mesh.ErrForbidden), why
}

type sessionKey struct {
	app, peer string
	conn      uint64
}

// attempt is one request in flight to one core.
type attempt struct {
	target string
	cancel context.CancelCauseFunc
	start  time.Time
	probed bool // guarded by Link.mu: watchSlow started its probe
}

// New returns a link over cfg.Node; Start opens its delivery streams.
func New(cfg Config) *Link {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Link{node: cfg.Node, cores: cfg.Cores, edgeID: cfg.EdgeID, log: log, dropAt: cfg.DropDelivery, presDelay: cfg.PresenceDelay,
		cancel:   func() {},
		changed:  make(chan struct{}),
		inflight: make(map[*attempt]struct{}),
		sessions: make(map[sessionKey]*meshpb.PresenceSession),
		opening:  make(map[sessionKey]*meshpb.PresenceSession),
		seq:      meshpb.NewPresenceEpoch(),
		presence: make(map[string]*presenceQueue),
		refused:  make(map[string]string)}
	l.sendTimeout.Store(int64(presenceSendTimeout))
	return l
}

// Close stops the delivery loops and returns after they, and every
// discovery round the link started (each bounded by discoveryTimeout),
// have ended. Requests still in flight end with their contexts.
func (l *Link) Close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.streams.Wait()
	l.wg.Wait()
}

// Ready is true when the edge can reach a core that leads the shard
// (/healthz).
func (l *Link) Ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := l.Do(ctx, &meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING})
	return err == nil
}

// NotReady lists why the edge cannot serve every request now (/readyz;
// none: it can): no core answers as the region's router within 2 s, or
// the router answers that shards of the region have no leader (its
// PING reply's error_reason, one check per "; "-separated part), or a
// core refused the edge's delivery stream as forbidden (the edge's
// certificate is not of role edge: no delivery would reach its clients).
func (l *Link) NotReady() []string {
	refused := l.refusedStreams()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rep, err := l.Do(ctx, &meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING})
	if err != nil {
		return append(refused, "core link: "+err.Error())
	}
	if rep.GetErrorCode() == 0 {
		return refused
	}
	out := refused
	for _, why := range strings.Split(rep.GetErrorReason(), "; ") {
		if why != "" {
			out = append(out, "core link: "+why)
		}
	}
	if len(out) == 0 {
		out = []string{fmt.Sprintf("core link: router not ready (code %d)", rep.GetErrorCode())}
	}
	return out
}

// Do implements edge.Backend.
func (l *Link) Do(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	if req.Kind == meshpb.ClientRequest_COMMAND && req.IdempotencyKey == "" {
		req.IdempotencyKey = newIdempotencyKey()
	}
	var ps *meshpb.PresenceSession
	if req.Kind == meshpb.ClientRequest_OPEN {
		ps = &meshpb.PresenceSession{AppId: req.AppId, PeerId: req.PeerId, ConnId: req.ConnId,
			Tag: req.Tag, ProtocolVersion: req.ProtocolVersion, Chain: req.SessionChain}
		req.PresenceSeq = l.beginOpen(ps) // presence.go
	}
	b, err := proto.Marshal(req)
	if err != nil {
		if ps != nil {
			l.endOpen(ps, false, "")
		}
		return nil, err
	}
	rep, err := l.call(ctx, req, b)
	switch req.Kind {
	case meshpb.ClientRequest_OPEN:
		ok := err == nil && rep.ErrorCode == 0
		room := ""
		if ok {
			room = rep.Room
		}
		l.endOpen(ps, ok, room)
	case meshpb.ClientRequest_CLOSE:
		l.track(&meshpb.PresenceSession{AppId: req.AppId, PeerId: req.PeerId, ConnId: req.ConnId}, false)
	case meshpb.ClientRequest_COMMAND:
		if err == nil && rep.RoomChanged {
			l.setRoom(sessionKey{req.AppId, req.PeerId, req.ConnId}, rep.Room)
		}
	}
	return rep, err
}

// newIdempotencyKey returns 128 random bits, hex.
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// call sends one request (b is req encoded) to the leader, following hints
// and retrying as the package doc says, until it has an answer or ctx
// ends.
func (l *Link) call(ctx context.Context, req *meshpb.ClientRequest, b []byte) (*meshpb.ClientReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	// Decoded only when a retry is in question (most requests never are).
	var safeKnown, safeVal bool
	isSafe := func() bool {
		if !safeKnown {
			safeKnown, safeVal = true, req.RetrySafe()
		}
		return safeVal
	}
	pause := retryPause
	var lastErr error
	for n := 0; ; n++ {
		if n > 0 {
			l.stats.retries.Add(1)
		}
		target, changed := l.currentLeader()
		if target == "" {
			target = l.discover(ctx)
		}
		if target == "" {
			lastErr = ErrNoLeader
		} else {
			rep, err, moved := l.attempt(ctx, target, b)
			switch {
			case err == nil && !rep.NotLeader:
				l.confirm(target)
				return rep, nil
			case err == nil: // not_leader: nothing was done
				lastErr = ErrNoLeader
				if rep.Leader != "" && rep.Leader != target {
					l.follow(rep.Leader, 0, false)
					if n < 2*len(l.cores) {
						continue // straight to the named leader (stale hints pointing at each other pause below)
					}
				}
				l.forget(target)
			case ctx.Err() != nil:
				return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
			case errors.Is(err, mesh.ErrNotSent):
				lastErr = err
				l.forget(target)
			case moved && isSafe():
				l.stats.moved.Add(1)
				continue // a newer leader is known: go there now
			case isSafe():
				lastErr = err
				l.forget(target)
			default:
				// Sent, not safe to repeat, and its core failed or lost
				// the lead: say so now rather than at the deadline.
				l.stats.unknown.Add(1)
				if !moved {
					l.forget(target)
				}
				return nil, fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
			}
			_, changed = l.currentLeader()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrNoLeader, lastErr)
		case <-changed: // a leader became known: no need to wait
		case <-time.After(pause):
		}
		pause = min(pause*2, maxRetryPause)
	}
}

// attempt sends b to target once. moved reports that the attempt was
// cancelled because another core became leader.
func (l *Link) attempt(ctx context.Context, target string, b []byte) (rep *meshpb.ClientReply, err error, moved bool) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a := &attempt{target: target, cancel: cancel, start: time.Now()}
	l.mu.Lock()
	l.inflight[a] = struct{}{}
	if !l.watching && !l.closed {
		l.watching = true
		l.wg.Add(1)
		go l.watchSlow()
	}
	l.mu.Unlock()
	out, err := l.node.Call(actx, target, meshpb.MethodClient, b)
	l.mu.Lock()
	delete(l.inflight, a)
	l.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && errors.Is(context.Cause(actx), errLeaderChanged) {
			return nil, err, true
		}
		return nil, err, false
	}
	rep = new(meshpb.ClientReply)
	if err := proto.Unmarshal(out, rep); err != nil {
		return nil, fmt.Errorf("corelink: bad reply from %s: %w", target, err), false
	}
	return rep, nil, false
}

// currentLeader returns the leader ("" when unknown) and a channel closed
// when it changes.
func (l *Link) currentLeader() (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader, l.changed
}

// follow makes addr the leader. term is the raft term of a LinkLeader
// hint, 0 for other evidence; a hint older than the newest term followed
// is ignored. With move (a LinkLeader, or addr itself answered that it
// leads), the attempts in flight to other cores are cancelled: the call
// loop sends the retry-safe ones again to addr and fails the others with
// ErrOutcomeUnknown. A not_leader's hint only steers new attempts.
func (l *Link) follow(addr string, term uint64, move bool) {
	if addr == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if term > 0 {
		if term < l.term {
			return
		}
		l.term = term
	}
	if move {
		for a := range l.inflight {
			if a.target != addr {
				a.cancel(errLeaderChanged)
			}
		}
	}
	if addr == l.leader {
		return
	}
	l.leader = addr
	l.stats.leaderChanges.Add(1)
	close(l.changed)
	l.changed = make(chan struct{})
}

// confirm records that target answered as leader.
func (l *Link) confirm(target string) {
	l.mu.Lock()
	known := l.leader == target
	l.mu.Unlock()
	if !known {
		l.follow(target, 0, false)
	}
}

// forget drops target as leader after it failed or refused, so the next
// attempt discovers.
func (l *Link) forget(target string) {
	l.mu.Lock()
	if l.leader == target {
		l.leader = ""
	}
	l.mu.Unlock()
}

// watchSlow starts a probe (discoverAsync) when a call in flight has
// waited probeAfter, once per call: one goroutine looks at the calls every
// probeTick, where a timer per call cost an allocation and two changes of
// the runtime's timer heap at every request. It ends when no call is in
// flight (the next attempt starts it again) or the link closes.
func (l *Link) watchSlow() {
	defer l.wg.Done()
	t := time.NewTicker(probeTick)
	defer t.Stop()
	for range t.C {
		now := time.Now()
		slow := false
		l.mu.Lock()
		if l.closed || len(l.inflight) == 0 {
			l.watching = false
			l.mu.Unlock()
			return
		}
		for a := range l.inflight {
			if !a.probed && now.Sub(a.start) >= probeAfter {
				a.probed, slow = true, true
			}
		}
		l.mu.Unlock()
		if slow {
			l.discoverAsync()
		}
	}
}

// discovery is one round of asking every core who leads, shared by every
// caller that needs a leader meanwhile.
type discovery struct {
	done   chan struct{} // closed when leader is set
	leader string        // "" when no core answered as leader
}

// discoverAsync starts a discovery round unless one runs, or one ended
// less than probeAfter ago; its result moves the requests in flight to a
// new leader. The bound matters when many calls are slow at once (a
// backlog at the core, not a dead leader): each one's probe would start a
// round as soon as the last ended, and each round walks every attempt in
// flight.
func (l *Link) discoverAsync() {
	l.mu.Lock()
	recent := l.round == nil && !l.found.IsZero() && time.Since(l.found) < probeAfter
	l.mu.Unlock()
	if recent {
		l.stats.probesSkipped.Add(1)
		return
	}
	l.startDiscovery()
}

// discover waits for a discovery round (starting one if none runs) and
// returns the leader it found, "" if none or ctx ended first.
func (l *Link) discover(ctx context.Context) string {
	d := l.startDiscovery()
	select {
	case <-d.done:
		return d.leader
	case <-ctx.Done():
		return ""
	}
}

func (l *Link) startDiscovery() *discovery {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.round != nil {
		return l.round
	}
	d := &discovery{done: make(chan struct{})}
	l.round = d
	l.stats.discoveries.Add(1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		d.leader = l.askCores()
		l.mu.Lock()
		l.round, l.found = nil, time.Now()
		l.mu.Unlock()
		close(d.done)
	}()
	return d
}

// askCores PINGs every core at once (discoveryTimeout each) and follows the
// first that answers as leader; when none does, a not_leader's hint. It
// returns the leader followed, "" for none.
func (l *Link) askCores() string {
	ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
	defer cancel()
	ping, _ := proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING})
	type answer struct {
		addr, hint string
		leader     bool
	}
	answers := make(chan answer, len(l.cores))
	var probes sync.WaitGroup
	defer probes.Wait() // after cancel: the other probes end at once
	defer cancel()
	for _, addr := range l.cores {
		probes.Go(func() {
			out, err := l.node.Call(ctx, addr, meshpb.MethodClient, ping)
			rep := new(meshpb.ClientReply)
			if err != nil || proto.Unmarshal(out, rep) != nil {
				answers <- answer{addr: addr}
				return
			}
			answers <- answer{addr: addr, leader: !rep.NotLeader, hint: rep.Leader}
		})
	}
	hint := ""
	for range l.cores {
		a := <-answers
		if a.leader {
			l.follow(a.addr, 0, true)
			return a.addr
		}
		if hint == "" {
			hint = a.hint
		}
	}
	if hint != "" {
		l.follow(hint, 0, false)
	}
	return hint
}

var (
	descRetries          = metric.Counter("relaymesh_edge_link_retries_total", "Requests sent again to a core after a failed or moved attempt.")
	descMoved            = metric.Counter("relaymesh_edge_link_moved_total", "Requests in flight moved to a new shard leader.")
	descUnknown          = metric.Counter("relaymesh_edge_link_outcome_unknown_total", "Requests failed because the leader failed during them and they are not safe to repeat.")
	descLeaderChanges    = metric.Counter("relaymesh_edge_link_leader_changes_total", "Times the edge followed a new shard leader.")
	descDiscoveries      = metric.Counter("relaymesh_edge_link_discoveries_total", "Leader discovery rounds (every core asked at once).")
	descProbesSkipped    = metric.Counter("relaymesh_edge_link_probes_skipped_total", "Slow calls' probes that started no discovery round: one had ended less than a second before.")
	descPresenceResyncs  = metric.Counter("relaymesh_edge_link_presence_resyncs_total", "Full session lists sent to a core (attach, or a queue overflow).")
	descPresenceOverflow = metric.Counter("relaymesh_edge_link_presence_overflows_total", "Presence queues to a core that overflowed into a full resync.")
	descReplayDropped    = metric.Counter("relaymesh_edge_link_replay_dropped_total", "Replayed pushes dropped: the session already had the message.")
	descReplayPassed     = metric.Counter("relaymesh_edge_link_replay_passed_total", "Replayed pushes delivered: the session had not had the message through this edge.")
)

// Collector returns the collector of the link's counters
// (relaymesh_edge_link_*).
func (l *Link) Collector() prometheus.Collector {
	descs := []metric.Desc{descRetries, descMoved, descUnknown, descLeaderChanges, descDiscoveries,
		descProbesSkipped, descPresenceResyncs, descPresenceOverflow, descReplayDropped, descReplayPassed}
	return metric.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		s := metric.Chan(ch)
		s.Add(descRetries, float64(l.stats.retries.Load()))
		s.Add(descMoved, float64(l.stats.moved.Load()))
		s.Add(descUnknown, float64(l.stats.unknown.Load()))
		s.Add(descLeaderChanges, float64(l.stats.leaderChanges.Load()))
		s.Add(descDiscoveries, float64(l.stats.discoveries.Load()))
		s.Add(descProbesSkipped, float64(l.stats.probesSkipped.Load()))
		s.Add(descPresenceResyncs, float64(l.stats.presenceResyncs.Load()))
		s.Add(descPresenceOverflow, float64(l.stats.presenceOverflow.Load()))
		s.Add(descReplayDropped, float64(l.replays.dropped.Load()))
		s.Add(descReplayPassed, float64(l.replays.passed.Load()))
	})
}
