package core

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/push"
)

// System conversations (sys:true, LeanCloud's service conversations;
// subscribers and broadcasts are stored by core/shard/sysconv.go):
//
//	REST create            AdminRequest{system} + conv/start -> shard.OpSysStart
//	client join/quit       conv/add|remove of self -> shard.OpSubscribe (no limit)
//	client direct          -> shard.OpSysIn, acked, never fanned out
//	SYS_BROADCAST          -> shard.OpSysBcast, fanned out to online subscribers
//	SYS_BROADCAST global   -> shard.OpSysBcast{Global}, fanned out to every
//	                       online user of the app (REST /1.2/rtm/broadcasts)
//	SYS_SEND               -> shard.OpSysSend, stored per receiver, pushed
//	                       to to_clients' sessions
//	transient              a transient broadcast or SYS_SEND is not stored:
//	                       pushed (transient:true) to the online sessions only
//	login                  unexpired broadcasts of the client's subscriptions,
//	                       unexpired global broadcasts and SYS_SEND messages
//	                       the client has not got, as offline directs; a
//	                       client's first login gets only the app's latest
//	                       unexpired global broadcast
//	SYS_DELETE_BROADCAST   -> shard.OpSysUnbroadcast: later logins skip it
//	broadcast edit         an ordinary patch (COMMAND patch/modify) of the
//	                       history row, which later logins read
//
// "Got" is tracked per client, not per message: shard.OpSysSeen records
// the time at login and when the client's last session ends, and a login
// delivers the broadcasts and messages after that time (broadcasts also
// after the subscription).
//
// Service webhook (REST-AND-HOOKS.md §2.4): what a client sends to a system
// conversation is stored (shard.OpSysIn) and, once committed, queued on the
// app's hooks.SysWebhook by the core that proposed it, the shard leader;
// each message is queued once. The queue lives in that core's memory: a
// leader change or restart loses what was queued or in flight there (the
// rows stay readable over REST, SYS_MESSAGES).
//
// Offline push: a broadcast's or SYS_SEND's push (AdminRequest.sys_push) is
// handed to the app's push provider (offline.go) for the receivers with no
// online session; without it nothing is pushed (the app's template is not
// used for these).

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
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpSysStart, App: r.app, CID: c.newConvID(), From: r.peer,
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
	if m := res.Message; c.sysHook != nil {
		c.sysHook.Enqueue(r.app, hooks.NewSysMessage(cid, m.ID, m.From, m.Data, m.Bin, m.T, ""))
	}
	ack := r.reply(lcpb.CommandType_ack, nil)
	ack.AckMessage = &lcpb.AckCommand{Uid: proto.String(res.Message.ID), T: proto.Int64(res.Message.T)}
	return ack, nil, true
}

// SysWebhookStats returns the counters of the service webhook (zero
// without one).
func (c *Core) SysWebhookStats() hooks.SysStats {
	if c.sysHook == nil {
		return hooks.SysStats{}
	}
	return c.sysHook.Stats()
}

// sysMessage reads the direct an ADMIN request carries.
func sysMessage(req *meshpb.ClientRequest) (data string, bin, transient bool, err error) {
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
		return "", false, false, fmt.Errorf("%w: %v", errMalformed, err)
	}
	dm := cmd.GetDirectMessage()
	if dm == nil || req.GetPeerId() == "" {
		return "", false, false, fmt.Errorf("%w: a system message needs a sender and a message", errMalformed)
	}
	data, bin = directContent(dm) // message.go
	return data, bin, dm.GetTransient(), nil
}

// sysPush renders a system-conversation message as a direct push; a
// transient one carries the flag, as every transient push does.
func sysPush(m *shard.Message, transient bool) *lcpb.GenericCommand {
	p := directPush(m, transient)
	p.DirectMessage.ConvType = proto.Int32(convTypeSystem)
	return p
}

// onlinePeers lists the clientIds of app with a session anywhere in the
// region (as this core's presence knows them).
func (c *Core) onlinePeers(app string) []string { return c.relay.OnlinePeers(app) }

func ackReply(m *shard.Message) *meshpb.ClientReply {
	return encodeReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
		AckMessage: &lcpb.AckCommand{Uid: proto.String(m.ID), T: proto.Int64(m.T)}})
}

