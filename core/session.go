package core

import (
	"context"
	"encoding/base64"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Login limits.
const (
	maxLoginConvs      = 1000 // conversations looked at for unread / offline
	maxOfflineConvs    = 50   // .1: conversations with offline messages pushed
	maxOfflinePerConv  = 20   // .1: offline messages per conversation
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
	s := &session{app: app, peer: peer, tag: req.GetTag(), edge: req.GetEdgeId(), conn: req.GetConnId(), version: req.GetProtocolVersion()}
	k := peerKey{app, peer}
	var kicked []*session
	c.mu.Lock()
	var kept []*session
	for _, o := range c.sessions[k] {
		switch {
		case o.edge == s.edge && o.conn == s.conn:
			// the same connection opens again: replace
		case s.tag != "" && o.tag == s.tag:
			if req.GetReconnect() {
				c.mu.Unlock()
				return refuse(fmt.Errorf("%w: tag %q", errTagConflict, s.tag))
			}
			kicked = append(kicked, o)
		default:
			kept = append(kept, o)
		}
	}
	c.sessions[k] = append(kept, s)
	c.mu.Unlock()
	for _, o := range kicked {
		c.rooms.closeSession(app, o.peer, connKey{o.edge, o.conn}, c.now())
	}
	c.rooms.open(roomID{app, peer, s.tag}, connKey{s.edge, s.conn}, req.GetReconnect(), c.now()) // chatroom.go
	for _, o := range kicked {
		c.endWills(ctx, app, o.peer, connKey{o.edge, o.conn}, false)
		closed := &lcpb.GenericCommand{
			Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
			SessionMessage: &lcpb.SessionCommand{
				Code:   proto.Int32(lcpb.ErrSessionConflict),
				Reason: proto.String("SESSION_CONFLICT: a new session with the same tag logged in"),
			},
		}
		c.pushEnvelope(closed)
		c.deliver(o.edge, &meshpb.Delivery{AppId: app, Targets: []*meshpb.Target{{PeerId: o.peer, ConnId: o.conn, EndSession: true}}}, closed)
	}

	var lastPatch int64
	if len(req.GetCommand()) > 0 {
		open := new(lcpb.GenericCommand)
		if proto.Unmarshal(req.GetCommand(), open) == nil {
			lastPatch = open.GetSessionMessage().GetLastPatchTime()
		}
	}
	cmds, err := c.loginNotifications(app, peer, req.GetProtocolVersion(), lastPatch)
	if err != nil {
		c.log.Error("login notifications", "app", app, "peer", peer, "err", err)
	}
	for _, g := range cmds {
		c.pushEnvelope(g)
		g.PeerId = proto.String(peer)
	}
	return encodeReply(cmds...)
}

// loginNotifications builds the pushes due on login: unread counts (.3) or
// offline messages (.1), then patches newer than lastPatch.
func (c *Core) loginNotifications(app, peer string, version int32, lastPatch int64) ([]*lcpb.GenericCommand, error) {
	st := c.state()
	cids, err := shard.MemberConvs(st, app, peer, maxLoginConvs)
	if err != nil {
		return nil, err
	}
	var out []*lcpb.GenericCommand
	unread := &lcpb.UnreadCommand{NotifTime: proto.Int64(c.nowMS())}
	offlineConvs := 0
	var patches []*lcpb.GenericCommand
	for _, cid := range cids {
		conv, err := c.convView(app, cid)
		if err != nil || conv == nil {
			continue
		}
		cur, err := shard.GetCursor(st, app, cid, peer)
		if err != nil {
			return nil, err
		}
		if version == 1 {
			if conv.LastT > cur.Ack && offlineConvs < maxOfflineConvs {
				msgs, err := shard.ListMessages(st, app, cid, shard.LogQuery{
					Start: cur.Ack, Newer: true, Limit: maxOfflinePerConv + 1,
					Filter: func(m *shard.Message) bool { return m.From != peer },
				})
				if err != nil {
					return nil, err
				}
				if len(msgs) > 0 {
					offlineConvs++
				}
				more := len(msgs) > maxOfflinePerConv
				if more {
					msgs = msgs[:maxOfflinePerConv]
				}
				for i, m := range msgs {
					d := directPush(m, false)
					d.DirectMessage.Offline = proto.Bool(true)
					if more && i == len(msgs)-1 {
						d.DirectMessage.HasMore = proto.Bool(true)
					}
					out = append(out, d)
				}
			}
		} else if conv.LastT > cur.Read {
			u, err := shard.CountUnread(st, app, cid, peer, cur.Read)
			if err != nil {
				return nil, err
			}
			if u.Count > 0 {
				unread.Convs = append(unread.Convs, unreadTuple(conv, u))
			}
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
	if version != 1 {
		out = append(out, &lcpb.GenericCommand{Cmd: lcpb.CommandType_unread.Enum(), UnreadMessage: unread})
	}
	return append(out, patches...), nil
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

// convType is LeanCloud's conversation type: 1 normal, 2 transient.
func convType(conv *shard.Conv) int32 {
	if conv.Transient {
		return 2
	}
	return 1
}

// closeSession forgets the session of a CLOSE request and settles its will
// messages (will.go): sent, unless the CLOSE carries the client's own
// session/close.
func (c *Core) closeSession(ctx context.Context, req *meshpb.ClientRequest) {
	from := connKey{req.GetEdgeId(), req.GetConnId()}
	c.mu.Lock()
	c.removeSessionLocked(peerKey{req.GetAppId(), req.GetPeerId()}, from)
	c.mu.Unlock()
	c.rooms.closeSession(req.GetAppId(), req.GetPeerId(), from, c.now())
	c.endWills(ctx, req.GetAppId(), req.GetPeerId(), from, !explicitClose(req.GetCommand()))
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
