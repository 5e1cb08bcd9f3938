package core

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Chatrooms (transient conversations, tr:true; PROTOCOL.md §5).
//
// The shard stores a chatroom's row and its history but no member list.
// Who is in a chatroom is region-local memory of the core, like presence,
// never raft: a session joins (conv/add or join of itself; the creating
// session joins on conv/start) and is a member while it lasts. A session is
// in at most one chatroom: joining another leaves the first. Messages are
// stored and fanned out to the joined sessions only (never the sender's own
// sessions, as LeanCloud does not sync chatroom sends); there is no offline
// delivery, no unread, no push, no joined/left/members_joined pushes.
// conv/count answers the online count, conv/members (Swift) up to 50
// online members. Inviting or kicking others is refused with 4308
// CONVERSATION_NOT_ALLOWED.
//
// Reconnect: a membership is keyed by (app, clientId, tag). When its last
// session ends (CLOSE, edge gone) it is kept detached for RoomGrace; an
// OPEN of the same key within the grace (or any OPEN flagged reconnect
// while the key is still bound) binds the new session to the chatroom
// again. Sessions without a tag share the key of their clientId, so a
// second tag-less device opening while the first is in a chatroom does not
// join it, but a tag-less reconnect does. The membership lives in the core
// that handled the join: after a leader change clients are out of their
// chatrooms until they join again.

// errRoomNotAllowed refuses inviting or kicking others in a chatroom
// (4308 CONVERSATION_NOT_ALLOWED, errors.go).
var errRoomNotAllowed = errors.New("core: not allowed in a chatroom")

// RoomGrace is how long a chatroom membership outlives its last session.
const RoomGrace = 30 * time.Minute

// maxRoomMembers bounds conv/members for a chatroom (Swift asks ≤ 50).
const maxRoomMembers = 50

// roomID is the key a chatroom membership survives reconnects by.
type roomID struct{ app, peer, tag string }

// roomConn is one session: a clientId on one connection.
type roomConn struct {
	app, peer string
	conn      connKey
}

// roomMember is the membership of one roomID.
type roomMember struct {
	id    roomID
	cid   string
	conns []connKey // sessions bound now
	left  time.Time // when the last session ended; zero while bound
}

type roomKey struct{ app, cid string }

type roomExpiry struct {
	m    *roomMember
	left time.Time
}

// chatrooms is the in-memory chatroom membership. It is pure: the caller
// passes the time. Lock order: Core.mu, then chatrooms.mu.
type chatrooms struct {
	mu      sync.Mutex
	members map[roomID]*roomMember             // guarded by mu
	rooms   map[roomKey]map[roomID]*roomMember // guarded by mu: every member, bound or detached
	byConn  map[roomConn]*roomMember           // guarded by mu
	expiry  []roomExpiry                       // guarded by mu: detachments in time order
}

func (rs *chatrooms) initLocked() {
	if rs.members == nil {
		rs.members = make(map[roomID]*roomMember)
		rs.rooms = make(map[roomKey]map[roomID]*roomMember)
		rs.byConn = make(map[roomConn]*roomMember)
	}
}

// join puts session (id, conn) into chatroom cid, leaving the chatroom its
// key was in; prev is that chatroom ("" if none or cid itself).
func (rs *chatrooms) join(id roomID, conn connKey, cid string, now time.Time) (prev string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	rs.sweepLocked(now)
	return rs.joinLocked(id, conn, cid, now)
}