// sysBroadcast stores a broadcast and pushes it to every online
// subscriber, or for a global broadcast to every online user of the app. A
// transient one is not stored: only the sessions online now get it.
func (c *Core) sysBroadcast(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, a := req.GetAppId(), req.GetAdmin()
	data, bin, transient, err := sysMessage(req)
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
		Now: now, MID: newMessageID(), Data: data, Bin: bin, ValidTill: vt, DayLimit: int(a.GetLimit()), Admin: true,
		Global: a.GetSysGlobal(), Transient: transient})
	if err != nil {
		return nil, err
	}
	subs, err := shard.Subscribers(c.state(), app, a.GetCid(), "", 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if a.GetSysGlobal() {
		// Every online user, in every region (regions.go).
		p := sysPush(res.Message, transient)
		c.pushEnvelope(p)
		if online := c.onlinePeers(app); len(online) > 0 {
			c.relay.Fanout(app, online, connKey{}, p, false)
		}
		c.remote.FanoutAll(app, p)
	} else if len(subs) > 0 {
		c.fanout(app, subs, connKey{}, sysPush(res.Message, transient))
	}
	switch {
	case transient:
	case a.GetSysGlobal() && a.GetSysPush() != "" && c.pushEnabled(app):
		// LeanCloud: "all iOS and Android users get this push".
		m := res.Message
		c.queuePushTo(context.Background(), app, push.Request{ConvID: m.CID, From: m.From, Timestamp: m.T, Everyone: true},
			push.Sources{PushData: a.GetSysPush()}) // offline.go
	case len(subs) > 0:
		c.sysOfflinePush(app, subs, res.Message, a.GetSysPush())
	}
	return ackReply(res.Message), nil
}

// sysSend stores a message of cid for each of to_clients, subscribers or
// not, and pushes it to their online sessions.
func (c *Core) sysSend(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, a := req.GetAppId(), req.GetAdmin()
	data, bin, transient, err := sysMessage(req)
	if err != nil {
		return nil, err
	}
	if err := c.checkSys(app, a.GetCid()); err != nil {
		return nil, err
	}
	if transient { // to the online sessions only, nothing stored
		m := &shard.Message{ID: newMessageID(), CID: a.GetCid(), From: req.GetPeerId(), T: c.nowMS(),
			Data: c.filterAdmin(app, a.GetCid(), data, bin), Bin: bin}
		c.fanout(app, a.GetToClients(), connKey{}, sysPush(m, true))
		return ackReply(m), nil
	}
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpSysSend, App: app, CID: a.GetCid(), From: req.GetPeerId(),
		Now: c.nowMS(), MID: newMessageID(), Data: c.filterAdmin(app, a.GetCid(), data, bin), Bin: bin,
		Members: a.GetToClients(), Admin: true})
	if err != nil {
		return nil, err
	}
	c.fanout(app, res.Changed, connKey{}, sysPush(res.Message, false))
	c.sysOfflinePush(app, res.Changed, res.Message, a.GetSysPush())
	return ackReply(res.Message), nil
}

// sysOfflinePush queues the push pushData for the receivers of m with no
// online session; it never blocks.
func (c *Core) sysOfflinePush(app string, to []string, m *shard.Message, pushData string) {
	if pushData == "" || !c.pushEnabled(app) {
		return
	}
	_, offline := c.splitOnline(app, to)
	if len(offline) == 0 {
		return
	}
	c.queuePush(context.Background(), app, m.CID, m.From, m.T, offline, push.Sources{PushData: pushData}) // offline.go
}

