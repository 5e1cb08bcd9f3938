package mesh

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// setMux sets the mux tuning for one test.
func setMux(t testing.TB, streams int, spreadAt int32) {
	oldS, oldA := muxStreams, muxSpreadAt
	muxStreams, muxSpreadAt = streams, spreadAt
	t.Cleanup(func() { muxStreams, muxSpreadAt = oldS, oldA })
}

// muxPoolTo is the caller's mux pool on its connection to addr.
func muxPoolTo(t testing.TB, n *Node, addr string) *muxPool {
	t.Helper()
	n.mu.Lock()
	d := n.dials[addr]
	n.mu.Unlock()
	if d == nil {
		t.Fatalf("no connection to %s", addr)
	}
	<-d.done
	return d.mux
}

// muxStreamsOf returns the pool's live streams.
func muxStreamsOf(p *muxPool) []*muxStream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*muxStream(nil), p.streams...)
}

// TestMuxConcurrentCalls: 64 callers × 500 calls of mixed methods, some
// slow, all on the connection's mux streams: every reply is its own
// caller's.
func TestMuxConcurrentCalls(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	core.HandleRPC("rev", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		out := make([]byte, len(req))
		for i, b := range req {
			out[len(req)-1-i] = b
		}
		return out, nil
	})
	core.HandleRPC("slow", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return append([]byte("slow:"), req...), nil
	})
	core.HandleRPC("fail", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		return nil, fmt.Errorf("failed %s", req)
	})
	const workers, calls = 64, 500
	ctx := ctxT(t)
	callConcurrently(t, workers, calls, func(w, i int) error {
		req := fmt.Appendf(nil, "%d/%d", w, i)
		var want []byte
		method := []string{"echo", "rev", "slow", "fail"}[(w+i)%4]
		switch method {
		case "echo":
			want = req
		case "rev":
			want = []byte(strings.Join(reverse(strings.Split(string(req), "")), ""))
		case "slow":
			if i%10 != 0 {
				method, want = "echo", req // a few slow calls among many fast ones
			} else {
				want = append([]byte("slow:"), req...)
			}
		}
		got, err := edge.Call(ctx, core.Addr(), method, req)
		if method == "fail" {
			if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "failed "+string(req)) {
				return fmt.Errorf("fail %s: got %v, want ErrRemote naming the request", req, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, req, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s: got %q, want %q", method, got, want)
		}
		return nil
	})
	if got := edge.muxCalls.Load(); got < workers*calls {
		t.Errorf("calls on mux streams: got %d, want %d", got, workers*calls)
	}
	if got := edge.streamCalls.Load(); got != 0 {
		t.Errorf("calls on streams of their own: got %d, want 0", got)
	}
	if n := len(muxStreamsOf(muxPoolTo(t, edge, core.Addr()))); n < 1 || n > muxStreams {
		t.Errorf("mux streams: got %d, want 1..%d", n, muxStreams)
	}
}

func reverse(s []string) []string {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}

// TestMuxSlowDoesNotBlock: on one mux stream, a handler that blocks does
// not hold up the calls after it: they are answered while it still blocks.
func TestMuxSlowDoesNotBlock(t *testing.T) {
	setMux(t, 1, 1)
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	release := make(chan struct{})
	started := make(chan struct{})
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		close(started)
		<-release
		return []byte("late"), nil
	})
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	ctx := ctxT(t)
	blocked := make(chan error, 1)
	go func() {
		got, err := edge.Call(ctx, core.Addr(), "block", nil)
		if err == nil && string(got) != "late" {
			err = fmt.Errorf("got %q", got)
		}
		blocked <- err
	}()
	<-started
	for i := range 200 {
		req := fmt.Appendf(nil, "%d", i)
		if got, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil || !bytes.Equal(got, req) {
			t.Fatalf("echo %d behind a blocked call: %q %v", i, got, err)
		}
	}
	select {
	case err := <-blocked:
		t.Fatalf("blocked call returned before its release: %v", err)
	default:
	}
	if n := len(muxStreamsOf(muxPoolTo(t, edge, core.Addr()))); n != 1 {
		t.Fatalf("mux streams: got %d, want 1 (all calls on one)", n)
	}
	close(release)
	if err := <-blocked; err != nil {
		t.Fatalf("blocked call: %v", err)
	}
}