func (rs *chatrooms) joinLocked(id roomID, conn connKey, cid string, now time.Time) (prev string) {
	rc := roomConn{id.app, id.peer, conn}
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
		m = &roomMember{id: id, cid: cid}
		rs.members[id] = m
		k := roomKey{id.app, cid}
		if rs.rooms[k] == nil {
			rs.rooms[k] = make(map[roomID]*roomMember)
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
func (rs *chatrooms) mirror(id roomID, conn connKey, cid string, restoreOnly bool, now time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	rs.sweepLocked(now)
	cur := rs.byConn[roomConn{id.app, id.peer, conn}]
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
func (rs *chatrooms) leave(id roomID, cid string) bool {
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
func (rs *chatrooms) open(id roomID, conn connKey, reconnect bool, now time.Time) string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.initLocked()
	rs.sweepLocked(now)
	m := rs.members[id]
	if m == nil || (len(m.conns) > 0 && !reconnect) {
		return ""
	}
	rs.bindLocked(m, roomConn{id.app, id.peer, conn})
	return m.cid
}

// closeSession unbinds a session that ended; its membership is detached
// for RoomGrace when it was the last one.
func (rs *chatrooms) closeSession(app, peer string, conn connKey, now time.Time) {
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
		if rc.conn.edge == edge {
			rs.unbindLocked(rc, now)
		}
	}
}

// joined reports whether the session is in chatroom cid.
func (rs *chatrooms) joined(app, peer string, conn connKey, cid string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	m := rs.byConn[roomConn{app, peer, conn}]
	return m != nil && m.cid == cid
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
		if len(m.conns) > 0 && !slices.Contains(out, m.id.peer) {
			out = append(out, m.id.peer)
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
		if m.id.peer == skipPeer || (skip != nil && skip(m.id.peer)) {
			continue
		}
		for _, c := range m.conns {
			out[c.edge] = append(out[c.edge], &meshpb.Target{PeerId: m.id.peer, ConnId: c.conn})
		}
	}
	return out
}

func (rs *chatrooms) bindLocked(m *roomMember, rc roomConn) {
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
	m.conns = slices.DeleteFunc(m.conns, func(c connKey) bool { return c == rc.conn })
	if len(m.conns) == 0 {
		m.left = now
		rs.expiry = append(rs.expiry, roomExpiry{m, now})
	}
}

// dropLocked forgets membership m and unbinds its sessions.
func (rs *chatrooms) dropLocked(m *roomMember) {
	for _, c := range m.conns {
		delete(rs.byConn, roomConn{m.id.app, m.id.peer, c})
	}
	m.conns = nil
	if rs.members[m.id] == m {
		delete(rs.members, m.id)
	}
	k := roomKey{m.id.app, m.cid}
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

// sessionTag is the tag of r's session, "" if it has none or is unknown.
func (c *Core) sessionTag(app, peer string, from connKey) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions[peerKey{app, peer}] {
		if s.edge == from.edge && s.conn == from.conn {
			return s.tag
		}
	}
	return ""
}

// roomJoinCreator makes the session that created chatroom cid a member.
func (c *Core) roomJoinCreator(r *request, cid string) {
	if r.from == (connKey{}) {
		return // server API: no session
	}
	c.rooms.join(roomID{r.app, r.peer, c.sessionTag(r.app, r.peer, r.from)}, r.from, cid, c.now())
	r.setRoom(cid)
}

// roomConv serves the conv ops that differ for a chatroom; ok is false when
// cid is not a chatroom (or the op is not one of them) and the normal path
// applies.
func (c *Core) roomConv(r *request) (g *lcpb.GenericCommand, err error, ok bool) {
	op, cid, conv := c.membershipTarget(r)
	cm := r.cmd.ConvMessage
	if conv == nil || !conv.Transient {
		return nil, nil, false
	}
	switch op {
	case lcpb.OpType_count:
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_result.Enum())
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), Count: proto.Int32(int32(c.rooms.count(r.app, cid)))}
		return g, nil, true
	case lcpb.OpType_members:
		limit := int(cm.GetLimit())
		if limit <= 0 || limit > maxRoomMembers {
			limit = maxRoomMembers
		}
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_members.Enum())
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), M: c.rooms.online(r.app, cid, limit)}
		if g.ConvMessage.M == nil {
			g.ConvMessage.M = []string{}
		}
		return g, nil, true
	case lcpb.OpType_is_member:
		in := c.rooms.joined(r.app, r.peer, r.from, cid)
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_is_member.Enum())
		g.ConvMessage = &lcpb.ConvCommand{Results: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf("{%q:%t}", cid, in))}}
		return g, nil, true
	}
	add := op == lcpb.OpType_add || op == lcpb.OpType_join
	for _, p := range cm.M {
		if p != r.peer {
			return nil, fmt.Errorf("%w: %s", errRoomNotAllowed, cid), true
		}
	}
	if r.from == (connKey{}) {
		return nil, fmt.Errorf("%w: %s: no session", errRoomNotAllowed, cid), true
	}
	if add && conv.IsBlocked(r.peer) {
		return nil, fmt.Errorf("%w: %s", shard.ErrBlocked, cid), true
	}
	id := roomID{r.app, r.peer, c.sessionTag(r.app, r.peer, r.from)}
	replyOp := lcpb.OpType_added
	if add {
		c.rooms.join(id, r.from, cid, c.now())
		r.setRoom(cid)
	} else {
		replyOp = lcpb.OpType_removed
		if c.rooms.leave(id, cid) {
			r.setRoom("")
		}
	}
	g = r.reply(lcpb.CommandType_conv, replyOp.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), AllowedPids: []string{r.peer}}
	return g, nil, true
}

