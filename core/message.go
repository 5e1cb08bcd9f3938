package core

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/relay"
)

// History limits (LeanCloud: 1–100, default 20).
const (
	defaultLogsLimit = 20
	maxLogsLimit     = 100
)

// directContent is a direct's content as stored: msg, or binaryMsg in
// base64 (bin) when only that is set.
func directContent(dm *lcpb.DirectCommand) (data string, bin bool) {
	if dm.BinaryMsg != nil && dm.Msg == nil {
		return base64.StdEncoding.EncodeToString(dm.BinaryMsg), true
	}
	return dm.GetMsg(), false
}

// direct stores a message (unless transient), acks it, then fans it out.
// Transient messages are acked whatever the session's configBitmap bit 3
// says: every official SDK sets the bit, and an ack nobody waits for is
// harmless while a missing one times the send out. Will messages are
// stored aside (will.go).
func (c *Core) direct(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	s, out, err := c.directPrep(ctx, r, false)
	if s == nil {
		return out, err
	}
	c.sendGrouped(ctx, s.key, s) // sendgroup.go: stored, then fanned out
	return s.ack()
}

// errNotPlain: a direct of a batch (batch.go) that is not stored through
// its conversation's rounds (a system conversation's, a will, a transient
// message); directPrep did nothing with it.
var errNotPlain = errors.New("core: not a plain send")

// directPrep checks a direct and returns the send to store through its
// conversation's rounds (sendgroup.go); a direct that is not stored there
// (a system conversation's, a will, a transient message) it handles whole
// and returns the reply (s nil), or, with inBatch, leaves alone and
// returns errNotPlain.
func (c *Core) directPrep(ctx context.Context, r *request, inBatch bool) (s *queuedSend, out *lcpb.GenericCommand, err error) {
	dm := r.cmd.GetDirectMessage()
	cid := dm.GetCid()
	if dm == nil || cid == "" {
		return nil, nil, fmt.Errorf("%w: direct without cid", errMalformed)
	}
	if inBatch && (dm.GetTransient() || dm.GetWill()) {
		return nil, nil, errNotPlain
	}
	if inBatch {
		if conv, err := c.convView(r.app, cid); err == nil && conv != nil && conv.System {
			return nil, nil, errNotPlain
		}
	}
	in, err := c.inbound(ctx, r, cid) // filter.go: _messageReceived, sensitive words
	if err != nil {
		return nil, nil, err
	}
	data, bin := in.data, in.bin
	if g, err, ok := c.sysDirect(ctx, r, cid, data, bin); ok { // sysconv.go: for the server only
		return nil, g, err
	}
	if dm.GetWill() && !dm.GetTransient() {
		out, err := c.sendWill(ctx, r, dm, data, bin)
		return nil, out, err
	}
	key := r.app + "\x00" + cid
	roomConv, _ := c.convView(r.app, cid)
	room, err := c.roomSender(r, roomConv) // chatroom.go: joined sessions only
	if err != nil {
		return nil, nil, err
	}
	if dm.GetTransient() {
		unlock := c.locks.lock(key)
		defer unlock()
		conv, err := c.convView(r.app, cid)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		if conv == nil || (!room && !conv.IsMember(r.peer)) {
			return nil, nil, fmt.Errorf("%w: %s", errSendTarget, cid)
		}
		if conv.IsSilenced(r.peer, c.nowMS()) {
			return nil, nil, fmt.Errorf("%w: %s", shard.ErrShutup, cid)
		}
		m := &shard.Message{ID: newMessageID(), CID: cid, From: r.peer, T: c.nowMS(), Data: data, Bin: bin,
			MentionPids: dm.MentionPids, MentionAll: dm.GetMentionAll()}
		c.fanoutSent(r, dm, in, m, conv.Members, room)
		return nil, sendAck(r, m), nil
	}
	s = &queuedSend{r: r, dm: dm, in: in, room: room, key: key, cmd: &shard.Command{
		Op: shard.OpAppend, App: r.app, CID: cid, From: r.peer, Admin: isAdmin(ctx),
		Data: data, Bin: bin, MentionPids: dm.MentionPids,
		MentionAll: dm.GetMentionAll(), DT: dedupToken(dm.GetDt(), r.idemKey),
		Receipt: dm.GetR(), GroupReceipt: r.config&configGroupReceipt != 0,
		Edge: r.from.Edge, Conn: r.from.Conn, To: in.to,
	}}
	if err := checkCommand(s.cmd); err != nil { // validate.go: refused alone, not with its batch
		return nil, nil, err
	}
	return s, nil, nil
}

// ack is the reply to a send its round answered.
func (s *queuedSend) ack() (*lcpb.GenericCommand, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.res == nil || s.res.Message == nil {
		return nil, fmt.Errorf("%w: append without a message", errInternal)
	}
	return sendAck(s.r, s.res.Message), nil
}

// sendAck acks r's send of m.
func sendAck(r *request, m *shard.Message) *lcpb.GenericCommand {
	ack := r.reply(lcpb.CommandType_ack, nil)
	ack.AckMessage = &lcpb.AckCommand{Uid: proto.String(m.ID), T: proto.Int64(m.T)}
	return ack
}

