package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/relay"
)

// Commit before fan-out. A leader stores a message (raft commit), acks it
// and then fans it out; a leader killed in between leaves a message that is
// in history but was never pushed to its online recipients. The shard keeps
// a fan-out tail (shard/fanout.go): every stored message has an entry under
// its raft index until a leader names that index in FanoutDone. One index
// may hold several messages (a round of sends, sendgroup.go); the tracker
// follows an index until the deliveries of all of them left.
//
// The leader names an index once the message has left the core: every
// delivery of its fan-out was handed to its edge's stream (or failed, or
// the edge went away). A delivery is HIGH in the relay queue, which is FIFO
// and never evicts HIGH, so its place in the queue (relayQueue.pushSeq)
// against the edge link's count of HIGH deliveries sent (edgeLink.highOut)
// says when. Done indexes ride on the next proposal of any kind
// (Core.propose); when nothing is proposed for fanoutFlushEvery, an
// OpFanoutDone carries them.
//
// A core that becomes leader (ReplayFanout, after raft's barrier: every
// earlier entry is applied) pushes each tail entry it did not fan out
// itself, marked as a replay (Delivery.replay): the edge drops the copy for
// a session it already gave that message (edge/corelink/replay.go), so a client
// that stayed online on the same edge sees it once, even on iOS, which does
// not deduplicate. A client that changed edges meanwhile may see it twice;
// it is at-least-once there, and clients dedup by message id (Java, JS).
// Chatroom messages are not replayed (transient delivery), nor are hooks
// or offline pushes run again.

// fanoutFlushEvery is how long done indexes wait for a proposal to carry
// them before an OpFanoutDone does.
const fanoutFlushEvery = 200 * time.Millisecond

// replayWait bounds how long a send on a new leader waits for the replay
// (awaitReplay); past it the send goes on.
const replayWait = 2 * time.Second

// fanoutScanEvery is how often, at most, take looks through the pending
// fan-outs for ones that have left. take runs on every proposal, under the
// tracker's lock that every send also takes; scanning thousands of pending
// fan-outs each time (a loaded core) made that lock a queue of its own.
// Done indexes then ride a proposal up to this much later, which only
// keeps their tail entries a little longer.
const fanoutScanEvery = 5 * time.Millisecond

// fanoutTracker follows this core's fan-outs until they are named done in
// the shard.
type fanoutTracker struct {
	mu       sync.Mutex
	replayed uint64 // guarded by mu; raft term whose replay is done
	// replayedA mirrors replayed for awaitReplay's lock-free fast path
	// (written under mu, read without it).
	replayedA atomic.Uint64
	replayDue chan struct{}             // guarded by mu; closed (and replaced) when a replay ends
	inflight  map[*fanoutToken]struct{} // guarded by mu; appends proposed, index not known yet
	pending   map[uint64][]relay.Wait   // guarded by mu; queued, not all left yet (every message of the index)
	done      []uint64                  // guarded by mu; left, not named in a proposal yet
	proposing map[uint64]struct{}       // guarded by mu; named in a proposal in flight
	lastFlush time.Time                 // guarded by mu; when a proposal last carried done indexes
	lastScan  time.Time                 // guarded by mu; when take last looked through pending
}

// fanoutToken is an append being proposed; done is closed when its index
// is known (tracked) or it failed.
type fanoutToken struct{ done chan struct{} }

func (t *fanoutTracker) init() {
	t.replayDue = make(chan struct{})
	t.inflight = make(map[*fanoutToken]struct{})
	t.pending = make(map[uint64][]relay.Wait)
	t.proposing = make(map[uint64]struct{})
}

// unsettled is how many fan-outs this core has not yet named done in the
// shard: appends being proposed, and indexes queued, left or named in a
// proposal in flight. Were the core to lose its leadership now, a new
// leader would push their messages again (ReplayFanout).
func (t *fanoutTracker) unsettled() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.inflight) + len(t.pending) + len(t.done) + len(t.proposing)
}

// begin registers an append about to be proposed.
func (t *fanoutTracker) begin() *fanoutToken {
	tok := &fanoutToken{done: make(chan struct{})}
	t.mu.Lock()
	t.inflight[tok] = struct{}{}
	t.mu.Unlock()
	return tok
}

