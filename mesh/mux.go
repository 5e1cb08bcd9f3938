package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/relaymesh/relaymesh/internal/gopool"
)

// Multiplexed calls (kind 4, "mux"; issue 11).
//
// A caller keeps up to muxStreams long-lived mux streams per connection
// and sends many small calls on each; the server runs every call's handler
// on its own goroutine and answers in any order. Requests over
// muxMaxRequest keep a stream of their own (kindRPC), so a 16 MiB request
// never holds up others; replies of any size (up to MaxFrameSize) come back
// on the mux stream.
//
// Client side, one mux stream: callers queue their frames; one writer
// goroutine writes what is queued in one Write (batching many calls into a
// packet), one reader goroutine matches replies to callers by id. Server
// side: one reader goroutine; each handler writes its own reply, one at a
// time (muxServer.write).
//
// Lock order: muxPool.mu, then muxStream.mu or Node.mu (spawn).
// muxServer.mu and muxServer.wmu are never held together, nor with Node.mu.

// Mux tuning. Variables, not constants, so tests and benchmarks can vary them.
var (
	muxMaxRequest = 64 << 10 // the largest request sent on a mux stream
	muxStreams    = 4        // mux streams per connection
	muxSpreadAt   = int32(1) // open another stream (up to muxStreams) when the least busy has this many calls in flight
)

const (
	// muxMaxCalls bounds the calls in flight on one mux stream. The server
	// resets a stream that exceeds it; the caller never does (a call that
	// finds every stream full takes a stream of its own).
	muxMaxCalls = 1024
	// muxCallOverhead bounds what a call frame adds to its request: type,
	// id, method length, method.
	muxCallOverhead = 1 + binary.MaxVarintLen64 + 1 + 255
	// muxReplyOverhead bounds what a reply frame adds to its payload: id,
	// status.
	muxReplyOverhead = binary.MaxVarintLen64 + 1
	// muxWriteTimeout bounds one write on a mux stream (the peer's flow
	// control holding it up): after it the stream is reset and its calls fail.
	muxWriteTimeout = 10 * time.Second
	// muxBatch is how many bytes of queued frames the caller's writer takes
	// into one Write.
	muxBatch = 256 << 10
)

// Frame types the caller sends on a mux stream (the first payload byte).
const (
	muxFrameCall   byte = 0 // id:uvarint method-len:uint8 method request
	muxFrameCancel byte = 1 // id:uvarint
)

var (
	// errMuxRefused: the peer does not know kindMux (a node from before
	// issue 11): this connection takes a stream per call.
	errMuxRefused = errors.New("mesh: peer refuses mux streams")
	// errMuxFull: every mux stream of the connection has muxMaxCalls in flight.
	errMuxFull = errors.New("mesh: mux streams full")
	// errMuxDead: the stream picked failed before the call was queued.
	errMuxDead = errors.New("mesh: mux stream failed")
)

// muxPool is the caller's mux streams on one dialled connection.
type muxPool struct {
	n *Node
	c *quic.Conn

	mu      sync.Mutex
	streams []*muxStream // guarded by mu; live streams
	opening *muxOpening  // guarded by mu; the open under way, if any
	refused bool         // guarded by mu; the peer refused kindMux: never try again on c
}

// muxOpening is one attempt to open a mux stream, shared by the callers
// that wait for it.
type muxOpening struct {
	done chan struct{} // closed when err is set
	err  error
}

