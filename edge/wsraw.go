package edge

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/relaymesh/relaymesh/internal/gopool"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// rawWS is a WebSocket the edge frames itself (wsframe.go), read by the
// epoll poller (wsepoll_linux.go) instead of a goroutine: an idle connection
// parks no goroutine and holds no read buffer. When its socket is readable,
// a pooled goroutine (readable, internal/gopool) reads what is there into a
// pooled buffer, handles the complete frames in order, keeps the bytes of an
// incomplete frame (partial), and re-arms the socket, which the poller
// watches one-shot: one pass at a time per connection, so frames stay
// handled one at a time and in order, as with a reader goroutine.
//
// Writes go to the socket under wmu (the conn's writer bursts, pongs and
// close frames from the reader, the closer), through a corkConn.
//
// A socket that offers no file descriptor (syscall.Conn) is read by a
// goroutine instead (readBlocking), with the same framing.
type rawWS struct {
	c     *conn
	codec lcpb.Codec
	nc    net.Conn        // the hijacked socket; closed through it (countedConn)
	sock  *corkConn       // writes: the socket under nc
	rc    syscall.RawConn // nil: read by readBlocking
	onEnd func()          // runs once, on a goroutine of its own, after the reader ended

	// Owned by the reader pass (one at a time).
	p       wsParser
	partial []byte // the bytes of an incomplete frame; nil when none
	armed   bool   // added to the poller
	fed     bool   // a pass read data: later passes take readBufPool's buffers

	token uint64 // the poller's key; guarded by the poller's mu

	wmu       sync.Mutex // serializes frame writes
	closeSent bool       // guarded by wmu

	smu        sync.Mutex
	peerClosed bool          // guarded by smu: a close frame came, or the reader ended
	closeWait  chan struct{} // guarded by smu: closed on peerClosed while close waits
	sockClosed bool          // guarded by smu

	ended atomic.Bool // the reader has ended (onEnd started)
}

// Timeouts of the close handshake, as coder/websocket's.
const (
	wsCloseWriteTimeout = 5 * time.Second
	wsCloseWaitTimeout  = 5 * time.Second
)

// readBufSize is the pooled buffer a reader pass reads into (and holds
// while it handles what it read). A frame bigger than what one read
// brings is collected in partial.
const readBufSize = 8 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// firstReadBufSize is the buffer of a connection's passes until one read
// data: the pass that brings the session/open, a few hundred bytes, and
// holds its buffer until the core answered the open. In a reconnect storm
// thousands of opens wait on the core at once; with readBufSize buffers
// they took ~75 MB of fresh memory on the edge in the first seconds of
// 15,000 reconnects. A bigger first frame reads on through partial.
const firstReadBufSize = 1 << 10

var firstReadBufPool = sync.Pool{New: func() any { b := make([]byte, firstReadBufSize); return &b }}

// errWouldBlock: the socket has nothing more to read now.
var errWouldBlock = errors.New("edge: would block")

// readable is one reader pass: the bytes carried over, then what the
// socket holds, then the socket is armed again (or the reader ends).
func (w *rawWS) readable() {
	if w.partial != nil && w.feed(nil) {
		return
	}
	pool := &readBufPool
	if !w.fed {
		pool = &firstReadBufPool
	}
	bp := pool.Get().(*[]byte)
	ended := w.drain(*bp)
	pool.Put(bp)
	if ended {
		return
	}
	if err := w.arm(); err != nil {
		w.endRead()
	}
}

// drain reads and handles until the socket would block; it reports
// whether the reader ended.
func (w *rawWS) drain(buf []byte) bool {
	for {
		n, err := w.readSome(buf)
		if n > 0 {
			w.fed = true
			if w.feed(buf[:n]) {
				return true
			}
		}
		if err == errWouldBlock || (err == nil && n < len(buf)) {
			// A short read took what there was: the socket is re-armed
			// level-triggered, so anything that came since (or its end)
			// starts the next pass; no read to find it empty.
			return false
		}
		if err != nil {
			w.endRead()
			return true
		}
	}
}

// readBlocking reads with a goroutine (a socket without a descriptor).
func (w *rawWS) readBlocking() {
	if w.partial != nil && w.feed(nil) {
		return
	}
	buf := make([]byte, 1<<10)
	for {
		n, err := w.nc.Read(buf)
		if n > 0 && w.feed(buf[:n]) {
			return
		}
		if err != nil {
			w.endRead()
			return
		}
	}
}

