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
// call. With a pool of GOMAXPROCS writers the delivery path keeps its share
// of the CPU, so under load the backlog forms in the connections' queues,
// where a turn writes everything queued in one system call: the busier the
// edge, the more frames per write, for the edge and for the client reading
// them. It also spares a goroutine start and its stack growth per burst.
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
type writerPool struct {
	max int

	mu      sync.Mutex
	ready   []*conn // guarded by mu: connections with c.writing set, in turn order
	head    int     // guarded by mu: ready[head:] wait
	running int     // guarded by mu
}

func newWriterPool() *writerPool {
	return &writerPool{max: max(2, runtime.GOMAXPROCS(0))}
}

// schedule queues c (c.writing set by the caller) for a turn.
func (p *writerPool) schedule(c *conn) {
	p.mu.Lock()
	p.ready = append(p.ready, c)
	spawn := p.running < p.max
	if spawn {
		p.running++
	}
	p.mu.Unlock()
	if spawn {
		go p.work()
	}
}

func (p *writerPool) work() {
	for {
		p.mu.Lock()
		if p.head == len(p.ready) {
			p.ready, p.head = p.ready[:0], 0
			p.running--
			p.mu.Unlock()
			return
		}
		c := p.ready[p.head]
		p.ready[p.head] = nil
		p.head++
		if p.head >= 1024 && p.head*2 >= len(p.ready) { // reuse the front
			n := copy(p.ready, p.ready[p.head:])
			clear(p.ready[n:])
			p.ready, p.head = p.ready[:n], 0
		}
		p.mu.Unlock()
		c.poolTurn()
	}
}

// poolTurn is one pool writer's turn at c (c.writing set): the frames
// queued, up to corkMax bytes, in one non-blocking write. It schedules
// another turn while frames remain, and hands the burst to finishBurst when
// the socket is full or the queue ended.
func (c *conn) poolTurn() {
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
		c.srv.writers.schedule(c)
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
			go c.finishBurst() // takes over c.wmu
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
		go c.finishBurst() // takes over c.wmu
		return
	}
	_ = t.uncork() // nothing left to write: only stops collecting
	c.wmu.Unlock()
	c.afterBurst()
}

// abortTurnLocked drops the connection after a failed write in a pool
// turn and ends the turn; c.wmu held, released here.
func (c *conn) abortTurnLocked() {
	c.abortLocked()
	c.wmu.Unlock()
	c.writing.Store(false)
}

// afterBurst ends a burst (c.writing set, c.wmu not held): another turn
// when frames are queued, else c.writing cleared.
func (c *conn) afterBurst() {
	for {
		if c.q.Ready() {
			c.srv.writers.schedule(c) // c.writing stays set
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
func (c *conn) finishBurst() {
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
	c.afterBurst()
}
