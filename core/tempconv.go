package core

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Temporary conversations (conv/start{tempConv:true}): ids "_tmp:" + a
// random objectId, at most shard.MaxTempMembers members fixed at creation,
// a TTL (default one day, at most 30 days, clamped by the shard). The shard
// stores them like normal conversations (messages, history, unread and
// receipts work unchanged) and decides expiry from each command's Now
// (core/shard/tempconv.go). Here:
//
//	start{tempConv, tempConvTTL} -> started{cid, cdate, tempConvTTL}
//	query{tempConvIds}           -> results: rows with temp:true, ttl (seconds left)
//	add/remove/update/mute/roles -> 4314 NORMAL_CONVERSATION_REQUIRED
//	anything after expiry        -> 4323 TEMPORARY_CONVERSATION_EXPIRED
//
// They are no _Conversation rows: where-queries never return them.

// convTypeTemp is LeanCloud's convType of a temporary conversation.
const convTypeTemp = 4

// maxTempConvIDs bounds the ids one conv/query{tempConvIds} looks up.
const maxTempConvIDs = 100

// tempConv serves the conv ops that differ for temporary conversations;
// ok is false for the rest.
func (c *Core) tempConv(ctx context.Context, r *request) (g *lcpb.GenericCommand, err error, ok bool) {
	cm := r.cmd.ConvMessage
	op := r.cmd.GetOp()
	switch {
	case op == lcpb.OpType_start && cm.GetTempConv():
		g, err = c.tempConvStart(ctx, r)
		return g, err, true
	case op == lcpb.OpType_query && len(cm.TempConvIds) > 0:
		g, err = c.tempConvQuery(ctx, r)
		return g, err, true
	case !shard.IsTempID(cm.GetCid()):
		return nil, nil, false
	}
	switch op {
	case lcpb.OpType_add, lcpb.OpType_join, lcpb.OpType_remove, lcpb.OpType_leave,
		lcpb.OpType_update, lcpb.OpType_mute, lcpb.OpType_unmute, lcpb.OpType_member_info_update,
		lcpb.OpType_add_shutup, lcpb.OpType_remove_shutup:
		return nil, fmt.Errorf("%w: conv/%v", shard.ErrTempConv, op), true
	}
	return nil, nil, false
}

func (c *Core) tempConvStart(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	var attr json.RawMessage
	if cm.Attr != nil {
		attr = json.RawMessage(cm.Attr.GetData())
	}
	if err := c.hookConvStart(ctx, r, cm.M, attr); err != nil { // hooks.go
		return nil, err
	}
	res, err := c.propose(ctx, &shard.Command{
		Op: shard.OpStart, App: r.app, CID: shard.TempPrefix + c.newConvID(), From: r.peer, Now: c.nowMS(),
		Members: cm.M, Attr: attr, Temp: true, TTL: int64(cm.GetTempConvTTL()),
	})
	if err != nil {
		return nil, err
	}
	conv := res.Conv
	c.hookConvStarted(r.app, conv.ID) // notifyhooks.go
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_started.Enum())
	g.ConvMessage = &lcpb.ConvCommand{
		Cid: proto.String(conv.ID), Cdate: proto.String(isoDate(conv.CreatedAt)),
		TempConvTTL: proto.Int32(int32(conv.TTL)), Existing: proto.Bool(false),
	}
	var invited []string
	for _, m := range conv.Members {
		if m != r.peer {
			invited = append(invited, m)
		}
	}
	p := convPush(lcpb.OpType_joined, conv.ID, r.peer)
	p.ConvMessage.TempConv = proto.Bool(true)
	p.ConvMessage.TempConvTTL = proto.Int32(int32(conv.TTL))
	c.fanout(r.app, invited, r.from, p)
	return g, nil
}

// tempConvQuery answers conv/query{tempConvIds} with the unexpired ones.
func (c *Core) tempConvQuery(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	now := c.nowMS()
	rows := []map[string]any{}
	seen := map[string]bool{}
	for _, id := range r.cmd.ConvMessage.TempConvIds {
		if seen[id] || !shard.IsTempID(id) || len(seen) >= maxTempConvIDs {
			continue
		}
		seen[id] = true
		conv, err := c.convView(r.app, id)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errQueryFailed, err)
		}
		if conv == nil || !conv.Temp || conv.Expired(now) {
			continue
		}
		row := tempConvRow(conv, now)
		if !isAdmin(ctx) && !conv.IsMember(r.peer) {
			hideLast(row) // query.go
		}
		rows = append(rows, row)
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_results.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Results: &lcpb.JsonObjectMessage{Data: proto.String(string(b))}}
	return g, nil
}

// tempConvRow is a conversation row plus temp:true and ttl, the seconds
// left (JS: expiredAt = now + ttl*1000), rounded up.
func tempConvRow(conv *shard.Conv, now int64) map[string]any {
	row := convRow(conv)
	row["temp"] = true
	row["ttl"] = (conv.ExpiresAt() - now + 999) / 1000
	return row
}

// checkTempExpired refuses a direct, logs, patch or conv command on a
// temporary conversation that has expired (4323). The shard refuses
// proposals by the same rule; this covers the reads.
func (c *Core) checkTempExpired(r *request) error {
	var cids []string
	switch r.cmd.GetCmd() {
	case lcpb.CommandType_direct:
		cids = append(cids, r.cmd.GetDirectMessage().GetCid())
	case lcpb.CommandType_logs:
		cids = append(cids, r.cmd.GetLogsMessage().GetCid())
	case lcpb.CommandType_conv:
		cids = append(cids, r.cmd.GetConvMessage().GetCid())
	case lcpb.CommandType_patch:
		for _, p := range r.cmd.GetPatchMessage().GetPatches() {
			cids = append(cids, p.GetCid())
		}
	}
	now := int64(0)
	for _, cid := range cids {
		if !shard.IsTempID(cid) {
			continue
		}
		if now == 0 {
			now = c.nowMS()
		}
		conv, err := c.convView(r.app, cid)
		if err != nil {
			return fmt.Errorf("%w: %v", errInternal, err)
		}
		if conv != nil && conv.Expired(now) {
			return fmt.Errorf("%w: %s", shard.ErrTempExpired, cid)
		}
	}
	return nil
}

// directConvType is the convType of a direct push into cid.
func directConvType(cid string) int32 {
	if shard.IsTempID(cid) {
		return convTypeTemp
	}
	return 1
}