// feed handles the complete frames in the carried bytes plus b and keeps
// the rest; it reports whether the reader ended.
func (w *rawWS) feed(b []byte) bool {
	in := b
	carried := w.partial != nil
	if carried {
		w.partial = append(w.partial, b...)
		in = w.partial
	}
	used := false
	// The data messages of this read, handled together (inboundRun:
	// a session's sends into one conversation go as one request); any
	// other event handles them first, keeping the order.
	var runBuf [4]inFrame
	run := runBuf[:0]
	for {
		ev, n := w.p.next(in)
		if ev.kind == wsMessage {
			in, used = in[n:], true
			run = append(run, inFrame{text: ev.text, data: ev.payload})
			continue
		}
		if len(run) > 0 {
			w.c.inboundRun(run)
			run = run[:0]
		}
		if ev.kind == wsNeedMore {
			switch {
			case len(in) == 0:
				w.partial = nil
			case carried && !used:
				// w.partial is in; keep it
			default:
				// Only what came: a header announcing a big frame does
				// not get its size allocated before the bytes arrive.
				w.partial = bytes.Clone(in)
			}
			return false
		}
		in, used = in[n:], true
		if w.act(ev) {
			w.partial = nil
			return true
		}
	}
}

// act does what a parsed event asks; it reports whether the reader ended.
func (w *rawWS) act(ev wsEvent) bool {
	c := w.c
	switch ev.kind {
	case wsMessage:
		c.inbound(ev.text, ev.payload)
	case wsPing:
		c.touch()
		_ = w.writeMsg(opPong, ev.payload, time.Now().Add(wsCloseWriteTimeout))
	case wsPong:
		c.touch()
	case wsClose:
		// The peer closes: the same code and reason back, unless we sent
		// our close first (then this is its answer), and the socket closes.
		w.notePeerClose()
		_ = w.writeMsg(opClose, closePayload(ev.code, ev.reason), time.Now().Add(wsCloseWriteTimeout))
		w.closeSock()
		return true
	case wsError:
		c.srv.log.Debug("edge: websocket read", "err", ev.err)
		if ev.code != 0 {
			_ = w.writeMsg(opClose, closePayload(ev.code, ev.reason), time.Now().Add(wsCloseWriteTimeout))
		}
		w.endRead()
		return true
	}
	return false
}

// endRead ends the reader once: close waits no longer, and onEnd runs.
func (w *rawWS) endRead() {
	if !w.ended.CompareAndSwap(false, true) {
		return
	}
	w.notePeerClose()
	go w.onEnd()
}

func (w *rawWS) notePeerClose() {
	w.smu.Lock()
	if !w.peerClosed {
		w.peerClosed = true
		if w.closeWait != nil {
			close(w.closeWait)
		}
	}
	w.smu.Unlock()
}

// closeSock closes the socket once (leaving the poller first); the reader
// ends with it.
func (w *rawWS) closeSock() {
	w.smu.Lock()
	done := w.sockClosed
	w.sockClosed = true
	w.smu.Unlock()
	if !done {
		w.unregister()
		_ = w.nc.Close()
	}
	w.endRead()
}

func (w *rawWS) isSockClosed() bool {
	w.smu.Lock()
	defer w.smu.Unlock()
	return w.sockClosed
}

// writeMsg writes one frame, within deadline when it is set; after a close
// frame nothing more is written.
func (w *rawWS) writeMsg(op byte, p []byte, deadline time.Time) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closeSent {
		return net.ErrClosed
	}
	if op == opClose {
		w.closeSent = true
	}
	var hb [10]byte
	_, err := w.sock.writeFrame(appendFrameHeader(hb[:0], op, len(p)), p, deadline)
	return err
}

// transport

func (w *rawWS) readFrame() ([]byte, bool, error) {
	return nil, false, errors.New("edge: a raw WebSocket is read by its poller")
}

func (w *rawWS) writeFrame(ctx context.Context, f outFrame) (int, error) {
	op, b := byte(opBinary), f.b
	if w.codec.Base64 {
		op = opText
		b = make([]byte, base64.StdEncoding.EncodedLen(len(f.b)))
		base64.StdEncoding.Encode(b, f.b)
	}
	deadline, _ := ctx.Deadline()
	if err := w.writeMsg(op, b, deadline); err != nil {
		return 0, err
	}
	return len(b), nil
}

// close runs the close handshake: our close frame (within 5 s), the peer's
// (waited for 5 s), then the socket closes.
func (w *rawWS) close(code websocket.StatusCode, reason string) {
	if w.writeMsg(opClose, closePayload(code, reason), time.Now().Add(wsCloseWriteTimeout)) == nil {
		w.smu.Lock()
		var ch chan struct{}
		if !w.peerClosed {
			ch = make(chan struct{})
			w.closeWait = ch
		}
		w.smu.Unlock()
		if ch != nil {
			t := time.NewTimer(wsCloseWaitTimeout)
			select {
			case <-ch:
			case <-t.C:
			}
			t.Stop()
		}
	}
	w.closeSock()
}