// end settles tok: the messages stored at index (0: none, dups or a
// failure) were queued as waits.
func (t *fanoutTracker) end(tok *fanoutToken, index uint64, waits []relay.Wait) {
	t.mu.Lock()
	delete(t.inflight, tok)
	if index > 0 {
		t.trackLocked(index, waits)
	}
	t.mu.Unlock()
	close(tok.done)
}

func (t *fanoutTracker) trackLocked(index uint64, waits []relay.Wait) {
	if len(waits) == 0 {
		t.done = append(t.done, index)
		return
	}
	t.pending[index] = waits
}

// take returns the indexes to name in the next proposal (at most
// shard.MaxFanoutDone), moving every pending fan-out that has left to done.
func (t *fanoutTracker) take() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); len(t.pending) > 0 && now.Sub(t.lastScan) >= fanoutScanEvery {
		t.lastScan = now
		for idx, waits := range t.pending {
			left := true
			for _, w := range waits {
				if !w.Left() {
					left = false
					break
				}
			}
			if left {
				delete(t.pending, idx)
				t.done = append(t.done, idx)
			}
		}
	}
	if len(t.done) == 0 {
		return nil
	}
	n := min(len(t.done), shard.MaxFanoutDone)
	out := append([]uint64(nil), t.done[:n]...)
	t.done = append(t.done[:0], t.done[n:]...)
	for _, idx := range out {
		t.proposing[idx] = struct{}{}
	}
	t.lastFlush = time.Now()
	return out
}

