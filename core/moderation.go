package core

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Moderation: member roles, member mute ("shutup") and the conversation
// blacklist. The rules live in the shard (core/shard/moderation.go): the
// Owner (creator) and Managers may kick, mute and block, a Manager not the
// Owner; a Member may not (4320 CONVERSATION_OPERATION_UNAUTHORIZED, for
// the whole request when the actor is a Member, per clientId in failedPids
// otherwise).
//
//	conv/member_info_update{cid, targetClientId, info{pid, role}}
//	  -> conv/member_info_updated{cid}
//	  push conv/member_info_changed{cid, initBy, info{pid, role}} to members
//	conv/add_shutup|remove_shutup{cid, m}
//	  -> conv/shutup_added|shutup_removed{cid, allowedPids, failedPids}
//	  push conv/shutuped|unshutuped{cid, initBy} to each changed clientId
//	  push conv/members_shutuped|members_unshutuped{cid, m, initBy} to members
//	conv/query_shutup{cid, limit, next} -> conv/shutup_result{cid, m, next}
//	conv/check_shutup{cid, m}           -> conv/check_result{cid, m: the muted}
//	blacklist/block|unblock{srcCid, toPids}
//	  -> blacklist/blocked|unblocked{srcCid, allowedPids, failedPids}
//	  push conv/blocked|unblocked{cid, initBy} to each changed clientId
//	  push conv/members_blocked|members_unblocked{cid, m, initBy} to members
//	blacklist/query{srcCid, limit, next} -> blacklist/query_result{srcCid, blockedPids, next}
//	blacklist/check_block{srcCid, toPids} -> blacklist/check_result{srcCid, blockedPids}
//
// members_* pushes go to every member, the changed ones included: the Java
// SDK expects them next to the personal push and hides the duplicate
// (NATIVE-SDKS.md §4). Blocking removes the member first, so a blocked
// client gets only `blocked`. `next` is a decimal offset (Java parses it
// with Integer.valueOf).
//
// The server API (REST, master key: admin.go) runs these ops with the
// shard's role checks off (shard.Command.Admin) and reads the lists as no
// member; it also sets temporary mutes (AdminRequest TEMP_SHUTUP: a mute
// that ends by itself, checked at send time against the command's Now).
// Temporary mutes are not pushed and not listed by query_shutup;
// check_shutup includes them.

// Moderation list paging (LeanCloud: server default 10).
const (
	defaultModerationLimit = 10
	maxModerationLimit     = 100
)

func (c *Core) memberInfoUpdate(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	target := cm.GetTargetClientId()
	if target == "" {
		target = cm.GetInfo().GetPid()
	}
	if target == "" || cm.GetInfo() == nil {
		return nil, fmt.Errorf("%w: member_info_update without target or info", errMalformed)
	}
	role := cm.GetInfo().GetRole()
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpRole, App: r.app, CID: cm.GetCid(), From: r.peer,
		Now: c.nowMS(), Members: []string{target}, Role: role})
	if err != nil {
		return nil, err
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_member_info_updated.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(res.Conv.ID)}
	if len(res.Changed) > 0 {
		p := convPush(lcpb.OpType_member_info_changed, res.Conv.ID, r.peer)
		p.ConvMessage.Info = &lcpb.ConvMemberInfo{Pid: proto.String(target), Role: proto.String(role)}
		c.fanout(r.app, res.Conv.Members, r.from, p)
	}
	return g, nil
}

// moderationPushes tells the changed clientIds (self op) and the members
// (others op, with m) about a moderation change by r.peer.
func (c *Core) moderationPushes(r *request, conv *shard.Conv, changed []string, selfOp, othersOp lcpb.OpType) {
	if len(changed) == 0 {
		return
	}
	c.fanout(r.app, changed, r.from, convPush(selfOp, conv.ID, r.peer))
	p := convPush(othersOp, conv.ID, r.peer)
	p.ConvMessage.M = changed
	c.fanout(r.app, conv.Members, r.from, p)
}

func (c *Core) shutup(ctx context.Context, r *request, add bool) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpShutup, App: r.app, CID: cm.GetCid(), From: r.peer,
		Now: c.nowMS(), Members: cm.M, Mute: add})
	if err != nil {
		return nil, err
	}
	replyOp, selfOp, othersOp := lcpb.OpType_shutup_added, lcpb.OpType_shutuped, lcpb.OpType_members_shutuped
	if !add {
		replyOp, selfOp, othersOp = lcpb.OpType_shutup_removed, lcpb.OpType_unshutuped, lcpb.OpType_members_unshutuped
	}
	g := r.reply(lcpb.CommandType_conv, replyOp.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(res.Conv.ID), AllowedPids: nonNil(res.Allowed),
		FailedPids: failedPids(res.Failed)}
	c.moderationPushes(r, res.Conv, res.Changed, selfOp, othersOp)
	return g, nil
}

// page cuts list at the decimal offset next; more is the next offset, ""
// at the end.
func page(list []string, limit int32, next string) (out []string, more string, err error) {
	off := 0
	if next != "" {
		if off, err = strconv.Atoi(next); err != nil || off < 0 {
			return nil, "", fmt.Errorf("%w: next %q", errMalformed, next)
		}
	}
	n := int(limit)
	if n <= 0 {
		n = defaultModerationLimit
	}
	n = min(n, maxModerationLimit)
	if off >= len(list) {
		return []string{}, "", nil
	}
	end := min(off+n, len(list))
	if end < len(list) {
		more = strconv.Itoa(end)
	}
	return append([]string{}, list[off:end]...), more, nil
}

