package core

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// conv dispatches cmd:conv ops.
func (c *Core) conv(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	if r.cmd.ConvMessage == nil {
		r.cmd.ConvMessage = &lcpb.ConvCommand{}
	}
	if g, err, ok := c.roomConv(ctx, r); ok { // chatroom.go
		return g, err
	}
	if g, err, ok := c.sysConv(ctx, r); ok { // sysconv.go
		return g, err
	}
	if g, err, ok := c.tempConv(ctx, r); ok { // tempconv.go
		return g, err
	}
	switch r.cmd.GetOp() {
	case lcpb.OpType_start:
		return c.convStart(ctx, r)
	case lcpb.OpType_query:
		return c.convQuery(ctx, r)
	case lcpb.OpType_add, lcpb.OpType_join:
		return c.convMembers(ctx, r, true)
	case lcpb.OpType_remove, lcpb.OpType_leave:
		return c.convMembers(ctx, r, false)
	case lcpb.OpType_update:
		return c.convUpdate(ctx, r)
	case lcpb.OpType_mute, lcpb.OpType_unmute:
		return c.convMute(ctx, r)
	case lcpb.OpType_count, lcpb.OpType_members, lcpb.OpType_max_read:
		return c.convRead(r)
	case lcpb.OpType_is_member:
		return c.convIsMember(r)
	case lcpb.OpType_member_info_update:
		return c.memberInfoUpdate(ctx, r)
	case lcpb.OpType_add_shutup, lcpb.OpType_remove_shutup:
		return c.shutup(ctx, r, r.cmd.GetOp() == lcpb.OpType_add_shutup)
	case lcpb.OpType_query_shutup:
		return c.queryShutup(ctx, r)
	case lcpb.OpType_check_shutup:
		return c.checkShutup(ctx, r)
	}
	return nil, fmt.Errorf("%w: conv/%v", errUnsupported, r.cmd.GetOp())
}

func (c *Core) convStart(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	var attr json.RawMessage
	if cm.Attr != nil {
		attr = json.RawMessage(cm.Attr.GetData())
	}
	if err := c.hookConvStart(ctx, r, cm.M, attr); err != nil { // hooks.go
		return nil, err
	}
	res, err := c.propose(ctx, &shard.Command{
		Op: shard.OpStart, App: r.app, CID: c.newConvID(), From: r.peer, Now: c.nowMS(),
		Members: cm.M, Attr: attr, Transient: cm.GetTransient(), Unique: cm.GetUnique(),
	})
	if err != nil {
		return nil, err
	}
	conv := res.Conv
	if conv.Unique && !res.Existing {
		// Another shard or region may have made the set's conversation
		// at the same moment: the catalog's unique index settles it
		// (unique.go).
		if w := c.claimUnique(ctx, r.app, conv); w != "" {
			if _, err := c.propose(ctx, &shard.Command{Op: shard.OpDelete, App: r.app, CID: conv.ID, From: r.peer, Admin: true, Now: c.nowMS()}); err != nil {
				c.log.Warn("unique conversation: delete the loser", "app", r.app, "cid", conv.ID, "err", err)
			}
			g := r.reply(lcpb.CommandType_conv, lcpb.OpType_started.Enum())
			g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(w), Cdate: proto.String(isoDate(conv.CreatedAt)),
				Existing: proto.Bool(true), UniqueId: proto.String(w)}
			return g, nil
		}
	}
	if conv.Transient {
		c.roomJoinCreator(r, conv.ID) // chatroom.go
	}
	if !res.Existing {
		c.hookConvStarted(r.app, conv.ID) // notifyhooks.go
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_started.Enum())
	g.ConvMessage = &lcpb.ConvCommand{
		Cid: proto.String(conv.ID), Cdate: proto.String(isoDate(conv.CreatedAt)),
		Existing: proto.Bool(res.Existing),
	}
	if conv.Unique {
		g.ConvMessage.UniqueId = proto.String(conv.UniqueID)
		if conv.UniqueID == "" {
			g.ConvMessage.UniqueId = proto.String(conv.ID)
		}
	}
	if !res.Existing {
		var invited []string
		for _, m := range conv.Members {
			if m != r.peer {
				invited = append(invited, m)
			}
		}
		c.fanout(r.app, invited, r.from, convPush(lcpb.OpType_joined, conv.ID, r.peer))
	}
	return g, nil
}

