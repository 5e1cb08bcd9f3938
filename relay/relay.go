package relay

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// EdgeQueueLen bounds each edge's relay queue when Config.QueueLen is 0.
// When it is full, deliveries are shed by class, LOW first, and counted
// (Stats.Dropped, Stats.DroppedByPriority); persisted messages stay in
// history and unread counts, so the client resyncs.
const EdgeQueueLen = 4096

// ErrTagConflict refuses a reconnecting OPEN whose tag another session of
// the clientId holds (Open); the core answers 4111 SESSION_CONFLICT.
var ErrTagConflict = errors.New("relay: tag held by another session")

// Config configures a Relay.
type Config struct {
	Logger *slog.Logger
	// Now is the clock of chatroom grace and the day's usage figures;
	// nil is time.Now.
	Now func() time.Time
	// QueueLen bounds the queue of each edge attached; 0 is EdgeQueueLen.
	QueueLen int
}

// Session is one logged-in connection of a clientId. The relay shares it
// with callers: never modify one.
type Session struct {
	App, Peer, Tag string
	Edge           string // the edge holding the connection
	Conn           uint64 // the connection's id on that edge
	Version        int32  // protocol version (1 or 3)
	IP             string // the client's address at OPEN; "" for sessions learnt from presence
	// Seq is the presence sequence number of the session's OPEN
	// (meshpb.ClientRequest.presence_seq), 0 if unknown: a full list
	// the edge made before it does not drop it (SyncPresence).
	Seq uint64
	// Chain is the session's chain (meshpb.ClientRequest.session_chain):
	// the login its series of reopens began with; 0 if unknown.
	Chain uint64
}

// SameChain reports whether a session of chain a may be the client's own
// earlier session of chain b: the same chain, or either unknown (an edge
// of an earlier release drew none).
func SameChain(a, b uint64) bool { return a == 0 || b == 0 || a == b }

// ConnKey names a connection: an edge and its connection id. The zero
// ConnKey names none (requests of the server API).
type ConnKey struct {
	Edge string
	Conn uint64
}

// Key is the session's connection.
func (s *Session) Key() ConnKey { return ConnKey{s.Edge, s.Conn} }

type peerKey struct{ app, peer string }

// Stats are the relay's counters.
type Stats struct {
	Delivered  atomic.Uint64 // deliveries handed to an edge's send
	Dropped    atomic.Uint64 // deliveries dropped: queue full or edge gone
	SendErrors atomic.Uint64 // send returned an error
	// DroppedByPriority counts the deliveries shed by a full relay queue,
	// by the class of the one dropped (index with pq.High, pq.Normal,
	// pq.Low); [pq.High] only grows when the queue holds nothing but
	// HIGH. Their sum is the part of Dropped not due to a missing edge.
	DroppedByPriority [pq.NumClasses]atomic.Uint64
	// HighWaits counts HIGH deliveries that found their edge's queue full
	// of HIGH and waited for room (HighWait) instead of being dropped.
	HighWaits atomic.Uint64
	// TagReplaced counts sessions a vouched reconnect with their tag
	// replaced (Open): the client's own, left on an edge that died.
	TagReplaced atomic.Uint64
}

// HighWait bounds how long a HIGH delivery waits for room in an edge's
// queue full of HIGH before it is dropped (pq.PushWait). The wait is the
// relay's backpressure: the fan-out runs on the request that committed the
// message, so its ack waits too, and senders slow down to what the edge
// link carries instead of losing copies. An edge link stuck for longer is
// cut by its send timeout and detached.
const HighWait = 2 * time.Second

// Relay is the region-local relay of one core (package doc).
type Relay struct {
	log   *slog.Logger
	now   func() time.Time
	stats Stats
	rooms chatrooms // rooms.go; its own lock, taken after mu

	queueLen atomic.Int64 // bound of the queues of edges attached from now on

	wg sync.WaitGroup // edge goroutines

	mu       sync.Mutex
	closed   bool                   // guarded by mu
	sessions map[peerKey][]*Session // guarded by mu
	edges    map[string]*edgeLink   // guarded by mu
	lists    map[string]*fullList   // guarded by mu; full presence lists being received, by edge (presence.go)
	listed   map[string]bool        // guarded by mu; edges whose full presence list arrived since they attached
	today    dayPeers               // guarded by mu; today.go
	online   onlineLog              // guarded by mu; summary.go
}

