package edge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/internal/gopool"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// WebSocket close codes the edge sends.
const (
	// CloseIdle: no inbound frame for Limits.IdleTimeout (LeanCloud READ_TIMEOUT).
	CloseIdle websocket.StatusCode = 4107
	// CloseSlowConsumer: the outbound queue overflowed with HIGH frames; the
	// client reconnects and resyncs from history (1013 Try Again Later).
	CloseSlowConsumer = websocket.StatusTryAgainLater
	// CloseShutdown: the edge is shutting down (after goaway).
	CloseShutdown = websocket.StatusGoingAway
)

// transport is a client connection's socket as a conn uses it: a WebSocket
// (wsTransport over coder/websocket, rawWS framed by the edge: wsraw.go)
// or a WebTransport session's stream (wtTransport, wt.go). Only the reader
// goroutine calls readFrame (a rawWS has none: its poller reads it); only
// the writer calls writeFrame, close and closeNow (a rawWS's reader also
// writes pongs and close frames, under the rawWS's own write lock).
type transport interface {
	// readFrame blocks for the next inbound frame. text marks a WebSocket
	// text frame (base64). An error ends the connection; a *closeError
	// says which close code the edge answers it with.
	readFrame() (frame []byte, text bool, err error)
	// writeFrame sends one encoded GenericCommand within ctx and returns
	// the bytes it put on the wire.
	writeFrame(ctx context.Context, f outFrame) (int, error)
	// close tells the client code and reason, bounded in time, and ends
	// the connection; closeNow ends it without telling.
	close(code websocket.StatusCode, reason string)
	closeNow()
	// kind says which transport this is, for the per-transport metrics.
	kind() Transport
}

// closeError is a read error the edge answers with a close code (a
// WebTransport frame over Limits.MaxFrameBytes, a stream cut mid-frame).
type closeError struct {
	code   websocket.StatusCode
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("edge: close %d: %s", e.code, e.reason) }

// wsTransport is a WebSocket: one GenericCommand per message, binary for
// protobuf2, base64 text for proto2base64.
type wsTransport struct {
	ws    *websocket.Conn
	codec lcpb.Codec
	sock  *corkConn // the socket under ws (nil in tests that build one without it)
}

// corker is a transport whose writes can be collected over a burst and
// written at once (WebSocket: corkConn). WebTransport needs none: quic-go
// packs a stream's writes into packets itself.
type corker interface {
	cork(timeout time.Duration) bool
	uncork() error
}

func (t *wsTransport) cork(timeout time.Duration) bool {
	if t.sock == nil {
		return false
	}
	t.sock.cork(timeout)
	return true
}

func (t *wsTransport) uncork() error {
	if t.sock == nil {
		return nil
	}
	return t.sock.uncork()
}

func (t *wsTransport) readFrame() ([]byte, bool, error) {
	// Not c.ctx: cancelling a read context makes the library drop the
	// socket without a close frame. The writer closes ws to unblock us.
	typ, data, err := t.ws.Read(context.Background())
	return data, typ == websocket.MessageText, err
}

