package core

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Will messages (direct with will:true) are stored aside in the shard, tied
// to the session that sent them, acked like any send and delivered to the
// conversation only when that session ends without the client asking:
//
//	CLOSE from the edge (connection lost, idle timeout, edge drain) -> sent
//	CLOSE whose command is the client's session/close               -> dropped
//	session/close handled by the core, tag kick                       -> dropped
//
// LeanCloud documents only that a will is sent "when the sender drops"
// (PROTOCOL.md §4); an explicit logout is not a drop. Today the edge sends
// CLOSE without a command for both a lost connection and session/close, so
// every session end sends the wills until the edge passes the session/close
// bytes on its CLOSE. A client has one will per conversation; a newer one
// replaces it. Wills of sessions whose edge vanished without CLOSE stay
// stored until a CLOSE for that session arrives. In a chatroom only a
// joined session may leave a will; when it fires it goes, with the send's
// priority, to the sessions joined at that moment (never the sender's).

// sendWill stores a will message and acks it.
func (c *Core) sendWill(ctx context.Context, r *request, dm *lcpb.DirectCommand, data string, bin bool) (*lcpb.GenericCommand, error) {
	conv, _ := c.convView(r.app, dm.GetCid())
	if _, err := c.roomSender(r, conv); err != nil { // chatroom.go: joined sessions only
		return nil, err
	}
	res, err := c.propose(ctx, &shard.Command{
		Op: shard.OpWill, App: r.app, CID: dm.GetCid(), From: r.peer, Now: c.nowMS(),
		MID: newMessageID(), Data: data, Bin: bin, MentionPids: dm.MentionPids, MentionAll: dm.GetMentionAll(),
		Edge: r.from.Edge, Conn: r.from.Conn, Priority: r.cmd.GetPriority(),
	})
	if err != nil {
		if errors.Is(err, shard.ErrNotMember) || errors.Is(err, shard.ErrConvNotFound) {
			return nil, fmt.Errorf("%w: %s", errSendTarget, dm.GetCid())
		}
		return nil, err
	}
	ack := r.reply(lcpb.CommandType_ack, nil)
	ack.AckMessage = &lcpb.AckCommand{Uid: proto.String(res.Message.ID), T: proto.Int64(res.Message.T)}
	return ack, nil
}

// explicitClose reports whether a CLOSE request's command is the client's
// session/close.
func explicitClose(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	g := new(lcpb.GenericCommand)
	return proto.Unmarshal(raw, g) == nil && g.GetCmd() == lcpb.CommandType_session && g.GetOp() == lcpb.OpType_close
}

// endWills sends (fire) or drops the wills of session from of peer.
func (c *Core) endWills(ctx context.Context, app, peer string, from connKey, fire bool) {
	if c.replica == nil || !c.replica.IsLeader() {
		return
	}
	cids, err := shard.SessionWills(c.state(), app, peer, from.Edge, from.Conn)
	if err != nil || len(cids) == 0 {
		return
	}
	// Hold the conversations' send locks so the wills reach every member in
	// timestamp order with concurrent sends (sorted: no lock-order cycles).
	sort.Strings(cids)
	for _, cid := range cids {
		defer c.locks.lock(app + "\x00" + cid)()
	}
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpEndWills, App: app, From: peer, Now: c.nowMS(),
		Edge: from.Edge, Conn: from.Conn, Fire: fire})
	if err != nil {
		c.log.Warn("will messages", "app", app, "peer", peer, "fire", fire, "err", err)
		return
	}
	for _, f := range res.Fired {
		if f.Room { // chatroom.go: to the sessions still joined, the sender's excluded
			push := directPush(f.Message, false)
			push.DirectMessage.ConvType = proto.Int32(2)
			c.roomFanout(app, f.Message.CID, peer, f.Priority, push)
			continue
		}
		c.fanout(app, f.Members, connKey{}, directPush(f.Message, false))
	}
}