// TestMuxCancel: a call whose context ends returns at once with the
// context's error (its handler still running), its handler's context ends,
// and the stream goes on serving.
func TestMuxCancel(t *testing.T) {
	setMux(t, 1, 1)
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	stubborn := make(chan struct{}) // the handler ignores its context until this closes
	started, sawEnd := make(chan struct{}), make(chan error, 1)
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		sawEnd <- ctx.Err()
		<-stubborn
		return []byte("too late"), nil
	})
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	if _, err := edge.Call(ctxT(t), core.Addr(), "echo", nil); err != nil {
		t.Fatal(err)
	}
	stream := muxStreamsOf(muxPoolTo(t, edge, core.Addr()))[0]

	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		<-started
		cancel()
	}()
	_, err := edge.Call(ctx, core.Addr(), "block", []byte("x"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotSent) {
		t.Fatalf("cancelled call: got %v, want context.Canceled, not ErrNotSent", err)
	}
	select {
	case err := <-sawEnd:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler context not cancelled after the caller gave up")
	}
	// The handler is still running (stubborn): its id stays in flight on
	// the caller's side until the server's late reply, which is dropped.
	if got := stream.inflight.Load(); got != 1 {
		t.Errorf("calls in flight while the cancelled handler runs: got %d, want 1", got)
	}
	close(stubborn)
	waitFor(t, 10*time.Second, "late reply dropped", func() error {
		if got := stream.inflight.Load(); got != 0 {
			return fmt.Errorf("in flight: %d", got)
		}
		return nil
	})
	for i := range 10 {
		if _, err := edge.Call(ctxT(t), core.Addr(), "echo", []byte("after")); err != nil {
			t.Fatalf("call %d after cancel: %v", i, err)
		}
	}
	if s := muxStreamsOf(muxPoolTo(t, edge, core.Addr())); len(s) != 1 || s[0] != stream {
		t.Errorf("the cancel replaced the mux stream: %v", s)
	}
	// A context that has ended before the call: nothing is sent.
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	sent := edge.muxCalls.Load() + edge.streamCalls.Load()
	if _, err := edge.Call(done, core.Addr(), "echo", []byte("x")); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNotSent) {
		t.Errorf("call with an ended context: got %v, want context.Canceled and ErrNotSent", err)
	}
	if now := edge.muxCalls.Load() + edge.streamCalls.Load(); now != sent {
		t.Errorf("call with an ended context was sent: %d calls, had %d", now, sent)
	}
}

