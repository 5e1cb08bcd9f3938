package relay

import (
	"slices"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Chatroom membership (transient conversations, tr:true; PROTOCOL.md §5).
//
// The shard stores a chatroom's row and its history but no member list.
// Who is in a chatroom is region-local memory of the relay, like sessions,
// never raft: a session joins (the core's conv/add or join of itself; the
// creating session joins on conv/start) and is a member while it lasts. A
// session is in at most one chatroom: joining another leaves the first.
// What members may do, and the pushes, are the core's (core/chatroom.go).
//
// Reconnect: a membership is keyed by (app, clientId, tag) (Member). When
// its last session ends (CLOSE, edge gone) it is kept detached for
// RoomGrace; an OPEN of the same key within the grace (or any OPEN flagged
// reconnect while the key is still bound) binds the new session to the
// chatroom again (Relay.Open). Sessions without a tag share the key of
// their clientId, so a second tag-less device opening while the first is in
// a chatroom does not join it, but a tag-less reconnect does. The
// membership lives in the relay of the core that handled the join; the
// edges report each session's chatroom in their presence frames, so the
// other cores mirror it (SyncPresence) and a new leader keeps it.

// RoomGrace is how long a chatroom membership outlives its last session.
const RoomGrace = 30 * time.Minute

// Member is the key a chatroom membership survives reconnects by.
type Member struct{ App, Peer, Tag string }

// roomConn is one session: a clientId on one connection.
type roomConn struct {
	app, peer string
	conn      ConnKey
}

// membership is the membership of one Member.
type membership struct {
	id    Member
	cid   string
	conns []ConnKey // sessions bound now
	left  time.Time // when the last session ended; zero while bound
}

type roomKey struct{ app, cid string }

type roomExpiry struct {
	m    *membership
	left time.Time
}

// chatrooms is the in-memory chatroom membership. It is pure: the caller
// passes the time. Lock order: Relay.mu, then chatrooms.mu.
type chatrooms struct {
	mu      sync.Mutex
	members map[Member]*membership             // guarded by mu
	rooms   map[roomKey]map[Member]*membership // guarded by mu: every member, bound or detached
	byConn  map[roomConn]*membership           // guarded by mu
	expiry  []roomExpiry                       // guarded by mu: detachments in time order
}

func (rs *chatrooms) initLocked() {
	if rs.members == nil {
		rs.members = make(map[Member]*membership)
		rs.rooms = make(map[roomKey]map[Member]*membership)
		rs.byConn = make(map[roomConn]*membership)
	}
}

// join puts session (id, conn) into chatroom cid, leaving the chatroom its
// key was in; prev is that chatroom ("" if none or cid itself).
func (rs *chatrooms) join(id Member, conn ConnKey, cid string, now time.Time) (prev string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	rs.sweepLocked(now)
	return rs.joinLocked(id, conn, cid, now)
}

func (rs *chatrooms) joinLocked(id Member, conn ConnKey, cid string, now time.Time) (prev string) {
	rc := roomConn{id.App, id.Peer, conn}
	if o := rs.byConn[rc]; o != nil && o.id != id {
		rs.unbindLocked(rc, now) // the connection was bound under another tag
	}
	m := rs.members[id]
	if m != nil && m.cid != cid {
		prev = m.cid
		rs.dropLocked(m)
		m = nil
	}
	if m == nil {
		m = &membership{id: id, cid: cid}
		rs.members[id] = m
		k := roomKey{id.App, cid}
		if rs.rooms[k] == nil {
			rs.rooms[k] = make(map[Member]*membership)
		}
		rs.rooms[k][id] = m
	}
	rs.bindLocked(m, rc)
	return prev
}

// mirror applies what an edge's presence says of one session (PresenceSession.room):
// session (id, conn) is in chatroom cid, or in none when cid is "". A
// follower mirrors it (the leader said so in its ClientReply); the leader
// keeps its own state authoritative and only restores (restoreOnly): it binds
// a session it has in no chatroom, and never moves or drops a membership.
func (rs *chatrooms) mirror(id Member, conn ConnKey, cid string, restoreOnly bool, now time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	rs.sweepLocked(now)
	cur := rs.byConn[roomConn{id.App, id.Peer, conn}]
	switch {
	case restoreOnly:
		if cid == "" || cur != nil {
			return
		}
		if m := rs.members[id]; m != nil && m.cid != cid {
			return
		}
	case cid == "":
		if cur != nil {
			rs.dropLocked(cur) // the session quit its chatroom
		}
		return
	case cur != nil && cur.id == id && cur.cid == cid:
		return
	}
	rs.joinLocked(id, conn, cid, now)
}

// leave takes key id out of chatroom cid (quit); it reports whether it was in.
func (rs *chatrooms) leave(id Member, cid string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	m := rs.members[id]
	if m == nil || m.cid != cid {
		return false
	}
	rs.dropLocked(m)
	return true
}

// open binds a new session of id to its chatroom if the membership is
// detached and younger than RoomGrace, or still bound and reconnect is set.
// It returns the chatroom, "" if none.
func (rs *chatrooms) open(id Member, conn ConnKey, reconnect bool, now time.Time) string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	rs.sweepLocked(now)
	m := rs.members[id]
	if m == nil || (len(m.conns) > 0 && !reconnect) {
		return ""
	}
	rs.bindLocked(m, roomConn{id.App, id.Peer, conn})
	return m.cid
}

// closeSession unbinds a session that ended; its membership is detached
// for RoomGrace when it was the last one.
func (rs *chatrooms) closeSession(app, peer string, conn ConnKey, now time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	rs.unbindLocked(roomConn{app, peer, conn}, now)
	rs.sweepLocked(now)
}

