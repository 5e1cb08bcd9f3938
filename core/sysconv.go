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

// System conversations (sys:true, LeanCloud's service conversations;
// subscribers and broadcasts are stored by core/shard/sysconv.go):
//
//	REST create            AdminRequest{system} + conv/start -> shard.OpSysStart
//	client join/quit       conv/add|remove of self -> shard.OpSubscribe (no limit)
//	client direct          -> shard.OpSysIn, acked, never fanned out
//	SYS_BROADCAST          -> shard.OpSysBcast, fanned out to online subscribers
//	SYS_SEND               pushed to to_clients' sessions, not stored
//	login                  unexpired broadcasts the client has not got, as
//	                       offline directs; a client's first login gets the
//	                       app's latest unexpired broadcast
//
// "Got" is tracked per client, not per message: shard.OpSysSeen records
// the time at login and when the client's last session ends, and a login
// delivers the broadcasts after that time (and after the subscription).

// convTypeSystem is LeanCloud's convType of a system conversation.
const convTypeSystem = 3

// Broadcast expiry: LeanCloud's default and maximum are one month.
const maxBroadcastValidMS = 30 * 24 * 60 * 60 * 1000

// maxSysLogin bounds the broadcasts pushed on one login.
const maxSysLogin = 100

// sysConv serves the conv ops that differ for a system conversation; ok is
// false when cid is not one.
func (c *Core) sysConv(ctx context.Context, r *request) (g *lcpb.GenericCommand, err error, ok bool) {
	op, cid, conv := c.membershipTarget(r)
	cm := r.cmd.ConvMessage
	if conv == nil || !conv.System {
		return nil, nil, false
	}
	st := c.state()
	switch op {
	case lcpb.OpType_count:
		n, err := shard.CountSubscribers(st, r.app, cid)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err), true
		}
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_result.Enum())
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), Count: proto.Int32(int32(n))}
		return g, nil, true
	case lcpb.OpType_members:
		limit := int(cm.GetLimit())
		if limit <= 0 || limit > maxRoomMembers {
			limit = maxRoomMembers
		}
		m, err := shard.Subscribers(st, r.app, cid, "", limit)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err), true
		}
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_members.Enum())
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), M: append([]string{}, m...)}
		return g, nil, true
	case lcpb.OpType_is_member:
		in, err := shard.IsSubscriber(st, r.app, cid, r.peer)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err), true
		}
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_is_member.Enum())
		g.ConvMessage = &lcpb.ConvCommand{Results: &lcpb.JsonObjectMessage{Data: proto.String(fmt.Sprintf("{%q:%t}", cid, in))}}
		return g, nil, true
	}
	add := op == lcpb.OpType_add || op == lcpb.OpType_join
	pids := cm.M
	if len(pids) == 0 {
		pids = []string{r.peer}
	}
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpSubscribe, App: r.app, CID: cid, From: r.peer, Now: c.nowMS(),
		Members: pids, Mute: !add})
	if err != nil {
		return nil, err, true
	}
	replyOp, selfOp := lcpb.OpType_added, lcpb.OpType_joined
	if !add {
		replyOp, selfOp = lcpb.OpType_removed, lcpb.OpType_left
	}
	g = r.reply(lcpb.CommandType_conv, replyOp.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(cid), AllowedPids: res.Allowed, FailedPids: failedPids(res.Failed)}
	if len(res.Changed) > 0 && r.from == (connKey{}) { // server API: tell the subscribers' sessions
		c.fanout(r.app, res.Changed, connKey{}, convPush(selfOp, cid, ""))
	}
	return g, nil, true
}

// sysAdmin serves the system-conversation parts of an ADMIN COMMAND (a
// create with AdminRequest.system); ok is false for anything else.
func (c *Core) sysAdmin(ctx context.Context, r *request, a *meshpb.AdminRequest) (*lcpb.GenericCommand, error, bool) {
	if !a.GetSystem() || r.cmd.GetCmd() != lcpb.CommandType_conv || r.cmd.GetOp() != lcpb.OpType_start {
		return nil, nil, false
	}
	cm := r.cmd.GetConvMessage()
	var attr []byte
	if cm.GetAttr() != nil {
		attr = []byte(cm.GetAttr().GetData())
	}
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpSysStart, App: r.app, CID: newConvID(), From: r.peer,
		Now: c.nowMS(), Attr: attr})
	if err != nil {
		return nil, err, true
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_started.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(res.Conv.ID), Cdate: proto.String(isoDate(res.Conv.CreatedAt))}
	return g, nil, true
}