// TestMuxPeerCloses: calls in flight when the peer closes fail (they were
// sent: not ErrNotSent); calls to the closed peer are ErrNotSent; once it
// is back, calls succeed on a fresh mux stream.
func TestMuxPeerCloses(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	addr := core.Addr()
	var started sync.WaitGroup
	const n = 20
	started.Add(n)
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		started.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx := ctxT(t)
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := edge.Call(ctx, addr, "block", []byte("x"))
			errs <- err
		}()
	}
	started.Wait()
	old := muxPoolTo(t, edge, addr)
	core.Close()
	for range n {
		select {
		case err := <-errs:
			if err == nil || errors.Is(err, ErrNotSent) {
				t.Errorf("call in flight when the peer closed: got %v, want an error, not ErrNotSent", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a call in flight hangs after its peer closed")
		}
	}
	waitFor(t, 15*time.Second, "calls to the closed peer are not sent", func() error {
		_, err := edge.Call(ctxT(t), addr, "block", []byte("x"))
		if !errors.Is(err, ErrNotSent) {
			return fmt.Errorf("got %v, want ErrNotSent", err)
		}
		return nil
	})
	core2 := listenAt(t, addr, ids["core"])
	core2.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	waitFor(t, 15*time.Second, "call after restart", func() error {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := edge.Call(c, addr, "echo", []byte("3"))
		return err
	})
	if p := muxPoolTo(t, edge, addr); p == old || len(muxStreamsOf(p)) == 0 {
		t.Errorf("after restart: same pool %v, streams %d; want a fresh mux stream", p == old, len(muxStreamsOf(p)))
	}
	if len(muxStreamsOf(old)) != 0 {
		t.Errorf("the old connection keeps %d mux streams", len(muxStreamsOf(old)))
	}
}

// TestMuxRoles: per call on one mux stream, a forbidden method is refused
// with ErrForbidden (its handler never runs) while an allowed one works;
// unknown methods, handler errors and panics come back as on a stream of
// their own.
func TestMuxRoles(t *testing.T) {
	setMux(t, 1, 1)
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	var coreCalls atomic.Int32
	core.HandleRPC("cores", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		coreCalls.Add(1)
		return nil, nil
	}, RoleCore)
	core.HandleRPC("edges", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		return append([]byte("hi "), peer...), nil
	}, RoleEdge)
	core.HandleRPC("err", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		return nil, errors.New("boom")
	})
	core.HandleRPC("panic", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		panic("oops")
	})
	ctx := ctxT(t)
	for i := range 3 {
		_, err := edge.Call(ctx, core.Addr(), "cores", []byte("x"))
		if !errors.Is(err, ErrForbidden) || !errors.Is(err, ErrRemote) || errors.Is(err, ErrNotSent) {
			t.Errorf("forbidden call %d: got %v, want ErrRemote and ErrForbidden", i, err)
		}
		if got, err := edge.Call(ctx, core.Addr(), "edges", nil); err != nil || string(got) != "hi edge" {
			t.Errorf("allowed call %d: got %q %v", i, got, err)
		}
	}
	if _, err := edge.Call(ctx, core.Addr(), "nope", nil); !errors.Is(err, ErrUnknownMethod) || !errors.Is(err, ErrRemote) {
		t.Errorf("unknown method: got %v, want ErrRemote and ErrUnknownMethod", err)
	}
	if _, err := edge.Call(ctx, core.Addr(), "err", nil); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "boom") {
		t.Errorf("handler error: got %v, want ErrRemote with boom", err)
	}
	if _, err := edge.Call(ctx, core.Addr(), "panic", nil); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "oops") {
		t.Errorf("handler panic: got %v, want ErrRemote with oops", err)
	}
	if n := coreCalls.Load(); n != 0 {
		t.Errorf("forbidden handler ran %d times", n)
	}
	if n := len(muxStreamsOf(muxPoolTo(t, edge, core.Addr()))); n != 1 {
		t.Errorf("mux streams: got %d, want 1", n)
	}
	if got := edge.streamCalls.Load(); got != 0 {
		t.Errorf("calls on streams of their own: got %d, want 0", got)
	}
}