// roomSender checks that r's session may post to cid when cid is a
// chatroom: it must have joined it (else 4401). room reports whether cid
// is a chatroom.
func (c *Core) roomSender(r *request, conv *shard.Conv) (room bool, err error) {
	if conv == nil || !conv.Transient {
		return false, nil
	}
	if !c.rooms.joined(r.app, r.peer, r.from, conv.ID) {
		return true, fmt.Errorf("%w: %s: not in the chatroom", errSendTarget, conv.ID)
	}
	if conv.IsBlocked(r.peer) { // blacklisted after joining
		return true, fmt.Errorf("%w: %s", shard.ErrBlocked, conv.ID)
	}
	return true, nil
}

// roomFanout pushes cmd to the sessions joined to chatroom cid, except the
// sender's, with the message's LeanCloud priority (1 HIGH, 2 NORMAL, 3 LOW)
// so the relay queue (relayqueue.go) and the edges shed LOW first under
// pressure.
func (c *Core) roomFanout(app, cid, from string, priority int32, cmd *lcpb.GenericCommand) {
	c.pushEnvelope(cmd)
	var blocked func(string) bool
	if conv, _ := c.convView(app, cid); conv != nil && len(conv.Blocked) > 0 {
		blocked = conv.IsBlocked // blacklisted sessions still joined get nothing
	}
	for edge, targets := range c.rooms.targets(app, cid, from, blocked) {
		c.deliverAs(edge, &meshpb.Delivery{AppId: app, Targets: targets, Priority: priority}, roomClass(priority), cmd)
	}
}

// roomPush renders a chatroom message as a direct push (convType 2).
func roomPush(m *shard.Message, dm *lcpb.DirectCommand) *lcpb.GenericCommand {
	push := directPush(m, dm.GetTransient())
	push.DirectMessage.ConvType = proto.Int32(2)
	if dm.BinaryMsg != nil && dm.Msg != nil { // both given: pass both through
		push.DirectMessage.BinaryMsg = dm.BinaryMsg
	}
	return push
}

// ChatroomOnline is the number of sessions this core counts as joined to
// the chatroom cid: on the leader the authoritative figure, on a follower
// its mirror of the edges' presence reports. For operators and tests.
func (c *Core) ChatroomOnline(app, cid string) int {
	return c.rooms.count(app, cid)
}

// membershipTarget resolves the conversation of a membership-style conv op
// (add/join, remove/leave, count, members, is_member), which chatrooms and
// system conversations answer their own way. conv is nil for other ops or
// when the conversation cannot be read.
func (c *Core) membershipTarget(r *request) (op lcpb.OpType, cid string, conv *shard.Conv) {
	op = r.cmd.GetOp()
	switch op {
	case lcpb.OpType_add, lcpb.OpType_join, lcpb.OpType_remove, lcpb.OpType_leave,
		lcpb.OpType_count, lcpb.OpType_members, lcpb.OpType_is_member:
	default:
		return op, "", nil
	}
	cm := r.cmd.ConvMessage
	cid = cm.GetCid()
	if op == lcpb.OpType_is_member && cid == "" && len(cm.Cids) == 1 {
		cid = cm.Cids[0]
	}
	if cid == "" {
		return op, "", nil
	}
	conv, err := c.convView(r.app, cid)
	if err != nil {
		return op, cid, nil
	}
	return op, cid, conv
}
