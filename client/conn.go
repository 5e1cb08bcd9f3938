package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// conn is one connection (WebSocket or WebTransport, transport.go): a reader goroutine that resolves
// replies by i and hands pushes to onPush, and a writer goroutine that
// serializes every frame, flushes merged acks and sends the echo keepalive.
// A conn never reconnects; it dies once (kill) and the Client replaces it.
type conn struct {
	ws     frameTransport
	codec  lcpb.Codec
	log    *slog.Logger
	peerID string // peerId put on acks, as JS does
	onPush func(*conn, *lcpb.GenericCommand)

	keepAlive    time.Duration // echo interval, <=0 off
	idle         time.Duration // inbound silence limit, <=0 off
	writeTimeout time.Duration
	readDelay    time.Duration // pause after each inbound frame (Options.ReadDelay)
	ackEvery     time.Duration // at most one ack batch per this, <=0 none (Options.AckInterval)

	writeq chan writeReq   // to the writer; unbuffered callers wait on ctx/done
	ackSig chan struct{}   // cap 1: acks are pending
	ctx    context.Context // cancelled by kill; bounds reads and writes
	cancel context.CancelFunc
	wg     sync.WaitGroup // reader and writer

	killOnce sync.Once
	done     chan struct{} // closed by kill
	err      error         // why the conn died; written before done is closed

	awayOnce sync.Once
	away     chan struct{} // closed by retire: the server said goaway

	lastRead atomic.Int64 // unix nanos of the last inbound frame

	writeStart atomic.Int64 // unix nanos the write in progress started, 0 idle
	wdog       *time.Timer  // the write watchdog (write, watchWrite), stopped until the first write

	mu      sync.Mutex
	nextI   int32                               // guarded by mu; last i used
	pending map[int32]chan *lcpb.GenericCommand // guarded by mu; cap-1 channels
	acks    map[string]*ackRange                // guarded by mu; per cid
}

type writeReq struct {
	frame []byte
	done  chan error // cap 1, nil when the caller does not wait
}

type ackRange struct{ from, to int64 }

type connConfig struct {
	codec                         lcpb.Codec
	log                           *slog.Logger
	peerID                        string
	onPush                        func(*conn, *lcpb.GenericCommand)
	keepAlive, idle, writeTimeout time.Duration
	readDelay                     time.Duration
	ackEvery                      time.Duration
}

func newConn(ws frameTransport, cfg connConfig) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		ws: ws, codec: cfg.codec, log: cfg.log, peerID: cfg.peerID, onPush: cfg.onPush,
		keepAlive: cfg.keepAlive, idle: cfg.idle, writeTimeout: cfg.writeTimeout, readDelay: cfg.readDelay,
		ackEvery: cfg.ackEvery,
		writeq:   make(chan writeReq), ackSig: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, done: make(chan struct{}), away: make(chan struct{}),
		pending: make(map[int32]chan *lcpb.GenericCommand),
	}
	c.lastRead.Store(time.Now().UnixNano())
	c.wdog = time.AfterFunc(time.Hour, c.watchWrite)
	c.wdog.Stop()
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return c
}

// kill ends the connection once; err says why (it should wrap
// ErrConnectionLost unless the client is closing). It never blocks on the
// reader or writer, so either may call it.
func (c *conn) kill(err error) {
	c.killOnce.Do(func() {
		c.err = err
		close(c.done)
		c.cancel()
		_ = c.ws.closeNow()
	})
}

// retire marks the connection as going away (the server said goaway): the
// client opens another for new requests, and this one stays until the
// replies to its requests in flight arrived (drainAway).
func (c *conn) retire() {
	c.awayOnce.Do(func() { close(c.away) })
}

func (c *conn) retired() bool {
	select {
	case <-c.away:
		return true
	default:
		return false
	}
}

// inFlight is how many requests wait for their reply.
func (c *conn) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// drainAway closes a retired connection once no request waits for a reply
// on it (gracefully), or when grace passed or stop ended (killed with
// ErrGoaway, failing what still waits), or when it died first.
func (c *conn) drainAway(stop <-chan struct{}, grace time.Duration) {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.inFlight() == 0 {
			c.closeGraceful()
			return
		}
		select {
		case <-c.done:
			return
		case <-deadline.C:
			c.kill(ErrGoaway)
			return
		case <-stop:
			c.closeGraceful()
			return
		case <-tick.C:
		}
	}
}

// closeGraceful sends a normal close frame, then kills.
func (c *conn) closeGraceful() {
	_ = c.ws.close(websocket.StatusNormalClosure, "")
	c.kill(ErrClosed)
}

// wait returns after the reader and writer exited.
func (c *conn) wait() { c.wg.Wait() }

func (c *conn) dead() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *conn) lostErr() error {
	<-c.done
	return c.err
}