func (t *wsTransport) writeFrame(ctx context.Context, f outFrame) (int, error) {
	typ, b := websocket.MessageBinary, f.b
	if t.codec.Base64 {
		typ = websocket.MessageText
		b = make([]byte, base64.StdEncoding.EncodedLen(len(f.b)))
		base64.StdEncoding.Encode(b, f.b)
	}
	if err := t.ws.Write(ctx, typ, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// close runs the close handshake (bounded by the library's 5 s timeouts).
func (t *wsTransport) close(code websocket.StatusCode, reason string) { _ = t.ws.Close(code, reason) }
func (t *wsTransport) closeNow()                                      { _ = t.ws.CloseNow() }
func (t *wsTransport) kind() Transport                                { return TransportWebSocket }

// conn is one client connection: a WebSocket or a WebTransport session.
// Its reader is readLoop on a goroutine of its own (it also handles every
// frame and calls the Backend synchronously, so replies keep request
// order), or for a raw WebSocket the poller's reader passes (wsraw.go,
// which call start and stop themselves instead of run). Its writer runs
// only while frames are queued, under wmu (the only code besides closer
// that writes to t or closes it): for a raw WebSocket a turn of the
// server's writer pool (writers.go), else writeBurst on a goroutine of its
// own; an idle connection parks no writer, and its idle timeout is a timer. A
// WebTransport session has another goroutine, its datagram reader (wt.go),
// which handles frames under handleMu too.
type conn struct {
	srv    *Server
	id     uint64
	codec  lcpb.Codec
	t      transport // nil when frames are handled without a socket (fuzz)
	remote string
	ip     string // the client's address (Server.clientIP), for hooks' sourceIP
	q      *outQueue

	ctx    context.Context
	cancel context.CancelFunc

	lastRead atomic.Int64 // unix nanos of the last inbound frame, ping or pong

	// The writer runs only while there is something to write (writeBurst,
	// started by kick); an idle connection keeps no writer goroutine and
	// its idle timeout is a timer, not a parked goroutine.
	writing   atomic.Bool // a writeBurst goroutine runs or is starting
	wmu       sync.Mutex  // held while writing to t or closing it
	wclosed   bool        // guarded by wmu: t is closed; bursts stop
	idleTimer *time.Timer
	closeDone chan struct{} // closed once the closer has run (ctx ended)

	// Login deadline (guard.go): loginTimer closes the connection with
	// 4108 unless loggedIn is set first.
	loggedIn   atomic.Bool
	loginTimer *time.Timer // set before the reader starts

	// handleMu serializes frame handling: the reader's frames and a
	// WebTransport session's datagrams. It guards the buckets below and
	// every session's (owned by the reader when there are no datagrams).
	handleMu sync.Mutex
	// guarded by handleMu: per-connection rates (guard.go)
	sessionOps, echoes bucket
	// Fire-and-forget acks and reads in flight (batch.go): the wait group
	// and its bound, made at the first; guarded by handleMu.
	async    sync.WaitGroup
	asyncSem chan struct{}

	mu          sync.Mutex
	sessions    []*session           // guarded by mu; bound sessions, oldest first
	closeCode   websocket.StatusCode // guarded by mu; set by fail
	closeReason string               // guarded by mu
	// dropCode and dropMsg: the LeanCloud code the edge dropped the
	// connection with (4107 idle), told to the core on CLOSE for
	// _clientOffline's errorCode; guarded by mu.
	dropCode int32
	dropMsg  string
}

// session is one IMClient logged in on a connection.
type session struct {
	c                            *conn
	appID, peerID, tag, deviceID string
	configBitmap                 int64
	// Session-token facts (auth.go): the login the session chain began
	// with and the client's token generation from the core's OPEN reply.
	login time.Time
	gen   uint64
	// chain is a random id drawn at that login and kept by every reopen
	// of the chain (its tokens carry it): the core tells the client's own
	// stale session from another device's by it (relay.SameChain).
	chain uint64

	// guarded by c.handleMu (the reader goroutine's)
	sends, logs, ops bucket

	// guarded by c.mu
	bound bool
	ready bool       // session/opened queued; until then deliveries are held
	held  []outFrame // deliveries that arrived while opening
	// heldEnd counts the held frames up to and including one that ended
	// the session (deliver with end), which markReady writes even though the
	// session is gone by then: the client already has its opened reply.
	heldEnd int
}

func newConn(s *Server, codec lcpb.Codec, t transport) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:    s,
		id:     s.nextID.Add(1),
		codec:  codec,
		t:      t,
		q:      newOutQueue(s.limits.QueueLen),
		ctx:    ctx,
		cancel: cancel,

		sessionOps: newBucket(s.limits.SessionOpsPerMinute, s.now()),
		echoes:     newBucket(s.limits.EchoPerMinute, s.now()),
	}
	c.touch()
	return c
}

func (c *conn) touch() { c.lastRead.Store(time.Now().UnixNano()) }

// run owns the connection until it ends, then unbinds its sessions and tells
// the backend (CLOSE) about each.
func (c *conn) run() {
	c.start()
	var wg sync.WaitGroup
	if d, ok := c.t.(datagrammer); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.datagramLoop(d) // wt.go; ends with c.ctx
		}()
	}
	c.readLoop()
	c.stop()
	wg.Wait()
	c.teardown()
}

// start arms the closer and the idle timer and writes anything queued so
// far; the reader starts after it (readLoop, or a raw WebSocket's poller).
func (c *conn) start() {
	c.closeDone = make(chan struct{})
	context.AfterFunc(c.ctx, c.closer)
	c.idleTimer = time.AfterFunc(c.srv.limits.IdleTimeout, c.checkIdle)
	c.kick() // anything queued before run
}

// stop ends the connection once its reader has ended and waits for the
// closer; teardown follows.
func (c *conn) stop() {
	c.cancel()
	if c.loginTimer != nil {
		c.loginTimer.Stop()
	}
	c.idleTimer.Stop()
	<-c.closeDone
}

