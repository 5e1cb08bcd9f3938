package core

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
)

// Server API (the REST API of package rest, master-key authority): an edge
// forwards each REST operation as a ClientRequest of kind ADMIN carrying a
// meshpb.AdminRequest. It acts as peer_id (from_client) from no connection,
// so every session of every target, the actor's included, gets the pushes.
//
//	COMMAND             the GenericCommand in command, run through the
//	                    ordinary handlers with the shard's membership, role
//	                    and sender checks off (shard.Command.Admin); direct
//	                    and logs have REST variants here (no_sync, no
//	                    membership, limit up to 1000)
//	KICK                session/closed{code, reason} to every session of
//	                    peer_id, which the edges then unbind (end_session)
//	DELETE_CONVERSATION shard.OpDelete; members are not told
//	DELETE_MESSAGE      shard.OpDelMsg: the server copy of one message;
//	                    nobody is told
//	UNREAD_COUNT        unread messages of peer_id (cid, or all)
//	MEMBER_ROLES        Owner and Managers of cid (_ConversationMemberInfo);
//	                    peer_id, when set, must be a member
//	TEMP_SHUTUP         mute peer_id in cid for ttl seconds (moderation.go)
//	STATS               clientIds online now and seen today (stats.go, relay/today.go)
//	IMPORT              conversations or history from LeanCloud, ids and
//	                    times kept (import.go)
//
// Failures come back as ClientReply.error_code/error_reason (LeanCloud
// codes from errorCodes), never as cmd:error. The edge checks the app's
// master key before it forwards anything: the core trusts ADMIN requests as
// it trusts the clientId an edge binds.

// REST history limits (LeanCloud: default 100, at most 1000).
const (
	defaultAdminLogsLimit = 100
	maxAdminLogsLimit     = 1000
)

type adminCtxKey struct{}

// withAdmin marks ctx as carrying the server's authority: c.propose then
// sets shard.Command.Admin on every command proposed under it.
func withAdmin(ctx context.Context) context.Context {
	return context.WithValue(ctx, adminCtxKey{}, true)
}

// isAdmin reports whether ctx carries the server's authority.
func isAdmin(ctx context.Context) bool {
	v, _ := ctx.Value(adminCtxKey{}).(bool)
	return v
}