// sysDirect stores what a client sends to a system conversation for the
// server and acks it; nobody else gets it. ok is false when cid is not a
// system conversation.
func (c *Core) sysDirect(ctx context.Context, r *request, cid, data string, bin bool) (*lcpb.GenericCommand, error, bool) {
	conv, err := c.convView(r.app, cid)
	if err != nil || conv == nil || !conv.System {
		return nil, nil, false
	}
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpSysIn, App: r.app, CID: cid, From: r.peer, Now: c.nowMS(),
		MID: newMessageID(), Data: data, Bin: bin})
	if err != nil {
		return nil, err, true
	}
	ack := r.reply(lcpb.CommandType_ack, nil)
	ack.AckMessage = &lcpb.AckCommand{Uid: proto.String(res.Message.ID), T: proto.Int64(res.Message.T)}
	return ack, nil, true
}

// sysMessage reads the direct an ADMIN request carries.
func sysMessage(req *meshpb.ClientRequest) (data string, bin bool, err error) {
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
		return "", false, fmt.Errorf("%w: %v", errMalformed, err)
	}
	dm := cmd.GetDirectMessage()
	if dm == nil || req.GetPeerId() == "" {
		return "", false, fmt.Errorf("%w: a system message needs a sender and a message", errMalformed)
	}
	if dm.BinaryMsg != nil && dm.Msg == nil {
		return base64.StdEncoding.EncodeToString(dm.BinaryMsg), true, nil
	}
	return dm.GetMsg(), false, nil
}

func sysPush(m *shard.Message) *lcpb.GenericCommand {
	p := directPush(m, false)
	p.DirectMessage.ConvType = proto.Int32(convTypeSystem)
	return p
}

func ackReply(m *shard.Message) *meshpb.ClientReply {
	return encodeReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
		AckMessage: &lcpb.AckCommand{Uid: proto.String(m.ID), T: proto.Int64(m.T)}})
}

// sysBroadcast stores a broadcast and pushes it to every online
// subscriber.
func (c *Core) sysBroadcast(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, a := req.GetAppId(), req.GetAdmin()
	data, bin, err := sysMessage(req)
	if err != nil {
		return nil, err
	}
	now := c.nowMS()
	vt := a.GetValidTill()
	if vt <= now || vt > now+maxBroadcastValidMS {
		vt = now + maxBroadcastValidMS
	}
	data = c.filterAdmin(app, a.GetCid(), data, bin) // filter.go
	unlock := c.locks.lock(app + "\x00" + a.GetCid())
	defer unlock()
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpSysBcast, App: app, CID: a.GetCid(), From: req.GetPeerId(),
		Now: now, MID: newMessageID(), Data: data, Bin: bin, ValidTill: vt, DayLimit: int(a.GetLimit()), Admin: true})
	if err != nil {
		return nil, err
	}
	subs, err := shard.Subscribers(c.state(), app, a.GetCid(), "", 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if len(subs) > 0 {
		c.fanout(app, subs, connKey{}, sysPush(res.Message))
	}
	return ackReply(res.Message), nil
}

// sysSend pushes a message of cid to the online sessions of to_clients,
// subscribers or not. It is not stored.
func (c *Core) sysSend(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, a := req.GetAppId(), req.GetAdmin()
	data, bin, err := sysMessage(req)
	if err != nil {
		return nil, err
	}
	conv, err := c.convView(app, a.GetCid())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil {
		return nil, fmt.Errorf("%w: %s", shard.ErrConvNotFound, a.GetCid())
	}
	if !conv.System {
		return nil, fmt.Errorf("%w: %s", shard.ErrNotSystem, a.GetCid())
	}
	m := &shard.Message{ID: newMessageID(), CID: conv.ID, From: req.GetPeerId(), T: c.nowMS(),
		Data: c.filterAdmin(app, conv.ID, data, bin), Bin: bin}
	c.fanout(app, a.GetToClients(), connKey{}, sysPush(m))
	return ackReply(m), nil
}

