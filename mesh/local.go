package mesh

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/internal/gopool"
)

// In-process links. A node listening with InProcess is registered under
// its address for the life of the node; a Call or OpenStream from another
// InProcess node of the same process to that address runs in memory: the
// handler is called directly (a call) or given one end of a pipe (a
// stream), with no QUIC, UDP or TLS in between. `relaymesh dev` runs its
// core and its edge this way: they share a process, so the QUIC link
// between them was pure cost (a fifth of the server's CPU per one-to-one
// message, docs/BENCHMARKS.md).
//
// What the peer sees is what QUIC would give it: the caller's node name
// and role (its own identity: the process holds both keys), the target's
// role checks, the same errors (ErrRemote, ErrUnknownMethod, ErrForbidden,
// ErrFrameTooLarge, ErrNotSent for a closed target), a handler context
// that ends with the caller's context or the target's Close, and requests,
// replies and frames copied (neither side sees the other's later writes to
// its buffers). A stream's frames are bounded per direction
// (localWindow), as QUIC's flow control bounds them, so a Send to a peer
// that stops reading waits, then fails after its send timeout and resets
// the pipe. Closing either node breaks its pipes; calls are tracked by
// the target's WaitGroup as its own handlers are.
//
// Nodes without the option, and any address not registered, go over QUIC
// as before; so does raft (a core's raft peers are other processes).

// InProcess registers the node for in-process calls and streams from other
// InProcess nodes of this process (see above).
func InProcess() ListenOption {
	return func(o *listenOptions) { o.local = true }
}

// InProcessCalls is how many calls and streams the node made in memory.
func (n *Node) InProcessCalls() int64 { return n.localCalls.Load() }

// localNodes holds the InProcess nodes of the process by address.
var localNodes sync.Map // string → *Node

// localWindow bounds the bytes queued in one direction of a local stream
// before Send waits (QUIC's per-stream receive window plays this part on
// the wire). A single frame larger than it is taken when the queue is
// empty.
const localWindow = 8 << 20

// localPeer returns the InProcess node listening at addr, if n may reach it
// in memory.
func (n *Node) localPeer(addr string) *Node {
	if !n.local {
		return nil
	}
	v, ok := localNodes.Load(addr)
	if !ok {
		return nil
	}
	return v.(*Node)
}

// enter checks p is open and method is registered and permitted for n,
// and counts a handler in p.wg (under p.mu, so never concurrently with
// Close's Wait). It returns the handler's roles check result as an error
// with the status QUIC would carry.
func (p *Node) enter(caller *Node, method string, stream bool) (RPCHandler, StreamHandler, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, ErrClosed
	}
	var h RPCHandler
	var sh StreamHandler
	if stream {
		sh = p.streams[method]
	} else {
		h = p.rpcs[method]
	}
	if h == nil && sh == nil {
		return nil, nil, remoteErr(statusUnknown, []byte(method))
	}
	if !p.permit(caller.id.Name, caller.id.Role, method, p.roles[method]) {
		what := "call"
		if stream {
			what = "open"
		}
		return nil, nil, remoteErr(statusForbidden, fmt.Appendf(nil, "role %q may not %s %q", caller.id.Role, what, method))
	}
	p.wg.Add(1)
	return h, sh, nil
}

// callLocal is Call to an InProcess node.
func (n *Node) callLocal(ctx context.Context, p *Node, addr, method string, req []byte) ([]byte, error) {
	n.localCalls.Add(1) // Call has refused an ended context
	h, _, err := p.enter(n, method, false)
	switch {
	case err == ErrClosed:
		return nil, fmt.Errorf("mesh: call %s: %w: %w", method, ErrNotSent, err)
	case err != nil:
		return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, err)
	}
	hctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel) // the target closing ends its handler's context
	req = bytes.Clone(req)
	type result struct {
		reply []byte
		err   error
	}
	done := make(chan result, 1)
	gopool.Go(func() { // a worker whose stack a handler has grown already
		defer p.wg.Done()
		defer stop()
		defer cancel()
		reply, err := callRPC(hctx, h, n.id.Name, n.id.Role, req)
		done <- result{reply, err}
	})
	var res result
	select {
	case res = <-done:
	case <-ctx.Done(): // the caller gave up: return at once, as over QUIC
		return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, ctx.Err())
	}
	switch {
	case res.err != nil && ctx.Err() != nil:
		// The caller gave up and its handler ended with it: both were
		// ready; the caller's reason wins, as in the case above.
		return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, ctx.Err())
	case res.err != nil:
		return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, remoteErr(statusError, []byte(res.err.Error())))
	case len(res.reply) > MaxFrameSize:
		return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, remoteErr(statusTooLarge, fmt.Appendf(nil, "reply of %d bytes", len(res.reply))))
	}
	return bytes.Clone(res.reply), nil
}