// convPush builds a cmd:conv push.
func convPush(op lcpb.OpType, cid, initBy string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(),
		ConvMessage: &lcpb.ConvCommand{Cid: proto.String(cid), InitBy: proto.String(initBy)},
	}
}

// convMembers serves add/join (add) and remove/quit.
func (c *Core) convMembers(ctx context.Context, r *request, add bool) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	pids := cm.M
	if len(pids) == 0 {
		pids = []string{r.peer} // join / quit
	}
	op, replyOp, selfOp, othersOp := shard.OpAdd, lcpb.OpType_added, lcpb.OpType_joined, lcpb.OpType_members_joined
	if !add {
		op, replyOp, selfOp, othersOp = shard.OpRemove, lcpb.OpType_removed, lcpb.OpType_left, lcpb.OpType_members_left
	}
	var before []string
	var uniqueSet []string // the set the conversation is the unique one of
	if conv, _ := shard.GetConv(c.state(), r.app, cm.GetCid()); conv != nil {
		if !add {
			before = conv.Members
		}
		if conv.Unique && conv.UniqueID != "" {
			uniqueSet = conv.Members
		}
	}
	if err := c.hookConvMembers(ctx, r, cm.GetCid(), pids, add); err != nil { // hooks.go
		return nil, err
	}
	res, err := c.propose(ctx, &shard.Command{Op: op, App: r.app, CID: cm.GetCid(), From: r.peer, Now: c.nowMS(), Members: pids})
	if err != nil {
		return nil, err
	}
	if uniqueSet != nil && res.Conv.UniqueID == "" { // no longer the set's (unique.go)
		c.releaseUnique(r.app, res.Conv.ID, uniqueSet)
	}
	g := r.reply(lcpb.CommandType_conv, replyOp.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(res.Conv.ID), AllowedPids: res.Allowed}
	if g.ConvMessage.AllowedPids == nil {
		g.ConvMessage.AllowedPids = []string{}
	}
	g.ConvMessage.FailedPids = failedPids(res.Failed)
	c.hookConvChanged(r.app, r.peer, res.Conv.ID, res.Changed, add) // notifyhooks.go
	if len(res.Changed) > 0 {
		c.fanout(r.app, res.Changed, connKey{}, convPush(selfOp, res.Conv.ID, r.peer))
		others := res.Conv.Members // after add: everyone; filter out the changed
		if !add {
			others = before
		}
		var rest []string
		for _, m := range others {
			if !contains(res.Changed, m) {
				rest = append(rest, m)
			}
		}
		p := convPush(othersOp, res.Conv.ID, r.peer)
		p.ConvMessage.M = res.Changed
		c.fanout(r.app, rest, connKey{}, p)
	}
	return g, nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func (c *Core) convUpdate(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	if cm.Attr == nil {
		return nil, fmt.Errorf("%w: update without attr", errMalformed)
	}
	if v, err := c.hookConvUpdate(ctx, r, cm.GetCid(), json.RawMessage(cm.Attr.GetData()), nil); err != nil { // hooks.go
		return nil, err
	} else if v.Attr != nil {
		cm.Attr.Data = proto.String(string(v.Attr))
	}
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpUpdate, App: r.app, CID: cm.GetCid(), From: r.peer, Now: c.nowMS(),
		Update: json.RawMessage(cm.Attr.GetData())})
	if err != nil {
		return nil, err
	}
	udate := isoDate(res.Conv.UpdatedAt)
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_updated.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(res.Conv.ID), Udate: proto.String(udate),
		AttrModified: &lcpb.JsonObjectMessage{Data: proto.String(string(res.AttrModified))}}
	p := convPush(lcpb.OpType_updated, res.Conv.ID, r.peer)
	p.ConvMessage.Udate = proto.String(udate)
	p.ConvMessage.Attr = &lcpb.JsonObjectMessage{Data: proto.String(cm.Attr.GetData())}
	p.ConvMessage.AttrModified = &lcpb.JsonObjectMessage{Data: proto.String(string(res.AttrModified))}
	c.fanout(r.app, res.Conv.Members, r.from, p)
	return g, nil
}

