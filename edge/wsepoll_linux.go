package edge

import (
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/relaymesh/relaymesh/internal/gopool"
)

// The epoll poller: one epoll set for the process, watching every raw
// WebSocket's socket one-shot for input, and one goroutine waiting on it
// while any socket is in the set (it exits when the set empties, so an
// edge with no WebSockets runs none). A readable socket gets a reader
// pass (rawWS.readable) on a goroutine of the pool (internal/gopool),
// which re-arms it.
//
// The set is level-triggered (no EPOLLET): a socket re-armed with input
// already waiting (or its end) reports at once, so a pass may stop after a
// short read.
//
// The loop waits in Go's own netpoller, on the epoll descriptor itself (an
// epoll set is readable while it has events), never in a blocking
// epoll_wait: a goroutine blocked in a system call keeps its P, and the
// reader passes the loop had just queued on that P waited for the runtime's
// monitor to take it back, up to 10 ms later (a trace at 5,000 sends/s: a
// pass started 1.7 ms after it was queued on average, 21 ms at the 99th
// percentile). Parked in the netpoller, the loop frees its P at once.
//
// Sockets are keyed by a token, not by descriptor: an event for a socket
// that has left the set (its number perhaps reused) finds no entry.
type poller struct {
	epfd  int
	ep    syscall.RawConn // epfd in Go's netpoller
	wakeR int             // a pipe's read end in the set (token 0): wakes the loop
	wakeW int

	mu      sync.Mutex
	conns   map[uint64]*rawWS // guarded by mu
	next    uint64            // guarded by mu: the last token given
	running bool              // guarded by mu: the loop goroutine runs
}

var (
	pollerOnce sync.Once
	thePoller  *poller
	pollerErr  error
)

// getPoller returns the process's poller, made on first use.
func getPoller() (*poller, error) {
	pollerOnce.Do(func() {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			pollerErr = err
			return
		}
		var p [2]int
		if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
			syscall.Close(epfd)
			pollerErr = err
			return
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
			syscall.Close(epfd)
			syscall.Close(p[0])
			syscall.Close(p[1])
			pollerErr = err
			return
		}
		ep, err := pollable(epfd) // closes epfd when it fails
		if err != nil {
			syscall.Close(p[0])
			syscall.Close(p[1])
			pollerErr = err
			return
		}
		thePoller = &poller{epfd: epfd, ep: ep, wakeR: p[0], wakeW: p[1], conns: make(map[uint64]*rawWS)}
	})
	return thePoller, pollerErr
}