func (c *conn) readLoop() {
	for c.ctx.Err() == nil {
		data, text, err := c.t.readFrame()
		if err != nil {
			var ce *closeError
			if errors.As(err, &ce) {
				c.fail(ce.code, ce.reason)
			}
			return
		}
		c.countIn(len(data))
		if more, ok := c.t.(bufferedReader); ok {
			// What the read buffer (bounded) holds whole comes along.
			if b, ok := more.bufferedFrame(); ok {
				frames := []inFrame{{text: text, data: data}, {data: b}}
				c.countIn(len(b))
				for b, ok := more.bufferedFrame(); ok; b, ok = more.bufferedFrame() {
					c.countIn(len(b))
					frames = append(frames, inFrame{data: b})
				}
				c.offStack(func() { c.handleFrames(c.ctx, frames) })
				continue
			}
		}
		c.offStack(func() { c.handleFrame(c.ctx, text, data) })
	}
}

// bufferedReader is a transport that can tell a frame it already holds
// (WebTransport's stream): the frames one read brought are handled
// together (batch.go).
type bufferedReader interface {
	bufferedFrame() ([]byte, bool)
}

// countIn notes an inbound data frame of n bytes.
func (c *conn) countIn(n int) {
	c.touch()
	c.srv.metrics.FramesIn.Add(1)
	c.srv.metrics.BytesIn.Add(int64(n))
	c.srv.metrics.transport(c.t.kind()).FramesIn.Add(1)
}

// offStack runs handle (handleFrame, handleFrames) under handleMu on a
// short-lived goroutine and waits for it, so frames stay handled one at a
// time and in order. Handling a frame (protobuf, the Backend call over
// QUIC) grows a stack to 8 KiB or more, and a parked goroutine's stack only
// shrinks while it uses under a quarter of it: run on the reader, that
// growth would stay with every idle connection. The reader itself only
// ever needs the read path's stack.
func (c *conn) offStack(handle func()) {
	done := make(chan struct{})
	gopool.Go(func() {
		defer close(done)
		c.handleMu.Lock()
		defer c.handleMu.Unlock()
		handle()
	})
	<-done
}

// fail ends the connection with a close code; the writer sends it.
func (c *conn) fail(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeReason = code, reason
	}
	c.mu.Unlock()
	c.cancel()
}

// kick starts a writer burst unless one is running: a pool turn for a
// raw WebSocket (writers.go), else a goroutine.
func (c *conn) kick() { c.kickLane(laneFirst) }

// kickLane is kick with the writer pool's lane for the turn: laneFan
// for a copy of a delivery to many sessions.
func (c *conn) kickLane(ln int) {
	if c.t == nil {
		return // frames handled without a socket (fuzz): nothing writes
	}
	if c.writing.CompareAndSwap(false, true) {
		if nb, ok := c.t.(nbWriter); ok && nb.pooled() {
			c.srv.writers.schedule(c, ln) // writers.go
			return
		}
		go c.writeBurst()
	}
}

