package core

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
)

// Login limits.
const (
	maxLoginConvs      = 1000 // conversations looked at for unread / offline
	maxMissedPatches   = 1000 // patches pushed on login
	maxSessionQueryIDs = 20
)

// open registers a session and answers with what is due on login.
func (c *Core) open(ctx context.Context, req *meshpb.ClientRequest) *meshpb.ClientReply {
	app, peer := req.GetAppId(), req.GetPeerId()
	refuse := func(err error) *meshpb.ClientReply {
		return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}
	}
	if _, err := c.apps.Lookup(app); err != nil {
		return refuse(fmt.Errorf("%w: %q", errUnknownApp, app))
	}
	if peer == "" {
		return refuse(fmt.Errorf("%w: no clientId", errMalformed))
	}
	if c.replica == nil || !c.replica.IsLeader() {
		return refuse(ErrNotLeader)
	}
	// A reopen's unread counts see the acks and reads the client sent
	// before (cursors.go).
	c.awaitPeerCursors(ctx, app, peer)
	if req.GetShardPart() {
		return c.loginPart(ctx, req)
	}
	if err := c.checkTokenGeneration(req); err != nil { // auth.go
		return refuse(err)
	}
	s := &relay.Session{App: app, Peer: peer, Tag: req.GetTag(), Edge: req.GetEdgeId(), Conn: req.GetConnId(), Version: req.GetProtocolVersion(),
		IP: req.GetSourceIp(), Seq: req.GetPresenceSeq(), Chain: req.GetSessionChain()}
	// A reopen whose session token passed the generation check (here, or
	// in the region that issued it: Router.open) is vouched: a session
	// holding its tag is its own stale one (relay.Open).
	vouched := req.GetStReopen() || req.GetVouched()
	kicked, room, err := c.relay.Open(s, req.GetReconnect(), vouched) // tag kick; room: the chatroom it is back in
	if errors.Is(err, relay.ErrTagConflict) {
		return refuse(fmt.Errorf("%w: tag %q", errTagConflict, s.Tag))
	}
	c.hookClientOnline(app, peer, s.Tag, s.IP, req.GetReconnect()) // notifyhooks.go
	c.kickConflicts(ctx, app, peer, kicked)

	cmds, err := c.loginNotifications(app, peer, req.GetProtocolVersion(), lastPatchOf(req))
	if err != nil {
		c.log.Error("login notifications", "app", app, "peer", peer, "err", err)
	}
	sys := c.sysLogin(ctx, app, peer) // sysconv.go
	c.deviceLogin(ctx, req)           // devices.go
	rep := c.loginReply(req, cmds, sys)
	// The client's token generation, for the tokens of this session (auth.go).
	rep.SessionGeneration = c.tokenGeneration(app, peer)
	if room != "" { // rebound to its chatroom: presence carries it (chatroom.go)
		rep.Room, rep.RoomChanged = room, true
	}
	return rep
}

// kickConflicts ends the sessions a login with the same tag displaced:
// hooks, their st voided, their wills dropped, session/closed 4111.
func (c *Core) kickConflicts(ctx context.Context, app, peer string, kicked []*relay.Session) {
	for _, o := range kicked {
		c.hookClientOffline(o, offline{code: hooks.CloseConflict, msg: "SESSION_CONFLICT"})
	}
	if len(kicked) > 0 {
		c.revokeTokens(ctx, app, peer) // auth.go: the kicked session's st is void
	}
	for _, o := range kicked {
		c.endWills(ctx, app, o.Peer, o.Key(), false)
		closed := &lcpb.GenericCommand{
			Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
			SessionMessage: &lcpb.SessionCommand{
				Code:   proto.Int32(lcpb.ErrSessionConflict),
				Reason: proto.String("SESSION_CONFLICT: a new session with the same tag logged in"),
			},
		}
		c.pushEnvelope(closed)
		c.deliver(o.Edge, &meshpb.Delivery{AppId: app, Targets: []*meshpb.Target{{PeerId: o.Peer, ConnId: o.Conn, EndSession: true}}}, closed)
	}
}

// kickTagHere ends this region's sessions of a client that logged in with
// the same tag in another region (router.go, a region's share of a login).
func (c *Core) kickTagHere(ctx context.Context, req *meshpb.ClientRequest) {
	if req.GetTag() == "" {
		return
	}
	if req.GetReconnect() {
		// A vouched reconnect's own earlier session, left here (its edge
		// died, or the client moved regions with the old socket open):
		// gone quietly, as relay.Open replaces one in its own region. A
		// session of the tag of another chain, or any for an unvouched
		// reconnect, made its router refuse the reconnect before it
		// opened (Router.open, MethodTagHeld); one that came since is
		// kept.
		if req.GetVouched() {
			c.relay.ReplaceTag(req.GetAppId(), req.GetPeerId(), req.GetTag(), req.GetSessionChain())
		}
		return
	}
	c.kickConflicts(ctx, req.GetAppId(), req.GetPeerId(), c.relay.KickTag(req.GetAppId(), req.GetPeerId(), req.GetTag()))
}

