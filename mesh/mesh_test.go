package mesh

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/relaymesh/relaymesh/internal/gopool/gopooltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, gopooltest.IgnoreWorkers()) }

// pki creates a fresh cluster CA with identities for names.
func pki(t testing.TB, names ...string) map[string]*Identity {
	t.Helper()
	ids, err := EnsureDevPKI(t.TempDir(), names...)
	if err != nil {
		t.Fatalf("EnsureDevPKI: %v", err)
	}
	return ids
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// listen starts a node on a free loopback port, closed at the end of the test.
func listen(t testing.TB, id *Identity) *Node {
	t.Helper()
	return listenAt(t, "127.0.0.1:0", id)
}

func listenAt(t testing.TB, addr string, id *Identity) *Node {
	t.Helper()
	n, err := Listen(addr, id, testLogger(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPKIReload(t *testing.T) {
	dir := t.TempDir()
	first, err := EnsureDevPKI(dir, "core-1", "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := EnsureDevPKI(dir, "core-1", "edge-1", "core-2")
	if err != nil {
		t.Fatal(err)
	}
	caPEM2, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if !bytes.Equal(caPEM, caPEM2) {
		t.Fatalf("CA changed on reload")
	}
	for _, name := range []string{"core-1", "edge-1"} {
		if !bytes.Equal(first[name].Cert.Certificate[0], again[name].Cert.Certificate[0]) {
			t.Errorf("%s: certificate changed on reload", name)
		}
	}
	for name, id := range again {
		if id.Name != name {
			t.Errorf("identity name: got %q, want %q", id.Name, name)
		}
		leaf := id.Cert.Leaf
		if _, err := leaf.Verify(x509VerifyAny(id)); err != nil {
			t.Errorf("%s: does not chain to the CA: %v", name, err)
		}
		if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, f := range []string{"ca.key", "core-1.key", "core-2.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode: got %v, want 0600", f, got)
		}
	}
	id, err := IssueNode(dir, "admin-made", []string{"10.0.0.7", "core.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Cert.Leaf.VerifyHostname("core.example"); err != nil {
		t.Error(err)
	}
	if _, err := IssueNode(dir, "../evil", nil); err == nil {
		t.Error("IssueNode accepted a path as name")
	}
}

func TestRPC(t *testing.T) { eachLink(t, testRPC) }

func testRPC(t *testing.T, listen func(testing.TB, *Identity) *Node) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	var gotPeer string
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		gotPeer = peer
		return append([]byte("echo:"), req...), nil
	})
	core.HandleRPC("fail", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		return nil, errors.New("no such conversation")
	})
	core.HandleRPC("panic", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		panic("boom")
	})
	core.HandleRPC("huge", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		return make([]byte, MaxFrameSize+1), nil
	})
	core.HandleRPC("empty", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		return nil, nil
	})

	tests := []struct {
		method  string
		req     []byte
		want    string
		wantErr []error
		errText string
	}{
		{method: "echo", req: []byte("hi"), want: "echo:hi"},
		{method: "echo", req: nil, want: "echo:"},
		{method: "empty", req: []byte("x"), want: ""},
		{method: "fail", wantErr: []error{ErrRemote}, errText: "no such conversation"},
		{method: "panic", wantErr: []error{ErrRemote}, errText: "boom"},
		{method: "nope", wantErr: []error{ErrRemote, ErrUnknownMethod}},
		{method: "huge", wantErr: []error{ErrRemote, ErrFrameTooLarge}},
		{method: "echo", req: make([]byte, MaxFrameSize+1), wantErr: []error{ErrFrameTooLarge}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			got, err := edge.Call(ctxT(t), core.Addr(), tt.method, tt.req)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				if string(got) != tt.want {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
				return
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("got error %v, want one wrapping %v", err, want)
				}
			}
			if tt.errText != "" && (err == nil || !strings.Contains(err.Error(), tt.errText)) {
				t.Errorf("got error %v, want it to contain %q", err, tt.errText)
			}
		})
	}
	if gotPeer != "edge" {
		t.Errorf("peer: got %q, want %q", gotPeer, "edge")
	}
}

