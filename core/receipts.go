package core

import (
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Receipts. A message sent with r:true asks for receipts: in a conversation
// of two always, in a larger one only if the sender's session set
// configBitmap bit 6 (groupChatReceipt). When a member acks (delivered) or
// reads past it, the shard reports a receipt and the sender's sessions get
//
//	rcp{id, cid, t, from}        delivered (no read field: Java tests its presence)
//	rcp{id, cid, t, from, read}  read
//
// where t is when the member acked or read and from is that member
// (NATIVE-SDKS.md §4). Transient messages never ask for receipts.

// pushReceipts sends each receipt to the sessions of its message's sender.
func (c *Core) pushReceipts(app string, rs []shard.Receipt) {
	for _, rc := range rs {
		m := &lcpb.RcpCommand{Id: proto.String(rc.MID), Cid: proto.String(rc.CID), T: proto.Int64(rc.T), From: proto.String(rc.From)}
		if rc.Read {
			m.Read = proto.Bool(true)
		}
		c.fanout(app, []string{rc.To}, connKey{}, &lcpb.GenericCommand{Cmd: lcpb.CommandType_rcp.Enum(), RcpMessage: m})
	}
}