// TestMuxSizes: a request over muxMaxRequest takes a stream of its own; a
// request at the limit and replies up to MaxFrameSize use the mux stream.
func TestMuxSizes(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	core.HandleRPC("big", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		n := int(binary.BigEndian.Uint32(req))
		return bytes.Repeat([]byte{'b'}, n), nil
	})
	ctx := ctxT(t)
	for _, tc := range []struct {
		size     int
		viaMux   bool
		viaOwned bool
	}{
		{muxMaxRequest, true, false},
		{muxMaxRequest + 1, false, true},
		{4 << 20, false, true},
	} {
		m0, s0 := edge.muxCalls.Load(), edge.streamCalls.Load()
		req := bytes.Repeat([]byte{'r'}, tc.size)
		got, err := edge.Call(ctx, core.Addr(), "echo", req)
		if err != nil || !bytes.Equal(got, req) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", tc.size, len(got), err)
		}
		if m, s := edge.muxCalls.Load()-m0, edge.streamCalls.Load()-s0; (m == 1) != tc.viaMux || (s == 1) != tc.viaOwned {
			t.Errorf("request of %d bytes: %d mux, %d own-stream calls; want mux %v", tc.size, m, s, tc.viaMux)
		}
	}
	for _, size := range []int{1 << 20, MaxFrameSize} {
		m0 := edge.muxCalls.Load()
		got, err := edge.Call(ctx, core.Addr(), "big", binary.BigEndian.AppendUint32(nil, uint32(size)))
		if err != nil || len(got) != size || got[size-1] != 'b' {
			t.Fatalf("reply of %d bytes: got %d bytes, %v", size, len(got), err)
		}
		if edge.muxCalls.Load() != m0+1 {
			t.Errorf("reply of %d bytes did not come on a mux stream", size)
		}
	}
	_, err := edge.Call(ctx, core.Addr(), "big", binary.BigEndian.AppendUint32(nil, MaxFrameSize+1))
	if !errors.Is(err, ErrFrameTooLarge) || !errors.Is(err, ErrRemote) {
		t.Errorf("reply over MaxFrameSize: got %v, want ErrRemote and ErrFrameTooLarge", err)
	}
	// The mux streams survived all of it.
	if got, err := edge.Call(ctx, core.Addr(), "echo", []byte("ok")); err != nil || string(got) != "ok" {
		t.Fatalf("echo after: %q %v", got, err)
	}
}

// TestMuxFallback: a peer that does not know mux streams (it resets them
// as an unknown kind) is called on a stream per call, remembered for the
// connection; a fresh connection tries mux again.
func TestMuxFallback(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	core.refuseMux.Store(true)
	var calls atomic.Int32
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		calls.Add(1)
		return req, nil
	})
	ctx := ctxT(t)
	callConcurrently(t, 16, 20, func(w, i int) error {
		req := fmt.Appendf(nil, "%d/%d", w, i)
		if got, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil || !bytes.Equal(got, req) {
			return fmt.Errorf("call to a peer without mux: %q %v", got, err)
		}
		return nil
	})
	if n := calls.Load(); n != 16*20 {
		t.Errorf("handler ran %d times, want %d (each call once)", n, 16*20)
	}
	p := muxPoolTo(t, edge, core.Addr())
	p.mu.Lock()
	refused := p.refused
	p.mu.Unlock()
	if !refused {
		t.Error("the refusal is not remembered for the connection")
	}
	if got := edge.streamCalls.Load(); got != 16*20 {
		t.Errorf("calls on streams of their own: got %d, want %d", got, 16*20)
	}
	// The connection is still one: the fallback did not drop it.
	edge.mu.Lock()
	nconns := len(edge.conns)
	edge.mu.Unlock()
	if nconns != 1 {
		t.Errorf("connections from edge: %d, want 1", nconns)
	}
	// After an upgrade (a new connection to a node that knows mux) calls use it.
	core.refuseMux.Store(false)
	edge.forget(core.Addr(), p.c)
	p.c.CloseWithError(codeNoError, "")
	waitFor(t, 10*time.Second, "mux after upgrade", func() error {
		m0 := edge.muxCalls.Load()
		if _, err := edge.Call(ctxT(t), core.Addr(), "echo", []byte("x")); err != nil {
			return err
		}
		if edge.muxCalls.Load() == m0 {
			return errors.New("not on a mux stream")
		}
		return nil
	})
}

// rawMux opens a mux stream by hand and reads the server's status.
func rawMux(t *testing.T, from *Node, addr string) *quic.Stream {
	t.Helper()
	s, _, err := from.openStream(ctxT(t), addr, kindMux, "")
	if err != nil {
		t.Fatal(err)
	}
	var st [1]byte
	if _, err := io.ReadFull(s, st[:]); err != nil || st[0] != statusOK {
		t.Fatalf("mux open: status %d, %v", st[0], err)
	}
	t.Cleanup(func() { reset(s, codeNoError) })
	return s
}

