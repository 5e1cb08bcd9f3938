package core

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
)

// Chatrooms (transient conversations, tr:true; PROTOCOL.md §5).
//
// The shard stores a chatroom's row and its history but no member list.
// Who is in a chatroom is the region's relay's memory (relay/rooms.go:
// keyed by (app, clientId, tag), kept RoomGrace after its last session,
// mirrored by every core from the edges' presence), never raft. This file
// is the protocol: a session joins (conv/add or join of itself; the
// creating session joins on conv/start) and is a member while it lasts; a
// session is in at most one chatroom. Messages are stored and fanned out
// to the joined sessions only (never the sender's own sessions, as
// LeanCloud does not sync chatroom sends); there is no offline delivery,
// no unread, no push, no joined/left/members_joined pushes. conv/count
// answers the online count, conv/members (Swift) up to 50 online members.
// Inviting or kicking others is refused with 4308
// CONVERSATION_NOT_ALLOWED.

// errRoomNotAllowed refuses inviting or kicking others in a chatroom
// (4308 CONVERSATION_NOT_ALLOWED, errors.go).
var errRoomNotAllowed = errors.New("core: not allowed in a chatroom")

// maxRoomMembers bounds conv/members for a chatroom (Swift asks ≤ 50).
const maxRoomMembers = 50

// roomMember is the membership key of r's session: its clientId and tag.
func (c *Core) roomMember(r *request) relay.Member {
	return relay.Member{App: r.app, Peer: r.peer, Tag: c.relay.SessionTag(r.app, r.peer, r.from)}
}

// roomJoinCreator makes the session that created chatroom cid a member.
func (c *Core) roomJoinCreator(r *request, cid string) {
	if r.from == (connKey{}) {
		return // server API: no session
	}
	if !r.remoteRoom { // another region's session: its region's relay keeps it
		c.relay.JoinRoom(c.roomMember(r), r.from, cid)
	}
	r.setRoom(cid)
}

// moveRoom records on this region's relay that the session of req, a
// session of this region, joined chatroom room ("": left the one it was
// in, req.session_room) by a request the chatroom's home region took
// (Router.callHome). The edge's presence tells the region's other cores.
func (c *Core) moveRoom(req *meshpb.ClientRequest, room string) {
	app, peer := req.GetAppId(), req.GetPeerId()
	from := connKey{Edge: req.GetEdgeId(), Conn: req.GetConnId()}
	m := relay.Member{App: app, Peer: peer, Tag: c.relay.SessionTag(app, peer, from)}
	if room != "" {
		c.relay.JoinRoom(m, from, room)
	} else if prev := req.GetSessionRoom(); prev != "" {
		c.relay.LeaveRoom(m, prev)
	}
}

// inRoom reports whether r's session is in chatroom cid: this region's
// relay says so for its own sessions, the session's region for another
// region's (ClientRequest.session_room, set by that region's router).
func (c *Core) inRoom(r *request, cid string) bool {
	if r.remoteRoom {
		return r.inRoom == cid
	}
	return c.relay.InRoom(r.app, r.peer, r.from, cid)
}

// roomConv serves the conv ops that differ for a chatroom; ok is false when
// cid is not a chatroom (or the op is not one of them) and the normal path
// applies.
func (c *Core) roomConv(ctx context.Context, r *request) (g *lcpb.GenericCommand, err error, ok bool) {
	op, cid, conv := c.membershipTarget(r)
	cm := r.cmd.ConvMessage
	if conv == nil || !conv.Transient {
		return nil, nil, false
	}
	switch op {
	case lcpb.OpType_count:
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_result.Enum())
		// Every region's: each region's relays hold its own sessions.
		n, _ := c.remote.RoomCount(ctx, r.app, cid, false) // regions.go
		n += c.relay.RoomCount(r.app, cid)
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), Count: proto.Int32(int32(n))}
		return g, nil, true
	case lcpb.OpType_members:
		limit := int(cm.GetLimit())
		if limit <= 0 || limit > maxRoomMembers {
			limit = maxRoomMembers
		}
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_members.Enum())
		_, elsewhere := c.remote.RoomCount(ctx, r.app, cid, true)
		m := c.relay.RoomMembers(r.app, cid, limit)
		if len(elsewhere) > 0 {
			m = append(m, elsewhere...)
			slices.Sort(m)
			m = slices.Compact(m)
			m = m[:min(len(m), limit)]
		}
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), M: m}
		if g.ConvMessage.M == nil {
			g.ConvMessage.M = []string{}
		}
		return g, nil, true
	case lcpb.OpType_is_member:
		in := c.inRoom(r, cid)
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
	id := c.roomMember(r)
	replyOp := lcpb.OpType_added
	switch {
	case add && r.remoteRoom: // its region's router records it (router.go callHome)
		r.setRoom(cid)
	case add:
		c.relay.JoinRoom(id, r.from, cid)
		r.setRoom(cid)
	case r.remoteRoom:
		replyOp = lcpb.OpType_removed
		if r.inRoom == cid {
			r.setRoom("")
		}
	default:
		replyOp = lcpb.OpType_removed
		if c.relay.LeaveRoom(id, cid) {
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
	if !c.inRoom(r, conv.ID) {
		return true, fmt.Errorf("%w: %s: not in the chatroom", errSendTarget, conv.ID)
	}
	if conv.IsBlocked(r.peer) { // blacklisted after joining
		return true, fmt.Errorf("%w: %s", shard.ErrBlocked, conv.ID)
	}
	return true, nil
}

// roomFanout pushes cmd to the sessions joined to chatroom cid, except the
// sender's, with the message's LeanCloud priority (1 HIGH, 2 NORMAL, 3 LOW)
// so the relay queue (relay.FanoutRoom) and the edges shed LOW first under
// pressure.
func (c *Core) roomFanout(app, cid, from string, priority int32, cmd *lcpb.GenericCommand) {
	c.pushEnvelope(cmd)
	var blocked func(string) bool
	var blockedIDs []string
	if conv, _ := c.convView(app, cid); conv != nil && len(conv.Blocked) > 0 {
		blocked = conv.IsBlocked // blacklisted sessions still joined get nothing
		blockedIDs = conv.Blocked
	}
	c.relay.FanoutRoom(app, cid, from, blocked, priority, cmd)
	c.remote.FanoutRoom(app, cid, from, blockedIDs, priority, cmd) // regions.go: the room's members in other regions
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
