package edge

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/relay/pq"
)

// The writer pool (issue 11): a raw WebSocket's queued frames are written
// by a few pool goroutines that take connections in turn, instead of a
// goroutine started per burst.
//
// Why: a chatroom message queues one frame on each of 10,000 connections.
// With a goroutine per burst, those 10,000 goroutines are all runnable at
// once, and the goroutine handing the edge its next delivery waits behind
// every one of them: the backlog piled up in front of the edge (seconds of
// it) while each connection's queue held one frame, written with one system
// call. With a pool of a few writers (and the fan-out lane's cap below) the
// delivery path keeps its share of the CPU, so under load the backlog forms
// in the connections' queues, where a turn writes everything queued in one
// system call: the busier the edge, the more frames per write, for the edge
// and for the client reading them. It also spares a goroutine start and its
// stack growth per burst.
//
// A pool writer never blocks on a client: a turn collects the connection's
// frames (up to corkMax bytes) in its cork buffer and writes them with one
// non-blocking system call. When the socket does not take them all (the
// client reads slowly), or the queue reached an end state (overflow, a
// drain's close handshake), the rest of the burst moves to a goroutine of
// its own with the blocking writes and their WriteTimeout (finishBurst),
// as before the pool. Transports without a descriptor to write to that
// way (WebTransport, TLS, coder/websocket) keep a goroutine per burst.

// nbWriter is a transport a pool writer can serve: its corked bytes can be
// written without blocking. A raw WebSocket with a descriptor is one.
type nbWriter interface {
	corker
	// pooled reports whether this connection is written by the pool.
	pooled() bool
	// corkGrow corks without writing through at corkMax: the pool
	// writer stops collecting there itself.
	corkGrow(timeout time.Duration)
	// buffered is the number of corked bytes not yet written.
	buffered() int
	// flushNB writes the corked bytes with one non-blocking system call and
	// reports whether they all went; what did not stays corked.
	flushNB() (bool, error)
}

// writerPool runs the pool writers: at most max goroutines, each taking
// the next ready connection until none is left, then exiting (an idle edge
// runs none).
//
// Connections wait in one of two lanes. A copy of a delivery to several
// sessions on this edge (a chatroom's or a group's message: one Deliver
// with several targets) schedules its connection in the fan-out lane, which
// at most fanMax writers (half the pool, at least one) serve at a time.
// Everything else (replies, one-to-one pushes) waits in the first lane,
// which every writer serves first: 4 turns of 5 while both lanes wait
// (firstStreakMax), so neither starves.
//
// Why the cap: a message to a 10,000-member room queues a frame on 10,000
// connections, and a writer on each of the 2 cores of a small edge kept
// pace with Deliver, so each turn found one frame or three (a system call
// each) while the deliveries behind them waited upstream, where nothing
// coalesces them. With one writer on the fan-out lane, Deliver keeps a
// core: the backlog forms in the connections' queues, and a turn writes
// several frames with one system call (docs/BENCHMARKS.md, "one fan-out
// writer").
type writerPool struct {
	max    int
	fanMax int

	// turn is the turn a writer takes: nil for (*conn).poolTurn, set by
	// tests of the lanes.
	turn func(c *conn, ln int)

	mu         sync.Mutex
	lanes      [2]lane // guarded by mu: laneFirst, laneFan
	running    int     // guarded by mu: writers started
	fanRunning int     // guarded by mu: writers in a fan-out lane turn
	// firstStreak (guarded by mu) counts the first-lane turns taken in a
	// row while a fan-out turn could have been: at firstStreakMax the next
	// is a fan-out turn, so a flood of replies does not starve a room.
	firstStreak int
}

// firstStreakMax is how many first-lane turns go before a waiting fan-out
// turn: the first lane has 4 of every 5 turns while both lanes wait.
const firstStreakMax = 4

// The lanes of the writer pool.
const (
	laneFirst = 0
	laneFan   = 1
)

// lane is a FIFO of connections with c.writing set.
type lane struct {
	ready []*conn // ready[head:] wait, in turn order
	head  int
}

func (l *lane) empty() bool { return l.head == len(l.ready) }

func (l *lane) push(c *conn) { l.ready = append(l.ready, c) }

func (l *lane) pop() *conn {
	c := l.ready[l.head]
	l.ready[l.head] = nil
	l.head++
	if l.head == len(l.ready) {
		l.ready, l.head = l.ready[:0], 0
	} else if l.head >= 1024 && l.head*2 >= len(l.ready) { // reuse the front
		n := copy(l.ready, l.ready[l.head:])
		clear(l.ready[n:])
		l.ready, l.head = l.ready[:n], 0
	}
	return c
}

