package core

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/relay"
)

// Group commit of sends. A conversation's messages are stored and fanned
// out in one order: a round (propose, then fan out what was stored) holds
// the conversation's send lock (convLocks). One round per send caps a busy
// conversation at one raft round trip per message, so sends that arrive
// while a round runs wait in the conversation's queue instead, and the
// round's end hands the queue to the oldest of them, which runs the next
// round for up to maxSendBatch sends (maxSendBatchBytes of content) as one
// raft entry: a shard.OpBatch of appends, in arrival order (timestamps
// rise in that order: the shard stamps each after the one before). Each
// append is stored or refused on its own (a dedup hit answers with the
// first send's id, a muted sender is refused, the others go on), and each
// send is answered, as before, once its entry committed and its fan-out
// was queued. A batch of appends needs shard.Version4 (its messages share
// a fan-out tail key, core/shard/fanout.go); a core pinned lower runs one
// send per round, as before.
//
// Locks: sendQueues.mu is a leaf, never held with a conversation's send
// lock nor across a proposal.

// maxSendBatch bounds the sends of one round; maxSendBatchBytes bounds
// their content (a round takes at least one send whatever its size).
const (
	maxSendBatch      = 64
	maxSendBatchBytes = 256 << 10
)

// sendQueues holds the queue of each conversation that has a round
// running.
type sendQueues struct {
	mu sync.Mutex
	m  map[string]*sendQueue // guarded by mu; by app "\x00" cid
}

// sendQueue is one conversation's sends not taken by a round yet.
type sendQueue struct {
	waiting []*queuedSend // guarded by sendQueues.mu; in arrival order
}

// queuedSend is a send (direct) waiting for a round or in one.
type queuedSend struct {
	r    *request
	dm   *lcpb.DirectCommand
	in   inbound
	room bool           // the sender is in the chatroom (roomSender)
	key  string         // its conversation's: app "\x00" cid
	cmd  *shard.Command // the append; the round stamps Now and MID

	// Written by the round that took the send, before it signals wake.
	res  *shard.Result // stored (or a dedup hit) when err is nil
	err  error
	done bool

	// wake says the send was answered (done) or is the oldest waiting
	// and runs the next round; 1-buffered, signalled once.
	wake chan struct{}
}

// sendGrouped stores s's message in a round of its conversation's sends
// (at key) and fans it out; on return s.res or s.err holds the outcome.
func (c *Core) sendGrouped(ctx context.Context, key string, s *queuedSend) {
	c.sendGroupedRun(ctx, key, []*queuedSend{s})
}

// sendGroupedRun is sendGrouped for several sends into the conversation
// at key, queued together in their order (a session's batch, batch.go):
// on return each holds its outcome.
func (c *Core) sendGroupedRun(ctx context.Context, key string, run []*queuedSend) {
	for _, s := range run {
		s.wake = make(chan struct{}, 1)
	}
	c.sends.mu.Lock()
	q := c.sends.m[key]
	lead := q == nil
	if lead {
		q = &sendQueue{}
		c.sends.m[key] = q
	}
	q.waiting = append(q.waiting, run...)
	c.sends.mu.Unlock()
	for i, s := range run {
		if i > 0 || !lead {
			// Not bounded by ctx, as the lock this replaces was not: the
			// round in front is bounded by appendTimeout. The sends of run
			// are answered in their order, so waiting for each in turn
			// misses no wake.
			<-s.wake
			if s.done {
				continue
			}
		}
		c.sendRound(ctx, key, q, s)
	}
}