// TestOversizeRequestFrame sends a length prefix over the limit by hand: the
// server must refuse it without reading or allocating it.
func TestOversizeRequestFrame(t *testing.T) {
	ids := pki(t, "a", "b")
	a, b := listen(t, ids["a"]), listen(t, ids["b"])
	a.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	s, _, err := b.openStream(ctxT(t), a.Addr(), kindRPC, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte{0x7f, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	st, msg, err := readStatus(s)
	if err != nil {
		t.Fatal(err)
	}
	if st != statusTooLarge {
		t.Fatalf("status: got %d (%s), want %d", st, msg, statusTooLarge)
	}
	reset(s, codeNoError)
}

func TestConcurrentCalls(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(map[bool]string{false: "quic", true: "in-process"}[local], func(t *testing.T) {
			mk, wantConns := listen, 1
			if local {
				mk, wantConns = listenLocal, 0 // local_test.go
			}
			ids := pki(t, "core", "edge")
			core, edge := mk(t, ids["core"]), mk(t, ids["edge"])
			core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
			ctx := ctxT(t)
			callConcurrently(t, 64, 20, func(w, i int) error {
				req := fmt.Appendf(nil, "%d/%d", w, i)
				got, err := edge.Call(ctx, core.Addr(), "echo", req)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, req) {
					return fmt.Errorf("got %q, want %q", got, req)
				}
				return nil
			})
			edge.mu.Lock()
			nconns := len(edge.conns)
			edge.mu.Unlock()
			if nconns != wantConns {
				t.Errorf("QUIC connections from edge: got %d, want %d", nconns, wantConns)
			}
			if local && edge.localCalls.Load() != 64*20 {
				t.Errorf("calls in memory: %d, want %d", edge.localCalls.Load(), 64*20)
			}
		})
	}
}