// pollable puts the epoll descriptor epfd into Go's netpoller, or closes
// it and fails. Where it fails there is no poller, and raw WebSockets are
// read by a goroutine each, as TLS ones are. The os.File that does it is
// kept by its RawConn for the life of the process, so its finalizer never
// closes epfd.
func pollable(epfd int) (syscall.RawConn, error) {
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	// A descriptor the netpoller refused takes no deadline.
	err := f.SetReadDeadline(time.Time{})
	var rc syscall.RawConn
	if err == nil {
		rc, err = f.SyscallConn()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return rc, nil
}

// pollerAvailable reports whether raw WebSockets can be polled here.
func pollerAvailable() bool {
	_, err := getPoller()
	return err == nil
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

func setToken(ev *syscall.EpollEvent, tok uint64) {
	ev.Fd = int32(uint32(tok))
	ev.Pad = int32(uint32(tok >> 32))
}

func eventToken(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// arm watches w's socket for the next input: added on the first call,
// re-armed after.
func (w *rawWS) arm() error {
	p := thePoller
	if !w.armed {
		w.armed = true
		return p.add(w)
	}
	ev := syscall.EpollEvent{Events: pollEvents}
	p.mu.Lock()
	setToken(&ev, w.token)
	p.mu.Unlock()
	return w.ctl(syscall.EPOLL_CTL_MOD, ev)
}

func (w *rawWS) ctl(op int, ev syscall.EpollEvent) error {
	o := getSockOp()
	o.op, o.ev = op, ev
	cerr := w.rc.Control(o.ctl)
	err := o.err
	o.put()
	if cerr != nil {
		return cerr
	}
	return err
}

func (p *poller) add(w *rawWS) error {
	p.mu.Lock()
	p.next++
	w.token = p.next
	p.conns[w.token] = w
	start := !p.running
	p.running = true
	ev := syscall.EpollEvent{Events: pollEvents}
	setToken(&ev, w.token)
	p.mu.Unlock()
	if start {
		go p.loop()
	}
	err := w.ctl(syscall.EPOLL_CTL_ADD, ev)
	// A closeSock that ran before the entry was made did not remove it.
	if err != nil || w.isSockClosed() {
		p.remove(w)
	}
	return err
}

// unregister takes w's socket out of the set (before it is closed).
func (w *rawWS) unregister() {
	if w.rc == nil {
		return
	}
	_ = w.ctl(syscall.EPOLL_CTL_DEL, syscall.EpollEvent{})
	if p := thePoller; p != nil {
		p.remove(w)
	}
}

func (p *poller) remove(w *rawWS) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[w.token] != w {
		return
	}
	delete(p.conns, w.token)
	if len(p.conns) == 0 && p.running {
		_, _ = syscall.Write(p.wakeW, []byte{0})
	}
}

// loop waits for readable sockets and starts a reader pass for each, until
// the set is empty.
func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 256)
	var drain [64]byte
	n := 0
	ready := func(epfd uintptr) bool { // RawConn.Read waits while this is false
		n = epollWait(int(epfd), events)
		return n > 0
	}
	for {
		if err := p.ep.Read(ready); err != nil {
			panic("edge: epoll wait: " + err.Error())
		}
		p.mu.Lock()
		for i := range n {
			tok := eventToken(&events[i])
			if tok == 0 {
				for {
					if k, _ := syscall.Read(p.wakeR, drain[:]); k <= 0 {
						break
					}
				}
				continue
			}
			if w := p.conns[tok]; w != nil {
				gopool.Go(w.readable)
			}
		}
		if len(p.conns) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// epollWait takes the events ready now (epoll_wait with a zero timeout: it
// never blocks), tried again when interrupted.
func epollWait(epfd int, events []syscall.EpollEvent) int {
	for {
		n, err := syscall.EpollWait(epfd, events, 0)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			panic("edge: epoll_wait: " + err.Error())
		}
		return n
	}
}

// sockOp is one non-blocking system call on a socket through its
// syscall.RawConn: the call's arguments and results, and the function
// RawConn runs, bound once when the op is made. Ops are pooled, so a read,
// a write or an epoll change allocates nothing (a closure capturing its
// results would be two or three allocations each time, at every socket
// read and write).
type sockOp struct {
	buf  []byte
	ev   syscall.EpollEvent
	op   int
	n    int
	err  error
	read func(fd uintptr) bool
	wrt  func(fd uintptr) bool
	ctl  func(fd uintptr)
}

var sockOps = sync.Pool{New: func() any {
	o := new(sockOp)
	o.read, o.wrt, o.ctl = o.doRead, o.doWrite, o.doCtl
	return o
}}

func getSockOp() *sockOp { return sockOps.Get().(*sockOp) }

func (o *sockOp) put() {
	o.buf, o.ev, o.n, o.err = nil, syscall.EpollEvent{}, 0, nil
	sockOps.Put(o)
}

func (o *sockOp) doRead(fd uintptr) bool {
	for {
		o.n, o.err = syscall.Read(int(fd), o.buf)
		if o.err != syscall.EINTR {
			return true
		}
	}
}

func (o *sockOp) doWrite(fd uintptr) bool {
	for {
		o.n, o.err = syscall.Write(int(fd), o.buf)
		if o.err != syscall.EINTR {
			return true
		}
	}
}

func (o *sockOp) doCtl(fd uintptr) {
	o.err = syscall.EpollCtl(thePoller.epfd, o.op, int(fd), &o.ev)
}

// readSome reads what the socket holds into buf without waiting:
// errWouldBlock when there is nothing, io.EOF at its end.
func (w *rawWS) readSome(buf []byte) (int, error) {
	o := getSockOp()
	o.buf = buf
	err := w.rc.Read(o.read)
	n, rerr := o.n, o.err
	o.put()
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// writeSome writes b to the socket with one non-blocking system call (the
// pool writer's, writers.go): errWouldBlock when the socket takes nothing.
func (w *rawWS) writeSome(b []byte) (int, error) {
	o := getSockOp()
	o.buf = b
	err := w.rc.Write(o.wrt)
	n, werr := o.n, o.err
	o.put()
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, errWouldBlock
	case werr != nil:
		return 0, werr
	}
	return n, nil
}
