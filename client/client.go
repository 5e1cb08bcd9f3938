package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Client is one IM session (one peerId) over one WebSocket at a time.
// All methods are safe for concurrent use.
//
// Lock order: Client.mu before conn.mu (never the reverse).
type Client struct {
	opts  Options
	codec lcpb.Codec
	log   *slog.Logger

	events  chan Event // closed by run when the client is finished
	dropped atomic.Uint64

	ctx       context.Context // cancelled by Close; bounds reconnects and emit
	cancel    context.CancelFunc
	closeOnce sync.Once
	done      chan struct{} // closed when run exited

	mu                  sync.Mutex
	url                 string              // guarded by mu; the server in use (or last tried)
	srv                 servers             // guarded by mu; servers.go
	cur                 *conn               // guarded by mu; nil while reconnecting
	ready               chan struct{}       // guarded by mu; closed when cur is set
	term                error               // guarded by mu; set once the client is finished
	st                  string              // guarded by mu; session token
	stExpiry            time.Time           // guarded by mu; zero = unknown
	lastPatchTime       int64               // guarded by mu; ms
	lastUnreadNotifTime int64               // guarded by mu; ms
	last                map[string]lastMsg  // guarded by mu; last message per cid, for Read
	seen                map[string]int64    // guarded by mu; last timestamp received from others per cid (resync.go)
	rs                  *resyncState        // guarded by mu; the resync waiting for its unread push
	resyncWG            sync.WaitGroup      // resync goroutines
	resyncRetries       atomic.Uint64       // history reads of a resync tried again
	resyncFailures      atomic.Uint64       // conversations a resync gave up on
	awayWG              sync.WaitGroup      // retired connections draining (goaway)
	wtHashes            map[string][][]byte // guarded by mu; WebTransport certificate hashes per server (transport.go)
	qtr                 *quic.Transport     // guarded by mu; on Options.PacketConn (transport.go)
}

type lastMsg struct {
	id, from string
	ts       int64
}

// ErrGoaway is the cause of a Disconnected after the server said goaway
// (an edge being drained): the client reconnects at once, to its next
// server. It wraps ErrConnectionLost.
var ErrGoaway = fmt.Errorf("%w: goaway", ErrConnectionLost)

// Dial connects to url (ws:// or wss://; "" with Options.Router), opens
// the session and starts the client. With several servers (url,
// Options.Servers, Options.Router) it tries each once, in order; it does
// not retry otherwise: a failed first connection is returned.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	if opts.AppID == "" || opts.ClientID == "" {
		return nil, errors.New("client: Options.AppID and Options.ClientID are required")
	}
	opts = opts.withDefaults()
	codec, err := lcpb.CodecFor(opts.Subprotocol)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: opts, codec: codec, log: opts.Logger,
		events: make(chan Event, opts.EventBuffer),
		ctx:    cctx, cancel: cancel, done: make(chan struct{}),
		ready:         make(chan struct{}),
		lastPatchTime: time.Now().UnixMilli(), // as JS: Date.now() at construction
		last:          make(map[string]lastMsg),
		seen:          make(map[string]int64),
	}
	for _, u := range append([]string{url}, opts.Servers...) {
		if u != "" && !contains(c.srv.static, u) {
			c.srv.static = append(c.srv.static, u)
		}
	}
	c.refreshRoute(ctx, true)
	c.reprobe(ctx) // Options.Nearest (probe.go)
	c.mu.Lock()
	urls := c.srv.list()
	c.mu.Unlock()
	if len(urls) == 0 {
		cancel()
		return nil, ErrNoServer
	}
	var cn *conn
	for _, u := range urls {
		if cn, err = c.connect(ctx, u, false); err == nil {
			break
		}
		var le *Error
		if errors.As(err, &le) || ctx.Err() != nil {
			break // the server refused the session: another one would too
		}
	}
	if err != nil {
		cancel()
		if c.qtr != nil {
			_ = c.qtr.Close()
		}
		return nil, err
	}
	c.cur = cn
	close(c.ready)
	go c.run(cn)
	return c, nil
}

// Drop ends the current connection at once, as a network failure would
// (no session/close; the WebSocket or WebTransport session is torn down
// without waiting), and the client reconnects on its own. For tests and
// load testing (relaymesh-loadtest's reconnect scenario over
// WebTransport). It reports whether there was a connection to drop.
func (c *Client) Drop() bool {
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil || cn.dead() {
		return false
	}
	cn.kill(fmt.Errorf("%w: dropped", ErrConnectionLost))
	return true
}