// callConcurrently runs workers goroutines that each make calls calls,
// call(w, i) being worker w's call i; a worker stops at its first error,
// and every error fails the test.
func callConcurrently(t testing.TB, workers, calls int, call func(w, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				if err := call(w, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCallCancel(t *testing.T) { eachLink(t, testCallCancel) }

func testCallCancel(t *testing.T, listen func(testing.TB, *Identity) *Node) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	started, handlerDone := make(chan struct{}), make(chan error, 1)
	core.HandleRPC("block", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		handlerDone <- ctx.Err()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		<-started
		cancel()
	}()
	_, err := edge.Call(ctx, core.Addr(), "block", []byte("x"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatal("handler context ended without error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler context not cancelled after the caller gave up")
	}
	// The connection is still good.
	core.HandleRPC("ping", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return []byte("pong"), nil })
	if _, err := edge.Call(ctxT(t), core.Addr(), "ping", nil); err != nil {
		t.Fatalf("call after cancel: %v", err)
	}
}

func TestForeignCA(t *testing.T) {
	good := pki(t, "core", "edge")
	bad := pki(t, "intruder")
	// A foreign certificate that trusts the cluster CA: refused as a client
	// by the server, and refused as a server by a cluster client.
	impostor := &Identity{Name: "intruder", Cert: bad["intruder"].Cert, Roots: good["core"].Roots}
	core := listen(t, good["core"])
	var calls atomic.Int32
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		calls.Add(1)
		return req, nil
	})
	tests := []struct {
		name         string
		client       *Identity
		serverIsEvil bool
	}{
		{name: "foreign client", client: impostor},
		{name: "foreign client, foreign roots", client: bad["intruder"]},
		{name: "foreign server", client: good["edge"], serverIsEvil: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := listen(t, tt.client)
			target := core
			if tt.serverIsEvil {
				target = listen(t, impostor)
				target.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
					t.Error("foreign server was trusted")
					return req, nil
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, err := client.Call(ctx, target.Addr(), "echo", []byte("x"))
			if err == nil {
				t.Fatal("call succeeded, want a TLS failure")
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call hung until the deadline: %v", err)
			}
			t.Logf("refused as expected: %v", err)
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("handler ran %d times for foreign peers, want 0", n)
	}
}

func TestStream(t *testing.T) { eachLink(t, testStream) }

func testStream(t *testing.T, listen func(testing.TB, *Identity) *Node) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	handlerDone := make(chan error, 1)
	core.HandleStream("deliveries", func(ctx context.Context, peer string, s *Stream) {
		handlerDone <- func() error {
			if peer != "edge" {
				return fmt.Errorf("peer: got %q, want edge", peer)
			}
			if err := s.Send([]byte("hello " + peer)); err != nil {
				return err
			}
			for {
				msg, err := s.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if err := s.Send(append([]byte("ack:"), msg...)); err != nil {
					return err
				}
			}
		}()
	})
	s, err := edge.OpenStream(ctxT(t), core.Addr(), "deliveries")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.Recv()
	if err != nil || string(msg) != "hello edge" {
		t.Fatalf("first frame: got %q, %v; want %q", msg, err, "hello edge")
	}
	const senders, each = 8, 25
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for i := range each {
				if err := s.Send(fmt.Appendf(nil, "%d-%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := map[string]bool{}
	for len(seen) < senders*each {
		msg, err := s.Recv()
		if err != nil {
			t.Fatalf("recv after %d: %v", len(seen), err)
		}
		if !bytes.HasPrefix(msg, []byte("ack:")) || seen[string(msg)] {
			t.Fatalf("unexpected frame %q", msg)
		}
		seen[string(msg)] = true
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-handlerDone:
		if err != nil {
			t.Fatalf("handler: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not see the close")
	}
	if _, err := s.Recv(); !errors.Is(err, ErrClosed) {
		t.Errorf("Recv after Close: got %v, want ErrClosed", err)
	}
	if err := s.Send([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: got %v, want ErrClosed", err)
	}
}

func TestStreamServerCloses(t *testing.T) { eachLink(t, testStreamServerCloses) }

func testStreamServerCloses(t *testing.T, listen func(testing.TB, *Identity) *Node) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	core.HandleStream("once", func(ctx context.Context, peer string, s *Stream) {
		s.Send([]byte("only"))
	})
	s, err := edge.OpenStream(ctxT(t), core.Addr(), "once")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if msg, err := s.Recv(); err != nil || string(msg) != "only" {
		t.Fatalf("got %q, %v; want %q", msg, err, "only")
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("after the handler returned: got %v, want io.EOF", err)
	}
	if _, err := edge.OpenStream(ctxT(t), core.Addr(), "missing"); !errors.Is(err, ErrUnknownMethod) {
		t.Fatalf("unknown stream method: got %v, want ErrUnknownMethod", err)
	}
}

// TestReconnect restarts the server on the same port, once after a clean
// Close and once after a crash that sent no CONNECTION_CLOSE (the restarted
// node's stateless reset must tell the caller to re-dial).
func TestReconnect(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			ids := pki(t, "core", "edge")
			core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
			addr := core.Addr()
			echo := func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil }
			core.HandleRPC("echo", echo)
			if _, err := edge.Call(ctxT(t), addr, "echo", []byte("1")); err != nil {
				t.Fatal(err)
			}
			if crash {
				core.udp.Close() // nothing more leaves the socket
			}
			core.Close()
			if !crash {
				// While the core is down calls fail (a dial gives up after the
				// handshake timeout; here the context ends first).
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err := edge.Call(ctx, addr, "echo", []byte("2"))
				cancel()
				if err == nil {
					t.Fatal("call to a closed node succeeded")
				}
			}
			core2 := listenAt(t, addr, ids["core"])
			core2.HandleRPC("echo", echo)
			waitFor(t, 15*time.Second, "call after restart", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				_, err := edge.Call(ctx, addr, "echo", []byte("3"))
				return err
			})
		})
	}
}

func TestCloseIdempotentAndRefuses(t *testing.T) {
	ids := pki(t, "a")
	n := listen(t, ids["a"])
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: got %v, want ErrClosed", err)
	}
	if _, err := n.Call(context.Background(), "127.0.0.1:1", "x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close: got %v, want ErrClosed", err)
	}
	if _, err := n.Call(context.Background(), "127.0.0.1:1", strings.Repeat("m", 256), nil); err == nil {
		t.Error("Call with a 256-byte method name succeeded")
	}
}