// dropEdge unbinds every session of an edge that went away.
func (rs *chatrooms) dropEdge(edge string, now time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	for rc := range rs.byConn {
		if rc.conn.Edge == edge {
			rs.unbindLocked(rc, now)
		}
	}
}

// joined reports whether the session is in chatroom cid.
func (rs *chatrooms) joined(app, peer string, conn ConnKey, cid string) bool {
	return rs.roomOf(app, peer, conn) == cid
}

// roomOf is the chatroom the session of app/peer on conn is in ("" none).
func (rs *chatrooms) roomOf(app, peer string, conn ConnKey) string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if m := rs.byConn[roomConn{app, peer, conn}]; m != nil {
		return m.cid
	}
	return ""
}

// count is the online count of chatroom cid: keys with a bound session.
func (rs *chatrooms) count(app, cid string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, m := range rs.rooms[roomKey{app, cid}] {
		if len(m.conns) > 0 {
			n++
		}
	}
	return n
}

// online lists up to limit clientIds with a session in chatroom cid, sorted.
func (rs *chatrooms) online(app, cid string, limit int) []string {
	rs.mu.Lock()
	var out []string
	for _, m := range rs.rooms[roomKey{app, cid}] {
		if len(m.conns) > 0 && !slices.Contains(out, m.id.Peer) {
			out = append(out, m.id.Peer)
		}
	}
	rs.mu.Unlock()
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// targets groups the sessions joined to chatroom cid by edge, leaving out
// every session of skipPeer.
func (rs *chatrooms) targets(app, cid, skipPeer string, skip func(peer string) bool) map[string][]*meshpb.Target {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := map[string][]*meshpb.Target{}
	for _, m := range rs.rooms[roomKey{app, cid}] {
		if m.id.Peer == skipPeer || (skip != nil && skip(m.id.Peer)) {
			continue
		}
		for _, c := range m.conns {
			out[c.Edge] = append(out[c.Edge], &meshpb.Target{PeerId: m.id.Peer, ConnId: c.Conn})
		}
	}
	return out
}

func (rs *chatrooms) bindLocked(m *membership, rc roomConn) {
	rs.byConn[rc] = m
	if !slices.Contains(m.conns, rc.conn) {
		m.conns = append(m.conns, rc.conn)
	}
	m.left = time.Time{}
}

func (rs *chatrooms) unbindLocked(rc roomConn, now time.Time) {
	m := rs.byConn[rc]
	if m == nil {
		return
	}
	delete(rs.byConn, rc)
	m.conns = slices.DeleteFunc(m.conns, func(c ConnKey) bool { return c == rc.conn })
	if len(m.conns) == 0 {
		m.left = now
		rs.expiry = append(rs.expiry, roomExpiry{m, now})
	}
}

// dropLocked forgets membership m and unbinds its sessions.
func (rs *chatrooms) dropLocked(m *membership) {
	for _, c := range m.conns {
		delete(rs.byConn, roomConn{m.id.App, m.id.Peer, c})
	}
	m.conns = nil
	if rs.members[m.id] == m {
		delete(rs.members, m.id)
	}
	k := roomKey{m.id.App, m.cid}
	if room := rs.rooms[k]; room[m.id] == m {
		delete(room, m.id)
		if len(room) == 0 {
			delete(rs.rooms, k)
		}
	}
}

// sweepLocked forgets memberships detached for RoomGrace or longer.
func (rs *chatrooms) sweepLocked(now time.Time) {
	i := 0
	for ; i < len(rs.expiry); i++ {
		e := rs.expiry[i]
		if now.Sub(e.left) < RoomGrace {
			break
		}
		if len(e.m.conns) == 0 && e.m.left.Equal(e.left) && rs.members[e.m.id] == e.m {
			rs.dropLocked(e.m)
		}
	}
	if i > 0 {
		rs.expiry = slices.Delete(rs.expiry, 0, i)
	}
}

// size is the number of memberships held, bound or detached (tests).
func (rs *chatrooms) size() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.members)
}

// JoinRoom puts the session of m on conn into chatroom cid, leaving the
// chatroom m was in; prev is that chatroom ("" if none or cid itself).
func (r *Relay) JoinRoom(m Member, conn ConnKey, cid string) (prev string) {
	return r.rooms.join(m, conn, cid, r.now())
}

// LeaveRoom takes m out of chatroom cid (quit); it reports whether m was in.
func (r *Relay) LeaveRoom(m Member, cid string) bool { return r.rooms.leave(m, cid) }

// InRoom reports whether the session of app/peer on conn is in chatroom cid.
func (r *Relay) InRoom(app, peer string, conn ConnKey, cid string) bool {
	return r.rooms.joined(app, peer, conn, cid)
}

// RoomOf is the chatroom the session of app/peer on conn is in ("" none).
func (r *Relay) RoomOf(app, peer string, conn ConnKey) string {
	return r.rooms.roomOf(app, peer, conn)
}

// RoomCount is the online count of chatroom cid: members with a session
// bound now. On the shard leader's relay it is the authoritative figure, on
// the others their mirror of the edges' presence reports.
func (r *Relay) RoomCount(app, cid string) int { return r.rooms.count(app, cid) }

// RoomMembers lists up to limit (0: all) clientIds with a session in
// chatroom cid, sorted.
func (r *Relay) RoomMembers(app, cid string, limit int) []string {
	return r.rooms.online(app, cid, limit)
}