// loginPart answers one shard's part of a login the router split
// (router.go): what this shard has due for the client, and nothing else:
// presence, hooks, tag kick, tokens and devices are the system shard's.
func (c *Core) loginPart(ctx context.Context, req *meshpb.ClientRequest) *meshpb.ClientReply {
	app, peer := req.GetAppId(), req.GetPeerId()
	cmds, err := c.loginNotifications(app, peer, req.GetProtocolVersion(), lastPatchOf(req))
	if err != nil {
		c.log.Error("login notifications", "app", app, "peer", peer, "err", err)
	}
	rep := c.loginReply(req, cmds, c.sysLogin(ctx, app, peer)) // sysconv.go
	// Another region's login: what the client may have missed here
	// (missed.go).
	if req.GetRegionPart() && req.GetLoginAtMs() > 0 {
		offline := map[string]bool{}
		for _, g := range cmds {
			if g.GetCmd() == lcpb.CommandType_direct {
				offline[g.GetDirectMessage().GetId()] = true
			}
		}
		rep.Missed = c.missedFor(app, peer, time.UnixMilli(req.GetLoginAtMs()), offline)
	}
	return rep
}

// loginReply encodes what a login has due: notifications, then the
// system-conversation pushes (apart when the router merges them,
// ClientRequest.login_split).
func (c *Core) loginReply(req *meshpb.ClientRequest, cmds, sys []*lcpb.GenericCommand) *meshpb.ClientReply {
	peer := req.GetPeerId()
	for _, g := range cmds {
		c.pushEnvelope(g)
		g.PeerId = proto.String(peer)
	}
	for _, g := range sys {
		c.pushEnvelope(g)
		g.PeerId = proto.String(peer)
	}
	if !req.GetLoginSplit() {
		return encodeReply(append(cmds, sys...)...)
	}
	rep := encodeReply(cmds...)
	rep.SysCommands = encodeReply(sys...).Commands
	return rep
}

// lastPatchOf is the lastPatchTime of an OPEN's session/open, 0 if none.
func lastPatchOf(req *meshpb.ClientRequest) int64 {
	if len(req.GetCommand()) == 0 {
		return 0
	}
	open := new(lcpb.GenericCommand)
	if proto.Unmarshal(req.GetCommand(), open) != nil {
		return 0
	}
	return open.GetSessionMessage().GetLastPatchTime()
}

// loginNotifications builds the pushes due on login: unread counts (.3) or
// offline messages (.1), then patches newer than lastPatch.
func (c *Core) loginNotifications(app, peer string, version int32, lastPatch int64) ([]*lcpb.GenericCommand, error) {
	st := c.state()
	cids, err := shard.MemberConvs(st, app, peer, maxLoginConvs)
	if err != nil {
		return nil, err
	}
	now := c.nowMS()
	var out []*lcpb.GenericCommand
	unread := &lcpb.UnreadCommand{NotifTime: proto.Int64(now)}
	var patches []*lcpb.GenericCommand
	var due []loginConv // conversations with something after the cursor
	for _, cid := range cids {
		conv, err := c.convView(app, cid)
		if err != nil || conv == nil || conv.Expired(now) {
			continue
		}
		cur, err := shard.GetCursor(st, app, cid, peer)
		if err != nil {
			return nil, err
		}
		if (version == 1 && conv.LastT > cur.Ack) || (version != 1 && conv.LastT > cur.Read) {
			due = append(due, loginConv{conv, cur})
		}
		if lastPatch > 0 && conv.LastPatchT > lastPatch && len(patches) < maxMissedPatches {
			ms, err := shard.PatchesSince(st, app, cid, lastPatch, maxMissedPatches-len(patches))
			if err != nil {
				return nil, err
			}
			for _, m := range ms {
				patches = append(patches, patchPush(m))
			}
		}
	}
	// The most recently active conversations first, at most
	// Limits.MaxUnreadConvs of them with something to notify (limits.go).
	sort.SliceStable(due, func(i, j int) bool { return due[i].conv.LastT > due[j].conv.LastT })
	notified := 0
	for _, d := range due {
		if notified >= c.limits.MaxUnreadConvs {
			break
		}
		if version == 1 {
			msgs, err := c.offlineMessages(app, peer, d)
			if err != nil {
				return nil, err
			}
			if len(msgs) > 0 {
				notified++
			}
			out = append(out, msgs...)
			continue
		}
		u, err := shard.CountUnread(st, app, d.conv.ID, peer, d.cur.Read)
		if err != nil {
			return nil, err
		}
		if u.Count > 0 {
			notified++
			unread.Convs = append(unread.Convs, unreadTuple(d.conv, u))
		}
	}
	if version != 1 {
		out = append(out, &lcpb.GenericCommand{Cmd: lcpb.CommandType_unread.Enum(), UnreadMessage: unread})
	}
	return append(out, patches...), nil
}