// fanoutSent pushes message m of a send (r, dm, in) to members (none for
// a deduplicated send) and, for a chatroom's, to the joined sessions, then
// runs what follows a send (_messageSent, offline push). It returns where
// the members' deliveries wait (fanout.go). The caller holds the
// conversation's send lock.
func (c *Core) fanoutSent(r *request, dm *lcpb.DirectCommand, in inbound, m *shard.Message, members []string,
	room bool) []relay.Wait {
	var waits []relay.Wait
	if len(members) > 0 {
		push := directPush(m, dm.GetTransient())
		if dm.BinaryMsg != nil && dm.Msg != nil { // both given: pass both through
			push.DirectMessage.BinaryMsg = dm.BinaryMsg
		}
		members = in.recipients(members, r.peer)
		waits = c.fanoutTo(r.app, members, r.from, push, false)
		c.afterFanout(r.app, r.peer, m.CID, members, m, dm) // offline.go: _messageSent, offline push
	}
	if room {
		c.roomFanout(r.app, m.CID, r.peer, r.cmd.GetPriority(), roomPush(m, dm))
	}
	return waits
}

// directPush renders a stored message as a direct push.
func directPush(m *shard.Message, transient bool) *lcpb.GenericCommand {
	d := &lcpb.DirectCommand{
		Id: proto.String(m.ID), Cid: proto.String(m.CID), FromPeerId: proto.String(m.From),
		Timestamp: proto.Int64(m.T), ConvType: proto.Int32(directConvType(m.CID)), // tempconv.go
		MentionPids: m.MentionPids,
	}
	if m.MentionAll {
		d.MentionAll = proto.Bool(true)
	}
	if transient {
		d.Transient = proto.Bool(true)
	}
	if m.PatchT > 0 {
		d.PatchTimestamp = proto.Int64(m.PatchT)
	}
	data, bin := m.Content()
	if bin {
		raw, _ := base64.StdEncoding.DecodeString(data)
		d.BinaryMsg = raw
	} else {
		d.Msg = proto.String(data)
	}
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: d}
}

// ack moves the delivered cursor: (cid, mid), (cid, tots) or (cid, fromts,
// tots). Acks by message id alone (no cid) are ignored. Never replies.
func (c *Core) ack(ctx context.Context, r *request) {
	a := r.cmd.GetAckMessage()
	if a.GetCid() == "" {
		return
	}
	if rd, deep := c.moveCursor(r.app, a.GetCid(), r.peer, a.GetMid(), a.GetTots(), false, c.nowMS()); deep {
		c.stats.CursorHeld.Add(1)
		waitCursors(ctx, rd)
	}
}

// read moves read cursors for each conversation named. Never replies.
func (c *Core) read(ctx context.Context, r *request) {
	rm := r.cmd.GetReadMessage()
	now := c.nowMS()
	var last *cursorRound
	held := false
	one := func(cid, mid string, t int64) {
		if cid != "" {
			rd, deep := c.moveCursor(r.app, cid, r.peer, mid, t, true, now)
			last, held = rd, held || deep
		}
	}
	for _, t := range rm.GetConvs() {
		one(t.GetCid(), t.GetMid(), t.GetTimestamp())
	}
	one(rm.GetCid(), "", 0)
	for _, cid := range rm.GetCids() {
		one(cid, "", 0)
	}
	if held {
		c.stats.CursorHeld.Add(1)
		waitCursors(ctx, last) // the newest: rounds are applied in order
	}
}

// logs answers a history query; results are always ascending.
func (c *Core) logs(r *request) (*lcpb.GenericCommand, error) {
	q := r.cmd.GetLogsMessage()
	cid := q.GetCid()
	if q == nil || cid == "" {
		return nil, fmt.Errorf("%w: logs without cid", errMalformed)
	}
	st := c.state()
	conv, err := c.convView(r.app, cid)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	if conv == nil || (!conv.IsMember(r.peer) && !conv.Transient) {
		return nil, fmt.Errorf("%w: %s", errLogsRejected, cid)
	}
	limit := int(q.GetLimit())
	if q.L != nil {
		limit = int(q.GetL())
	}
	if limit <= 0 {
		limit = defaultLogsLimit
	}
	if limit > maxLogsLimit {
		limit = maxLogsLimit
	}
	lq := logQuery(st, r.app, cid, q, limit)
	if q.Lctype != nil {
		want := q.GetLctype()
		lq.Filter = func(m *shard.Message) bool { return msgType(m) == want }
	}
	msgs, err := shard.ListMessages(st, r.app, cid, lq)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	items := make([]*lcpb.LogItem, 0, len(msgs))
	for _, m := range msgs {
		items = append(items, logItem(m, convType(conv)))
	}
	g := r.reply(lcpb.CommandType_logs, nil)
	g.LogsMessage = &lcpb.LogsCommand{Logs: items}
	return g, nil
}