// New returns a relay with no edge attached.
func New(cfg Config) *Relay {
	r := &Relay{log: cfg.Logger, now: cfg.Now,
		sessions: make(map[peerKey][]*Session),
		edges:    make(map[string]*edgeLink),
		lists:    make(map[string]*fullList),
		listed:   make(map[string]bool)}
	r.online.init()
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.SetQueueLen(cfg.QueueLen)
	return r
}

// SetQueueLen bounds the queues of edges attached from now on (0 is
// EdgeQueueLen); queues of edges attached before keep their bound.
func (r *Relay) SetQueueLen(n int) {
	if n <= 0 {
		n = EdgeQueueLen
	}
	r.queueLen.Store(int64(n))
}

// Stats returns the relay's counters.
func (r *Relay) Stats() *Stats { return &r.stats }

// Close stops every edge goroutine, forgets every session and waits for the
// goroutines to exit. Later calls change nothing.
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for id, l := range r.edges {
		close(l.done)
		delete(r.edges, id)
	}
	r.sessions = make(map[peerKey][]*Session)
	r.mu.Unlock()
	r.wg.Wait()
}

// Open registers session s, which the shard leader accepted, and applies
// the tag rule: a session of the same clientId and tag on another
// connection is kicked (removed and returned, for the caller to tell its
// connection); a session on the same connection is replaced. With
// reconnect, a tag held elsewhere refuses the OPEN instead (ErrTagConflict,
// nothing changed) — unless vouched and of the same chain (SameChain): the
// OPEN reopens with a session token the shard accepted, issued to the
// session holding the tag, so that session is the client's own earlier one
// (on an edge that died, until this relay hears of it), which is replaced
// quietly. A holder of another chain is another device that took the tag
// while this one was away (its login kicked nothing, so the token stayed
// valid): the reconnect is refused. room is the chatroom s is bound to again (a membership of its
// (app, clientId, tag) detached less than RoomGrace ago, or still bound
// and reconnect set), "" for none.
func (r *Relay) Open(s *Session, reconnect, vouched bool) (kicked []*Session, room string, err error) {
	k := peerKey{s.App, s.Peer}
	now := r.now()
	r.mu.Lock()
	var kept, replaced []*Session
	for _, o := range r.sessions[k] {
		switch {
		case o.Edge == s.Edge && o.Conn == s.Conn:
			// the same connection opens again: replace
		case s.Tag != "" && o.Tag == s.Tag && reconnect && vouched && SameChain(o.Chain, s.Chain):
			replaced = append(replaced, o)
		case s.Tag != "" && o.Tag == s.Tag:
			if reconnect {
				r.mu.Unlock()
				return nil, "", ErrTagConflict
			}
			kicked = append(kicked, o)
		default:
			kept = append(kept, o)
		}
	}
	r.online.note(k, len(r.sessions[k]) > 0, true, true)
	r.sessions[k] = append(kept, s)
	r.today.note(k, now)
	r.mu.Unlock()
	r.stats.TagReplaced.Add(uint64(len(replaced)))
	for _, o := range append(kicked, replaced...) {
		r.rooms.closeSession(s.App, o.Peer, o.Key(), now)
	}
	room = r.rooms.open(Member{s.App, s.Peer, s.Tag}, s.Key(), reconnect, now)
	return kicked, room, nil
}

// ReplaceTag forgets quietly every session of app/peer with tag and of
// chain (SameChain): a reconnect of the client with a valid session token
// of that chain took the tag in another region (the sessions are its own
// earlier ones; Open's vouched rule). Their chatroom memberships are
// detached. Sessions of another chain are kept. It returns how many went.
func (r *Relay) ReplaceTag(app, peer, tag string, chain uint64) int {
	n := len(r.kickTag(app, peer, tag, func(o *Session) bool { return SameChain(o.Chain, chain) }))
	r.stats.TagReplaced.Add(uint64(n))
	return n
}

// TagHeld reports whether a session of app/peer holds tag other than the
// client's own earlier ones of chain (chain 0: any session holds it).
func (r *Relay) TagHeld(app, peer, tag string, chain uint64) bool {
	if tag == "" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.sessions[peerKey{app, peer}] {
		if o.Tag == tag && (chain == 0 || !SameChain(o.Chain, chain)) {
			return true
		}
	}
	return false
}

// KickTag forgets every session of app/peer with tag (a login with that
// tag in another region displaced them) and returns them; their chatroom
// memberships are detached as on a tag kick here.
func (r *Relay) KickTag(app, peer, tag string) []*Session {
	return r.kickTag(app, peer, tag, nil)
}

