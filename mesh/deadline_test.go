package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// TestSendTimeoutStuckPeer: a peer that never reads a stream cannot hold
// a Send forever. The Send fails with os.ErrDeadlineExceeded, the stream
// is reset, and calls to the same peer keep working meanwhile.
func TestSendTimeoutStuckPeer(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	core.HandleStream("stuck", func(ctx context.Context, peer string, s *Stream) {
		<-ctx.Done() // never reads
	})
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		return req, nil
	})
	s, err := edge.OpenStream(ctxT(t), core.Addr(), "stuck")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetSendTimeout(200 * time.Millisecond)
	frame := make([]byte, 64<<10)
	var sendErr error
	// Flow control stops the writer after the peer's window (well under
	// 64 MiB); then the deadline must fire.
	for range 1024 {
		if sendErr = s.Send(frame); sendErr != nil {
			break
		}
	}
	if !errors.Is(sendErr, os.ErrDeadlineExceeded) {
		t.Fatalf("Send to a peer that never reads: got %v, want os.ErrDeadlineExceeded", sendErr)
	}
	if err := s.Send([]byte("x")); err == nil {
		t.Error("Send after a timed-out Send: got nil, want an error (the stream is reset)")
	}
	got, err := edge.Call(ctxT(t), core.Addr(), "echo", []byte("still here"))
	if err != nil || string(got) != "still here" {
		t.Errorf("Call beside the stuck stream: got %q, %v", got, err)
	}
}

// TestSendTimeoutKeepsWorking: the deadline of one Send does not leak into
// the next: frames sent slower than the timeout, to a peer that reads, all
// arrive.
func TestSendTimeoutKeepsWorking(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	got := make(chan string, 8)
	core.HandleStream("read", func(ctx context.Context, peer string, s *Stream) {
		for {
			b, err := s.Recv()
			if err != nil {
				return
			}
			got <- string(b)
		}
	})
	s, err := edge.OpenStream(ctxT(t), core.Addr(), "read")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetSendTimeout(50 * time.Millisecond)
	for _, m := range []string{"a", "b", "c"} {
		if err := s.Send([]byte(m)); err != nil {
			t.Fatalf("Send %s: %v", m, err)
		}
		select {
		case g := <-got:
			if g != m {
				t.Fatalf("got %q, want %q", g, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("frame %s never arrived", m)
		}
		time.Sleep(100 * time.Millisecond) // longer than the send timeout
	}
}

// TestCallDeadAddress: a call to an address where nothing answers QUIC
// gives up on its own (the dial has its own deadline, shorter than the
// caller's), and says the request was not sent.
func TestCallDeadAddress(t *testing.T) {
	ids := pki(t, "edge")
	edge := listen(t, ids["edge"])
	// A UDP socket that swallows every packet: a killed process whose port
	// is still bound looks like this, or a host that drops traffic.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = edge.Call(ctx, dead.LocalAddr().String(), "echo", []byte("x"))
	if err == nil {
		t.Fatal("Call to a dead address succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("Call waited for the caller's whole deadline: %v", err)
	}
	if !errors.Is(err, ErrNotSent) {
		t.Errorf("Call to a dead address: got %v, want ErrNotSent", err)
	}
}

// TestCallSentOutcomeUnknown: once the request is written, a failure is
// not ErrNotSent: the peer may have acted on it.
func TestCallSentOutcomeUnknown(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	started := make(chan struct{})
	core.HandleRPC("slow", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := edge.Call(ctx, core.Addr(), "slow", []byte("x"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotSent) {
		t.Errorf("cancelled after the handler started: got %v, want context.Canceled and not ErrNotSent", err)
	}
	// Once the caller knows the node is gone, calls are refused unsent.
	core.Close()
	waitFor(t, 30*time.Second, "call to a closed node", func() error {
		_, err := edge.Call(ctxT(t), core.Addr(), "slow", []byte("x"))
		if !errors.Is(err, ErrNotSent) {
			return fmt.Errorf("got %v, want ErrNotSent", err)
		}
		return nil
	})
}