// callMux runs a call on a mux stream. ok false means the call was not
// sent and must take a stream of its own: the peer refuses mux streams or
// they are full.
func (n *Node) callMux(ctx context.Context, addr, method string, req []byte) (reply []byte, err error, ok bool) {
	notSent := func(err error) ([]byte, error, bool) {
		return nil, fmt.Errorf("mesh: call %s: %w: %w", method, ErrNotSent, err), true
	}
	for attempt := 0; ; attempt++ {
		d, cached, err := n.connDial(ctx, addr)
		if err != nil {
			return notSent(err)
		}
		ms, err := d.mux.pick(ctx)
		switch {
		case err == nil:
		case errors.Is(err, errMuxRefused), errors.Is(err, errMuxFull):
			return nil, nil, false
		case ctx.Err() != nil:
			return notSent(ctx.Err())
		default:
			n.forget(addr, d.conn)
			if cached && attempt == 0 {
				continue
			}
			return notSent(fmt.Errorf("mesh: open mux stream to %s: %w", addr, err))
		}
		n.muxCalls.Add(1)
		res, err := ms.call(ctx, method, req)
		if errors.Is(err, errMuxDead) && attempt < 3 {
			continue // another stream, or a fresh one
		}
		switch {
		case err != nil && res.notSent:
			return notSent(err)
		case err != nil:
			return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, err), true
		case res.status != statusOK:
			return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, remoteErr(res.status, res.payload)), true
		}
		return res.payload, nil, true
	}
}