func (w *rawWS) closeNow()       { w.closeSock() }
func (w *rawWS) kind() Transport { return TransportWebSocket }

func (w *rawWS) cork(timeout time.Duration) bool { w.sock.cork(timeout); return true }
func (w *rawWS) uncork() error                   { return w.sock.uncork() }

// The pool writer's (writers.go): a socket read by the poller is written
// by the pool too, with non-blocking writes on its descriptor.
func (w *rawWS) pooled() bool                   { return w.rc != nil }
func (w *rawWS) corkGrow(timeout time.Duration) { w.sock.corkGrow(timeout) }
func (w *rawWS) buffered() int                  { return w.sock.buffered() }
func (w *rawWS) flushNB() (bool, error)         { return w.sock.flushWith(w.writeSome) }

// inbound handles one data message from the reader; after the connection
// ended (a close under way) messages are dropped, as the library drops them
// during its close handshake.
func (c *conn) inbound(text bool, data []byte) {
	if c.ctx.Err() != nil {
		return
	}
	c.countIn(len(data))
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	c.handleFrame(c.ctx, text, data)
}

// unwrapConn returns the socket under the edge's own wrappers.
func unwrapConn(nc net.Conn) net.Conn {
	for {
		cc, ok := nc.(*countedConn)
		if !ok {
			return nc
		}
		nc = cc.Conn
	}
}

// upgradeWriteTimeout bounds the write of a 101 answer (a few hundred
// bytes, taken by any socket buffer at once).
const upgradeWriteTimeout = 10 * time.Second

// writeUpgrade writes the 101 answer of a WebSocket upgrade on a hijacked
// connection (RFC 6455 §4.2.2), with the subprotocol when sp is not empty.
func writeUpgrade(nc net.Conn, accept, sp string) error {
	b := make([]byte, 0, 192)
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = append(b, accept...)
	if sp != "" {
		b = append(b, "\r\nSec-WebSocket-Protocol: "...)
		b = append(b, sp...)
	}
	b = append(b, "\r\n\r\n"...)
	if err := nc.SetWriteDeadline(time.Now().Add(upgradeWriteTimeout)); err != nil {
		return err
	}
	if _, err := nc.Write(b); err != nil {
		return fmt.Errorf("edge: write the upgrade's answer: %w", err)
	}
	return nc.SetWriteDeadline(time.Time{})
}

// serveRawWS is serveWS's upgrade for a raw WebSocket. It reports whether
// the connection started (else serveWS releases what it took).
func (s *Server) serveRawWS(rw http.ResponseWriter, r *http.Request, codec lcpb.Codec, echo bool, release func()) bool {
	if code, err := verifyUpgrade(rw, r); err != nil {
		http.Error(rw, err.Error(), code)
		s.log.Debug("edge: accept failed", "err", err)
		return false
	}
	sp := ""
	if echo {
		sp = offeredSubprotocol(r, codec.Name)
	}
	// Hijacked before anything is written, the 101 is the edge's own
	// write: net/http's response writer would format it through its header
	// machinery (and grow the goroutine's stack for it) on every upgrade.
	nc, brw, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		http.Error(rw, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		s.log.Debug("edge: accept failed", "err", err)
		return false
	}
	if err := writeUpgrade(nc, secWebSocketAccept(r.Header.Get("Sec-WebSocket-Key")), sp); err != nil {
		nc.Close()
		s.log.Debug("edge: accept failed", "err", err)
		return false
	}
	w := &rawWS{codec: codec, nc: nc, onEnd: func() {}}
	w.p.limit = s.limits.MaxFrameBytes
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		w.partial = bytes.Clone(b)
	}
	under := unwrapConn(nc)
	w.sock = &corkConn{Conn: under, writes: &s.metrics.SocketWrites}
	if sc, ok := under.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.rc = rc
		}
	}
	c := newConn(s, codec, w)
	w.c = c
	c.remote = r.RemoteAddr
	if ip := s.clientIP(r); ip.IsValid() {
		c.ip = ip.String()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.cancel()
		_ = w.writeMsg(opClose, closePayload(websocket.StatusGoingAway, "edge shutting down"), time.Now().Add(wsCloseWriteTimeout))
		w.closeSock()
		return false
	}
	s.conns[c.id] = c
	s.mu.Unlock()
	s.openConn(c)
	w.onEnd = func() {
		c.stop()
		c.teardown()
		s.connEnded(c)
		release()
	}
	c.start()
	if w.rc != nil {
		gopool.Go(w.readable)
	} else {
		go w.readBlocking()
	}
	return true
}