func (c *Core) convMute(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	mute := r.cmd.GetOp() == lcpb.OpType_mute
	if v, err := c.hookConvUpdate(ctx, r, r.cmd.ConvMessage.GetCid(), nil, &mute); err != nil { // hooks.go
		return nil, err
	} else if v.Mute != nil {
		mute = *v.Mute
	}
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpMute, App: r.app, CID: r.cmd.ConvMessage.GetCid(), From: r.peer,
		Now: c.nowMS(), Mute: mute})
	if err != nil {
		return nil, err
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_updated.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(res.Conv.ID), Udate: proto.String(isoDate(res.Conv.UpdatedAt))}
	return g, nil
}

// convRead serves count, members and max_read from the applied state.
func (c *Core) convRead(r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	st := c.state()
	conv, err := shard.GetConv(st, r.app, cm.GetCid())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil {
		return nil, fmt.Errorf("%w: %s", shard.ErrConvNotFound, cm.GetCid())
	}
	switch r.cmd.GetOp() {
	case lcpb.OpType_count:
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_result.Enum())
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(conv.ID), Count: proto.Int32(int32(len(conv.Members)))}
		return g, nil
	case lcpb.OpType_members:
		g := r.reply(lcpb.CommandType_conv, lcpb.OpType_members.Enum())
		m := conv.Members
		if lim := int(cm.GetLimit()); lim > 0 && lim < len(m) {
			m = m[:lim]
		}
		g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(conv.ID), M: append([]string{}, m...)}
		return g, nil
	}
	// max_read: the furthest delivered/read positions of the other members.
	curs, err := shard.Cursors(st, r.app, conv.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_max_read.Enum())
	out := &lcpb.ConvCommand{Cid: proto.String(conv.ID)}
	var maxAck, maxRead int64
	pids := make([]string, 0, len(curs))
	for pid := range curs {
		pids = append(pids, pid)
	}
	sort.Strings(pids)
	for _, pid := range pids {
		cur := curs[pid]
		if cm.GetQueryAllMembers() {
			out.MaxReadTuples = append(out.MaxReadTuples, &lcpb.MaxReadTuple{Pid: proto.String(pid),
				MaxAckTimestamp: proto.Int64(cur.Ack), MaxReadTimestamp: proto.Int64(cur.Read)})
		}
		if pid == r.peer {
			continue
		}
		maxAck, maxRead = max(maxAck, cur.Ack), max(maxRead, cur.Read)
	}
	out.MaxAckTimestamp, out.MaxReadTimestamp = proto.Int64(maxAck), proto.Int64(maxRead)
	g.ConvMessage = out
	return g, nil
}

// convIsMember answers results.data = {"<cid>": bool} (Swift).
func (c *Core) convIsMember(r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	cids := cm.Cids
	if len(cids) == 0 && cm.GetCid() != "" {
		cids = []string{cm.GetCid()}
	}
	out := map[string]bool{}
	for _, cid := range cids {
		conv, err := shard.GetConv(c.state(), r.app, cid)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		out[cid] = conv != nil && conv.IsMember(r.peer)
	}
	b, _ := json.Marshal(out)
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_is_member.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Results: &lcpb.JsonObjectMessage{Data: proto.String(string(b))}}
	return g, nil
}