// writeBurst writes what is queued, HIGH first, and returns when the queue
// is empty; the next enqueue's kick starts another. It also acts on the
// queue's end states: overflow (goaway, then the slow-consumer close) and
// drained (after closeQueue: 1001). Bursts are short-lived goroutines, so
// the write path's stack growth is not kept by an idle connection.
func (c *conn) writeBurst() {
	for {
		c.wmu.Lock()
		if !c.wclosed {
			c.drainLocked()
		}
		closed := c.wclosed
		c.wmu.Unlock()
		c.writing.Store(false)
		// A push between the last Pop and the Store saw a writer running
		// and did not start one: look again.
		if closed || !c.q.Ready() || !c.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// drainLocked pops and writes until the queue is empty or ends; c.wmu held.
func (c *conn) drainLocked() {
	// A WebSocket with frames queued behind the first (a backlog: a
	// login's sync, a slow reader, a busy pair) is corked for the burst:
	// its frames collect in one buffer and go out in one system call (or
	// one per corkMax), and no frame needs a timer of its own: the socket
	// writes carry the deadline. A lone frame (a chatroom member's copy) is
	// written as it is.
	ck, _ := c.t.(corker)
	corked := false
	for n := 0; ; n++ {
		f, _, st := c.q.Pop()
		if st == pq.PopItem {
			if n == 0 && ck != nil && c.q.Len() > 0 {
				corked = ck.cork(c.srv.limits.WriteTimeout)
			}
			var err error
			if corked {
				err = c.writeCtx(context.Background(), f)
			} else {
				err = c.write(f)
			}
			if err != nil {
				c.abortLocked()
				return
			}
			continue
		}
		if corked {
			if err := ck.uncork(); err != nil {
				c.abortLocked()
				return
			}
		}
		switch st {
		case pq.PopDrained:
			c.closeWithLocked(CloseShutdown, "edge shutting down")
		case pq.PopOverflow:
			c.srv.metrics.OverflowCloses.Add(1)
			for _, b := range c.goAwayFrames() {
				if c.write(outFrame{b: b, p: PriorityHigh}) != nil {
					break
				}
			}
			c.closeWithLocked(CloseSlowConsumer, "slow consumer; reconnect and resync")
		}
		return
	}
}

// closer closes t when the connection's context ends (the reader ended, a
// fail, an idle timeout), with the close code fail recorded, unless a
// burst closed it already.
func (c *conn) closer() {
	c.wmu.Lock()
	if !c.wclosed {
		c.wclosed = true
		c.mu.Lock()
		code, reason := c.closeCode, c.closeReason
		c.mu.Unlock()
		if code != 0 {
			// A close the edge or client chose: what was queued before it
			// (a reply, a session/closed) goes out first, within one
			// WriteTimeout.
			c.flushLocked()
			c.t.close(code, reason)
		} else {
			c.t.closeNow()
		}
	}
	c.wmu.Unlock()
	close(c.closeDone)
}

// flushLocked writes the queued frames within one WriteTimeout, ignoring
// the queue's end states; c.wmu held.
func (c *conn) flushLocked() {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.limits.WriteTimeout)
	defer cancel()
	for ctx.Err() == nil {
		f, _, st := c.q.Pop()
		if st != pq.PopItem || c.writeCtx(ctx, f) != nil {
			return
		}
	}
}

// checkIdle closes the connection with 4107 when nothing was read for the
// idle timeout, else sets its timer for the rest.
func (c *conn) checkIdle() {
	if c.ctx.Err() != nil {
		return
	}
	idle := c.srv.limits.IdleTimeout
	el := time.Since(time.Unix(0, c.lastRead.Load()))
	if el >= idle {
		c.srv.metrics.IdleCloses.Add(1)
		c.noteDrop(int32(CloseIdle), "READ_TIMEOUT")
		c.fail(CloseIdle, "idle timeout")
		return
	}
	c.idleTimer.Reset(idle - el)
}

// abortLocked drops the connection after a failed write; c.wmu held.
func (c *conn) abortLocked() {
	c.wclosed = true
	c.t.closeNow()
	c.cancel()
}

// closeWithLocked tells the client code and reason (bounded in time) and
// then cancels the connection context so the reader exits; c.wmu held.
func (c *conn) closeWithLocked(code websocket.StatusCode, reason string) {
	c.wclosed = true
	c.t.close(code, reason)
	c.cancel()
}

func (c *conn) write(f outFrame) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.limits.WriteTimeout)
	defer cancel()
	return c.writeCtx(ctx, f)
}

// writeCtx writes f within ctx and counts it.
func (c *conn) writeCtx(ctx context.Context, f outFrame) error {
	n, err := c.t.writeFrame(ctx, f)
	if err != nil {
		return err
	}
	c.srv.metrics.FramesOut.Add(1)
	c.srv.metrics.BytesOut.Add(int64(n))
	c.srv.metrics.transport(c.t.kind()).FramesOut.Add(1)
	if f.at != 0 {
		c.srv.metrics.observeDelivery(f.p, f.at, time.Now())
	}
	return nil
}

// goAwayFrames builds one goaway per bound session.
func (c *conn) goAwayFrames() [][]byte {
	c.mu.Lock()
	peers := make([]string, 0, len(c.sessions))
	for _, ss := range c.sessions {
		peers = append(peers, ss.peerID)
	}
	c.mu.Unlock()
	out := make([][]byte, 0, len(peers))
	for _, p := range peers {
		b, err := proto.Marshal(&lcpb.GenericCommand{
			Cmd:     lcpb.CommandType_goaway.Enum(),
			PeerId:  proto.String(p),
			Service: proto.Int32(lcpb.ServiceIM),
		})
		if err == nil {
			out = append(out, b)
		}
	}
	return out
}