// admin serves a ClientRequest of kind ADMIN.
func (c *Core) admin(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, peer, a := req.GetAppId(), req.GetPeerId(), req.GetAdmin()
	var rep *meshpb.ClientReply
	err := func() error {
		if _, err := c.apps.Lookup(app); err != nil {
			return fmt.Errorf("%w: %q", errUnknownApp, app)
		}
		if c.replica == nil || !c.replica.IsLeader() {
			return ErrNotLeader
		}
		if err := c.checkTokenGeneration(req); err != nil { // auth.go: a revoked X-LC-IM-Session-Token
			return err
		}
		var err error
		switch a.GetOp() {
		case meshpb.AdminRequest_COMMAND:
			rep, err = c.adminCommand(withAdmin(ctx), req)
		case meshpb.AdminRequest_KICK:
			rep, err = c.adminKick(ctx, app, peer, a)
		case meshpb.AdminRequest_DELETE_CONVERSATION:
			_, err = c.propose(withAdmin(ctx), &shard.Command{Op: shard.OpDelete, App: app, CID: a.GetCid(), Now: c.nowMS()})
			rep = &meshpb.ClientReply{}
		case meshpb.AdminRequest_DELETE_MESSAGE:
			_, err = c.propose(withAdmin(ctx), &shard.Command{Op: shard.OpDelMsg, App: app, CID: a.GetCid(),
				MID: a.GetMid(), T: a.GetTimestamp(), Now: c.nowMS()})
			rep = &meshpb.ClientReply{}
		case meshpb.AdminRequest_UNREAD_COUNT:
			rep, err = c.adminUnread(app, peer, a.GetCid())
		case meshpb.AdminRequest_MEMBER_ROLES:
			rep, err = c.adminRoles(app, peer, a.GetCid())
		case meshpb.AdminRequest_SYS_BROADCAST: // sysconv.go
			rep, err = c.sysBroadcast(withAdmin(ctx), req)
		case meshpb.AdminRequest_SYS_SEND:
			rep, err = c.sysSend(withAdmin(ctx), req)
		case meshpb.AdminRequest_SYS_MESSAGES:
			rep, err = c.sysMessages(req)
		case meshpb.AdminRequest_SYS_SUBSCRIBERS:
			rep, err = c.sysSubscribers(req)
		case meshpb.AdminRequest_SYS_SUBSCRIPTIONS:
			rep, err = c.sysSubscriptions(req)
		case meshpb.AdminRequest_SYS_USER_MESSAGES:
			rep, err = c.sysUserMessages(req)
		case meshpb.AdminRequest_SYS_DELETE_USER_MESSAGE:
			rep, err = c.sysDeleteUserMessage(withAdmin(ctx), req)
		case meshpb.AdminRequest_SYS_BROADCASTS:
			rep, err = c.sysBroadcasts(req)
		case meshpb.AdminRequest_SYS_DELETE_BROADCAST:
			rep, err = c.sysDeleteBroadcast(withAdmin(ctx), req)
		case meshpb.AdminRequest_TEMP_SHUTUP: // moderation.go
			rep, err = c.adminTempShutup(ctx, app, peer, a)
		case meshpb.AdminRequest_WORDS_SET, meshpb.AdminRequest_WORDS_GET: // words.go
			rep, err = c.adminWords(withAdmin(ctx), app, a)
		case meshpb.AdminRequest_STATS: // stats.go
			rep = c.adminStats(app)
		case meshpb.AdminRequest_DEVICE_SAVE, meshpb.AdminRequest_DEVICE_GET,
			meshpb.AdminRequest_DEVICE_DELETE, meshpb.AdminRequest_DEVICE_LIST: // devices.go
			rep, err = c.adminDevice(withAdmin(ctx), app, a)
		case meshpb.AdminRequest_NOTIFICATIONS: // notif.go
			rep, err = c.adminNotifs(app, peer, a)
		case meshpb.AdminRequest_IMPORT: // import.go
			rep, err = c.adminImport(ctx, app, a)
		default:
			err = fmt.Errorf("%w: admin op %v", errUnsupported, a.GetOp())
		}
		return err
	}()
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}, nil
	}
	return rep, nil
}

// adminCommand runs the GenericCommand of an ADMIN COMMAND request.
func (c *Core) adminCommand(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	r := &request{app: req.GetAppId(), peer: req.GetPeerId(), cmd: cmd}
	if r.peer != "" {
		if err := checkClientID(r.peer); err != nil { // validate.go: from_client
			return nil, err
		}
	}
	if err := checkInput(r); err != nil {
		return nil, err
	}
	var out *lcpb.GenericCommand
	var err error
	op := cmd.GetOp()
	if g, err, ok := c.sysAdmin(ctx, r, req.GetAdmin()); ok { // sysconv.go
		if err != nil {
			return nil, err
		}
		return encodeReply(g), nil
	}
	switch cmd.GetCmd() {
	case lcpb.CommandType_direct:
		out, err = c.adminSend(ctx, r, req.GetAdmin().GetNoSync())
	case lcpb.CommandType_logs:
		out, err = c.adminLogs(r)
	case lcpb.CommandType_patch:
		if op == lcpb.OpType_modify {
			out, err = c.patch(ctx, r)
		}
	case lcpb.CommandType_session:
		if op == lcpb.OpType_query {
			out = c.sessionQuery(r)
		}
	case lcpb.CommandType_conv:
		switch op {
		case lcpb.OpType_start, lcpb.OpType_query, lcpb.OpType_update, lcpb.OpType_add, lcpb.OpType_remove,
			lcpb.OpType_members, lcpb.OpType_count, lcpb.OpType_mute, lcpb.OpType_unmute,
			lcpb.OpType_member_info_update, lcpb.OpType_add_shutup, lcpb.OpType_remove_shutup, lcpb.OpType_query_shutup:
			out, err = c.conv(ctx, r)
		}
	case lcpb.CommandType_blacklist: // moderation.go
		switch op {
		case lcpb.OpType_block, lcpb.OpType_unblock, lcpb.OpType_query:
			out, err = c.blacklist(ctx, r)
		}
	}
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, fmt.Errorf("%w: admin %v/%v", errUnsupported, cmd.GetCmd(), op)
	}
	return encodeReply(out), nil
}