// kickTag forgets the sessions of app/peer with tag that match (every one
// with match nil) and returns them.
func (r *Relay) kickTag(app, peer, tag string, match func(*Session) bool) []*Session {
	if tag == "" {
		return nil
	}
	k := peerKey{app, peer}
	now := r.now()
	r.mu.Lock()
	var kept, kicked []*Session
	for _, o := range r.sessions[k] {
		if o.Tag == tag && (match == nil || match(o)) {
			kicked = append(kicked, o)
		} else {
			kept = append(kept, o)
		}
	}
	if len(kicked) > 0 {
		r.setSessionsLocked(k, kept)
	}
	r.mu.Unlock()
	for _, o := range kicked {
		r.rooms.closeSession(app, o.Peer, o.Key(), now)
	}
	return kicked
}

// CloseSession forgets the session of app/peer on connection from and
// returns it, nil when there was none. Its chatroom membership is detached
// (kept RoomGrace when it was the key's last session).
func (r *Relay) CloseSession(app, peer string, from ConnKey) (gone *Session) {
	r.mu.Lock()
	gone = r.removeSessionLocked(peerKey{app, peer}, from)
	r.mu.Unlock()
	r.rooms.closeSession(app, peer, from, r.now())
	return gone
}

// RemoveAll forgets every session of app/peer (a kick by the server API)
// and returns them. Their chatroom memberships are left as they are.
func (r *Relay) RemoveAll(app, peer string) []*Session {
	k := peerKey{app, peer}
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.sessions[k]
	r.setSessionsLocked(k, nil)
	return ss
}

// Sessions returns the sessions of app/peer (shared: read only).
func (r *Relay) Sessions(app, peer string) []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Session(nil), r.sessions[peerKey{app, peer}]...)
}

// SessionTag is the tag of the session of app/peer on from, "" if it has
// none or is unknown.
func (r *Relay) SessionTag(app, peer string, from ConnKey) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions[peerKey{app, peer}] {
		if s.Edge == from.Edge && s.Conn == from.Conn {
			return s.Tag
		}
	}
	return ""
}

// Online reports whether the clientId has a session in the region.
func (r *Relay) Online(app, peer string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions[peerKey{app, peer}]) > 0
}

// SplitOnline splits peers into those with a session and those without,
// keeping their order, as of one moment.
func (r *Relay) SplitOnline(app string, peers []string) (online, offline []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range peers {
		if len(r.sessions[peerKey{app, p}]) > 0 {
			online = append(online, p)
		} else {
			offline = append(offline, p)
		}
	}
	return online, offline
}

// OnlinePeers lists the clientIds of app with a session in the region, in
// no order.
func (r *Relay) OnlinePeers(app string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k, ss := range r.sessions {
		if k.app == app && len(ss) > 0 {
			out = append(out, k.peer)
		}
	}
	return out
}

// Usage returns, for app, how many clientIds have a session now and how
// many had one at some point this UTC day as this relay saw them (today.go).
func (r *Relay) Usage(app string) (online, today int64) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, ss := range r.sessions {
		if k.app == app && len(ss) > 0 {
			online++
		}
	}
	return online, r.today.count(app, now)
}

func (r *Relay) setSessionsLocked(k peerKey, ss []*Session) {
	r.online.note(k, len(r.sessions[k]) > 0, len(ss) > 0, len(ss) != len(r.sessions[k]))
	if len(ss) == 0 {
		delete(r.sessions, k)
		return
	}
	r.sessions[k] = ss
}

// removeSessionLocked forgets the session on from of k and returns it, nil
// when there was none.
func (r *Relay) removeSessionLocked(k peerKey, from ConnKey) (removed *Session) {
	ss := r.sessions[k]
	kept := ss[:0]
	for _, s := range ss {
		if s.Edge != from.Edge || s.Conn != from.Conn {
			kept = append(kept, s)
		} else {
			removed = s
		}
	}
	r.setSessionsLocked(k, kept)
	return removed
}

// dropEdgeSessionsLocked forgets every session on edge, except those on
// a full list (keep) and those whose OPEN the edge sent after it made
// that list, numbered snapshot (0: no list, none is kept).
func (r *Relay) dropEdgeSessionsLocked(edge string, snapshot uint64, keep map[listKey]struct{}) {
	for k, ss := range r.sessions {
		kept := ss[:0]
		for _, s := range ss {
			_, listed := keep[listKey{k, s.Conn}]
			if s.Edge != edge || listed || (snapshot != 0 && meshpb.PresenceAfter(s.Seq, snapshot)) {
				kept = append(kept, s)
			}
		}
		r.setSessionsLocked(k, kept)
	}
}