// logQuery turns a logs command into a shard query: the start and end
// bounds are (timestamp, message id) when both are given, as LeanCloud
// pages; a message id without a timestamp takes the message's own; negative
// timestamps are unbounded like 0.
func logQuery(st shard.Reader, app, cid string, q *lcpb.LogsCommand, limit int) shard.LogQuery {
	lq := shard.LogQuery{
		Start: max(q.GetT(), 0), StartIncl: q.GetTIncluded(), StartMID: q.GetMid(),
		End: max(q.GetTt(), 0), EndIncl: q.GetTtIncluded(), EndMID: q.GetTmid(),
		Newer: q.GetDirection() == lcpb.LogsCommand_NEW, Limit: limit,
	}
	if lq.Start == 0 && lq.StartMID != "" {
		if t, ok, _ := shard.MessageTS(st, app, cid, lq.StartMID); ok {
			lq.Start = t
		} else {
			lq.StartMID = ""
		}
	}
	if lq.End == 0 && lq.EndMID != "" {
		if t, ok, _ := shard.MessageTS(st, app, cid, lq.EndMID); ok {
			lq.End = t
		} else {
			lq.EndMID = ""
		}
	}
	if lq.Start == 0 {
		lq.StartMID = ""
	}
	if lq.End == 0 {
		lq.EndMID = ""
	}
	return lq
}

// msgType is the _lctype of a message, 0 if it has none.
func msgType(m *shard.Message) int32 {
	if m.Recalled {
		return -127
	}
	if m.Bin {
		return 0
	}
	var v struct {
		T *int32 `json:"_lctype"`
	}
	if json.Unmarshal([]byte(m.Data), &v) != nil || v.T == nil {
		return 0
	}
	return *v.T
}

func logItem(m *shard.Message, ct int32) *lcpb.LogItem {
	data, bin := m.Content()
	it := &lcpb.LogItem{
		MsgId: proto.String(m.ID), From: proto.String(m.From), Data: proto.String(data),
		Timestamp: proto.Int64(m.T), MentionPids: m.MentionPids, ConvType: proto.Int32(ct),
	}
	if bin {
		it.Bin = proto.Bool(true)
	}
	if m.MentionAll {
		it.MentionAll = proto.Bool(true)
	}
	if m.PatchT > 0 {
		it.PatchTimestamp = proto.Int64(m.PatchT)
	}
	return it
}

// patch edits or recalls messages: reply patch/modified, push one
// patch/modify per message to the members.
func (c *Core) patch(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	items := r.cmd.GetPatchMessage().GetPatches()
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: patch without items", errMalformed)
	}
	cmd := &shard.Command{Op: shard.OpPatch, App: r.app, From: r.peer, Now: c.nowMS()}
	to := make([][]string, 0, len(items)) // _messageUpdate's toPeers per patch (patchhook.go)
	for _, p := range items {
		sp := shard.Patch{CID: p.GetCid(), MID: p.GetMid(), T: p.GetTimestamp(), Recall: p.GetRecall(),
			Data: p.GetData(), MentionPids: p.MentionPids, MentionAll: p.GetMentionAll()}
		if p.BinaryMsg != nil && p.Data == nil {
			sp.Data, sp.Bin = base64.StdEncoding.EncodeToString(p.BinaryMsg), true
		}
		if sp.CID == "" || sp.MID == "" {
			return nil, fmt.Errorf("%w: patch without cid or mid", errMalformed)
		}
		peers, err := c.hookMessageUpdate(ctx, r, &sp) // patchhook.go
		if err != nil {
			return nil, err
		}
		to = append(to, peers)
		c.filterPatch(r.app, &sp) // filter.go: an edit gets the send's ***
		cmd.Patches = append(cmd.Patches, sp)
	}
	res, err := c.propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	var last int64
	for i, m := range res.Patched {
		last = max(last, m.PatchT)
		conv, err := c.convView(r.app, m.CID)
		if err != nil || conv == nil {
			continue
		}
		members := conv.Members
		if i < len(to) && to[i] != nil {
			members = inbound{to: to[i]}.recipients(members, m.From) // filter.go
		}
		c.fanout(r.app, members, r.from, patchPush(m))
	}
	g := r.reply(lcpb.CommandType_patch, lcpb.OpType_modified.Enum())
	g.PatchMessage = &lcpb.PatchCommand{LastPatchTime: proto.Int64(last)}
	return g, nil
}

// patchPush renders one patched message as a patch/modify push.
func patchPush(m *shard.Message) *lcpb.GenericCommand {
	data, bin := m.Content()
	it := &lcpb.PatchItem{
		Cid: proto.String(m.CID), Mid: proto.String(m.ID), Timestamp: proto.Int64(m.T),
		PatchTimestamp: proto.Int64(m.PatchT), From: proto.String(m.From),
		MentionPids: m.MentionPids,
	}
	if m.Recalled {
		it.Recall = proto.Bool(true)
	}
	if m.MentionAll {
		it.MentionAll = proto.Bool(true)
	}
	if bin {
		raw, _ := base64.StdEncoding.DecodeString(data)
		it.BinaryMsg = raw
	} else {
		it.Data = proto.String(data)
	}
	return &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
		PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{it}},
	}
}
