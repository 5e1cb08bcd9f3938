package netem

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tcpChunks bounds the chunks (of up to 32 KiB) waiting in one direction
// of a proxied connection; a full line stops reading from the sender, so
// TCP's own flow control pushes back.
const tcpChunks = 64

// TCPProxy accepts TCP connections and forwards each to an upstream
// address, delaying the bytes in both directions by its link's latency
// (± jitter, never reordering) and holding them while the link is Down.
// Loss does not apply. Connection set-up is not delayed: the first bytes
// are.
type TCPProxy struct {
	ln       net.Listener
	upstream string
	link     atomic.Pointer[Link]
	changed  atomic.Pointer[chan struct{}] // closed and replaced by SetLink
	done     chan struct{}                 // closed by Close
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu
}

// NewTCPProxy listens on listen (host:port, port 0 picks one) and
// forwards to upstream over link l.
func NewTCPProxy(listen, upstream string, l Link) (*TCPProxy, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &TCPProxy{ln: ln, upstream: upstream, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	p.link.Store(&l)
	ch := make(chan struct{})
	p.changed.Store(&ch)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address.
func (p *TCPProxy) Addr() string { return p.ln.Addr().String() }

// SetLink changes the link for every connection, at once.
func (p *TCPProxy) SetLink(l Link) {
	p.link.Store(&l)
	ch := make(chan struct{})
	old := p.changed.Swap(&ch)
	close(*old)
}

// Close stops accepting, closes every proxied connection and returns
// once every goroutine of the proxy has exited.
func (p *TCPProxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return net.ErrClosed
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *TCPProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *TCPProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
	p.mu.Unlock()
}

func (p *TCPProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *TCPProxy) serve(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	defer p.untrack(c, up)
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c) })
	wg.Go(func() { p.pipe(c, up) })
	wg.Wait()
}

type chunk struct {
	due time.Time
	b   []byte
}

// pipe copies src to dst through a delay line, then half-closes dst.
func (p *TCPProxy) pipe(dst, src net.Conn) {
	line := make(chan chunk, tcpChunks)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(line)
		rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		var last time.Time
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				l := *p.link.Load()
				d := l.Latency
				if l.Jitter > 0 {
					d += time.Duration(rnd.Int64N(2*int64(l.Jitter)+1)) - l.Jitter
				}
				due := time.Now().Add(max(d, 0))
				if due.Before(last) {
					due = last
				}
				last = due
				line <- chunk{due, buf[:n]}
			}
			if err != nil {
				return
			}
		}
	})
	failed := false
	for ch := range line {
		if failed {
			continue // drain so the reader can finish
		}
		if !p.waitDue(ch.due) {
			failed = true
			src.Close()
			continue
		}
		if _, err := dst.Write(ch.b); err != nil {
			failed = true
			src.Close()
		}
	}
	wg.Wait()
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && !failed {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
}

// waitDue waits until due and while the link is down; false if the proxy
// closed meanwhile.
func (p *TCPProxy) waitDue(due time.Time) bool {
	for {
		changed := *p.changed.Load()
		if p.link.Load().Down {
			select {
			case <-changed:
				continue
			case <-p.done:
				return false
			}
		}
		d := time.Until(due)
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-changed:
			t.Stop() // a partition may have started: look again
		case <-p.done:
			t.Stop()
			return false
		}
	}
}