// adminSend stores (unless transient) and fans out a message from r.peer,
// member or not; with noSync the sender's own sessions are skipped. Like a
// client's message it passes _messageReceived (a drop is 4402; content and
// toPeers rewrites apply) and the sensitive-word filter. The priority of
// r.cmd (REST `priority`) is the class of chatroom deliveries.
func (c *Core) adminSend(ctx context.Context, r *request, noSync bool) (*lcpb.GenericCommand, error) {
	dm := r.cmd.GetDirectMessage()
	cid := dm.GetCid()
	if cid == "" || r.peer == "" {
		return nil, fmt.Errorf("%w: send needs a conversation and a sender", errMalformed)
	}
	in, err := c.inbound(ctx, r, cid) // filter.go: _messageReceived, sensitive words
	if err != nil {
		return nil, err
	}
	data, bin := in.data, in.bin
	unlock := c.locks.lock(r.app + "\x00" + cid)
	defer unlock()

	var m *shard.Message
	var members []string
	var index uint64       // the stored message's raft index (fanout.go)
	var waits []relay.Wait // where its deliveries wait
	if dm.GetTransient() {
		conv, err := shard.GetConv(c.state(), r.app, cid)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		if conv == nil {
			return nil, fmt.Errorf("%w: %s", shard.ErrConvNotFound, cid)
		}
		m = &shard.Message{ID: newMessageID(), CID: cid, From: r.peer, T: c.nowMS(), Data: data, Bin: bin,
			MentionPids: dm.MentionPids, MentionAll: dm.GetMentionAll()}
		members = conv.Members
	} else {
		c.awaitReplay(ctx)       // fanout.go
		tok := c.fanouts.begin() // fanout.go
		defer func() { c.fanouts.end(tok, index, waits) }()
		res, err := c.propose(ctx, &shard.Command{
			Op: shard.OpAppend, App: r.app, CID: cid, From: r.peer, Now: c.nowMS(),
			MID: newMessageID(), Data: data, Bin: bin, MentionPids: dm.MentionPids,
			MentionAll: dm.GetMentionAll(), Admin: true, To: in.to,
		})
		if err != nil {
			return nil, err
		}
		m, members, index = res.Message, res.Conv.Members, res.Index
	}
	members = in.recipients(members, r.peer)
	if noSync {
		members = without(members, r.peer)
	}
	if len(members) > 0 {
		waits = c.fanoutTo(r.app, members, connKey{}, directPush(m, dm.GetTransient()), false)
		c.afterFanout(r.app, r.peer, cid, members, m, dm) // offline.go
	}
	if conv, _ := c.convView(r.app, cid); conv != nil && conv.Transient { // chatroom.go
		c.roomFanout(r.app, cid, "", r.cmd.GetPriority(), roomPush(m, dm))
	}
	ack := r.reply(lcpb.CommandType_ack, nil)
	ack.AckMessage = &lcpb.AckCommand{Uid: proto.String(m.ID), T: proto.Int64(m.T)}
	return ack, nil
}