func callFrame(id uint64, method string, req []byte) []byte {
	return appendMuxFrame(nil, &muxCall{id: id, method: method, req: req})
}

func cancelFrame(id uint64) []byte {
	return appendMuxFrame(nil, &muxCall{id: id, cancel: true})
}

// readReply reads one reply frame.
func readReply(t *testing.T, s *quic.Stream) (uint64, byte, []byte) {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := readFrameMax(s, MaxFrameSize+muxReplyOverhead)
	if err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	id, st, p, err := parseMuxReply(f)
	if err != nil {
		t.Fatalf("reply %x: %v", f, err)
	}
	return id, st, p
}

// expectReset reads until the stream ends and wants the server's reset
// with codeProtocol.
func expectReset(t *testing.T, s *quic.Stream, what string) {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, s)
	var serr *quic.StreamError
	if !errors.As(err, &serr) || !serr.Remote || serr.ErrorCode != codeProtocol {
		t.Errorf("%s: stream ended with %v, want the server's reset (code %d)", what, err, codeProtocol)
	}
}

// TestMuxAbuse drives the mux protocol by hand: malformed frames, a
// duplicate id and more calls in flight than muxMaxCalls each reset the
// stream (ending its handlers), a cancel of an unknown id is ignored, and
// the node keeps serving other streams throughout.
func TestMuxAbuse(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	var running atomic.Int32
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		running.Add(1)
		defer running.Add(-1)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	addr := core.Addr()
	healthy := func(what string) {
		t.Helper()
		if got, err := edge.Call(ctxT(t), addr, "echo", []byte(what)); err != nil || string(got) != what {
			t.Fatalf("normal call after %s: %q %v", what, got, err)
		}
	}
	write := func(s *quic.Stream, b []byte) {
		t.Helper()
		if _, err := s.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	healthy("start")

	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"unknown frame type", []byte{0, 0, 0, 2, 9, 1}},
		{"empty frame", []byte{0, 0, 0, 0}},
		{"bad varint", append([]byte{0, 0, 0, 11, muxFrameCall}, bytes.Repeat([]byte{0xff}, 10)...)},
		{"method past the end", []byte{0, 0, 0, 4, muxFrameCall, 1, 200, 'x'}},
		{"cancel with a body", []byte{0, 0, 0, 3, muxFrameCancel, 1, 'x'}},
		{"oversize frame", binary.BigEndian.AppendUint32(nil, uint32(muxMaxRequest+muxCallOverhead+1))},
		{"16 MiB frame", binary.BigEndian.AppendUint32(nil, MaxFrameSize)},
	} {
		s := rawMux(t, edge, addr)
		write(s, callFrame(1, "block", nil)) // a handler that must end with the stream
		write(s, tc.frame)
		expectReset(t, s, tc.name)
		healthy(tc.name)
	}
	waitFor(t, 10*time.Second, "handlers of reset streams end", func() error {
		if n := running.Load(); n != 0 {
			return fmt.Errorf("%d handlers still running", n)
		}
		return nil
	})

	// A truncated frame then FIN: reset, not served.
	s := rawMux(t, edge, addr)
	write(s, callFrame(1, "echo", []byte("cut"))[:8])
	s.Close()
	expectReset(t, s, "truncated frame")

	// Cancels of ids never used, or finished: ignored; the stream serves on.
	s = rawMux(t, edge, addr)
	write(s, cancelFrame(77))
	write(s, callFrame(5, "echo", []byte("five")))
	if id, st, p := readReply(t, s); id != 5 || st != statusOK || string(p) != "five" {
		t.Fatalf("reply after a stray cancel: id %d status %d %q", id, st, p)
	}
	write(s, cancelFrame(5))
	write(s, callFrame(5, "echo", []byte("again"))) // an id may be reused once answered
	if id, st, p := readReply(t, s); id != 5 || st != statusOK || string(p) != "again" {
		t.Fatalf("reply to a reused id: id %d status %d %q", id, st, p)
	}
	// An empty method name is an unknown method, not a broken stream.
	write(s, callFrame(6, "", nil))
	if id, st, _ := readReply(t, s); id != 6 || st != statusUnknown {
		t.Fatalf("empty method: id %d status %d, want %d", id, st, statusUnknown)
	}
	// The caller closing its side cleanly: what is in flight is answered.
	write(s, callFrame(7, "echo", []byte("last")))
	s.Close()
	if id, st, p := readReply(t, s); id != 7 || st != statusOK || string(p) != "last" {
		t.Fatalf("reply after the caller's FIN: id %d status %d %q", id, st, p)
	}
	if _, err := io.ReadAll(s); err != nil {
		t.Errorf("after the last reply: %v, want the server's FIN", err)
	}

	// A duplicate id in flight.
	s = rawMux(t, edge, addr)
	write(s, callFrame(1, "block", nil))
	write(s, callFrame(1, "block", nil))
	expectReset(t, s, "duplicate id")
	healthy("duplicate id")

	// A flood beyond muxMaxCalls on one stream, all in one write.
	s = rawMux(t, edge, addr)
	var flood []byte
	for id := range uint64(muxMaxCalls + 1) {
		flood = append(flood, callFrame(id, "block", nil)...)
	}
	write(s, flood)
	expectReset(t, s, "flood")
	healthy("flood")
	waitFor(t, 10*time.Second, "flooded handlers end", func() error {
		if n := running.Load(); n != 0 {
			return fmt.Errorf("%d handlers still running", n)
		}
		return nil
	})
}

