package core

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/core/shard"
)

// Cursor moves (client ack and read) are frequent — every recipient acks
// every message — and each used to be a raft proposal of its own, checked
// against the state on the request's goroutine. The cursor batcher
// coalesces them: ack and read only queue the move and wait; one
// long-lived goroutine takes the queued moves as a round, resolves them
// against the applied state (message id to timestamp, membership, the
// current cursor: moves that would change nothing are dropped, as most
// repeated acks are), merges the moves of the same (app, cid, clientId)
// into the furthest one, and proposes what is left as one shard batch
// command. Moves queued while a round is in flight form the next round.
// Receipts are pushed from the round's results.
//
// The client's ack/read gets no reply, and its request returns once the
// move is queued, not applied: a request held until its round applied
// cost little CPU, but a round's hundreds of waiters all woke at once and
// their replies crowded out the sends of that moment (docs/BENCHMARKS.md,
// stop 39). The client still sees its own moves: the peer's later commands
// (queries, a login's unread counts), other than sends and further moves,
// wait until the newest round holding one of its moves is applied
// (awaitPeerCursors). Rounds are applied in queue order, so that one is
// enough.
//
// Overflow: a round holds at most maxCursorRound moves; later moves start
// another round. While more than cursorQueueFree rounds wait, an ack or
// read holds its request until its own round is applied, as it always
// did before: edges bound their requests in flight, so the edges'
// windows bound the queue.
//
// Lock order: cursorBatcher.mu, then Core.mu.

// maxCursorRound bounds the moves of one round; each gives at most two
// commands of the shard batch.
const maxCursorRound = shard.MaxBatch / 2

// cursorProposeTimeout bounds one round's proposal.
const cursorProposeTimeout = 10 * time.Second

// cursorQueueFree is how many rounds may wait before an ack or read waits
// for its round (see Overflow above).
const cursorQueueFree = 4

type cursorKey struct{ app, cid, peer string }

// peerKey names one clientId of one app.
type peerKey struct{ app, peer string }

// cursorReq is one requested move: to message mid, or to t, or (read with
// neither) to the last message.
type cursorReq struct {
	cursorKey
	mid  string
	t    int64
	read bool
	now  int64
}

// cursorRound is a set of moves proposed together.
type cursorRound struct {
	reqs []cursorReq   // guarded by cursorBatcher.mu until taken
	done chan struct{} // closed once the round is applied (or dropped)
}

type cursorBatcher struct {
	mu      sync.Mutex
	queue   []*cursorRound // guarded by mu; queue[0] is next
	running bool           // guarded by mu; the goroutine is started
	wake    chan struct{}  // capacity 1: the queue grew
	// pending: each peer's newest round not yet applied (guarded by mu);
	// npending is its length, read without mu.
	pending  map[peerKey]*cursorRound
	npending atomic.Int64
}

// moveCursor queues a move of peer's delivered cursor (with read: read and
// delivered) in cid and returns the round to wait for, nil when the core is
// closed; deep says the queue is long enough that the requester should
// wait for that round (cursorQueueFree).
func (c *Core) moveCursor(app, cid, peer, mid string, t int64, read bool, now int64) (r *cursorRound, deep bool) {
	b := &c.cursors
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running {
		c.mu.Lock()
		closed := c.closed
		if !closed {
			c.wg.Add(1)
		}
		c.mu.Unlock()
		if closed {
			return nil, false
		}
		b.running = true
		b.wake = make(chan struct{}, 1)
		go func() {
			defer c.wg.Done()
			c.cursorLoop()
		}()
	}
	n := len(b.queue)
	if n == 0 || len(b.queue[n-1].reqs) >= maxCursorRound {
		b.queue = append(b.queue, &cursorRound{done: make(chan struct{})})
		n++
	}
	r = b.queue[n-1]
	r.reqs = append(r.reqs, cursorReq{cursorKey{app, cid, peer}, mid, t, read, now})
	if b.pending == nil {
		b.pending = make(map[peerKey]*cursorRound)
	}
	b.pending[peerKey{app, peer}] = r
	b.npending.Store(int64(len(b.pending)))
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return r, n > cursorQueueFree
}

// settled forgets r as its peers' newest round (r is applied or dropped).
func (b *cursorBatcher) settled(r *cursorRound) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range r.reqs {
		k := peerKey{q.app, q.peer}
		if b.pending[k] == r {
			delete(b.pending, k)
		}
	}
	b.npending.Store(int64(len(b.pending)))
}