func (c *conn) readLoop() {
	defer c.wg.Done()
	for {
		b, text, err := c.ws.read(c.ctx)
		if err != nil {
			c.kill(fmt.Errorf("%w: read: %w", ErrConnectionLost, err))
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		cmd, err := c.codec.Decode(b, text)
		if err != nil {
			c.log.Warn("client: dropping undecodable frame", "err", err)
			continue
		}
		// Like JS, i=0 counts as absent: the client never sends 0.
		if cmd.GetI() != 0 {
			c.resolve(cmd)
			continue
		}
		c.onPush(c, cmd)
		if c.readDelay > 0 && !c.pause() {
			return
		}
	}
}

// pause waits readDelay before the next read; false when the conn died
// meanwhile.
func (c *conn) pause() bool {
	t := time.NewTimer(c.readDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

func (c *conn) resolve(cmd *lcpb.GenericCommand) {
	c.mu.Lock()
	ch, ok := c.pending[cmd.GetI()]
	delete(c.pending, cmd.GetI())
	c.mu.Unlock()
	if !ok {
		c.log.Debug("client: reply for unknown request", "i", cmd.GetI(), "cmd", cmd.GetCmd())
		return
	}
	ch <- cmd // cap 1, one reply per i
}

func (c *conn) writeLoop() {
	defer c.wg.Done()
	defer c.wdog.Stop()
	var tick <-chan time.Time
	if every := c.tickEvery(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	lastEcho := time.Now()
	// Acks are throttled as the JS SDK does (lodash throttle, 1 s): the
	// first batch goes at once, later ones at most once per ackEvery, the
	// acks recorded meanwhile in one batch when the interval ends.
	var (
		lastAck  time.Time
		ackTimer *time.Timer
		ackDue   <-chan time.Time // non-nil while a batch waits for the interval
	)
	defer func() {
		if ackTimer != nil {
			ackTimer.Stop()
		}
	}()
	flush := func() bool {
		lastAck = time.Now()
		if err := c.flushAcks(); err != nil {
			c.kill(fmt.Errorf("%w: write ack: %w", ErrConnectionLost, err))
			return false
		}
		return true
	}
	for {
		select {
		case <-c.done:
			return
		case <-ackDue:
			ackDue = nil
			if !flush() {
				return
			}
		case w := <-c.writeq:
			err := c.write(w.frame)
			if w.done != nil {
				w.done <- err
			}
			if err != nil {
				c.kill(fmt.Errorf("%w: write: %w", ErrConnectionLost, err))
				return
			}
		case <-c.ackSig:
			if ackDue != nil {
				break // the waiting batch takes these too
			}
			// The first batch, or no throttle, goes at once. (Before the
			// first, time.Since(lastAck) is the largest duration, and a
			// negative ackEvery minus it would overflow into a wait.)
			if c.ackEvery > 0 && !lastAck.IsZero() {
				if wait := c.ackEvery - time.Since(lastAck); wait > 0 {
					if ackTimer == nil {
						ackTimer = time.NewTimer(wait)
					} else {
						ackTimer.Reset(wait)
					}
					ackDue = ackTimer.C
					break
				}
			}
			if !flush() {
				return
			}
		case now := <-tick:
			if c.idle > 0 && now.Sub(time.Unix(0, c.lastRead.Load())) > c.idle {
				c.kill(fmt.Errorf("%w: nothing received for %v", ErrConnectionLost, c.idle))
				return
			}
			if c.keepAlive > 0 && now.Sub(lastEcho) >= c.keepAlive {
				lastEcho = now
				if err := c.writeEcho(); err != nil {
					c.kill(fmt.Errorf("%w: write echo: %w", ErrConnectionLost, err))
					return
				}
			}
		}
	}
}

// tickEvery is the writer's timer period: fine enough for both the echo
// interval and a quarter of the idle limit.
func (c *conn) tickEvery() time.Duration {
	d := c.keepAlive
	if c.idle > 0 && (d <= 0 || c.idle/4 < d) {
		d = c.idle / 4
	}
	return d
}

// write writes one frame (on the writer). A write that makes no progress
// for writeTimeout kills the connection: the watchdog (watchWrite) closes
// the transport under it, which ends the write. One timer per connection,
// moved at each write, instead of a context with a deadline per frame,
// which the WebSocket library would register a callback on each time.
func (c *conn) write(frame []byte) error {
	if c.writeTimeout > 0 {
		c.writeStart.Store(time.Now().UnixNano())
		c.wdog.Reset(c.writeTimeout)
		defer c.writeStart.Store(0)
	}
	return c.ws.write(frame, c.codec.Base64)
}

// watchWrite runs when the write watchdog fires: it kills the connection
// if the write in progress started writeTimeout ago or more, and waits
// again for one that started later. Idle, it does nothing; the next write
// arms it again.
func (c *conn) watchWrite() {
	s := c.writeStart.Load()
	if s == 0 || c.dead() {
		return
	}
	if left := c.writeTimeout - time.Since(time.Unix(0, s)); left > 0 {
		c.wdog.Reset(left)
		return
	}
	c.kill(fmt.Errorf("%w: write: no progress for %v", ErrConnectionLost, c.writeTimeout))
}

func (c *conn) encode(cmd *lcpb.GenericCommand) ([]byte, error) {
	b, err := c.codec.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return b, nil
}

// writeEcho sends the JS keepalive: echo with i. The reply is discarded.
func (c *conn) writeEcho() error {
	c.mu.Lock()
	i := c.nextILocked()
	c.pending[i] = make(chan *lcpb.GenericCommand, 1)
	c.mu.Unlock()
	b, err := c.encode(&lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(i)})
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *conn) nextILocked() int32 {
	c.nextI++
	if c.nextI <= 0 { // wrapped
		c.nextI = 1
	}
	return c.nextI
}

func (c *conn) forget(i int32) {
	c.mu.Lock()
	delete(c.pending, i)
	c.mu.Unlock()
}

// request sends cmd with a fresh i and waits for the reply with that i.
// A cmd=error reply returns the reply and an *Error.
func (c *conn) request(ctx context.Context, cmd *lcpb.GenericCommand) (*lcpb.GenericCommand, error) {
	ch := make(chan *lcpb.GenericCommand, 1)
	c.mu.Lock()
	i := c.nextILocked()
	c.pending[i] = ch
	c.mu.Unlock()
	cmd.I = proto.Int32(i)
	b, err := c.encode(cmd)
	if err == nil {
		err = c.enqueue(ctx, writeReq{frame: b})
	}
	if err != nil {
		c.forget(i)
		return nil, err
	}
	select {
	case r := <-ch:
		return replyErr(r)
	case <-ctx.Done():
		c.forget(i)
		return nil, context.Cause(ctx)
	case <-c.done:
		select {
		case r := <-ch:
			return replyErr(r)
		default:
		}
		return nil, c.lostErr()
	}
}

func replyErr(r *lcpb.GenericCommand) (*lcpb.GenericCommand, error) {
	if r.GetCmd() == lcpb.CommandType_error {
		return r, errorFromCommand(r.GetErrorMessage())
	}
	return r, nil
}

// send writes cmd without i (ack, read, session/close) and waits until the
// writer wrote it.
func (c *conn) send(ctx context.Context, cmd *lcpb.GenericCommand) error {
	b, err := c.encode(cmd)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	if err := c.enqueue(ctx, writeReq{frame: b, done: done}); err != nil {
		return err
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: write: %w", ErrConnectionLost, err)
		}
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-c.done:
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
		default:
		}
		return c.lostErr()
	}
}

func (c *conn) enqueue(ctx context.Context, w writeReq) error {
	select {
	case c.writeq <- w:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-c.done:
		return c.lostErr()
	}
}

// recordAck notes a received message to ack; the writer sends one
// ack{cid, fromts, tots} per conversation (writeLoop: at once, or when
// the throttle interval ends).
func (c *conn) recordAck(cid string, ts int64) {
	c.mu.Lock()
	if c.acks == nil {
		c.acks = make(map[string]*ackRange)
	}
	if r, ok := c.acks[cid]; ok {
		r.from = min(r.from, ts)
		r.to = max(r.to, ts)
	} else {
		c.acks[cid] = &ackRange{from: ts, to: ts}
	}
	c.mu.Unlock()
	select {
	case c.ackSig <- struct{}{}:
	default:
	}
}

// takeAcks returns the acks recorded since the last call, one command per
// conversation.
func (c *conn) takeAcks() []*lcpb.GenericCommand {
	c.mu.Lock()
	acks := c.acks
	c.acks = nil
	c.mu.Unlock()
	cmds := make([]*lcpb.GenericCommand, 0, len(acks))
	for cid, r := range acks {
		cmds = append(cmds, &lcpb.GenericCommand{
			Cmd:    lcpb.CommandType_ack.Enum(),
			PeerId: proto.String(c.peerID),
			AckMessage: &lcpb.AckCommand{
				Cid: proto.String(cid), Fromts: proto.Int64(r.from), Tots: proto.Int64(r.to),
			},
		})
	}
	return cmds
}

// flushAcks writes the recorded acks (on the writer).
func (c *conn) flushAcks() error {
	for _, cmd := range c.takeAcks() {
		b, err := c.encode(cmd)
		if err != nil {
			return err
		}
		if err := c.write(b); err != nil {
			return err
		}
	}
	return nil
}

// sendAcks sends the recorded acks through the writer now, whatever the
// throttle: Client.Close sends what the interval held back.
func (c *conn) sendAcks(ctx context.Context) error {
	for _, cmd := range c.takeAcks() {
		if err := c.send(ctx, cmd); err != nil {
			return err
		}
	}
	return nil
}