// TestMuxFull: when every mux stream has muxMaxCalls in flight, further
// calls take streams of their own instead of waiting or breaking the limit.
func TestMuxFull(t *testing.T) {
	setMux(t, 1, 1)
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	release := make(chan struct{})
	var started sync.WaitGroup
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		started.Done()
		<-release
		return req, nil
	})
	ctx := ctxT(t)
	const extra = 10
	started.Add(muxMaxCalls + extra)
	errs := make(chan error, muxMaxCalls+extra)
	for i := range muxMaxCalls + extra {
		go func() {
			req := fmt.Appendf(nil, "%d", i)
			got, err := edge.Call(ctx, core.Addr(), "block", req)
			if err == nil && !bytes.Equal(got, req) {
				err = fmt.Errorf("got %q, want %q", got, req)
			}
			errs <- err
		}()
	}
	started.Wait() // every call reached its handler: none waits for a slot
	close(release)
	for range muxMaxCalls + extra {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := edge.streamCalls.Load(); got < extra {
		t.Errorf("calls on streams of their own: %d, want >= %d", got, extra)
	}
	if s := muxStreamsOf(muxPoolTo(t, edge, core.Addr())); len(s) != 1 || s[0].inflight.Load() != 0 {
		t.Errorf("after the burst: %d streams (want 1), none in flight", len(s))
	}
}