// awaitPeerCursors waits until the cursor moves peer queued so far are
// applied (or dropped), or ctx ends: what a client asks after an ack or
// read sees them.
func (c *Core) awaitPeerCursors(ctx context.Context, app, peer string) {
	b := &c.cursors
	if b.npending.Load() == 0 {
		return
	}
	b.mu.Lock()
	r := b.pending[peerKey{app, peer}]
	b.mu.Unlock()
	if r == nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	c.stats.CursorWaits.Add(1)
	waitCursors(ctx, r)
}

// cursorLoop proposes queued rounds one at a time until the core closes;
// then it releases the waiters of rounds still queued.
func (c *Core) cursorLoop() {
	b := &c.cursors
	for {
		b.mu.Lock()
		var r *cursorRound
		if len(b.queue) > 0 {
			r = b.queue[0]
			b.queue[0] = nil
			b.queue = b.queue[1:]
		}
		wake := b.wake
		b.mu.Unlock()
		if r != nil {
			if !c.isClosed() {
				c.proposeRound(r.reqs)
			}
			// Settled before done: whoever waited for r sees its
			// peers no longer pending.
			b.settled(r)
			close(r.done)
			continue
		}
		select {
		case <-wake:
		case <-c.quit:
			b.mu.Lock()
			q := b.queue
			b.queue, b.running = nil, false // later moves see the core closed
			b.pending = nil
			b.npending.Store(0)
			b.mu.Unlock()
			for _, r := range q {
				close(r.done)
			}
			return
		}
	}
}

// cursorMove is where one clientId's cursors in one conversation go.
type cursorMove struct {
	ack, read int64 // 0: leave
	now       int64 // when the newest move was requested (rcp t)
}

// proposeRound resolves a round's moves, proposes those that change
// something, and pushes the receipts they produced.
func (c *Core) proposeRound(reqs []cursorReq) {
	moves := make(map[cursorKey]*cursorMove, len(reqs))
	var order []cursorKey // first-requested order
	for _, q := range reqs {
		t, ok := c.resolveCursor(q)
		if !ok {
			continue
		}
		m := moves[q.cursorKey]
		if m == nil {
			m = &cursorMove{}
			moves[q.cursorKey] = m
			order = append(order, q.cursorKey)
		}
		m.ack, m.now = max(m.ack, t), max(m.now, q.now)
		if q.read {
			m.read = max(m.read, t)
		}
	}
	st := c.state()
	cmd := &shard.Command{Op: shard.OpBatch}
	for _, k := range order {
		m := moves[k]
		cur, err := shard.GetCursor(st, k.app, k.cid, k.peer)
		if err != nil {
			continue
		}
		if m.ack > max(cur.Ack, m.read) {
			cmd.Batch = append(cmd.Batch, &shard.Command{Op: shard.OpAck, App: k.app, CID: k.cid, From: k.peer, Now: m.now, T: m.ack})
		}
		if m.read > cur.Read || m.read > cur.Ack {
			cmd.Batch = append(cmd.Batch, &shard.Command{Op: shard.OpRead, App: k.app, CID: k.cid, From: k.peer, Now: m.now, T: m.read})
		}
	}
	if len(cmd.Batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cursorProposeTimeout)
	defer cancel()
	res, err := c.propose(ctx, cmd)
	if err != nil {
		c.log.Debug("cursors", "commands", len(cmd.Batch), "err", err)
		return
	}
	for i, it := range res.Batch {
		if it.Err != nil {
			c.log.Debug("cursor", "op", cmd.Batch[i].Op, "cid", cmd.Batch[i].CID, "err", it.Err)
			continue
		}
		if it.Result != nil {
			c.pushReceipts(cmd.Batch[i].App, it.Result.Receipts)
		}
	}
}

// resolveCursor returns the timestamp a requested move goes to, clamped to
// the last message; ok is false when the requester is no member or the
// message is unknown.
func (c *Core) resolveCursor(q cursorReq) (t int64, ok bool) {
	conv, err := c.convView(q.app, q.cid)
	if err != nil || conv == nil || !conv.IsMember(q.peer) {
		return 0, false
	}
	t = q.t
	if q.mid != "" {
		mt, ok, err := shard.MessageTS(c.state(), q.app, q.cid, q.mid)
		if err != nil || !ok {
			return 0, false
		}
		t = mt
	} else if t <= 0 && q.read {
		t = conv.LastT
	}
	if t > conv.LastT {
		t = conv.LastT
	}
	return t, t > 0
}

// waitCursors waits until every round is applied or ctx ends.
func waitCursors(ctx context.Context, rounds ...*cursorRound) {
	for _, r := range rounds {
		if r == nil {
			continue
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return
		}
	}
}