func newWriterPool() *writerPool {
	n := max(2, runtime.GOMAXPROCS(0))
	return &writerPool{max: n, fanMax: max(1, n/2)}
}

// schedule queues c (c.writing set by the caller) for a turn in lane ln.
func (p *writerPool) schedule(c *conn, ln int) {
	p.mu.Lock()
	p.lanes[ln].push(c)
	// A fan-out turn starts a writer only when the lane has room for one
	// more: a running writer takes it up after its turn.
	spawn := p.running < p.max && (ln == laneFirst || p.fanRunning < p.fanMax)
	if spawn {
		p.running++
	}
	p.mu.Unlock()
	if spawn {
		go p.work()
	}
}

func (p *writerPool) work() {
	ln := -1 // the lane of the turn just taken
	for {
		p.mu.Lock()
		if ln == laneFan {
			p.fanRunning--
		}
		fanOK := !p.lanes[laneFan].empty() && p.fanRunning < p.fanMax
		switch {
		case !p.lanes[laneFirst].empty() && (!fanOK || p.firstStreak < firstStreakMax):
			ln = laneFirst
			if fanOK {
				p.firstStreak++
			}
		case fanOK:
			ln = laneFan
			p.fanRunning++
			p.firstStreak = 0
		default:
			// Nothing this writer may take: the fan-out lane, if it waits,
			// has its writers running, and they come back to it.
			p.running--
			p.mu.Unlock()
			return
		}
		c := p.lanes[ln].pop()
		p.mu.Unlock()
		if p.turn != nil {
			p.turn(c, ln)
			continue
		}
		c.poolTurn(ln)
	}
}

// poolTurn is one pool writer's turn at c (c.writing set): the frames
// queued, up to corkMax bytes, in one non-blocking write. It schedules
// another turn while frames remain, and hands the burst to finishBurst when
// the socket is full or the queue ended.
func (c *conn) poolTurn(ln int) {
	t := c.t.(nbWriter)
	if !c.wmu.TryLock() {
		// Only the closer takes c.wmu besides the writer (which c.writing
		// excludes): it may hold it for a close handshake, seconds that no
		// pool writer waits out. It writes (or drops) what is queued.
		if c.ctx.Err() != nil {
			c.writing.Store(false)
			return
		}
		runtime.Gosched() // held by a test: try again later
		c.srv.writers.schedule(c, ln)
		return
	}
	if c.wclosed {
		c.wmu.Unlock()
		c.writing.Store(false)
		return
	}
	t.corkGrow(c.srv.limits.WriteTimeout)
	for t.buffered() < corkMax {
		f, _, st := c.q.Pop()
		if st == pq.PopEmpty {
			break
		}
		if st != pq.PopItem { // overflow or drained: the blocking path closes
			go c.finishBurst(ln) // takes over c.wmu
			return
		}
		if err := c.writeCtx(context.Background(), f); err != nil { // appends
			c.abortTurnLocked()
			return
		}
	}
	done, err := t.flushNB()
	if err != nil {
		c.abortTurnLocked()
		return
	}
	if !done {
		c.srv.metrics.PoolHandoffs.Add(1)
		go c.finishBurst(ln) // takes over c.wmu
		return
	}
	_ = t.uncork() // nothing left to write: only stops collecting
	c.wmu.Unlock()
	c.afterBurst(ln)
}

// abortTurnLocked drops the connection after a failed write in a pool
// turn and ends the turn; c.wmu held, released here.
func (c *conn) abortTurnLocked() {
	c.abortLocked()
	c.wmu.Unlock()
	c.writing.Store(false)
}

// afterBurst ends a burst (c.writing set, c.wmu not held): another turn
// in lane ln when frames are queued, else c.writing cleared.
func (c *conn) afterBurst(ln int) {
	for {
		if c.q.Ready() {
			c.srv.writers.schedule(c, ln) // c.writing stays set
			return
		}
		c.writing.Store(false)
		// A push between the check and the Store saw a writer running
		// and did not start one: look again.
		if !c.q.Ready() || !c.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// finishBurst runs on a goroutine of its own with c.wmu, which the pool
// writer that started it held: it writes what the turn left corked and
// what is queued with blocking writes (drainLocked), acts on the queue's
// end state, and hands the connection back to the pool.
func (c *conn) finishBurst(ln int) {
	t := c.t.(nbWriter)
	if err := t.uncork(); err != nil {
		c.abortLocked()
	} else {
		c.drainLocked()
	}
	closed := c.wclosed
	c.wmu.Unlock()
	if closed {
		c.writing.Store(false)
		return
	}
	c.afterBurst(ln)
}
