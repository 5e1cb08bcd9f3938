package mesh

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/metric"
)

// eachLink runs f over QUIC and in memory (InProcess nodes), and checks
// that the in-memory run took no QUIC call and the QUIC run no local one.
func eachLink(t *testing.T, f func(t *testing.T, listen func(testing.TB, *Identity) *Node)) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "quic", true: "in-process"}[local], func(t *testing.T) {
			var mu sync.Mutex
			var nodes []*Node
			mk := func(tb testing.TB, id *Identity) *Node {
				tb.Helper()
				var n *Node
				if local {
					n = listenLocal(tb, id)
				} else {
					n = listen(tb, id)
				}
				mu.Lock()
				nodes = append(nodes, n)
				mu.Unlock()
				return n
			}
			f(t, mk)
			var quic, mem int64
			for _, n := range nodes {
				quic += n.muxCalls.Load() + n.streamCalls.Load()
				mem += n.localCalls.Load()
			}
			if local && (mem == 0 || quic != 0) {
				t.Errorf("in-process run: %d calls in memory, %d over QUIC; want some and none", mem, quic)
			}
			if !local && mem != 0 {
				t.Errorf("QUIC run: %d calls in memory, want none", mem)
			}
		})
	}
}

func listenLocal(t testing.TB, id *Identity) *Node {
	t.Helper()
	n, err := Listen("127.0.0.1:0", id, testLogger(t), InProcess())
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestLocalOnlyBetweenInProcessNodes: a node without the option, calling or
// called, goes over QUIC.
func TestLocalOnlyBetweenInProcessNodes(t *testing.T) {
	ids := pki(t, "core", "edge", "edge-2")
	core := listenLocal(t, ids["core"])
	plain := listen(t, ids["edge"])
	local := listenLocal(t, ids["edge-2"])
	plainCore := listen(t, pki(t, "core-2")["core-2"])
	for _, n := range []*Node{core, plainCore} {
		n.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	}
	ctx := ctxT(t)
	if _, err := plain.Call(ctx, core.Addr(), "echo", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if plain.localCalls.Load() != 0 || plain.muxCalls.Load() != 1 {
		t.Errorf("plain → in-process: %d in memory, %d over QUIC; want 0, 1", plain.localCalls.Load(), plain.muxCalls.Load())
	}
	// local's CA differs from plainCore's: the QUIC handshake fails, which
	// shows the call went to the wire.
	if _, err := local.Call(ctx, plainCore.Addr(), "echo", []byte("x")); err == nil || local.localCalls.Load() != 0 {
		t.Errorf("in-process → plain: err %v, %d in memory; want a QUIC failure", err, local.localCalls.Load())
	}
	if _, err := local.Call(ctx, core.Addr(), "echo", []byte("x")); err != nil || local.localCalls.Load() != 1 {
		t.Errorf("in-process → in-process: err %v, %d in memory; want nil, 1", err, local.localCalls.Load())
	}
	text, _ := metric.Text(Collector())
	if !strings.Contains(text, `relaymesh_mesh_inprocess_calls_total{node="edge-2"} 1`+"\n") {
		t.Errorf("no in-process count of 1 for edge-2:\n%s", text)
	}
	if strings.Contains(text, `relaymesh_mesh_inprocess_calls_total{node="edge"}`) {
		t.Errorf("a node without the option has an in-process series:\n%s", text)
	}
}

// TestLocalRoles: the target's role checks hold in memory.
func TestLocalRoles(t *testing.T) {
	ids := pki(t, "core-1", "edge-1")
	core, edge := listenLocal(t, ids["core-1"]), listenLocal(t, ids["edge-1"])
	ran := false
	core.HandleRPC("cores-only", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		ran = true
		return nil, nil
	}, RoleCore)
	core.HandleStream("cores-stream", func(ctx context.Context, peer string, s *Stream) { ran = true }, RoleCore)
	var role Role
	core.HandleRPC("who", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		role = CallerRole(ctx)
		return []byte(peer), nil
	})
	ctx := ctxT(t)
	if _, err := edge.Call(ctx, core.Addr(), "cores-only", nil); !errors.Is(err, ErrForbidden) || !errors.Is(err, ErrRemote) {
		t.Errorf("edge calling a cores-only method: %v, want ErrForbidden", err)
	}
	if _, err := edge.OpenStream(ctx, core.Addr(), "cores-stream"); !errors.Is(err, ErrForbidden) {
		t.Errorf("edge opening a cores-only stream: %v, want ErrForbidden", err)
	}
	if ran {
		t.Error("a forbidden handler ran")
	}
	if got, err := edge.Call(ctx, core.Addr(), "who", nil); err != nil || string(got) != "edge-1" || role != RoleEdge {
		t.Errorf("who: %q %v, role %q; want edge-1, RoleEdge", got, err, role)
	}
}