// TestMuxNotSentExact: when a mux stream fails, a call whose frame was
// still queued is ErrNotSent, one whose frame was handed to the stream is
// not (the server may have acted on it).
func TestMuxNotSentExact(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	d, _, err := edge.connDial(ctxT(t), core.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := d.mux.openStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// No writer yet: the call stays queued.
	type result struct {
		r   muxResult
		err error
	}
	queued := make(chan result, 1)
	ms.reserve()
	go func() {
		r, err := ms.call(ctxT(t), "block", []byte("q"))
		queued <- result{r, err}
	}()
	waitFor(t, 5*time.Second, "call queued", func() error {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		if len(ms.queue) != 1 {
			return fmt.Errorf("queue %d", len(ms.queue))
		}
		return nil
	})
	// Another call, written by hand as the writer would.
	ms.reserve()
	written := make(chan result, 1)
	go func() {
		r, err := ms.call(ctxT(t), "block", []byte("w"))
		written <- result{r, err}
	}()
	waitFor(t, 5*time.Second, "second call queued", func() error {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		if len(ms.queue) != 2 {
			return fmt.Errorf("queue %d", len(ms.queue))
		}
		return nil
	})
	ms.mu.Lock()
	mc := ms.queue[1]
	ms.queue = ms.queue[:1]
	mc.state = callTaken
	ms.mu.Unlock()
	if _, err := ms.s.Write(appendMuxFrame(nil, mc)); err != nil {
		t.Fatal(err)
	}
	ms.mu.Lock()
	mc.state = callWritten
	ms.mu.Unlock()

	ms.fail(errors.New("test failure")) // as the reader does when the stream breaks
	q, w := <-queued, <-written
	if q.err == nil || !q.r.notSent {
		t.Errorf("queued call: %v, notSent %v; want an error, not sent", q.err, q.r.notSent)
	}
	if w.err == nil || w.r.notSent {
		t.Errorf("written call: %v, notSent %v; want an error, sent", w.err, w.r.notSent)
	}
	if n := ms.inflight.Load(); n != 0 {
		t.Errorf("in flight after the failure: %d", n)
	}
	// A call on the failed stream is refused unsent, so callMux picks another.
	ms.reserve()
	if r, err := ms.call(ctxT(t), "block", nil); !errors.Is(err, errMuxDead) || !r.notSent {
		t.Errorf("call on a failed stream: %v, notSent %v", err, r.notSent)
	}
}

// FuzzParseMuxFrame: the server's parser of caller frames never panics,
// accepts exactly what appendMuxFrame writes, and what it accepts
// re-encodes to the same bytes.
func FuzzParseMuxFrame(f *testing.F) {
	f.Add(callFrame(1, "echo", []byte("x"))[4:])
	f.Add(callFrame(1<<40, "", nil)[4:])
	f.Add(cancelFrame(7)[4:])
	f.Add([]byte{muxFrameCall, 0x80})
	f.Add([]byte{muxFrameCall, 1, 200, 'x'})
	f.Add([]byte{9, 1})
	f.Fuzz(func(t *testing.T, frame []byte) {
		typ, id, method, req, err := parseMuxFrame(frame)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		again := appendMuxFrame(nil, &muxCall{id: id, cancel: typ == muxFrameCancel, method: string(method), req: req})[4:]
		// A varint may be written longer than needed (non-minimal): the
		// re-encoding is then shorter. Compare the parse of both.
		typ2, id2, method2, req2, err := parseMuxFrame(again)
		if err != nil || typ2 != typ || id2 != id || !bytes.Equal(method2, method) || !bytes.Equal(req2, req) {
			t.Fatalf("round trip of %x: %x", frame, again)
		}
		if len(again) > len(frame) {
			t.Fatalf("re-encoding %x is longer: %x", frame, again)
		}
	})
}

// FuzzParseMuxReply: the caller's parser of reply frames never panics.
func FuzzParseMuxReply(f *testing.F) {
	f.Add([]byte{1, 0, 'o', 'k'})
	f.Add([]byte{0x80})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, frame []byte) {
		id, st, p, err := parseMuxReply(frame)
		if err != nil {
			return
		}
		again := append(binary.AppendUvarint(nil, id), st)
		again = append(again, p...)
		if _, st2, p2, err := parseMuxReply(again); err != nil || st2 != st || !bytes.Equal(p2, p) {
			t.Fatalf("round trip of %x: %x", frame, again)
		}
	})
}