// checkSys checks that cid is a system conversation of app.
func (c *Core) checkSys(app, cid string) error {
	conv, err := c.convView(app, cid)
	if err != nil {
		return fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil {
		return fmt.Errorf("%w: %s", shard.ErrConvNotFound, cid)
	}
	if !conv.System {
		return fmt.Errorf("%w: %s", shard.ErrNotSystem, cid)
	}
	return nil
}

// Limits of the REST listings (LeanCloud: at most 50).
const (
	maxSysRows        = 50
	maxSysBroadcastsQ = 1000
)

// sysSubscribers answers the subscribers of cid after sys_after.
func (c *Core) sysSubscribers(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, a := req.GetAppId(), req.GetAdmin()
	if err := c.checkSys(app, a.GetCid()); err != nil {
		return nil, err
	}
	limit := int(a.GetLimit())
	if limit <= 0 || limit > maxSysRows {
		limit = maxSysRows
	}
	subs, err := shard.SubscriberRows(c.state(), app, a.GetCid(), a.GetSysAfter(), limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	return sysRows(subs), nil
}

// sysSubscriptions answers the system conversations peer_id subscribes to,
// ordered by (subscription time, cid), after the cursor (sys_timestamp,
// sys_after) or, sys_reversed, before it and newest first.
func (c *Core) sysSubscriptions(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, a := req.GetAppId(), req.GetAdmin()
	subs, err := shard.ClientSubscriptions(c.state(), app, req.GetPeerId())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	order := func(x, y shard.Subscription) int {
		if x.T != y.T {
			return cmp.Compare(x.T, y.T)
		}
		return cmp.Compare(x.CID, y.CID)
	}
	slices.SortFunc(subs, order)
	cur := shard.Subscription{T: a.GetSysTimestamp(), CID: a.GetSysAfter()}
	hasCur := cur.T != 0 || cur.CID != ""
	if a.GetSysReversed() {
		slices.Reverse(subs)
		if hasCur {
			subs = slices.DeleteFunc(subs, func(s shard.Subscription) bool { return order(s, cur) >= 0 })
		}
	} else if hasCur {
		subs = slices.DeleteFunc(subs, func(s shard.Subscription) bool { return order(s, cur) <= 0 })
	}
	limit := int(a.GetLimit())
	if limit <= 0 || limit > maxSysRows {
		limit = maxSysRows
	}
	return sysRows(subs[:min(limit, len(subs))]), nil
}

func sysRows(subs []shard.Subscription) *meshpb.ClientReply {
	rows := make([]*meshpb.SysRow, len(subs))
	for i, s := range subs {
		rows[i] = &meshpb.SysRow{ClientId: s.PID, Cid: s.CID, Timestamp: s.T}
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{SysRows: rows}}
}

// sysBroadcasts answers the broadcasts still valid, newest first.
func (c *Core) sysBroadcasts(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	app, a := req.GetAppId(), req.GetAdmin()
	if a.GetCid() != "" {
		if err := c.checkSys(app, a.GetCid()); err != nil {
			return nil, err
		}
	}
	st := c.state()
	bs, err := shard.ValidBroadcasts(st, app, a.GetCid(), c.nowMS())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	skip := min(max(int(a.GetSysSkip()), 0), len(bs))
	bs = bs[skip:]
	limit := int(a.GetLimit())
	if limit <= 0 || limit > maxSysBroadcastsQ {
		limit = maxSysBroadcastsQ
	}
	bs = bs[:min(limit, len(bs))]
	rows := make([]*meshpb.SysRow, 0, len(bs))
	for _, b := range bs {
		row := &meshpb.SysRow{Cid: b.CID, MsgId: b.MID, Timestamp: b.T, ValidTill: b.ValidTill}
		if m, _ := shard.GetMessage(st, app, b.CID, b.MID); m != nil {
			row.From = m.From
			row.Data, row.Bin = m.Content()
		}
		rows = append(rows, row)
	}
	return &meshpb.ClientReply{Admin: &meshpb.AdminReply{SysRows: rows}}, nil
}

// sysDeleteBroadcast withdraws a broadcast from the clients that have not
// got it.
func (c *Core) sysDeleteBroadcast(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	a := req.GetAdmin()
	_, err := c.propose(ctx, &shard.Command{Op: shard.OpSysUnbroadcast, App: req.GetAppId(), CID: a.GetCid(),
		MID: a.GetSysMsgId(), Now: c.nowMS(), Admin: true})
	if err != nil {
		return nil, err
	}
	return &meshpb.ClientReply{}, nil
}

// sysDeleteUserMessage deletes a SYS_SEND message of peer_id.
func (c *Core) sysDeleteUserMessage(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	a := req.GetAdmin()
	if req.GetPeerId() == "" {
		return nil, fmt.Errorf("%w: no client", errMalformed)
	}
	_, err := c.propose(ctx, &shard.Command{Op: shard.OpSysUnsend, App: req.GetAppId(), CID: a.GetCid(),
		Members: []string{req.GetPeerId()}, MID: a.GetSysMsgId(), T: a.GetSysTimestamp(), Now: c.nowMS(), Admin: true})
	if err != nil {
		return nil, err
	}
	return &meshpb.ClientReply{}, nil
}

// sysUserMessages answers what the server sent peer_id in cid (SYS_SEND),
// as sysMessages answers.
func (c *Core) sysUserMessages(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	return c.sysLogs(req, func(st shard.Reader, app, cid string, after, before int64, limit int, newest bool) ([]*shard.Message, error) {
		return shard.UserMessages(st, app, cid, req.GetPeerId(), after, before, limit, newest)
	})
}

// sysMessages answers what users sent to cid (command: a logs query with
// t / tt bounds, limit and direction; newest by default).
func (c *Core) sysMessages(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	return c.sysLogs(req, shard.SysMessages)
}

// sysLogs answers a logs query of cid read by list.
func (c *Core) sysLogs(req *meshpb.ClientRequest,
	list func(st shard.Reader, app, cid string, after, before int64, limit int, newest bool) ([]*shard.Message, error),
) (*meshpb.ClientReply, error) {
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
	msgs, err := list(st, app, cid, after, before, limit, !newer)
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

// sysLogin returns the broadcasts and SYS_SEND messages due to peer on
// login, as offline directs, oldest first, and records that it got them.
func (c *Core) sysLogin(ctx context.Context, app, peer string) []*lcpb.GenericCommand {
	st := c.state()
	now := c.nowMS()
	seenT, seen, err := shard.LastSeen(st, app, peer)
	if err != nil {
		c.log.Error("sys login", "app", app, "peer", peer, "err", err)
		return nil
	}
	var due []*shard.Message
	have := map[string]bool{}
	add := func(cid, mid string) {
		if have[mid] || len(due) >= maxSysLogin {
			return
		}
		if m, _ := shard.GetMessage(st, app, cid, mid); m != nil {
			have[mid] = true
			due = append(due, m)
		}
	}
	// Global broadcasts: a first login gets the newest valid one, a later
	// login every valid one sent since the client last got them.
	var globals []shard.GlobalBroadcast
	if !seen {
		if g, ok, err := shard.LatestGlobalBroadcast(st, app, now); err == nil && ok {
			globals = append(globals, g)
		}
	} else if globals, err = shard.GlobalBroadcasts(st, app, seenT, now, maxSysLogin); err != nil {
		c.log.Error("sys login", "app", app, "peer", peer, "err", err)
	}
	for _, g := range globals {
		add(g.CID, g.MID)
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
			add(cid, b.MID)
		}
	}
	mine, err := shard.DueUserMessages(st, app, peer, seenT, maxSysLogin)
	if err != nil {
		c.log.Error("sys login", "app", app, "peer", peer, "err", err)
	}
	for _, m := range mine {
		if len(due) < maxSysLogin {
			due = append(due, m)
		}
	}
	if !seen || len(cids) > 0 || len(mine) > 0 || len(globals) > 0 {
		seenCmd := &shard.Command{Op: shard.OpSysSeen, App: app, From: peer, Now: now}
		if len(due) == 0 {
			// Nothing is delivered, so the record only moves the client's
			// watermark to now: it need not hold the login for a raft
			// round. A login before it lands finds nothing due again.
			c.seenAsync(seenCmd)
		} else if _, err := c.propose(ctx, seenCmd); err != nil {
			c.log.Warn("sys login: mark seen", "app", app, "peer", peer, "err", err)
		}
	}
	slices.SortStableFunc(due, func(x, y *shard.Message) int { return cmp.Compare(x.T, y.T) })
	out := make([]*lcpb.GenericCommand, 0, len(due))
	for _, m := range due {
		p := sysPush(m, false)
		p.DirectMessage.Offline = proto.Bool(true)
		out = append(out, p)
	}
	return out
}

// maxSeenAsync bounds the seen records in flight in the background (a
// variable for tests).
var maxSeenAsync = 1024

// seenAsyncTimeout bounds a login's seen record proposed in the background.
const seenAsyncTimeout = 10 * time.Second

// seenAsync proposes a login's seen record without holding the login: at
// most maxSeenAsync at once, past that the record is proposed in line.
// Records wait in a queue that one loop proposes as a batch command (up to
// shard.MaxBatch), after letting them gather for seenLinger: those that
// come while a batch is in raft go in the next one. A burst of first
// logins (a fresh deployment, a migration) is then a raft entry and a log
// sync per round, not one per login.
func (c *Core) seenAsync(cmd *shard.Command) {
	c.mu.Lock()
	ok := !c.closed && c.seenInFlight < maxSeenAsync
	start := false
	if ok {
		c.seenInFlight++
		c.seenQueue = append(c.seenQueue, cmd)
		if !c.seenRunning {
			c.seenRunning, start = true, true
			c.wg.Add(1)
		}
	}
	c.mu.Unlock()
	if !ok {
		c.proposeSeen([]*shard.Command{cmd})
		return
	}
	c.stats.SeenAsync.Add(1)
	if start {
		go c.seenLoop()
	}
}

// seenLinger is how long the seen loop lets records gather before it
// takes a batch: a record holds no login, and at 1,000 first logins a
// second this makes ~5 records a raft entry instead of one or two.
const seenLinger = 5 * time.Millisecond

// seenLoop proposes the queued seen records, a batch at a time, until the
// queue is empty.
func (c *Core) seenLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-time.After(seenLinger):
		case <-c.quit:
		}
		c.mu.Lock()
		n := min(len(c.seenQueue), shard.MaxBatch)
		if n == 0 {
			c.seenQueue, c.seenRunning = nil, false
			c.mu.Unlock()
			return
		}
		batch := slices.Clone(c.seenQueue[:n])
		clear(c.seenQueue[:n])
		c.seenQueue = c.seenQueue[n:]
		c.mu.Unlock()
		c.proposeSeen(batch)
		c.mu.Lock()
		c.seenInFlight -= n
		c.mu.Unlock()
	}
}