// goAway queues a goaway for each session and closes the connection once
// the queue has drained (server shutdown).
func (c *conn) goAway() {
	for _, b := range c.goAwayFrames() {
		c.enqueue(outFrame{b: b, p: PriorityHigh})
	}
	c.closeQueue()
}

// closeQueue refuses further frames; the writer flushes what is queued,
// then closes with 1001.
func (c *conn) closeQueue() {
	c.q.Close()
	c.kick()
}

// enqueue pushes f and accounts for what the queue did.
func (c *conn) enqueue(f outFrame) bool {
	o := c.q.Push(f, f.p)
	switch o.Result {
	case pq.QueuedShed:
		c.srv.metrics.Dropped[o.Victim].Add(1)
		c.kickLane(f.lane())
		return true
	case pq.DroppedNew:
		c.srv.metrics.Dropped[o.Victim].Add(1)
		return false
	case pq.Queued:
		c.kickLane(f.lane())
		return true
	case pq.Overflowed:
		c.kick() // the writer closes
	}
	return false // overflowed or closed
}

// deliver queues a push for ss, or holds it while ss is still opening.
// end marks the last frame of a session that the caller unbinds next (a
// session/closed notice: app closed, tag kick): while ss is opening it is
// held past the queue bound, and markReady writes it and what was held
// before it although ss has ended by then.
func (c *conn) deliver(ss *session, f outFrame, end bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ss.bound {
		c.srv.metrics.DeliveryMisses.Add(1)
		return false
	}
	if !ss.ready {
		if !end && len(ss.held) >= c.srv.limits.QueueLen {
			c.srv.metrics.Dropped[f.p].Add(1)
			return false
		}
		ss.held = append(ss.held, f)
		if end {
			ss.heldEnd = len(ss.held)
		}
		return true
	}
	return c.enqueue(f)
}

// markReady releases the deliveries held while ss was opening, after the
// session/opened reply has been queued. A session that ended while opening
// gets only what was held up to its end notice.
func (c *conn) markReady(ss *session) {
	if h := c.srv.testBeforeReady; h != nil {
		h(ss)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ss.ready = true
	held := ss.held
	if !ss.bound {
		held = held[:ss.heldEnd]
	}
	for _, f := range held {
		c.enqueue(f)
	}
	ss.held, ss.heldEnd = nil, 0
}

// teardown unbinds every session left and reports each to the backend.
func (c *conn) teardown() {
	c.mu.Lock()
	left := append([]*session(nil), c.sessions...)
	c.mu.Unlock()
	for _, ss := range left {
		if c.srv.unbind(ss) {
			c.closeSession(ss, nil) // the connection dropped: the session's will messages go out
		}
	}
}

// closeSession sends Backend CLOSE for an unbound session, with the
// client's session/close command when it asked to close (so the core can
// tell an explicit close from a dropped connection). It uses its own
// context: the connection's may already be cancelled.
func (c *conn) closeSession(ss *session, closeCmd []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.limits.BackendTimeout)
	defer cancel()
	req := c.request(ss, meshpb.ClientRequest_CLOSE, closeCmd)
	if closeCmd == nil {
		c.mu.Lock()
		req.CloseErrorCode, req.CloseErrorMsg = c.dropCode, c.dropMsg
		c.mu.Unlock()
	}
	if _, err := c.srv.cfg.Backend.Do(ctx, req); err != nil {
		c.srv.metrics.BackendErrors.Add(1)
		c.srv.log.Debug("edge: backend close failed", "peer", ss.peerID, "err", err)
	}
}

// request builds a ClientRequest for ss.
func (c *conn) request(ss *session, kind meshpb.ClientRequest_Kind, raw []byte) *meshpb.ClientRequest {
	return &meshpb.ClientRequest{
		Kind:            kind,
		AppId:           ss.appID,
		PeerId:          ss.peerID,
		EdgeId:          c.srv.cfg.EdgeID,
		ConnId:          c.id,
		ProtocolVersion: int32(c.codec.Version),
		Command:         raw,
		Tag:             ss.tag,
		DeviceId:        ss.deviceID,
		ConfigBitmap:    ss.configBitmap,
		SourceIp:        c.ip,
	}
}

// noteDrop records why the edge is dropping the connection, for the CLOSE
// requests of its sessions; the first reason wins.
func (c *conn) noteDrop(code int32, msg string) {
	c.mu.Lock()
	if c.dropCode == 0 {
		c.dropCode, c.dropMsg = code, msg
	}
	c.mu.Unlock()
}
