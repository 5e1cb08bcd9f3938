package netem

import (
	"container/heap"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxQueuedBytes bounds a Conn's delay line.
const DefaultMaxQueuedBytes = 8 << 20

// Config configures a Conn.
type Config struct {
	// Table holds the rules; required.
	Table *Table
	// Group is the sender's group. Empty: the group of the socket's local
	// address under the current rules (so a socket bound to 0.0.0.0 is in
	// no group, and only links from Any apply to it).
	Group string
	// MaxQueuedBytes bounds the datagrams waiting in the delay line;
	// 0 means DefaultMaxQueuedBytes.
	MaxQueuedBytes int
	// Seed seeds loss and jitter, for reproducible tests; 0 picks one.
	Seed uint64
}

// Stats counts what a Conn did with the datagrams written to it.
type Stats struct {
	Written     int64 // datagrams written by the user
	Sent        int64 // datagrams handed to the socket
	Delayed     int64 // datagrams that went through the delay line
	Lost        int64 // dropped by Loss
	Cut         int64 // dropped because the link was Down
	Overflow    int64 // dropped because the delay line was full
	WriteErrors int64 // the socket refused a delayed datagram
}

// Conn is a net.PacketConn that shapes what is written to it by the
// current rules of its Table (package doc). It owns the wrapped conn:
// Close closes it.
type Conn struct {
	pc       net.PacketConn
	table    *Table
	group    string
	local    netip.Addr
	maxBytes int

	written, sent, delayed, lost, cut, overflow, writeErrs atomic.Int64
	pending                                                atomic.Int64 // datagrams in the delay line

	wake chan struct{} // cap 1: the head of the line changed
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu     sync.Mutex
	rnd    *rand.Rand                   // guarded by mu
	line   delayLine                    // guarded by mu
	bytes  int                          // guarded by mu; bytes in line
	last   map[netip.AddrPort]time.Time // guarded by mu; due time of the last datagram queued per destination
	seq    uint64                       // guarded by mu
	closed bool                         // guarded by mu
}

// NewConn wraps pc. It starts the goroutine of the delay line; Close
// stops it.
func NewConn(pc net.PacketConn, cfg Config) *Conn {
	if cfg.Table == nil {
		cfg.Table = NewTable(nil)
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	c := &Conn{
		pc: pc, table: cfg.Table, group: cfg.Group, local: addrIP(pc.LocalAddr()), maxBytes: cfg.MaxQueuedBytes,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		rnd:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		last: make(map[netip.AddrPort]time.Time),
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// Stats returns the counters.
func (c *Conn) Stats() Stats {
	return Stats{Written: c.written.Load(), Sent: c.sent.Load(), Delayed: c.delayed.Load(), Lost: c.lost.Load(),
		Cut: c.cut.Load(), Overflow: c.overflow.Load(), WriteErrors: c.writeErrs.Load()}
}

// ReadFrom reads from the wrapped conn, unshaped.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) { return c.pc.ReadFrom(b) }

// WriteTo shapes one datagram: it is sent now, later, or never. A dropped
// datagram is reported as written, as UDP would.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.written.Add(1)
	r := c.table.Rules()
	src := c.group
	if src == "" {
		src = r.GroupOf(c.local)
	}
	l := r.linkTo(src, addr)
	if l.Zero() && c.pending.Load() == 0 {
		c.sent.Add(1)
		return c.pc.WriteTo(b, addr)
	}
	dst := addrPort(addr)
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	switch {
	case l.Down:
		c.mu.Unlock()
		c.cut.Add(1)
		return len(b), nil
	case l.Loss > 0 && c.rnd.Float64() < l.Loss:
		c.mu.Unlock()
		c.lost.Add(1)
		return len(b), nil
	}
	delay := l.Latency
	if l.Jitter > 0 {
		delay += time.Duration(c.rnd.Int64N(2*int64(l.Jitter)+1)) - l.Jitter
	}
	due := now.Add(max(delay, 0))
	if prev, ok := c.last[dst]; ok && due.Before(prev) {
		due = prev // one path: never overtake an earlier datagram
	}
	if !due.After(now) {
		c.mu.Unlock()
		c.sent.Add(1)
		return c.pc.WriteTo(b, addr)
	}
	if c.bytes+len(b) > c.maxBytes {
		c.mu.Unlock()
		c.overflow.Add(1)
		return len(b), nil
	}
	p := &packet{due: due, seq: c.seq, b: append([]byte(nil), b...), addr: addr}
	c.seq++
	heap.Push(&c.line, p)
	c.bytes += len(b)
	c.last[dst] = due
	if len(c.last) > 4096 { // forget destinations whose line emptied
		for k, t := range c.last {
			if !t.After(now) {
				delete(c.last, k)
			}
		}
	}
	head := c.line[0] == p
	c.pending.Add(1)
	c.mu.Unlock()
	c.delayed.Add(1)
	if head {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

// run sends each datagram of the delay line when it is due.
func (c *Conn) run() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var batch []*packet
	for {
		now := time.Now()
		c.mu.Lock()
		for len(c.line) > 0 && !c.line[0].due.After(now) {
			p := heap.Pop(&c.line).(*packet)
			c.bytes -= len(p.b)
			batch = append(batch, p)
		}
		wait := time.Hour
		if len(c.line) > 0 {
			wait = c.line[0].due.Sub(now)
		}
		c.mu.Unlock()
		for i, p := range batch {
			if _, err := c.pc.WriteTo(p.b, p.addr); err != nil {
				c.writeErrs.Add(1)
			} else {
				c.sent.Add(1)
			}
			c.pending.Add(-1)
			batch[i] = nil
		}
		batch = batch[:0]
		t.Reset(wait)
		select {
		case <-c.done:
			return
		case <-c.wake:
		case <-t.C:
		}
	}
}

// Close drops what is still in the delay line, stops its goroutine and
// closes the wrapped conn.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.mu.Unlock()
	close(c.done)
	c.wg.Wait()
	return c.pc.Close()
}

// LocalAddr is the wrapped conn's.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetDeadline sets the wrapped conn's deadlines (writes into the delay
// line never block).
func (c *Conn) SetDeadline(t time.Time) error { return c.pc.SetDeadline(t) }

// SetReadDeadline sets the wrapped conn's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// SetWriteDeadline sets the wrapped conn's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }

// SetReadBuffer sizes the socket's receive buffer when the wrapped conn
// can (quic-go asks for it).
func (c *Conn) SetReadBuffer(n int) error {
	if s, ok := c.pc.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return nil
}

// SetWriteBuffer sizes the socket's send buffer when the wrapped conn can.
func (c *Conn) SetWriteBuffer(n int) error {
	if s, ok := c.pc.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// packet is one datagram in the delay line.
type packet struct {
	due  time.Time
	seq  uint64 // ties keep write order
	b    []byte
	addr net.Addr
}

// delayLine is a min-heap of packets by (due, seq).
type delayLine []*packet

func (h delayLine) Len() int { return len(h) }
func (h delayLine) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h delayLine) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayLine) Push(x any)   { *h = append(*h, x.(*packet)) }
func (h *delayLine) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}