// ID returns the client id (peerId).
func (c *Client) ID() string { return c.opts.ClientID }

// Events returns the channel of pushes. It is closed once the client is
// finished: after Close, a kick, or a fatal reconnect failure.
func (c *Client) Events() <-chan Event { return c.events }

// Dropped counts events dropped because Events stayed full for
// Options.EventOverflowWait.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Close sends session/close (waiting briefly for session/closed), closes
// the connection and returns after every goroutine exited.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		cn, polite := c.cur, c.term == nil
		if c.term == nil {
			c.term = ErrClosed
		}
		c.mu.Unlock()
		if polite && cn != nil && !cn.dead() {
			ctx, cancel := context.WithTimeout(context.Background(), min(c.opts.RequestTimeout, 2*time.Second))
			if err := cn.sendAcks(ctx); err != nil {
				c.log.Debug("client: acks on close", "err", err)
			}
			_, err := cn.request(ctx, &lcpb.GenericCommand{
				Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(),
				SessionMessage: &lcpb.SessionCommand{},
			})
			cancel()
			if err != nil {
				c.log.Debug("client: session/close", "err", err)
			}
		}
		c.cancel()
	})
	<-c.done
	return nil
}

// Request sends cmd with a fresh i (it sets cmd.I) and returns the reply.
// An error reply yields *Error. It waits for a reconnect in progress, and
// gives up after Options.RequestTimeout with ErrTimeout.
func (c *Client) Request(ctx context.Context, cmd *lcpb.GenericCommand) (*lcpb.GenericCommand, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.RequestTimeout, ErrTimeout)
	defer cancel()
	cn, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	r, err := cn.request(ctx, cmd)
	if errors.Is(err, ErrTimeout) {
		err = fmt.Errorf("%w: %v/%v", err, cmd.GetCmd(), cmd.GetOp())
	}
	return r, err
}

// sendNoReply writes a command without i (read, ack).
func (c *Client) sendNoReply(ctx context.Context, cmd *lcpb.GenericCommand) error {
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.RequestTimeout, ErrTimeout)
	defer cancel()
	cn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	return cn.send(ctx, cmd)
}

// conn returns the live connection, waiting while a reconnect is under way.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready, term := c.cur, c.ready, c.term
		c.mu.Unlock()
		if term != nil {
			return nil, term
		}
		if cn != nil {
			if cn.dead() {
				return nil, cn.lostErr()
			}
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// connect dials url and opens the session on the new connection.
func (c *Client) connect(ctx context.Context, url string, reconnect bool) (*conn, error) {
	c.setCurrent(url)
	ws, err := c.dialTransport(ctx, url)
	if err != nil {
		return nil, err
	}
	cn := newConn(ws, connConfig{
		codec: c.codec, log: c.log, peerID: c.opts.ClientID, onPush: c.handlePush,
		keepAlive: c.opts.KeepAlive, idle: c.opts.IdleTimeout, writeTimeout: c.opts.RequestTimeout,
		readDelay: c.opts.ReadDelay, ackEvery: c.opts.AckInterval,
	})
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.RequestTimeout, ErrTimeout)
	defer cancel()
	if err := c.open(ctx, cn, reconnect); err != nil {
		cn.kill(fmt.Errorf("%w: session/open failed: %w", ErrConnectionLost, err))
		cn.wait()
		return nil, err
	}
	return cn, nil
}

// dialTransport opens the connection of Options.Transport.
func (c *Client) dialTransport(ctx context.Context, url string) (frameTransport, error) {
	switch c.opts.Transport {
	case TransportWebTransport:
		if c.codec.Base64 {
			return nil, fmt.Errorf("%w: webtransport carries binary subprotocols only, not %q", ErrProtocol, c.opts.Subprotocol)
		}
		t, err := c.dialWebTransport(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("%w: dial webtransport for %s: %w", ErrConnectionLost, url, err)
		}
		return t, nil
	case TransportWebSocket:
	default:
		return nil, fmt.Errorf("client: unknown Options.Transport %q", c.opts.Transport)
	}
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{c.opts.Subprotocol}, HTTPClient: c.opts.HTTPClient})
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrConnectionLost, url, err)
	}
	if got := ws.Subprotocol(); got != c.opts.Subprotocol {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("%w: server chose subprotocol %q, want %q", ErrProtocol, got, c.opts.Subprotocol)
	}
	ws.SetReadLimit(c.opts.MaxFrame)
	return newWSTransport(ws), nil
}

