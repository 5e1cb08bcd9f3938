package edge

import (
	"bytes"
	"context"

	"github.com/relaymesh/relaymesh/internal/gopool"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Pipelined sends. A connection's commands are handled one at a time, in
// order, each answered by the backend before the next goes (handleMu), so
// a session sending faster than one round trip to its conversation's
// leader would be held to one send per round trip, and the frames behind
// wait in the socket. The raw WebSocket reader hands over every data
// message one read brought (inboundRun); a run of them that are plain
// sends (direct, neither transient nor will) of one session into one
// conversation goes to the backend as one request: the first as
// ClientRequest.command, the others in more_commands, up to maxRunSends.
// The core queues them into the conversation's rounds in their order and
// answers a prefix of them (ClientReply.commands_done, core/batch.go); the
// edge sends the rest again, one request after another, so the session's
// order holds whatever the core did (a core of an earlier release answers
// the first alone). Each command passes the edge's checks (admit) in
// order first; one refused is answered at once and left out.

// Fire-and-forget commands. A client's ack (of messages received) and
// read carry no i and get no reply. The core answers the request once the
// cursor move is queued, or, while its queue is deep, once applied
// (core/cursors.go): handled in line, each could hold the connection's
// next command for a raft round, and a busy session acks about as often
// as it sends. They go on goroutines of their own instead, at most
// maxAsync at a time per connection (then the reader waits); a send does
// not wait for them, any other command waits until they are answered, and
// the core holds that command until the moves are applied, so a query
// after a read sees it.

// maxAsync bounds a connection's fire-and-forget commands in flight.
// A few are enough to keep a session's acks off its line (an SDK sends
// one ack per conversation for everything received since its last), and
// every one in flight holds a goroutine here and at the core.
const maxAsync = 4

// fireAndForget: a command whose client waits for no reply, handled off
// the connection's line.
func fireAndForget(cmd *lcpb.GenericCommand) bool {
	switch cmd.GetCmd() {
	case lcpb.CommandType_ack, lcpb.CommandType_read:
		return cmd.I == nil
	}
	return false
}

// forwardAsync forwards a fire-and-forget command on a goroutine of its
// own (c.handleMu held), a pooled one (internal/gopool).
func (c *conn) forwardAsync(ctx context.Context, raw []byte, cmd *lcpb.GenericCommand) {
	c.srv.metrics.Command(cmd.GetCmd())
	ss := c.sessionFor(cmd.GetPeerId())
	if ss == nil {
		c.reject(cmd.I, cmd.GetPeerId(), lcpb.ErrSessionRequired, "")
		return
	}
	if !c.admit(ss, cmd) {
		return
	}
	if c.asyncSem == nil {
		c.asyncSem = make(chan struct{}, maxAsync)
	}
	select {
	case c.asyncSem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	raw = bytes.Clone(raw)
	c.async.Add(1)
	c.srv.metrics.AsyncCommands.Add(1)
	sem := c.asyncSem
	gopool.Go(func() {
		defer func() { <-sem; c.async.Done() }()
		c.forwardChecked(ctx, ss, raw, cmd)
	})
}

// maxRunSends bounds the sends of one request (the core's round takes up
// to 64, core/sendgroup.go).
const maxRunSends = 64

// inFrame is one data message as the reader parsed it.
type inFrame struct {
	text bool
	data []byte
}

// decoded is an inFrame decoded (decodeFrame).
type decoded struct {
	raw []byte
	cmd *lcpb.GenericCommand
	err error
}

// inboundRun handles the data messages one read brought, in order, as
// inbound does one.
func (c *conn) inboundRun(frames []inFrame) {
	if len(frames) == 1 {
		c.inbound(frames[0].text, frames[0].data)
		return
	}
	if c.ctx.Err() != nil {
		return
	}
	for _, f := range frames {
		c.countIn(len(f.data))
	}
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	c.handleFrames(c.ctx, frames)
}

// handleFrames handles frames in order, forwarding each run of plain sends
// of one session into one conversation as one request (forwardRun).
func (c *conn) handleFrames(ctx context.Context, frames []inFrame) {
	ds := make([]decoded, len(frames))
	for i, f := range frames {
		ds[i].raw, ds[i].cmd, ds[i].err = decodeFrame(c.codec, f.text, f.data)
	}
	for i := 0; i < len(ds); {
		if ctx.Err() != nil {
			return
		}
		j := i + 1
		if plainSend(ds[i]) {
			for j < len(ds) && j-i < maxRunSends && plainSend(ds[j]) && sameRun(ds[i].cmd, ds[j].cmd) {
				j++
			}
		}
		if j-i > 1 {
			c.forwardRun(ctx, ds[i:j])
		} else {
			c.handleDecoded(ctx, ds[i].raw, ds[i].cmd, ds[i].err)
		}
		i = j
	}
}

// plainSend: a direct the core stores through its conversation's rounds.
func plainSend(d decoded) bool {
	if d.err != nil || d.cmd.GetCmd() != lcpb.CommandType_direct {
		return false
	}
	dm := d.cmd.GetDirectMessage()
	return dm != nil && dm.GetCid() != "" && !dm.GetTransient() && !dm.GetWill()
}

// sameRun: b goes in a's run (the same session, the same conversation).
func sameRun(a, b *lcpb.GenericCommand) bool {
	return a.GetPeerId() == b.GetPeerId() && a.GetDirectMessage().GetCid() == b.GetDirectMessage().GetCid()
}

// forwardRun forwards run, plain sends of one session into one
// conversation, as few requests as the backend allows, in order.
func (c *conn) forwardRun(ctx context.Context, run []decoded) {
	s := c.srv
	ss := c.sessionFor(run[0].cmd.GetPeerId())
	if ss == nil {
		for _, d := range run {
			c.reject(d.cmd.I, d.cmd.GetPeerId(), lcpb.ErrSessionRequired, "")
		}
		return
	}
	ok := make([]decoded, 0, len(run))
	for _, d := range run {
		s.metrics.Command(d.cmd.GetCmd())
		if c.admit(ss, d.cmd) {
			ok = append(ok, d)
		}
	}
	for len(ok) > 1 {
		req := c.request(ss, meshpb.ClientRequest_COMMAND, ok[0].raw)
		req.MoreCommands = make([][]byte, len(ok)-1)
		for k, d := range ok[1:] {
			req.MoreCommands[k] = d.raw
		}
		cmds := make([]*lcpb.GenericCommand, len(ok))
		for k, d := range ok {
			cmds[k] = d.cmd
		}
		rep := c.ask(ctx, ss, req, cmds...)
		if rep == nil {
			return
		}
		c.writeReplies(ss, rep)
		done := min(max(int(rep.GetCommandsDone()), 1), len(ok))
		s.metrics.Runs.Add(1)
		s.metrics.RunSends.Add(int64(done))
		ok = ok[done:]
	}
	if len(ok) == 1 {
		c.forwardChecked(ctx, ss, ok[0].raw, ok[0].cmd)
	}
}