// sendRound runs one round of q, whose oldest waiting send is self: it
// takes the sends of the round, stores and fans them out (runRound),
// answers them, and hands q to the next oldest, or drops it when none is
// waiting.
func (c *Core) sendRound(ctx context.Context, key string, q *sendQueue, self *queuedSend) {
	limit := maxSendBatch
	if c.cmdVer < shard.Version4 { // a batch of appends needs it (NeedsVersion)
		limit = 1
	}
	c.sends.mu.Lock()
	n, size := 0, 0
	for n < len(q.waiting) && n < limit {
		size += len(q.waiting[n].cmd.Data)
		if n > 0 && size > maxSendBatchBytes {
			break
		}
		n++
	}
	batch := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	c.sends.mu.Unlock()

	c.runRound(ctx, key, batch, func(s *queuedSend) {
		s.done = true
		if s != self {
			s.wake <- struct{}{}
		}
	})

	c.sends.mu.Lock()
	var next *queuedSend
	if len(q.waiting) > 0 {
		next = q.waiting[0]
	} else {
		delete(c.sends.m, key)
	}
	c.sends.mu.Unlock()
	if next != nil {
		next.wake <- struct{}{}
	}
}

// runRound stores the sends of batch in one raft entry (one command when
// there is one) under the conversation's send lock and fans out the
// messages stored, in order, setting each send's res or err and passing
// it to answer as soon as its own fan-out is queued (or it failed).
func (c *Core) runRound(ctx context.Context, key string, batch []*queuedSend, answer func(*queuedSend)) {
	unlock := c.locks.lock(key)
	defer unlock()
	// The request may end first (the edge moved it to a new leader, or
	// gave up); a message that commits must still be fanned out, so the
	// proposal does not end with it.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), appendTimeout)
	defer cancel()
	c.awaitReplay(ctx)       // fanout.go: a new leader pushes what its predecessor left first
	tok := c.fanouts.begin() // fanout.go: settled below, once the messages left
	var index uint64         // the raft index the messages were stored at
	var waits []relay.Wait   // where their deliveries wait
	defer func() { c.fanouts.end(tok, index, waits) }()

	c.stats.SendRounds.Add(1)
	c.stats.RoundSends.Add(uint64(len(batch)))
	now := c.nowMS()
	for _, s := range batch {
		s.cmd.Now, s.cmd.MID = now, newMessageID()
	}
	c.proposeSends(pctx, batch)
	for i, s := range batch {
		if s.err != nil {
			answer(s)
			continue
		}
		res := s.res
		if !res.Dup && c.haltBeforeFanout(s.r.app, res.Message) { // test hook (failover.go)
			// The core closed: the rest stay in the tail, for the next
			// leader's replay, and so does every message of the entry.
			for _, rest := range batch[i:] {
				rest.res, rest.err = nil, ErrClosed
				answer(rest)
			}
			index, waits = 0, nil
			return
		}
		var members []string
		if !res.Dup {
			members, index = res.Conv.Members, res.Index
		}
		waits = append(waits, c.fanoutSent(s.r, s.dm, s.in, res.Message, members, s.room && !res.Dup)...)
		answer(s)
	}
}

// proposeSends proposes the appends of batch, as one command or one
// batch, and sets each send's outcome.
func (c *Core) proposeSends(ctx context.Context, batch []*queuedSend) {
	if len(batch) == 1 {
		s := batch[0]
		s.res, s.err = c.propose(ctx, s.cmd)
	} else {
		cmd := &shard.Command{Op: shard.OpBatch, Batch: make([]*shard.Command, len(batch))}
		for i, s := range batch {
			cmd.Batch[i] = s.cmd
		}
		res, err := c.propose(ctx, cmd)
		for i, s := range batch {
			switch {
			case err != nil:
				s.err = err
			case i >= len(res.Batch):
				s.err = fmt.Errorf("%w: batch of %d sends answered %d", errInternal, len(batch), len(res.Batch))
			case res.Batch[i].Err != nil:
				s.err = res.Batch[i].Err // a *shard.Error, as propose returns a refusal
			default:
				s.res = res.Batch[i].Result
			}
		}
	}
	for _, s := range batch {
		if errors.Is(s.err, shard.ErrNotMember) || errors.Is(s.err, shard.ErrConvNotFound) {
			s.err = fmt.Errorf("%w: %s", errSendTarget, s.cmd.CID)
		}
	}
}