// FuzzReadFrame checks readFrame against a model of the format: the frame
// is the declared number of bytes after the prefix, or the error says why
// there is none.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0x01, 0, 0, 'x'})      // a chunked frame cut short
	f.Add([]byte{0, 0x10, 0, 0, 'x', 'y'}) // declares 1 MiB
	f.Fuzz(func(t *testing.T, b []byte) {
		frame, err := readFrame(bytes.NewReader(b))
		var want []byte
		var wantErr error
		switch size := 0; {
		case len(b) == 0:
			wantErr = io.EOF
		case len(b) < 4:
			wantErr = io.ErrUnexpectedEOF
		default:
			size = int(binary.BigEndian.Uint32(b))
			switch {
			case size > MaxFrameSize:
				wantErr = ErrFrameTooLarge
			case len(b)-4 < size:
				wantErr = io.ErrUnexpectedEOF
			default:
				want = b[4 : 4+size]
			}
		}
		if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) || !bytes.Equal(frame, want) || (err == nil && frame == nil) {
			t.Fatalf("got %d bytes, %v; want %d bytes, %v", len(frame), err, len(want), wantErr)
		}
	})
}

// echoPeers starts a core serving "echo" and an edge to call it (on a
// stream of its own per call with noMux), for the call benchmarks.
func echoPeers(b *testing.B, noMux bool) (core, edge *Node) {
	b.Helper()
	ids := pki(b, "core", "edge")
	core, edge = listen(b, ids["core"]), listen(b, ids["edge"])
	edge.noMux.Store(noMux)
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	return core, edge
}

func BenchmarkCall(b *testing.B) {
	for _, mux := range []bool{false, true} {
		b.Run(map[bool]string{false: "stream", true: "mux"}[mux], func(b *testing.B) {
			core, edge := echoPeers(b, !mux)
			req := bytes.Repeat([]byte("x"), 256)
			ctx := context.Background()
			if _, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCallSize: BenchmarkCall with larger requests and replies, whose
// bodies the reader takes in growing steps (readBody).
func BenchmarkCallSize(b *testing.B) {
	core, edge := echoPeers(b, false)
	ctx := context.Background()
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20, MaxFrameSize} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			req := bytes.Repeat([]byte("x"), size)
			if _, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(2 * size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func x509VerifyAny(id *Identity) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: id.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}

// BenchmarkCallParallel: small calls from 8 goroutines per CPU, each on
// a stream of its own (stream) or on the connection's mux streams (muxN:
// up to N of them, another opened as soon as the least busy has a call in
// flight; muxNsM: once it has M); BenchmarkCall is one at a time.
func BenchmarkCallParallel(b *testing.B) {
	for _, tc := range []struct {
		name     string
		streams  int // 0: a stream per call
		spreadAt int32
	}{{"stream", 0, 0}, {"mux1", 1, 1}, {"mux2", 2, 1}, {"mux4", 4, 1}, {"mux4s8", 4, 8}, {"mux8", 8, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.streams > 0 {
				setMux(b, tc.streams, tc.spreadAt)
			}
			core, edge := echoPeers(b, tc.streams == 0)
			req := bytes.Repeat([]byte("x"), 256)
			ctx := context.Background()
			if _, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := edge.Call(ctx, core.Addr(), "echo", req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkReadFrame: one frame through readFrame, the reader of every rpc
// request and reply (Stream.Recv shares its body reader), for small frames
// (the hot path) and large ones.
func BenchmarkReadFrame(b *testing.B) {
	for _, size := range []int{64, 256, 4 << 10, 64 << 10, 256 << 10, 1 << 20, MaxFrameSize} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			var buf bytes.Buffer
			if err := writeFrame(&buf, bytes.Repeat([]byte("x"), size)); err != nil {
				b.Fatal(err)
			}
			wire := buf.Bytes()
			r := bytes.NewReader(wire)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(wire)
				if _, err := readFrame(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