// open sends session/open and stores what session/opened returns. A reopen
// uses the cached st; if the server rejects it with 4112 it retries once
// with full credentials.
func (c *Client) open(ctx context.Context, cn *conn, reconnect bool) error {
	useST := reconnect
	for {
		cmd, usedST, err := c.openCommand(ctx, reconnect, useST)
		if err != nil {
			return err
		}
		r, err := cn.request(ctx, cmd)
		if err == nil {
			err = sessionError(r)
		}
		var le *Error
		if usedST && errors.As(err, &le) && le.Code == lcpb.ErrSessionTokenExpired {
			c.mu.Lock()
			c.st = ""
			c.mu.Unlock()
			useST = false
			continue
		}
		if err != nil {
			return fmt.Errorf("client: session/open: %w", err)
		}
		c.opened(r)
		return nil
	}
}

func (c *Client) openCommand(ctx context.Context, reconnect, useST bool) (cmd *lcpb.GenericCommand, usedST bool, err error) {
	c.mu.Lock()
	st := c.st
	if !c.stExpiry.IsZero() && time.Now().After(c.stExpiry) {
		st = ""
	}
	sm := &lcpb.SessionCommand{
		Ua:            proto.String(UA),
		R:             proto.Bool(reconnect),
		LastPatchTime: proto.Int64(c.lastPatchTime),
		ConfigBitmap:  proto.Int64(c.opts.ConfigBitmap),
	}
	if c.lastUnreadNotifTime != 0 {
		sm.LastUnreadNotifTime = proto.Int64(c.lastUnreadNotifTime)
	}
	c.mu.Unlock()
	if useST && st != "" {
		sm.St = proto.String(st)
		usedST = true
	} else {
		if c.opts.Tag != "" {
			sm.Tag = proto.String(c.opts.Tag)
		}
		sm.DeviceId = proto.String(c.opts.DeviceID)
		if c.opts.Signature != nil {
			s, t, n, err := c.opts.Signature(ctx, c.opts.ClientID)
			if err != nil {
				return nil, false, fmt.Errorf("client: login signature: %w", err)
			}
			sm.S, sm.T, sm.N = proto.String(s), proto.Int64(t), proto.String(n)
		}
	}
	return &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
		AppId: proto.String(c.opts.AppID), PeerId: proto.String(c.opts.ClientID),
		SessionMessage: sm,
	}, usedST, nil
}

// sessionError turns a refused open (closed, or a sessionMessage.code)
// into *Error.
func sessionError(r *lcpb.GenericCommand) error {
	sm := r.GetSessionMessage()
	if r.GetOp() == lcpb.OpType_closed || sm.GetCode() != 0 {
		return &Error{Code: sm.GetCode(), Reason: sm.GetReason(), Detail: sm.GetDetail()}
	}
	return nil
}

func (c *Client) opened(r *lcpb.GenericCommand) {
	if p := r.GetPeerId(); p != "" && p != c.opts.ClientID {
		c.log.Warn("client: session/opened for another peerId", "got", p, "want", c.opts.ClientID)
	}
	sm := r.GetSessionMessage()
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := sm.GetSt(); st != "" {
		c.st = st
		c.stExpiry = time.Time{}
		if ttl := sm.GetStTtl(); ttl > 0 {
			c.stExpiry = time.Now().Add(time.Duration(ttl) * time.Second)
		}
	}
	if ts := r.GetServerTs(); ts != 0 {
		c.lastPatchTime = ts
	}
}

// goawayGrace bounds how long a connection the server said goaway on
// stays open for replies to the requests in flight on it (an edge drains
// for 10 s by default, [edge] drain_timeout).
const goawayGrace = 5 * time.Second