// sysMessages answers what users sent to cid (command: a logs query with
// t / tt bounds, limit and direction; newest by default).
func (c *Core) sysMessages(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	app, cid := req.GetAppId(), req.GetAdmin().GetCid()
	st := c.state()
	conv, err := shard.GetConv(st, app, cid)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil {
		return nil, fmt.Errorf("%w: %s", shard.ErrConvNotFound, cid)
	}
	if !conv.System {
		return nil, fmt.Errorf("%w: %s", shard.ErrNotSystem, cid)
	}
	q := cmd.GetLogsMessage()
	limit := int(q.GetLimit())
	if limit <= 0 {
		limit = defaultAdminLogsLimit
	}
	limit = min(limit, maxAdminLogsLimit)
	newer := q.GetDirection() == lcpb.LogsCommand_NEW
	after, before := q.GetTt(), q.GetT() // newest first: from t down to tt
	if newer {
		after, before = q.GetT(), q.GetTt()
	}
	msgs, err := shard.SysMessages(st, app, cid, after, before, limit, !newer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	items := make([]*lcpb.LogItem, 0, len(msgs))
	for _, m := range msgs {
		it := logItem(m, convTypeSystem)
		items = append(items, it)
	}
	g := &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid), Logs: items}}
	return encodeReply(g), nil
}

// sysLogin returns the broadcasts due to peer on login, as offline
// directs, and records that it got them.
func (c *Core) sysLogin(ctx context.Context, app, peer string) []*lcpb.GenericCommand {
	st := c.state()
	now := c.nowMS()
	seenT, seen, err := shard.LastSeen(st, app, peer)
	if err != nil {
		c.log.Error("sys login", "app", app, "peer", peer, "err", err)
		return nil
	}
	var due []*shard.Message
	if !seen {
		if cid, b, err := shard.LatestBroadcast(st, app, now); err == nil && cid != "" {
			if m, _ := shard.GetMessage(st, app, cid, b.MID); m != nil {
				due = append(due, m)
			}
		}
	}
	cids, err := shard.Subscriptions(st, app, peer, maxLoginConvs)
	if err != nil {
		c.log.Error("sys login", "app", app, "peer", peer, "err", err)
	}
	for _, cid := range cids {
		subT, ok, _ := shard.SubscribedAt(st, app, cid, peer)
		if !ok {
			continue
		}
		bs, err := shard.Broadcasts(st, app, cid, max(seenT, subT), now, maxSysLogin)
		if err != nil {
			continue
		}
		for _, b := range bs {
			if len(due) > 0 && due[0].ID == b.MID {
				continue // the first-login broadcast
			}
			if m, _ := shard.GetMessage(st, app, cid, b.MID); m != nil && len(due) < maxSysLogin {
				due = append(due, m)
			}
		}
	}
	if !seen || len(cids) > 0 {
		if _, err := c.propose(ctx, &shard.Command{Op: shard.OpSysSeen, App: app, From: peer, Now: now}); err != nil {
			c.log.Warn("sys login: mark seen", "app", app, "peer", peer, "err", err)
		}
	}
	out := make([]*lcpb.GenericCommand, 0, len(due))
	for _, m := range due {
		p := sysPush(m)
		p.DirectMessage.Offline = proto.Bool(true)
		out = append(out, p)
	}
	return out
}

// sysLogout records, when peer's last session ended, that it got the
// broadcasts sent so far (live), so its next login does not repeat them.
func (c *Core) sysLogout(ctx context.Context, app, peer string) {
	if c.online(app, peer) {
		return
	}
	cids, err := shard.Subscriptions(c.state(), app, peer, 1)
	if err != nil || len(cids) == 0 {
		return
	}
	if _, err := c.propose(ctx, &shard.Command{Op: shard.OpSysSeen, App: app, From: peer, Now: c.nowMS()}); err != nil {
		c.log.Warn("sys logout: mark seen", "app", app, "peer", peer, "err", err)
	}
}