// TestLocalCopies: neither side sees the other's later writes to its
// buffers (requests, replies and frames are copied, as the wire copies
// them).
func TestLocalCopies(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listenLocal(t, ids["core"]), listenLocal(t, ids["edge"])
	var kept []byte
	reply := []byte("reply")
	core.HandleRPC("keep", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		kept = req
		return reply, nil
	})
	frames := make(chan []byte, 1)
	core.HandleStream("s", func(ctx context.Context, peer string, s *Stream) {
		b, _ := s.Recv()
		frames <- b
		<-ctx.Done()
	})
	ctx := ctxT(t)
	req := []byte("request")
	got, err := edge.Call(ctx, core.Addr(), "keep", req)
	if err != nil {
		t.Fatal(err)
	}
	copy(req, "XXXXXXX")
	copy(got, "YYYYY")
	if string(kept) != "request" || string(reply) != "reply" {
		t.Errorf("after the caller wrote over its buffers: handler kept %q, its reply is %q", kept, reply)
	}
	s, err := edge.OpenStream(ctx, core.Addr(), "s")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := []byte("frame")
	if err := s.Send(msg); err != nil {
		t.Fatal(err)
	}
	copy(msg, "ZZZZZ")
	if b := <-frames; string(b) != "frame" {
		t.Errorf("frame: got %q, want %q", b, "frame")
	}
}

// TestLocalBackpressure: a peer that stops reading holds a sender once the
// window is full; after its send timeout the Send fails and the stream is
// reset on both ends.
func TestLocalBackpressure(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listenLocal(t, ids["core"]), listenLocal(t, ids["edge"])
	read := make(chan struct{})
	handlerErr := make(chan error, 1)
	core.HandleStream("slow", func(ctx context.Context, peer string, s *Stream) {
		<-read
		for {
			if _, err := s.Recv(); err != nil {
				handlerErr <- err
				return
			}
		}
	})
	s, err := edge.OpenStream(ctxT(t), core.Addr(), "slow")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetSendTimeout(300 * time.Millisecond)
	frame := make([]byte, 64<<10)
	sent := 0
	start := time.Now()
	for {
		if err := s.Send(frame); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Send after %d frames: %v, want a deadline error", sent, err)
			}
			break
		}
		sent++
		if sent > 2*localWindow/len(frame) {
			t.Fatalf("%d frames of %d bytes taken by a peer that reads nothing; the window is %d", sent, len(frame), localWindow)
		}
	}
	if sent*len(frame) > localWindow || sent*len(frame) < localWindow-len(frame) {
		t.Errorf("%d bytes taken before Send waited, want the window (%d)", sent*len(frame), localWindow)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("Send failed after %v, before its 300ms timeout", waited)
	}
	close(read)
	select {
	case err := <-handlerErr:
		if err == io.EOF || err == nil {
			t.Errorf("the reader of a reset stream got %v, want an error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reader of a reset stream is still reading")
	}
	if err := s.Send([]byte("x")); err == nil {
		t.Error("Send on a reset stream succeeded")
	}
}