// openLocal is OpenStream to an InProcess node: the caller gets one end of
// a pipe, p's handler the other on a goroutine of its own.
func (n *Node) openLocal(ctx context.Context, p *Node, addr, method string) (*Stream, error) {
	n.localCalls.Add(1)
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("mesh: open stream %s: %w", method, ctx.Err())
	default:
	}
	_, h, err := p.enter(n, method, true)
	switch {
	case err == ErrClosed:
		return nil, fmt.Errorf("mesh: open stream %s: %w", method, err)
	case err != nil:
		return nil, fmt.Errorf("mesh: open stream %s on %s: %w", method, addr, err)
	}
	mine, theirs := newLocalPipe()
	// Either node closing breaks the pipe, as a closed connection
	// fails its streams.
	// The pipe breaks before the handler's context ends (reset ends the
	// pipe's context, which ends the handler's): a handler that returns
	// at once would otherwise close its end first, and the caller would
	// read a clean EOF from a node that closed (TestLocalNodeClose failed
	// once so under -race).
	stopN := context.AfterFunc(n.ctx, func() { mine.reset(ErrClosed) })
	stopP := context.AfterFunc(p.ctx, func() { mine.reset(ErrClosed) })
	hctx, cancel := context.WithCancel(context.WithoutCancel(p.ctx))
	stopH := context.AfterFunc(theirs.ctx, cancel)
	go func() {
		defer p.wg.Done()
		defer func() { stopH(); cancel(); stopN(); stopP() }()
		st := &Stream{lp: theirs}
		defer st.Close()
		h(hctx, n.id.Name, st)
	}()
	return &Stream{lp: mine}, nil
}

// localQueue is one direction of a local stream: frames written by one end
// and read by the other.
type localQueue struct {
	mu         sync.Mutex
	frames     [][]byte // guarded by mu
	size       int      // guarded by mu; bytes in frames
	writerDone bool     // guarded by mu; the writer closed: EOF once drained
	readerGone bool     // guarded by mu; the reader closed: writes fail, frames dropped
	broken     error    // guarded by mu; the pipe was reset: both sides fail

	readable chan struct{} // cap 1: a frame, EOF or a break for the reader
	writable chan struct{} // cap 1: room, or a break, for the writer
}

func newLocalQueue() *localQueue {
	return &localQueue{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// localEnd is one end of a local stream.
type localEnd struct {
	in, out *localQueue
	// ctx ends when either end closes or the pipe breaks (the handler's
	// context follows it, as it follows the QUIC stream's).
	ctx    context.Context
	cancel context.CancelFunc
}

func newLocalPipe() (a, b *localEnd) {
	ab, ba := newLocalQueue(), newLocalQueue()
	ctx, cancel := context.WithCancel(context.Background())
	a = &localEnd{in: ba, out: ab, ctx: ctx, cancel: cancel}
	b = &localEnd{in: ab, out: ba, ctx: ctx, cancel: cancel}
	return a, b
}

// reset breaks both directions with err.
func (e *localEnd) reset(err error) {
	for _, q := range []*localQueue{e.in, e.out} {
		q.mu.Lock()
		if q.broken == nil {
			q.broken = err
		}
		q.frames, q.size = nil, 0
		q.mu.Unlock()
		kick(q.readable)
		kick(q.writable)
	}
	e.cancel()
}

// send queues a copy of msg, waiting for room until deadline (zero: no
// limit).
func (e *localEnd) send(msg []byte, deadline time.Time) error {
	q := e.out
	var timer *time.Timer
	var expired <-chan time.Time
	for {
		q.mu.Lock()
		switch {
		case q.broken != nil:
			err := q.broken
			q.mu.Unlock()
			return err
		case q.readerGone:
			q.mu.Unlock()
			return errLocalStopped
		case q.writerDone:
			q.mu.Unlock()
			return ErrClosed
		case q.size == 0 || q.size+len(msg) <= localWindow:
			q.frames = append(q.frames, bytes.Clone(msg))
			q.size += len(msg)
			q.mu.Unlock()
			kick(q.readable)
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		q.mu.Unlock()
		if !deadline.IsZero() && timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			expired = timer.C
		}
		select {
		case <-q.writable:
		case <-expired:
			e.reset(errLocalReset)
			return os.ErrDeadlineExceeded
		}
	}
}

// recv takes the next frame, io.EOF once the writer closed and every frame
// was read.
func (e *localEnd) recv() ([]byte, error) {
	q := e.in
	for {
		q.mu.Lock()
		switch {
		case q.broken != nil:
			err := q.broken
			q.mu.Unlock()
			return nil, err
		case len(q.frames) > 0:
			b := q.frames[0]
			q.frames[0] = nil
			q.frames = q.frames[1:]
			q.size -= len(b)
			q.mu.Unlock()
			kick(q.writable)
			return b, nil
		case q.writerDone:
			q.mu.Unlock()
			return nil, io.EOF
		}
		q.mu.Unlock()
		<-q.readable
	}
}

// close ends this end: the peer reads what was sent, then io.EOF; its
// sends fail. abort (a send of ours is stuck) makes the peer's reads fail
// instead, as QUIC's CancelWrite does.
func (e *localEnd) close(abort bool) {
	q := e.in
	q.mu.Lock()
	q.readerGone = true
	q.frames, q.size = nil, 0
	q.mu.Unlock()
	kick(q.writable)
	q = e.out
	q.mu.Lock()
	if abort && q.broken == nil {
		q.broken = errLocalReset
		q.frames, q.size = nil, 0
	}
	q.writerDone = true
	q.mu.Unlock()
	kick(q.readable)
	kick(q.writable)
	e.cancel()
}

var (
	errLocalReset   = fmt.Errorf("%w: in-process stream reset", ErrClosed)
	errLocalStopped = fmt.Errorf("%w: the peer stopped reading", ErrClosed)
)
