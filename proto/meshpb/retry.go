package meshpb

import (
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// RetrySafe reports whether req may be sent again to another core after
// its outcome became unknown: doing it twice is the same as doing it once.
// The edge's link (edge/corelink) and a core's router (forwarding to a
// shard leader that changed meanwhile) both ask.
func (req *ClientRequest) RetrySafe() bool {
	switch req.Kind {
	case ClientRequest_PING, ClientRequest_OPEN, ClientRequest_CLOSE:
		return true
	case ClientRequest_COMMAND:
	default:
		return false // ADMIN: the REST API answers 5xx and its caller decides
	}
	cmd := new(lcpb.GenericCommand)
	if proto.Unmarshal(req.Command, cmd) != nil {
		return true // the core refuses it without doing anything
	}
	op := cmd.GetOp()
	switch cmd.GetCmd() {
	case lcpb.CommandType_direct:
		// Deduplicated on dt, or on idempotency_key when the client sent
		// no dt; a will replaces the sender's earlier will.
		return req.IdempotencyKey != "" || cmd.GetDirectMessage().GetDt() != ""
	case lcpb.CommandType_ack, lcpb.CommandType_read, lcpb.CommandType_logs, lcpb.CommandType_echo:
		return true // cursors only move forward; reads
	case lcpb.CommandType_session:
		return op == lcpb.OpType_query
	case lcpb.CommandType_conv:
		switch op {
		case lcpb.OpType_query, lcpb.OpType_count, lcpb.OpType_members, lcpb.OpType_max_read,
			lcpb.OpType_is_member, lcpb.OpType_query_shutup, lcpb.OpType_check_shutup, lcpb.OpType_check_block,
			lcpb.OpType_mute, lcpb.OpType_unmute:
			return true // reads; mute sets a flag
		}
	case lcpb.CommandType_blacklist:
		return op == lcpb.OpType_query
	}
	return false
}
