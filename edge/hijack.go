package edge

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Buffer sizes of a client connection's socket reader and writer. net/http
// hands a hijacked connection a 4 KiB reader and a 4 KiB writer, which the
// WebSocket library keeps for the connection's life: 8 KiB of an idle
// session's memory. LeanCloud frames are mostly a few hundred bytes; a
// bigger frame is read or written past the buffer, straight to the socket,
// at the cost of one more system call.
const (
	connReadBufSize  = 1 << 10
	connWriteBufSize = 1 << 10
)

// smallBufWriter is the http.ResponseWriter given to websocket.Accept: its
// Hijack swaps net/http's 4 KiB buffers for smaller ones. Everything else is
// the embedded writer's.
type smallBufWriter struct {
	http.ResponseWriter
	// cork, when set, receives the corkConn the connection is wrapped in,
	// counting its burst writes on writes.
	cork   **corkConn
	writes *atomic.Int64
}

// Hijack takes over the connection and returns it with connReadBufSize and
// connWriteBufSize buffers. Bytes net/http had already read past the
// handshake are kept: they are loaded into the new reader first.
func (w smallBufWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if w.cork != nil {
		ck := &corkConn{Conn: nc, writes: w.writes}
		*w.cork = ck
		nc = ck
	}
	br := bufio.NewReaderSize(nc, connReadBufSize)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc), max(n, connReadBufSize))
		if _, err := br.Peek(n); err != nil { // only reads the copied bytes
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, connWriteBufSize)), nil
}

// corkMax is the most a corked connection buffers before it writes
// through: 64 KiB, a few hundred pushes.
const corkMax = 64 << 10

// corkPool holds the buffers of corked connections; an idle connection
// holds none.
var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, corkMax); return &b }}

// corkConn is a client's socket under the WebSocket library. While the
// writer drains a burst of queued frames it is corked: the library's
// writes (each frame is flushed on its own) collect in one buffer, and
// uncork writes them with one system call. Outside a burst, writes go
// straight through, as before.
type corkConn struct {
	net.Conn
	writes  *atomic.Int64 // counts socket writes made while corked or at uncork (may be nil)
	mu      sync.Mutex
	corked  bool
	grow    bool          // corked by a pool writer: no write-through at corkMax
	timeout time.Duration // a corked write-through's deadline
	buf     *[]byte       // from corkPool while corked and holding bytes
}

// cork starts collecting writes; writes that would pass corkMax go to the
// socket (with what is buffered first), within timeout.
func (c *corkConn) cork(timeout time.Duration) {
	c.mu.Lock()
	c.corked = true
	c.timeout = timeout
	c.mu.Unlock()
}

// corkGrow is cork for a pool writer (writers.go): the buffer grows past
// corkMax instead of writing through, so collecting never blocks.
func (c *corkConn) corkGrow(timeout time.Duration) {
	c.mu.Lock()
	c.corked, c.grow = true, true
	c.timeout = timeout
	c.mu.Unlock()
}

// uncork writes what was collected, within cork's timeout, and stops
// collecting.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked, c.grow = false, false
	return c.flushLocked()
}

// buffered returns the bytes collected and not yet written.
func (c *corkConn) buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return 0
	}
	return len(*c.buf)
}

// flushWith writes what is collected with one call of write (a
// non-blocking system call: errWouldBlock when the socket takes nothing)
// and keeps, still corked, what it did not take. It reports whether
// nothing is left.
func (c *corkConn) flushWith(write func([]byte) (int, error)) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil || len(*c.buf) == 0 {
		return true, nil
	}
	b := *c.buf
	if c.writes != nil {
		c.writes.Add(1)
	}
	n, err := write(b)
	if err == errWouldBlock {
		n, err = 0, nil
	}
	if err != nil {
		return false, err
	}
	if n >= len(b) {
		c.releaseLocked()
		return true, nil
	}
	*c.buf = b[:copy(b, b[n:])]
	return false, nil
}

// releaseLocked returns the emptied buffer to corkPool (one that grew well
// past corkMax is left to the collector); c.mu held.
func (c *corkConn) releaseLocked() {
	if cap(*c.buf) <= 2*corkMax {
		*c.buf = (*c.buf)[:0]
		corkPool.Put(c.buf)
	}
	c.buf = nil
}

func (c *corkConn) flushLocked() error {
	if c.buf == nil {
		return nil
	}
	b := *c.buf
	defer c.releaseLocked()
	if len(b) == 0 {
		return nil
	}
	_, err := c.writeThrough(b)
	return err
}

// writeThrough writes b to the socket within the cork's timeout and
// counts the write; c.mu held.
func (c *corkConn) writeThrough(b []byte) (int, error) {
	if c.writes != nil {
		c.writes.Add(1)
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Write(b)
	_ = c.Conn.SetWriteDeadline(time.Time{})
	return n, err
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(p)
	}
	return c.appendLocked(p)
}

// writeFrame writes a WebSocket frame's header and payload (rawWS): while
// corked into the buffer, else to the socket in one system call (a vector
// write where the socket takes one), within deadline when it is set.
func (c *corkConn) writeFrame(hdr, p []byte, deadline time.Time) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		if _, err := c.appendLocked(hdr); err != nil {
			return 0, err
		}
		return c.appendLocked(p)
	}
	if !deadline.IsZero() {
		_ = c.Conn.SetWriteDeadline(deadline)
		defer func() { _ = c.Conn.SetWriteDeadline(time.Time{}) }()
	}
	bufs := net.Buffers{hdr, p}
	n, err := bufs.WriteTo(c.Conn)
	return int(n), err
}

// appendLocked adds p to the cork buffer, writing through past corkMax;
// c.mu held, corked.
func (c *corkConn) appendLocked(p []byte) (int, error) {
	if c.buf == nil {
		c.buf = corkPool.Get().(*[]byte)
	}
	if c.grow || len(*c.buf)+len(p) <= corkMax {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.writeThrough(p)
}