// proposeSeen proposes login seen records: one alone, several as one batch
// command (each applied as if alone, shard.applyBatch).
func (c *Core) proposeSeen(cmds []*shard.Command) {
	ctx, cancel := c.quitCtx(seenAsyncTimeout)
	defer cancel()
	cmd := cmds[0]
	if len(cmds) > 1 {
		cmd = &shard.Command{Op: shard.OpBatch, Batch: cmds}
	}
	res, err := c.propose(ctx, cmd)
	if err != nil {
		c.log.Warn("sys login: mark seen", "app", cmds[0].App, "peer", cmds[0].From, "records", len(cmds), "err", err)
		return
	}
	if len(cmds) == 1 {
		return
	}
	for i, it := range res.Batch {
		if it.Err != nil {
			c.log.Warn("sys login: mark seen", "app", cmds[i].App, "peer", cmds[i].From, "err", it.Err)
		}
	}
}

// sysLogout records, when peer's last session ended, that it got the
// broadcasts and messages sent so far (live), so its next login does not
// repeat them. gone, when not 0, is a region that said the client has no
// session left there: its summary, which may still name the client, is
// not taken for a session.
func (c *Core) sysLogout(ctx context.Context, app, peer string, gone uint8) {
	if c.onlineBut(app, peer, gone) {
		return
	}
	st := c.state()
	cids, err := shard.Subscriptions(st, app, peer, 1)
	if err != nil {
		return
	}
	if len(cids) == 0 {
		has, err := shard.HasUserMessages(st, app, peer)
		if err != nil {
			return
		}
		if !has { // a global broadcast it got live since it last logged in?
			seenT, _, err := shard.LastSeen(st, app, peer)
			if err != nil {
				return
			}
			gs, err := shard.GlobalBroadcasts(st, app, seenT, c.nowMS(), 1)
			if err != nil || len(gs) == 0 {
				return
			}
		}
	}
	if _, err := c.propose(ctx, &shard.Command{Op: shard.OpSysSeen, App: app, From: peer, Now: c.nowMS()}); err != nil {
		c.log.Warn("sys logout: mark seen", "app", app, "peer", peer, "err", err)
	}
}