// TestLocalBlockedSendClose: Close while a Send waits for room aborts the
// Send, as over QUIC.
func TestLocalBlockedSendClose(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listenLocal(t, ids["core"]), listenLocal(t, ids["edge"])
	core.HandleStream("deaf", func(ctx context.Context, peer string, s *Stream) { <-ctx.Done() })
	s, err := edge.OpenStream(ctxT(t), core.Addr(), "deaf")
	if err != nil {
		t.Fatal(err)
	}
	s.SetSendTimeout(-1)
	errc := make(chan error, 1)
	go func() {
		frame := make([]byte, 1<<20)
		for {
			if err := s.Send(frame); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the window fills in well under this
	s.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Send blocked on a full window outlived Close")
	}
}

// TestLocalNodeClose: closing the target fails its streams on the caller's
// side and ends its handlers; later calls are not sent.
func TestLocalNodeClose(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listenLocal(t, ids["core"]), listenLocal(t, ids["edge"])
	handlerCtx := make(chan error, 1)
	core.HandleStream("long", func(ctx context.Context, peer string, s *Stream) {
		<-ctx.Done()
		handlerCtx <- ctx.Err()
	})
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx := ctxT(t)
	s, err := edge.OpenStream(ctx, core.Addr(), "long")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	callErr := make(chan error, 1)
	go func() {
		_, err := edge.Call(ctx, core.Addr(), "block", nil)
		callErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	addr := core.Addr()
	core.Close() // waits for both handlers: their contexts must end
	if err := <-handlerCtx; err == nil {
		t.Error("the stream handler's context did not end with an error")
	}
	if err := <-callErr; !errors.Is(err, ErrRemote) {
		t.Errorf("a call running while its target closed: %v, want the handler's error (ErrRemote)", err)
	}
	if _, err := s.Recv(); err == nil || err == io.EOF {
		t.Errorf("Recv on a stream to a closed node: %v, want an error", err)
	}
	if _, err := edge.Call(ctx, addr, "block", nil); err == nil {
		t.Error("a call to a closed node succeeded")
	}
	if edge.localPeer(addr) != nil {
		t.Error("a closed node is still registered")
	}
}

// TestLocalNodeCloseStreams: a node that closes breaks every stream to it
// before its handlers' contexts end, so a handler that returns at once
// (closing its end) never makes the close look like a clean EOF.
func TestLocalNodeCloseStreams(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listenLocal(t, ids["core"]), listenLocal(t, ids["edge"])
	core.HandleStream("quick", func(ctx context.Context, peer string, s *Stream) { <-ctx.Done() })
	ctx := ctxT(t)
	const n = 300
	streams := make([]*Stream, n)
	for i := range streams {
		s, err := edge.OpenStream(ctx, core.Addr(), "quick")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams[i] = s
	}
	core.Close()
	eof := 0
	for _, s := range streams {
		if _, err := s.Recv(); err == nil || err == io.EOF {
			eof++
		}
	}
	if eof > 0 {
		t.Errorf("%d of %d streams to a closed node read a clean end, want an error", eof, n)
	}
}

// TestLocalCallCancel: a caller that gives up returns at once even when the
// handler ignores its context.
func TestLocalCallCancel(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listenLocal(t, ids["core"]), listenLocal(t, ids["edge"])
	release := make(chan struct{})
	defer close(release)
	core.HandleRPC("stuck", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		<-release
		return nil, nil
	})
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := edge.Call(ctx, core.Addr(), "stuck", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Call returned %v after its deadline", d)
	}
	// A context that ended before the call: nothing runs, nothing is sent.
	ran := false
	core.HandleRPC("count", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		ran = true
		return nil, nil
	})
	done, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := edge.Call(done, core.Addr(), "count", nil); !errors.Is(err, ErrNotSent) || !errors.Is(err, context.Canceled) {
		t.Errorf("call with an ended context: %v, want ErrNotSent and context.Canceled", err)
	}
	if _, err := edge.OpenStream(done, core.Addr(), "count"); !errors.Is(err, context.Canceled) {
		t.Errorf("stream with an ended context: %v, want context.Canceled", err)
	}
	if ran {
		t.Error("a handler ran for a call whose context had ended")
	}
}

func BenchmarkCallLocal(b *testing.B) {
	ids := pki(b, "core", "edge")
	core, edge := listenLocal(b, ids["core"]), listenLocal(b, ids["edge"])
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	req := bytes.Repeat([]byte("x"), 256)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil {
			b.Fatal(err)
		}
	}
}