// pick returns the mux stream for a call, with a call reserved on it:
// the least busy one, opening another while there are fewer than
// muxStreams and the least busy has muxSpreadAt calls in flight.
func (p *muxPool) pick(ctx context.Context) (*muxStream, error) {
	for {
		p.mu.Lock()
		if p.refused {
			p.mu.Unlock()
			return nil, errMuxRefused
		}
		var best *muxStream
		for _, ms := range p.streams {
			if best == nil || ms.inflight.Load() < best.inflight.Load() {
				best = ms
			}
		}
		all := len(p.streams) >= muxStreams
		if best != nil && (best.inflight.Load() < muxSpreadAt || all) {
			p.mu.Unlock()
			if best.reserve() {
				return best, nil
			}
			if all {
				return nil, errMuxFull
			}
			continue
		}
		o := p.opening
		if o == nil {
			o = &muxOpening{done: make(chan struct{})}
			if !p.n.spawn(func() { p.open(o) }) {
				p.mu.Unlock()
				return nil, ErrClosed
			}
			p.opening = o
		}
		p.mu.Unlock()
		if best != nil {
			// Use what there is while another stream opens.
			if best.reserve() {
				return best, nil
			}
		}
		select {
		case <-o.done:
			if o.err != nil {
				return nil, o.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// open opens a mux stream: header, then the server's status byte, so that
// a peer which does not know the kind (it resets the stream) is found out
// before any call is sent on it.
func (p *muxPool) open(o *muxOpening) {
	ctx, cancel := context.WithTimeout(p.n.ctx, headerTimeout)
	defer cancel()
	ms, err := p.openStream(ctx)
	p.mu.Lock()
	p.opening = nil
	switch {
	case err == nil:
		p.streams = append(p.streams, ms)
		p.n.wg.Add(2) // this goroutine holds one: no race with Close's Wait
		go ms.readLoop()
		go ms.writeLoop()
	case errors.Is(err, errMuxRefused):
		p.refused = true
		p.n.log.Info("mesh: peer does not know mux streams; a stream per call", "peer", peerName(p.c))
	}
	o.err = err
	close(o.done)
	p.mu.Unlock()
}

func (p *muxPool) openStream(ctx context.Context) (*muxStream, error) {
	s, err := p.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { reset(s, codeCanceled) })
	_, err = s.Write([]byte{kindMux, 0})
	var st [1]byte
	if err == nil {
		_, err = io.ReadFull(s, st[:])
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		reset(s, codeNoError)
		var serr *quic.StreamError
		if errors.As(err, &serr) && serr.Remote && serr.ErrorCode == codeProtocol {
			return nil, errMuxRefused // how a node without kindMux answers it (serveStream)
		}
		return nil, err
	}
	if st[0] != statusOK {
		reset(s, codeProtocol)
		return nil, fmt.Errorf("%w: mux stream opened with status %d", ErrProtocol, st[0])
	}
	return &muxStream{
		pool:  p,
		s:     s,
		calls: make(map[uint64]*muxCall),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}, nil
}

// remove drops a failed stream.
func (p *muxPool) remove(ms *muxStream) {
	p.mu.Lock()
	for i, x := range p.streams {
		if x == ms {
			p.streams = append(p.streams[:i], p.streams[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
}

// muxStream is one of the caller's mux streams.
type muxStream struct {
	pool     *muxPool
	s        *quic.Stream
	inflight atomic.Int32 // calls reserved and not yet resolved (reserve, resolve)

	mu    sync.Mutex
	calls map[uint64]*muxCall // guarded by mu; calls not yet resolved, by id
	queue []*muxCall          // guarded by mu; frames to write, in order
	next  uint64              // guarded by mu; the last id given
	err   error               // guarded by mu; set once the stream failed

	wake chan struct{} // a frame was queued
	done chan struct{} // closed when err is set
}

// Call states, guarded by muxStream.mu.
const (
	callQueued  = iota // in the queue; dropped unsent if its caller gives up
	callTaken          // being written
	callWritten        // completely handed to the stream
	callUnsent         // the write that held it failed before its end
)

// muxCall is a call on a mux stream, or a cancel frame for one.
type muxCall struct {
	id        uint64
	method    string
	req       []byte
	cancel    bool // a cancel frame for id, not a call
	state     int  // guarded by muxStream.mu
	cancelled bool // guarded by muxStream.mu; its caller gave up
	reply     chan muxResult
}

type muxResult struct {
	status  byte
	payload []byte
	err     error // the stream failed
	notSent bool  // with err: the request was not completely handed to the stream
}

// reserve counts a call in flight unless the stream has muxMaxCalls.
func (ms *muxStream) reserve() bool {
	for {
		v := ms.inflight.Load()
		if v >= muxMaxCalls {
			return false
		}
		if ms.inflight.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// call sends one call, reserved by pick, and waits for its reply or ctx.
func (ms *muxStream) call(ctx context.Context, method string, req []byte) (muxResult, error) {
	mc := &muxCall{method: method, req: req, reply: make(chan muxResult, 1)}
	ms.mu.Lock()
	if ms.err != nil {
		ms.mu.Unlock()
		ms.inflight.Add(-1)
		return muxResult{notSent: true}, errMuxDead
	}
	ms.next++
	mc.id = ms.next
	ms.calls[mc.id] = mc
	ms.queue = append(ms.queue, mc)
	ms.mu.Unlock()
	ms.kick()

	select {
	case r := <-mc.reply:
		return r, r.err
	case <-ctx.Done():
	}
	ms.mu.Lock()
	if _, waiting := ms.calls[mc.id]; !waiting {
		ms.mu.Unlock()
		r := <-mc.reply // resolved meanwhile
		return r, r.err
	}
	if mc.state == callQueued {
		// Not taken by the writer: it never will be.
		delete(ms.calls, mc.id)
		mc.state = callUnsent
		ms.mu.Unlock()
		ms.inflight.Add(-1)
		return muxResult{notSent: true}, ctx.Err()
	}
	// Sent, or being sent: tell the server, and keep the id in flight
	// until its reply (the server's count of it ends there too).
	mc.cancelled = true
	ms.queue = append(ms.queue, &muxCall{id: mc.id, cancel: true})
	ms.mu.Unlock()
	ms.kick()
	return muxResult{}, ctx.Err()
}

func (ms *muxStream) kick() {
	select {
	case ms.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes queued frames, many in one Write.
func (ms *muxStream) writeLoop() {
	defer ms.pool.n.wg.Done()
	var buf []byte
	var batch []*muxCall
	var ends []int
	for {
		select {
		case <-ms.wake:
		case <-ms.done:
			return
		}
		for {
			buf, batch, ends = buf[:0], batch[:0], ends[:0]
			ms.mu.Lock()
			i := 0
			for ; i < len(ms.queue) && len(buf) < muxBatch; i++ {
				mc := ms.queue[i]
				if !mc.cancel {
					if mc.state != callQueued {
						continue // its caller gave up
					}
					mc.state = callTaken
				}
				buf = appendMuxFrame(buf, mc)
				batch = append(batch, mc)
				ends = append(ends, len(buf))
			}
			rest := copy(ms.queue, ms.queue[i:])
			clear(ms.queue[rest:])
			ms.queue = ms.queue[:rest]
			ms.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			ms.s.SetWriteDeadline(time.Now().Add(muxWriteTimeout))
			nw, err := ms.s.Write(buf)
			ms.mu.Lock()
			for j, mc := range batch {
				if !mc.cancel && mc.state == callTaken {
					if ends[j] <= nw {
						mc.state = callWritten
					} else {
						mc.state = callUnsent
					}
				}
			}
			if err != nil && ms.err == nil {
				ms.failLocked(fmt.Errorf("mux stream: %w", err))
			} else if ms.err != nil {
				ms.resolveLocked() // failed while this batch was written
			}
			failed := ms.err != nil
			ms.mu.Unlock()
			if failed {
				reset(ms.s, codeNoError)
				ms.pool.remove(ms)
				return
			}
			clear(batch)
			if cap(buf) > 4*muxBatch {
				buf = nil
			}
		}
	}
}

// appendMuxFrame appends the frame of a call or a cancel.
func appendMuxFrame(b []byte, mc *muxCall) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0) // length, below
	if mc.cancel {
		b = append(b, muxFrameCancel)
		b = binary.AppendUvarint(b, mc.id)
	} else {
		b = append(b, muxFrameCall)
		b = binary.AppendUvarint(b, mc.id)
		b = append(b, byte(len(mc.method)))
		b = append(b, mc.method...)
		b = append(b, mc.req...)
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// readLoop matches replies to their callers.
func (ms *muxStream) readLoop() {
	defer ms.pool.n.wg.Done()
	for {
		frame, err := readFrameMax(ms.s, MaxFrameSize+muxReplyOverhead)
		var id uint64
		var st byte
		var payload []byte
		if err == nil {
			id, st, payload, err = parseMuxReply(frame)
		}
		if err != nil {
			ms.fail(err)
			return
		}
		ms.mu.Lock()
		mc := ms.calls[id]
		delete(ms.calls, id)
		ms.mu.Unlock()
		if mc == nil {
			continue // a reply to no call: drop it
		}
		ms.inflight.Add(-1)
		mc.reply <- muxResult{status: st, payload: payload}
	}
}

// fail ends the stream: every call on it fails.
func (ms *muxStream) fail(err error) {
	ms.mu.Lock()
	if ms.err == nil {
		ms.failLocked(err)
	}
	ms.mu.Unlock()
	reset(ms.s, codeNoError) // the writer's Write, if any, returns
	ms.pool.remove(ms)
}

func (ms *muxStream) failLocked(err error) {
	ms.err = err
	close(ms.done)
	clear(ms.queue)
	ms.queue = nil
	ms.resolveLocked()
}

// resolveLocked fails every call of a failed stream except those being
// written: the writer resolves them once it knows how much it wrote.
func (ms *muxStream) resolveLocked() {
	for id, mc := range ms.calls {
		if mc.state == callTaken {
			continue
		}
		delete(ms.calls, id)
		ms.inflight.Add(-1)
		mc.reply <- muxResult{err: ms.err, notSent: mc.state != callWritten}
	}
}

// serveMux serves a mux stream: calls in, replies out in any order.
func (n *Node) serveMux(peer string, role Role, s *quic.Stream) {
	s.SetReadDeadline(time.Time{})
	if _, err := s.Write([]byte{statusOK}); err != nil {
		reset(s, codeNoError)
		return
	}
	ctx, cancel := n.streamContext(s)
	defer cancel()
	m := &muxServer{n: n, s: s, calls: make(map[uint64]context.CancelFunc)}
	err := m.readLoop(ctx, peer, role)
	if err == io.EOF {
		// The caller closed its side: answer what is in flight, then close.
		m.handlers.Wait() // the goroutine writing replies, if any, is one of them
		s.Close()
		return
	}
	if err != nil {
		n.log.Warn("mesh: mux stream reset", "peer", peer, "err", err)
	}
	reset(s, codeProtocol)
	cancel()
}

// muxServer is the server's side of one mux stream.
type muxServer struct {
	n        *Node
	s        *quic.Stream
	handlers sync.WaitGroup

	mu    sync.Mutex
	calls map[uint64]context.CancelFunc // guarded by mu; handlers running, by call id

	wmu       sync.Mutex
	queue     [][]byte // guarded by wmu; reply bytes to write, in order
	tailOwned bool     // guarded by wmu; the last of queue is reply's own buffer, for more small replies
	writing   bool     // guarded by wmu; a goroutine is writing queue (reply)
	broken    bool     // guarded by wmu; a write failed: the stream is reset
	spare     []byte   // guarded by wmu; a written buffer, for the next small reply
	spareQ    [][]byte // guarded by wmu; a written queue, for the next
}

// muxCopyMax is the largest reply payload the server copies into its
// write queue; a larger one is queued as it is.
const muxCopyMax = 16 << 10

// readLoop reads call and cancel frames until the stream ends (io.EOF:
// the caller closed it) or breaks the protocol (an error: the stream is
// reset).
func (m *muxServer) readLoop(ctx context.Context, peer string, role Role) error {
	for {
		frame, err := readFrameMax(m.s, muxMaxRequest+muxCallOverhead)
		if err != nil {
			switch {
			case err == io.EOF:
				return io.EOF
			case errors.Is(err, ErrFrameTooLarge), errors.Is(err, io.ErrUnexpectedEOF):
				return err
			}
			return nil // reset, or its connection lost: nothing to say
		}
		typ, id, method, req, err := parseMuxFrame(frame)
		if err != nil {
			return err
		}
		if typ == muxFrameCancel {
			m.mu.Lock()
			if cancel := m.calls[id]; cancel != nil {
				cancel()
			} // else: finished already, or never was
			m.mu.Unlock()
			continue
		}
		if err := m.start(ctx, peer, role, id, string(method), req); err != nil {
			return err
		}
	}
}

// parseMuxFrame parses a caller's frame (appendMuxFrame): a call (its
// method and request alias frame) or a cancel.
func parseMuxFrame(frame []byte) (typ byte, id uint64, method, req []byte, err error) {
	if len(frame) == 0 {
		return 0, 0, nil, nil, fmt.Errorf("%w: empty mux frame", ErrProtocol)
	}
	typ = frame[0]
	if typ != muxFrameCall && typ != muxFrameCancel {
		return 0, 0, nil, nil, fmt.Errorf("%w: mux frame type %d", ErrProtocol, typ)
	}
	id, k := binary.Uvarint(frame[1:])
	if k <= 0 {
		return 0, 0, nil, nil, fmt.Errorf("%w: malformed mux call id", ErrProtocol)
	}
	body := frame[1+k:]
	if typ == muxFrameCancel {
		if len(body) != 0 {
			return 0, 0, nil, nil, fmt.Errorf("%w: malformed mux cancel", ErrProtocol)
		}
		return typ, id, nil, nil, nil
	}
	if len(body) == 0 || len(body) < 1+int(body[0]) {
		return 0, 0, nil, nil, fmt.Errorf("%w: malformed mux call", ErrProtocol)
	}
	return typ, id, body[1 : 1+int(body[0])], body[1+int(body[0]):], nil
}

// parseMuxReply parses a server's reply frame: id, status, payload
// (aliasing frame).
func parseMuxReply(frame []byte) (id uint64, st byte, payload []byte, err error) {
	id, k := binary.Uvarint(frame)
	if k <= 0 || len(frame) <= k {
		return 0, 0, nil, fmt.Errorf("%w: malformed mux reply", ErrProtocol)
	}
	return id, frame[k], frame[k+1:], nil
}

// start checks a call as serveRPC does and runs its handler on its own
// goroutine.
func (m *muxServer) start(ctx context.Context, peer string, role Role, id uint64, method string, req []byte) error {
	m.n.mu.Lock()
	h, roles := m.n.rpcs[method], m.n.roles[method]
	m.n.mu.Unlock()
	m.mu.Lock()
	_, dup := m.calls[id]
	full := len(m.calls) >= muxMaxCalls
	m.mu.Unlock()
	switch {
	case dup:
		return fmt.Errorf("%w: mux call id %d in flight twice", ErrProtocol, id)
	case full:
		return fmt.Errorf("%w: over %d mux calls in flight", ErrProtocol, muxMaxCalls)
	case h == nil:
		m.reply(id, statusUnknown, []byte(method))
		return nil
	case !m.n.permit(peer, role, method, roles):
		m.reply(id, statusForbidden, fmt.Appendf(nil, "role %q may not call %q", role, method))
		return nil
	}
	hctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.calls[id] = cancel
	m.mu.Unlock()
	m.handlers.Add(1)
	m.n.wg.Add(1) // serveStream holds one: no race with Close's Wait
	// On a pooled worker, whose stack a handler has grown already.
	gopool.Go(func() {
		defer m.n.wg.Done()
		defer m.handlers.Done()
		reply, err := callRPC(hctx, h, peer, role, req)
		cancel()
		m.mu.Lock()
		delete(m.calls, id) // before the reply: the caller's count of it ends after ours
		m.mu.Unlock()
		switch {
		case err != nil:
			m.reply(id, statusError, []byte(err.Error()))
		case len(reply) > MaxFrameSize:
			m.reply(id, statusTooLarge, fmt.Appendf(nil, "reply of %d bytes", len(reply)))
		default:
			m.reply(id, statusOK, reply)
		}
	})
	return nil
}

// reply queues one reply frame and, unless a goroutine is writing
// already, writes the queue until it is empty: one writer at a time, and
// replies that finish while it writes go out together in its next Write.
// A caller that does not take a write within replyTimeout has the stream
// reset.
func (m *muxServer) reply(id uint64, st byte, payload []byte) {
	m.wmu.Lock()
	if m.broken {
		m.wmu.Unlock()
		return
	}
	b := m.spare
	if m.tailOwned {
		b = m.queue[len(m.queue)-1]
		m.queue = m.queue[:len(m.queue)-1]
	} else {
		m.spare = nil
	}
	if m.queue == nil {
		m.queue, m.spareQ = m.spareQ, nil
	}
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	b = binary.AppendUvarint(b, id)
	b = append(b, st)
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4+len(payload)))
	if len(payload) <= muxCopyMax {
		m.queue = append(m.queue, append(b, payload...))
		m.tailOwned = true
	} else {
		m.queue = append(m.queue, b, payload) // not copied
		m.tailOwned = false
	}
	if m.writing {
		m.wmu.Unlock()
		return
	}
	m.writing = true
	for len(m.queue) > 0 {
		q, owned := m.queue, m.tailOwned
		m.queue, m.tailOwned = nil, false
		m.wmu.Unlock()
		var err error
		for _, seg := range q {
			m.s.SetWriteDeadline(time.Now().Add(replyTimeout))
			if _, err = m.s.Write(seg); err != nil {
				break
			}
		}
		m.wmu.Lock()
		if err != nil {
			m.broken = true
			m.queue = nil
			reset(m.s, codeNoError) // the stream context ends: so do the handlers
			break
		}
		// Keep the buffers of a small batch for the next one.
		if last := q[len(q)-1]; owned && m.spare == nil && cap(last) <= 64<<10 {
			m.spare = last[:0]
		}
		if m.spareQ == nil && cap(q) <= 256 {
			clear(q)
			m.spareQ = q[:0]
		}
	}
	m.writing = false
	m.wmu.Unlock()
}