func without(s []string, x string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// adminLogs answers a history query for anyone, up to 1000 messages,
// ascending (the REST layer orders them as asked).
func (c *Core) adminLogs(r *request) (*lcpb.GenericCommand, error) {
	q := r.cmd.GetLogsMessage()
	cid := q.GetCid()
	if cid == "" {
		return nil, fmt.Errorf("%w: logs without cid", errMalformed)
	}
	st := c.state()
	conv, err := shard.GetConv(st, r.app, cid)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil {
		return nil, fmt.Errorf("%w: %s", shard.ErrConvNotFound, cid)
	}
	limit := int(q.GetLimit())
	if limit <= 0 {
		limit = defaultAdminLogsLimit
	}
	limit = min(limit, maxAdminLogsLimit)
	lq := logQuery(st, r.app, cid, q, limit) // message.go
	msgs, err := shard.ListMessages(st, r.app, cid, lq)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	items := make([]*lcpb.LogItem, 0, len(msgs))
	for _, m := range msgs {
		items = append(items, logItem(m, convType(conv)))
	}
	g := r.reply(lcpb.CommandType_logs, nil)
	g.LogsMessage = &lcpb.LogsCommand{Cid: proto.String(cid), Logs: items}
	return g, nil
}

// adminKick ends every session of peer with session/closed{code, reason};
// their wills are dropped, as for a tag kick.
func (c *Core) adminKick(ctx context.Context, app, peer string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	if peer == "" {
		return nil, fmt.Errorf("%w: kick without a clientId", errMalformed)
	}
	kicked := c.relay.RemoveAll(app, peer)
	c.revokeTokens(ctx, app, peer) // auth.go: the kicked client's st are void
	for _, s := range kicked {
		c.hookClientOffline(s, offline{code: hooks.CloseKicked, msg: a.GetReason()}) // notifyhooks.go
		c.endWills(ctx, app, peer, s.Key(), false)
		closed := &lcpb.GenericCommand{
			Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
			SessionMessage: &lcpb.SessionCommand{Code: proto.Int32(a.GetCode()), Reason: proto.String(a.GetReason())},
		}
		c.pushEnvelope(closed)
		c.deliver(s.Edge, &meshpb.Delivery{AppId: app, Targets: []*meshpb.Target{{PeerId: peer, ConnId: s.Conn, EndSession: true}}}, closed)
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Count: int64(len(kicked))}}, nil
}

// adminUnread counts peer's unread messages in cid, or in every
// conversation it belongs to (the first maxLoginConvs, as on login).
func (c *Core) adminUnread(app, peer, cid string) (*meshpb.ClientReply, error) {
	if peer == "" {
		return nil, fmt.Errorf("%w: unread count without a clientId", errMalformed)
	}
	st := c.state()
	cids := []string{cid}
	if cid == "" {
		var err error
		if cids, err = shard.MemberConvs(st, app, peer, maxLoginConvs); err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
	}
	var total int64
	for _, id := range cids {
		conv, err := shard.GetConv(st, app, id)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		if conv == nil || !conv.IsMember(peer) {
			continue
		}
		cur, err := shard.GetCursor(st, app, id, peer)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		if conv.LastT <= cur.Read {
			continue
		}
		u, err := shard.CountUnread(st, app, id, peer, cur.Read)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		total += int64(u.Count)
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Count: total}}, nil
}

// adminRoles lists the members of cid whose role is above Member: the
// Owner (the creator, while a member) and the Managers. A non-empty peer
// (the SDK's session-token read) must be a member.
func (c *Core) adminRoles(app, peer, cid string) (*meshpb.ClientReply, error) {
	conv, err := shard.GetConv(c.state(), app, cid)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil {
		return nil, fmt.Errorf("%w: %s", shard.ErrConvNotFound, cid)
	}
	if peer != "" && !conv.IsMember(peer) {
		return nil, fmt.Errorf("%w: %s", shard.ErrNotMember, peer)
	}
	out := &meshpb.AdminReply{}
	for _, m := range conv.Members {
		if role := conv.Role(m); role != shard.RoleMember {
			out.Roles = append(out.Roles, &meshpb.MemberRole{ClientId: m, Role: role})
		}
	}
	return &meshpb.ClientReply{Admin: out}, nil
}