// settle ends the proposal that carried idxs: applied (the entries are
// gone) or not (they are named again in a later one).
func (t *fanoutTracker) settle(idxs []uint64, applied bool) {
	if len(idxs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, idx := range idxs {
		delete(t.proposing, idx)
	}
	if !applied {
		t.done = append(t.done, idxs...)
	}
}

// known reports whether this core fanned index out, or is doing so.
func (t *fanoutTracker) knownLocked(index uint64) bool {
	if _, ok := t.pending[index]; ok {
		return true
	}
	if _, ok := t.proposing[index]; ok {
		return true
	}
	for _, d := range t.done {
		if d == index {
			return true
		}
	}
	return false
}

// carry adds the done indexes to cmd before it is proposed; the returned
// func settles them with the proposal's outcome.
func (c *Core) carryFanoutDone(cmd *shard.Command) func(err error) {
	idxs := c.fanouts.take()
	if len(idxs) == 0 {
		return func(error) {}
	}
	if c.cmdVer < shard.Version2 { // pinned to Version1: the shard keeps no tail
		c.fanouts.settle(idxs, true)
		return func(error) {}
	}
	cmd.FanoutDone = idxs
	return func(err error) {
		// A command the state refused was still applied, done list and all.
		var se *shard.Error
		c.fanouts.settle(idxs, err == nil || errors.As(err, &se))
	}
}

// flushFanoutDone runs on its own goroutine until Close: it proposes an
// OpFanoutDone when done indexes waited fanoutFlushEvery for a proposal.
func (c *Core) flushFanoutDone() {
	defer c.wg.Done()
	tick := time.NewTicker(fanoutFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
		c.fanouts.mu.Lock()
		idle := time.Since(c.fanouts.lastFlush) >= fanoutFlushEvery
		waiting := len(c.fanouts.done) > 0 || len(c.fanouts.pending) > 0
		c.fanouts.mu.Unlock()
		if !idle || !waiting || c.replica == nil || !c.replica.IsLeader() {
			continue
		}
		cmd := &shard.Command{Op: shard.OpFanoutDone, V: c.cmdVer}
		settle := c.carryFanoutDone(cmd)
		if len(cmd.FanoutDone) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
		b, err := cmd.Encode()
		if err == nil {
			_, err = c.replica.Propose(ctx, b)
		}
		cancel()
		settle(err)
	}
}

// appliedIndexer is the part of raftstore.Node ReplayFanout uses.
type appliedIndexer interface{ AppliedIndex() uint64 }

// ReplayFanout pushes the messages of the fan-out tail that this core did
// not fan out itself (see the comment at the top of this file) and returns
// how many. Call it when the core has become leader, after raft's barrier.
func (c *Core) ReplayFanout(ctx context.Context) (n int, err error) {
	ai, ok := c.replica.(appliedIndexer)
	if !ok {
		return 0, errors.New("core: replay: the replica does not say its applied index")
	}
	if c.leaderTerm != nil {
		term := c.leaderTerm()
		defer func() {
			if err == nil {
				c.fanouts.mu.Lock()
				c.fanouts.replayed = max(c.fanouts.replayed, term)
				c.fanouts.replayedA.Store(c.fanouts.replayed)
				close(c.fanouts.replayDue)
				c.fanouts.replayDue = make(chan struct{})
				c.fanouts.mu.Unlock()
			}
		}()
	}
	// Appends proposed before now may be applied without this core
	// knowing their index yet: wait for them, then replay only up to the
	// index applied now (later entries are this core's own).
	c.fanouts.mu.Lock()
	var waits []*fanoutToken
	for tok := range c.fanouts.inflight {
		waits = append(waits, tok)
	}
	c.fanouts.mu.Unlock()
	upTo := ai.AppliedIndex()
	for _, tok := range waits {
		select {
		case <-tok.done:
		case <-ctx.Done():
			return 0, fmt.Errorf("core: replay: %w", ctx.Err())
		}
	}
	after := uint64(0)
	for {
		entries, err := shard.FanoutTail(c.state(), upTo, 1024)
		if err != nil {
			return n, err
		}
		var next []shard.FanoutEntry
		for _, e := range entries {
			if e.Index > after {
				next = append(next, e)
			}
		}
		if len(next) == 0 {
			return n, nil
		}
		// An index may hold several messages (a round of sends,
		// sendgroup.go), in the order they were stored; FanoutTail never
		// splits one index's. Each is pushed, and the index is tracked
		// until all of them left.
		for len(next) > 0 {
			idx, k := next[0].Index, 1
			for k < len(next) && next[k].Index == idx {
				k++
			}
			group := next[:k]
			next, after = next[k:], idx
			c.fanouts.mu.Lock()
			known := c.fanouts.knownLocked(idx)
			c.fanouts.mu.Unlock()
			if known {
				continue
			}
			var waits []relay.Wait
			for _, e := range group {
				w, pushed := c.replayOne(e)
				waits = append(waits, w...)
				if pushed {
					n++
					c.stats.Replayed.Add(1)
				}
			}
			c.fanouts.mu.Lock()
			c.fanouts.trackLocked(idx, waits)
			c.fanouts.mu.Unlock()
		}
	}
}

// replayOne pushes one tail entry's message to its recipients' sessions,
// as a replay. pushed is false for a message there is nothing to push for
// (deleted, a chatroom's).
func (c *Core) replayOne(e shard.FanoutEntry) (waits []relay.Wait, pushed bool) {
	m, err := shard.GetMessage(c.state(), e.App, e.CID, e.MID)
	if err != nil || m == nil {
		return nil, false
	}
	conv, err := c.convView(e.App, e.CID)
	if err != nil || conv == nil || conv.Transient {
		return nil, false
	}
	members := inbound{to: e.To}.recipients(conv.Members, m.From)
	push := directPush(m, false)
	return c.fanoutTo(e.App, members, connKey{Edge: e.Edge, Conn: e.Conn}, push, true), true
}

// awaitReplay holds a send on a leader whose fan-out replay for its
// current term has not finished (at most replayWait, or until ctx ends),
// so that a message a dead leader left is pushed before newer ones and
// recipients see timestamp order.
func (c *Core) awaitReplay(ctx context.Context) {
	if c.leaderTerm == nil {
		return
	}
	if c.fanouts.replayedA.Load() >= c.leaderTerm() { // the usual case: no lock, no timer
		return
	}
	deadline := time.NewTimer(replayWait)
	defer deadline.Stop()
	for {
		term := c.leaderTerm()
		c.fanouts.mu.Lock()
		done, due := c.fanouts.replayed >= term, c.fanouts.replayDue
		c.fanouts.mu.Unlock()
		if done {
			return
		}
		select {
		case <-due:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		case <-c.quit:
			return
		}
	}
}