// TestMuxChaos: many callers with short deadlines against handlers of
// random delay, while the connection is cut now and then. Every call ends
// (no hang); a reply is always the caller's own; a call that says
// ErrNotSent never reached a handler; afterwards nothing is left in
// flight.
func TestMuxChaos(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	var seen sync.Map // request -> true, as handlers see them
	var running atomic.Int32
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		seen.Store(string(req), true)
		running.Add(1)
		defer running.Add(-1)
		d := time.Duration(req[len(req)-1]%8) * time.Millisecond
		select {
		case <-time.After(d):
			return req, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	addr := core.Addr()
	stop := make(chan struct{})
	var cutter sync.WaitGroup
	cutter.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			edge.mu.Lock()
			d := edge.dials[addr]
			edge.mu.Unlock()
			if d != nil {
				select {
				case <-d.done:
					if d.conn != nil {
						d.conn.CloseWithError(codeNoError, "chaos")
					}
				default:
				}
			}
		}
	})
	var notSent sync.Map
	var ok, failed, unsent atomic.Int64
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := range 150 {
				req := fmt.Appendf(nil, "%d/%d/%c", w, i, byte(i*7+w))
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+(i+w)%6)*time.Millisecond)
				start := time.Now()
				got, err := edge.Call(ctx, addr, "echo", req)
				cancel()
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("call took %v", took)
				}
				switch {
				case err == nil:
					ok.Add(1)
					if !bytes.Equal(got, req) {
						t.Errorf("got %q, want %q", got, req)
					}
				case errors.Is(err, ErrNotSent):
					unsent.Add(1)
					notSent.Store(string(req), err)
				default:
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	cutter.Wait()
	t.Logf("ok %d, failed %d, not sent %d", ok.Load(), failed.Load(), unsent.Load())
	waitFor(t, 10*time.Second, "handlers end", func() error {
		if n := running.Load(); n != 0 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	notSent.Range(func(k, v any) bool {
		if _, hit := seen.Load(k); hit {
			t.Errorf("%s: %v, yet its handler ran", k, v)
		}
		return true
	})
	if ok.Load() == 0 || failed.Load()+unsent.Load() == 0 {
		t.Errorf("the test did not exercise both outcomes: ok %d, failed %d, not sent %d", ok.Load(), failed.Load(), unsent.Load())
	}
	// Whatever stream survives has nothing in flight once replies are in.
	if _, err := edge.Call(ctxT(t), addr, "echo", []byte("end/x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "nothing in flight", func() error {
		for _, ms := range muxStreamsOf(muxPoolTo(t, edge, addr)) {
			if n := ms.inflight.Load(); n != 0 {
				return fmt.Errorf("%d in flight", n)
			}
		}
		return nil
	})
}

// TestMuxLocalClose: closing the caller's own node fails its calls in
// flight at once, and later calls with ErrClosed.
func TestMuxLocalClose(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	var started sync.WaitGroup
	const n = 10
	started.Add(n)
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		started.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := edge.Call(ctxT(t), core.Addr(), "block", nil)
			errs <- err
		}()
	}
	started.Wait()
	edge.Close()
	for range n {
		select {
		case err := <-errs:
			if err == nil || errors.Is(err, ErrNotSent) {
				t.Errorf("call in flight when its node closed: got %v, want an error, not ErrNotSent", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call hangs after its node closed")
		}
	}
	if _, err := edge.Call(ctxT(t), core.Addr(), "block", nil); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
		t.Errorf("call after Close: got %v, want ErrClosed and ErrNotSent", err)
	}
}

// TestCallerRole: a handler learns the caller's role from its context,
// on a mux stream and on a stream of its own alike.
func TestCallerRole(t *testing.T) {
	for _, mux := range []int{1, 0} {
		setMux(t, mux, 1)
		ids := pki(t, "core", "core2", "edge")
		core, core2, edge := listen(t, ids["core"]), listen(t, ids["core2"]), listen(t, ids["edge"])
		core.HandleRPC("who", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
			return []byte(CallerRole(ctx)), nil
		}, RoleCore, RoleEdge)
		ctx := ctxT(t)
		for _, c := range []struct {
			n    *Node
			want Role
		}{{edge, RoleEdge}, {core2, RoleCore}} {
			if got, err := c.n.Call(ctx, core.Addr(), "who", nil); err != nil || Role(got) != c.want {
				t.Errorf("mux %d: caller role %q %v, want %q", mux, got, err, c.want)
			}
		}
		if got := CallerRole(ctx); got != "" {
			t.Errorf("outside a handler: %q", got)
		}
	}
}