// memberConv loads cid for a read by a member, or by the server API.
func (c *Core) memberConv(ctx context.Context, r *request, cid string) (*shard.Conv, error) {
	conv, err := shard.GetConv(c.state(), r.app, cid)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil {
		return nil, fmt.Errorf("%w: %s", shard.ErrConvNotFound, cid)
	}
	if !isAdmin(ctx) && !conv.IsMember(r.peer) {
		return nil, fmt.Errorf("%w: %s", shard.ErrNotMember, r.peer)
	}
	return conv, nil
}

func (c *Core) queryShutup(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	conv, err := c.memberConv(ctx, r, cm.GetCid())
	if err != nil {
		return nil, err
	}
	m, next, err := page(conv.Shutup, cm.GetLimit(), cm.GetNext())
	if err != nil {
		return nil, err
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_shutup_result.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(conv.ID), M: m}
	if next != "" {
		g.ConvMessage.Next = proto.String(next)
	}
	return g, nil
}

// checkShutup answers which of m are muted now, temporarily or not
// (Swift).
func (c *Core) checkShutup(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	conv, err := c.memberConv(ctx, r, cm.GetCid())
	if err != nil {
		return nil, err
	}
	out := []string{}
	now := c.nowMS()
	for _, p := range cm.M {
		if conv.IsSilenced(p, now) {
			out = append(out, p)
		}
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_check_result.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Cid: proto.String(conv.ID), M: out}
	return g, nil
}

// blacklist dispatches cmd:blacklist ops; replies are on cmd:blacklist
// (Java requires it), pushes on cmd:conv.
func (c *Core) blacklist(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	bm := r.cmd.GetBlacklistMessage()
	if bm == nil || bm.GetSrcCid() == "" {
		return nil, fmt.Errorf("%w: blacklist without srcCid", errMalformed)
	}
	switch op := r.cmd.GetOp(); op {
	case lcpb.OpType_block, lcpb.OpType_unblock:
		block := op == lcpb.OpType_block
		res, err := c.propose(ctx, &shard.Command{Op: shard.OpBlock, App: r.app, CID: bm.GetSrcCid(), From: r.peer,
			Now: c.nowMS(), Members: bm.ToPids, Mute: block})
		if err != nil {
			return nil, err
		}
		replyOp, selfOp, othersOp := lcpb.OpType_blocked, lcpb.OpType_blocked, lcpb.OpType_members_blocked
		if !block {
			replyOp, selfOp, othersOp = lcpb.OpType_unblocked, lcpb.OpType_unblocked, lcpb.OpType_members_unblocked
		}
		g := r.reply(lcpb.CommandType_blacklist, replyOp.Enum())
		g.BlacklistMessage = &lcpb.BlacklistCommand{SrcCid: proto.String(res.Conv.ID), AllowedPids: nonNil(res.Allowed),
			FailedPids: failedPids(res.Failed)}
		c.moderationPushes(r, res.Conv, res.Changed, selfOp, othersOp)
		return g, nil
	case lcpb.OpType_query:
		conv, err := c.memberConv(ctx, r, bm.GetSrcCid())
		if err != nil {
			return nil, err
		}
		ids, next, err := page(conv.Blocked, bm.GetLimit(), bm.GetNext())
		if err != nil {
			return nil, err
		}
		g := r.reply(lcpb.CommandType_blacklist, lcpb.OpType_query_result.Enum())
		g.BlacklistMessage = &lcpb.BlacklistCommand{SrcCid: proto.String(conv.ID), BlockedPids: ids}
		if next != "" {
			g.BlacklistMessage.Next = proto.String(next)
		}
		return g, nil
	case lcpb.OpType_check_block:
		conv, err := c.memberConv(ctx, r, bm.GetSrcCid())
		if err != nil {
			return nil, err
		}
		out := []string{}
		for _, p := range bm.ToPids {
			if conv.IsBlocked(p) {
				out = append(out, p)
			}
		}
		g := r.reply(lcpb.CommandType_blacklist, lcpb.OpType_check_result.Enum())
		g.BlacklistMessage = &lcpb.BlacklistCommand{SrcCid: proto.String(conv.ID), BlockedPids: out}
		return g, nil
	}
	return nil, fmt.Errorf("%w: blacklist/%v", errUnsupported, r.cmd.GetOp())
}

// adminTempShutup mutes peer in a.cid for a.ttl seconds (at most 24 h), or
// lifts its temporary mute (ttl 0). Nobody is told: the mute ends by
// itself.
func (c *Core) adminTempShutup(ctx context.Context, app, peer string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	if peer == "" || a.GetCid() == "" {
		return nil, fmt.Errorf("%w: temporary mute needs a conversation and a clientId", errMalformed)
	}
	if a.GetTtl() < 0 || a.GetTtl() > shard.MaxTempShutupTTL {
		return nil, fmt.Errorf("%w: ttl %d out of range (0..%d s)", errMalformed, a.GetTtl(), shard.MaxTempShutupTTL)
	}
	res, err := c.propose(withAdmin(ctx), &shard.Command{Op: shard.OpShutup, App: app, CID: a.GetCid(), Now: c.nowMS(),
		Members: []string{peer}, Mute: a.GetTtl() > 0, Temp: true, TTL: a.GetTtl()})
	if err != nil {
		return nil, err
	}
	if len(res.Failed) > 0 {
		return nil, fmt.Errorf("%w: %s", res.Failed[0].Err, peer)
	}
	return &meshpb.ClientReply{}, nil
}
