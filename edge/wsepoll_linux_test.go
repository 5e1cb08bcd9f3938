package edge

import (
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawPair connects a TCP client to a server socket on loopback and returns
// the client and a bare rawWS on the server's end; both close at the test's
// end.
func rawPair(t *testing.T) (net.Conn, *rawWS) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); accepted <- c }()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { srv.Close() })
	rc, err := srv.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return cli, &rawWS{rc: rc}
}

// TestSockOpsAllocateNothing: a socket read, a write and an epoll change
// through the pooled ops allocate nothing (they run at every socket read
// and write of every connection), and each does its call.
func TestSockOpsAllocateNothing(t *testing.T) {
	_, err := getPoller()
	if err != nil {
		t.Skipf("no epoll here: %v", err)
	}
	cli, w := rawPair(t)
	out, in := []byte("0123456789"), make([]byte, 64)
	if _, err := w.readSome(in); err != errWouldBlock {
		t.Fatalf("read of an empty socket: %v, want errWouldBlock", err)
	}
	if err := w.ctl(syscall.EPOLL_CTL_ADD, syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
		t.Fatalf("epoll add: %v", err)
	}
	back := make([]byte, len(out))
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := w.writeSome(out); err != nil || n != len(out) {
			t.Fatalf("write: %d, %v", n, err)
		}
		if _, err := io.ReadFull(cli, back); err != nil || string(back) != string(out) {
			t.Fatalf("the client read %q, %v", back, err)
		}
		if _, err := cli.Write(out); err != nil {
			t.Fatal(err)
		}
		got := 0
		for spins := 0; got < len(out); spins++ {
			n, err := w.readSome(in[got:])
			if err == errWouldBlock && spins < 1e6 {
				continue
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			got += n
		}
		if string(in[:got]) != string(out) {
			t.Fatalf("read %q", in[:got])
		}
		if err := w.ctl(syscall.EPOLL_CTL_MOD, syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
			t.Fatalf("epoll mod: %v", err)
		}
	})
	if err := w.ctl(syscall.EPOLL_CTL_DEL, syscall.EpollEvent{}); err != nil {
		t.Fatalf("epoll del: %v", err)
	}
	if err := w.ctl(syscall.EPOLL_CTL_DEL, syscall.EpollEvent{}); err == nil {
		t.Fatal("a second epoll del of the socket succeeded: the op did not reach epoll")
	}
	switch {
	case raceEnabled: // sync.Pool drops items at random under the race detector
		t.Logf("a write, a read and an epoll change: %v allocations (race detector on: not checked)", allocs)
	case allocs != 0:
		t.Errorf("a write, a read and an epoll change: %v allocations, want 0", allocs)
	}
}

// TestPollerWaitsInNetpoller: the poller's loop waits parked in Go's
// netpoller ("IO wait"), not in a blocking epoll_wait ("syscall"), which
// would keep its P and strand the reader passes it had just queued there
// until the runtime's monitor took the P back.
func TestPollerWaitsInNetpoller(t *testing.T) {
	if _, err := getPoller(); err != nil {
		t.Skipf("no epoll here: %v", err)
	}
	_, w := rawPair(t)
	if err := w.arm(); err != nil { // adds the socket and starts the loop
		t.Fatal(err)
	}
	defer w.unregister()
	// The loop may be busy with other tests' sockets; look until it waits.
	var states []string
	buf := make([]byte, 8<<20) // every goroutine's stack, the loop's among them
	for range 500 {
		n := runtime.Stack(buf, true)
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			if !strings.Contains(g, "edge.(*poller).loop(") {
				continue
			}
			head, _, _ := strings.Cut(g, "\n")
			state := head[strings.Index(head, "[")+1 : strings.Index(head, "]")]
			if strings.HasPrefix(state, "IO wait") {
				return
			}
			states = append(states, state)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the poller's loop never waited in the netpoller; states seen: %q", states[max(0, len(states)-5):])
}