// run owns the connection lifecycle: it waits for the current connection
// to end and reconnects according to the rules in the package doc.
func (c *Client) run(cn *conn) {
	defer func() {
		c.awayWG.Wait() // a retired connection's pushes are events too
		c.resyncWG.Wait()
		c.mu.Lock()
		qtr := c.qtr
		c.mu.Unlock()
		if qtr != nil {
			_ = qtr.Close()
		}
		close(c.events)
		close(c.done)
	}()
	for {
		select {
		case <-cn.done:
		case <-cn.away:
		case <-c.ctx.Done():
			cn.closeGraceful()
		}
		cause := ErrGoaway
		if old := cn; !cn.dead() && old.retired() {
			// goaway: the old connection finishes its requests in flight
			// while the next one opens (conn.drainAway).
			c.awayWG.Go(func() {
				old.drainAway(c.ctx.Done(), goawayGrace)
				old.wait()
			})
		} else {
			cn.wait()
			cause = cn.err
		}
		c.mu.Lock()
		c.cur = nil
		c.ready = make(chan struct{})
		term := c.term
		c.mu.Unlock()
		if term != nil {
			return
		}
		c.log.Info("client: connection lost", "err", cause)
		if ce, ok := errors.AsType[websocket.CloseError](cause); ok && (ce.Code == lcpb.ErrAppNotAvailable ||
			ce.Code == lcpb.ErrInvalidLogin || ce.Code == lcpb.ErrInvalidOrigin) {
			c.finish(&Error{Code: int32(ce.Code), Reason: ce.Reason})
			return
		}
		if c.opts.NoReconnect {
			c.finish(&Error{Code: 0, Reason: cause.Error()})
			return
		}
		lost := time.Now()
		rs := c.startResync() // resync.go
		c.emit(Disconnected{Err: cause})
		if cn = c.reconnect(errors.Is(cause, ErrGoaway), lost); cn == nil {
			return
		}
		if rs != nil {
			c.resyncWG.Add(1)
			go c.resync(rs)
		}
	}
}

// reconnect redials with backoff until a session is open again, each
// attempt on the next server of the list (servers.go). It returns nil when
// the client is finished (closed, or the reopen was refused).
func (c *Client) reconnect(immediate bool, lost time.Time) *conn {
	round := 0 // failed rounds through the whole list
	for n := 0; ; n++ {
		count := max(c.serverCount(), 1)
		if n > 0 && n%count == 0 {
			round++
			c.refreshRoute(c.ctx, true) // every server failed: ask the router again
			c.reprobe(c.ctx)            // and measure them again (Options.Nearest)
		} else if n%count == 0 && c.refreshRoute(c.ctx, false) {
			c.reprobe(c.ctx)
		}
		if !(immediate && n == 0) {
			t := time.NewTimer(backoff(round, c.opts.ReconnectMin, c.opts.ReconnectMax))
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return nil
			}
		}
		cn, err := c.connect(c.ctx, c.target(n), true)
		if err != nil {
			var le *Error
			if errors.As(err, &le) && le.Code >= 4100 && le.Code < 4200 {
				c.finish(le)
				return nil
			}
			if c.ctx.Err() != nil {
				return nil
			}
			c.log.Info("client: reconnect failed", "attempt", n+1, "err", err)
			continue
		}
		c.mu.Lock()
		if c.term != nil {
			c.mu.Unlock()
			cn.closeGraceful()
			cn.wait()
			return nil
		}
		c.cur = cn
		close(c.ready)
		c.mu.Unlock()
		c.emit(Reconnected{Attempts: n + 1, Down: time.Since(lost), URL: c.URL()})
		return cn
	}
}

// backoff is min(lo·2^n, hi) with jitter: uniform in [d/2, d].
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := hi
	if n < 32 {
		if x := lo << n; x > 0 && x < hi {
			d = x
		}
	}
	return d/2 + rand.N(d/2+1)
}

// finish ends the client because of the server: later requests fail with
// ErrSessionClosed and Closed is emitted.
func (c *Client) finish(e *Error) {
	c.mu.Lock()
	first := c.term == nil
	if first {
		c.term = fmt.Errorf("%w: %w", ErrSessionClosed, e)
	}
	c.mu.Unlock()
	if first {
		c.emit(Closed{Code: e.Code, Reason: e.Reason})
	}
}

// emit delivers ev, blocking up to Options.EventOverflowWait on a full
// channel, then dropping it (counted in Dropped).
func (c *Client) emit(ev Event) {
	select {
	case c.events <- ev:
		return
	default:
	}
	t := time.NewTimer(c.opts.EventOverflowWait)
	defer t.Stop()
	select {
	case c.events <- ev:
	case <-t.C:
		c.dropped.Add(1)
	case <-c.ctx.Done():
		c.dropped.Add(1)
	}
}
