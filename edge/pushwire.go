package edge

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// What the edge reads of an encoded GenericCommand from a core (a push or
// a reply) without decoding it: every push and reply used to be decoded
// into a GenericCommand and encoded again only to read three fields and set
// two, about a dozen allocations a command (message.proto has the numbers).
const (
	fieldCmd         = 1   // GenericCommand.cmd
	fieldPeerID      = 4   // GenericCommand.peerId
	fieldService     = 8   // GenericCommand.service
	fieldDirect      = 104 // GenericCommand.directMessage
	fieldDirectTS    = 4   // DirectCommand.timestamp
	fieldDirectTrans = 13  // DirectCommand.transient
)

// cmdFields is what scanCommand found, with proto2's meaning: a field
// whose wire type is not its declared one is an unknown field, the last
// occurrence of a scalar wins, and occurrences of a message merge.
type cmdFields struct {
	cmd       lcpb.CommandType // 0 when absent
	peer      bool             // peerId present
	service   bool             // service present
	transient bool             // directMessage.transient
	timestamp int64            // directMessage.timestamp
}

// scanCommand reads b's top-level fields and those of its directMessage;
// false when either is not well-formed protobuf.
func scanCommand(b []byte) (f cmdFields, ok bool) {
	for len(b) > 0 {
		num, typ, v, n := nextField(b)
		if n < 0 {
			return f, false
		}
		b = b[n:]
		switch {
		case num == fieldCmd && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			f.cmd = lcpb.CommandType(int32(x)) // any value, as Go's decoder keeps it
		case num == fieldPeerID && typ == protowire.BytesType:
			f.peer = true
		case num == fieldService && typ == protowire.VarintType:
			f.service = true
		case num == fieldDirect && typ == protowire.BytesType:
			inner, _ := protowire.ConsumeBytes(v)
			if !scanDirect(inner, &f) {
				return f, false
			}
		}
	}
	return f, true
}

func scanDirect(b []byte, f *cmdFields) bool {
	for len(b) > 0 {
		num, typ, v, n := nextField(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ != protowire.VarintType {
			continue
		}
		x, _ := protowire.ConsumeVarint(v)
		switch num {
		case fieldDirectTS:
			f.timestamp = int64(x)
		case fieldDirectTrans:
			f.transient = protowire.DecodeBool(x)
		}
	}
	return true
}

// nextField splits the first field off b: its number, wire type, value
// (tag excluded) and whole length, or n < 0 when b does not start with a
// well-formed field.
func nextField(b []byte) (num protowire.Number, typ protowire.Type, v []byte, n int) {
	num, typ, t := protowire.ConsumeTag(b)
	if t < 0 {
		return 0, 0, nil, -1
	}
	m := protowire.ConsumeFieldValue(num, typ, b[t:])
	if m < 0 {
		return 0, 0, nil, -1
	}
	return num, typ, b[t : t+m], t + m
}

// sharedPush returns cmd (a scanned push) without its peerId and with
// service = 2 when it has none: the bytes every copy of the push starts
// with (withPeerID appends a copy's own peerId). It is cmd itself when
// nothing changes.
func sharedPush(cmd []byte, f cmdFields) []byte {
	if !f.peer && f.service {
		return cmd
	}
	out := make([]byte, 0, len(cmd)+2)
	for b := cmd; len(b) > 0; {
		num, typ, _, n := nextField(b) // cmd was scanned: well-formed
		if num != fieldPeerID || typ != protowire.BytesType {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	if !f.service {
		out = appendService(out)
	}
	return out
}

func appendService(b []byte) []byte {
	b = protowire.AppendTag(b, fieldService, protowire.VarintType)
	return protowire.AppendVarint(b, lcpb.ServiceIM)
}

// completeReply returns reply (a scanned reply) with peerId = peer and
// service = 2 added where missing, in a new slice, or reply itself when it
// has both.
func completeReply(reply []byte, f cmdFields, peer string) []byte {
	if f.peer && f.service {
		return reply
	}
	out := make([]byte, len(reply), len(reply)+len(peer)+8)
	copy(out, reply)
	if !f.peer {
		out = protowire.AppendTag(out, fieldPeerID, protowire.BytesType)
		out = protowire.AppendString(out, peer)
	}
	if !f.service {
		out = appendService(out)
	}
	return out
}