// loginConv is a conversation a login may notify, with the cursor of the
// client logging in.
type loginConv struct {
	conv *shard.Conv
	cur  shard.Cursor
}

// offlineMessages renders the offline messages of a .1 login for one
// conversation: the newest Limits.MaxOfflinePerConv messages of others
// after the delivered cursor, oldest first; when older ones stay behind
// in history, the last pushed carries hasMore.
func (c *Core) offlineMessages(app, peer string, d loginConv) ([]*lcpb.GenericCommand, error) {
	n := c.limits.MaxOfflinePerConv
	msgs, err := shard.ListMessages(c.state(), app, d.conv.ID, shard.LogQuery{
		End: d.cur.Ack, Limit: n + 1, // towards older, from the newest
		Filter: func(m *shard.Message) bool { return m.From != peer },
	})
	if err != nil {
		return nil, err
	}
	more := len(msgs) > n
	if more {
		msgs = msgs[1:]
	}
	out := make([]*lcpb.GenericCommand, 0, len(msgs))
	for i, m := range msgs {
		d := directPush(m, false)
		d.DirectMessage.Offline = proto.Bool(true)
		if more && i == len(msgs)-1 {
			d.DirectMessage.HasMore = proto.Bool(true)
		}
		out = append(out, d)
	}
	return out, nil
}

func unreadTuple(conv *shard.Conv, u shard.Unread) *lcpb.UnreadTuple {
	t := &lcpb.UnreadTuple{
		Cid:      proto.String(conv.ID),
		Unread:   proto.Int32(int32(u.Count)),
		ConvType: proto.Int32(convType(conv)),
	}
	if u.Mentioned {
		t.Mentioned = proto.Bool(true)
	}
	if m := u.Last; m != nil {
		t.Mid, t.Timestamp, t.From = proto.String(m.ID), proto.Int64(m.T), proto.String(m.From)
		data, bin := m.Content()
		if bin {
			if raw, err := base64.StdEncoding.DecodeString(data); err == nil {
				t.BinaryMsg = raw
			}
		} else {
			t.Data = proto.String(data)
		}
		if m.PatchT > 0 {
			t.PatchTimestamp = proto.Int64(m.PatchT)
		}
	}
	return t
}

// convType is LeanCloud's conversation type: 1 normal, 2 transient, 4
// temporary.
func convType(conv *shard.Conv) int32 {
	if conv.System {
		return convTypeSystem // sysconv.go
	}
	if conv.Transient {
		return 2
	}
	if conv.Temp {
		return convTypeTemp
	}
	return 1
}

// closeSession forgets the session of a CLOSE request and settles its will
// messages (will.go): sent, unless the CLOSE carries the client's own
// session/close.
func (c *Core) closeSession(ctx context.Context, req *meshpb.ClientRequest) {
	from := connKey{Edge: req.GetEdgeId(), Conn: req.GetConnId()}
	if req.GetShardPart() { // one shard's part (router.go): its wills and marks only
		c.endWills(ctx, req.GetAppId(), req.GetPeerId(), from, !explicitClose(req.GetCommand()))
		var gone uint8 // the region that says the client left it
		if req.GetRegionPart() && req.GetGoneFromRegion() && req.GetFromRegion() <= 255 {
			gone = uint8(req.GetFromRegion())
		}
		c.sysLogout(ctx, req.GetAppId(), req.GetPeerId(), gone) // sysconv.go
		return
	}
	gone := c.relay.CloseSession(req.GetAppId(), req.GetPeerId(), from) // its chatroom detached too
	if explicitClose(req.GetCommand()) {
		c.hookClientOffline(gone, offline{code: hooks.CloseLogout, msg: "logout"}) // notifyhooks.go
	} else {
		c.hookClientOffline(gone, offline{code: hooks.CloseDropped, msg: "connection dropped",
			errCode: req.GetCloseErrorCode(), errMsg: req.GetCloseErrorMsg()})
	}
	explicit := explicitClose(req.GetCommand())
	c.endWills(ctx, req.GetAppId(), req.GetPeerId(), from, !explicit)
	if explicit {
		c.revokeTokens(ctx, req.GetAppId(), req.GetPeerId()) // auth.go: a logout voids the st
	}
	c.sysLogout(ctx, req.GetAppId(), req.GetPeerId(), 0) // sysconv.go
	c.deviceLogout(ctx, req)                             // devices.go
}

// sessionQuery answers which of up to 20 clientIds are online.
func (c *Core) sessionQuery(r *request) *lcpb.GenericCommand {
	ids := r.cmd.GetSessionMessage().GetSessionPeerIds()
	if len(ids) > maxSessionQueryIDs {
		ids = ids[:maxSessionQueryIDs]
	}
	online := []string{}
	for _, id := range ids {
		if c.online(r.app, id) {
			online = append(online, id)
		}
	}
	g := r.reply(lcpb.CommandType_session, lcpb.OpType_query_result.Enum())
	g.SessionMessage = &lcpb.SessionCommand{OnlineSessionPeerIds: online}
	return g
}
