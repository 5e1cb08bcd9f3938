package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Pipelined sends. An edge handles a connection's commands one at a time,
// each answered before the next is forwarded, so a session that sends
// faster than a round trip would wait on each. Instead, the edge forwards
// a run of directs into one conversation, which it read from the client
// together, as one request (ClientRequest.more_commands, edge/batch.go):
// commandRun queues their sends in their order into the conversation's
// rounds (sendgroup.go), where one raft entry stores up to maxSendBatch of
// them, and answers each as a single request would be answered (an ack,
// or an error for that send alone). It answers a prefix: it stops before
// the first command that is not a plain send into the first one's
// conversation (another conversation, a system conversation's, a will, a
// transient message, another command), and says how many it answered
// (ClientReply.commands_done); the edge sends the rest again, so nothing
// is stored out of the session's order.

// maxRunCommands bounds the commands of one request that commandRun
// answers; the edge sends no more (edge/batch.go).
const maxRunCommands = maxSendBatch

// commandRun answers a COMMAND with more_commands, as above.
func (c *Core) commandRun(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	raws := make([][]byte, 0, 1+len(req.GetMoreCommands()))
	raws = append(raws, req.GetCommand())
	raws = append(raws, req.GetMoreCommands()...)
	raws = raws[:min(len(raws), maxRunCommands)]

	outs := make([]*lcpb.GenericCommand, 0, len(raws))
	var (
		sends []*queuedSend
		at    []int // sends[j] answers outs[at[j]]
		cid   string
	)
	for k, raw := range raws {
		r := newRequest(req)
		r.idemKey = runIdemKey(r.idemKey, k)
		cmd := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(raw, cmd); err != nil || cmd.GetCmd() != lcpb.CommandType_direct {
			if k == 0 {
				return c.single(ctx, req)
			}
			break
		}
		if k == 0 {
			cid = cmd.GetDirectMessage().GetCid()
		} else if cmd.GetDirectMessage().GetCid() != cid {
			break
		}
		r.cmd = cmd
		err := c.commandCheck(r)
		var s *queuedSend
		var out *lcpb.GenericCommand
		if err == nil {
			s, out, err = c.directPrep(ctx, r, true)
		}
		if errors.Is(err, errNotPlain) {
			if k == 0 {
				return c.single(ctx, req)
			}
			break
		}
		if err != nil {
			if fatal(err) {
				return nil, err
			}
			out = r.errorReply(err)
		}
		if s != nil {
			sends, at = append(sends, s), append(at, len(outs))
		}
		outs = append(outs, out)
	}
	if len(sends) > 0 {
		c.stats.RunSends.Add(uint64(len(sends)))
		c.sendGroupedRun(ctx, sends[0].key, sends)
		for j, s := range sends {
			out, err := s.ack()
			if err != nil {
				if fatal(err) {
					// Sends before it may have committed: the edge sends
					// the whole request again, to the next leader, with
					// the same keys, and their dedup tokens answer those
					// with their first acks.
					return nil, err
				}
				out = s.r.errorReply(err)
			}
			outs[at[j]] = out
		}
	}
	rep := encodeReply(outs...)
	rep.CommandsDone = int32(len(outs))
	return rep, nil
}

// single answers req's command alone, as HandleClient does, for the edge
// to send the rest again.
func (c *Core) single(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	one := proto.Clone(req).(*meshpb.ClientRequest)
	one.MoreCommands = nil
	rep, err := c.HandleClient(ctx, one)
	if err == nil {
		rep.CommandsDone = 1
	}
	return rep, err
}

// fatal: an error that ends the whole request rather than one command's
// answer (HandleClient's).
func fatal(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// runIdemKey is the idempotency key of a run's command k: the request's
// for the first (as if it came alone), the request's with k after it for
// the others. A retried request brings the same key, so each send of it is
// deduplicated on its own key (failover.go).
func runIdemKey(key string, k int) string {
	if k == 0 || key == "" {
		return key
	}
	return fmt.Sprintf("%s/%s", key, strconv.Itoa(k))
}
