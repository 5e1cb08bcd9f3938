package mesh

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// Tests of the frame reader against peers that declare more than they send
// (rpc.go readBody): memory is committed as bytes arrive, a forbidden
// caller is refused before its request is read, and well-formed frames of
// every size read as before.

// prefix is a frame's length prefix declaring size bytes.
func prefix(size uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, size)
}

// choppyReader returns what it holds in pieces of random length, as a QUIC
// stream does, then io.EOF.
type choppyReader struct {
	b   []byte
	rnd *mrand.Rand
}

func (r *choppyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1+r.rnd.IntN(3000))], r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestReadFrameSizes: frames of every size around the chunk boundaries
// read whole, from a reader that hands them over in pieces; cut anywhere,
// the read is io.ErrUnexpectedEOF (io.EOF before the first byte), as
// before the reader grew its buffer in steps.
func TestReadFrameSizes(t *testing.T) {
	rnd := mrand.New(mrand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 255, frameChunk - 1, frameChunk, frameChunk + 1, 2 * frameChunk, 3*frameChunk + 7, 1 << 20, MaxFrameSize} {
		payload := make([]byte, size)
		rand.Read(payload)
		var wire bytes.Buffer
		if err := writeFrame(&wire, payload); err != nil {
			t.Fatal(err)
		}
		got, err := readFrame(&choppyReader{b: wire.Bytes(), rnd: rnd})
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("size %d: got %d bytes (equal %v), %v", size, len(got), bytes.Equal(got, payload), err)
		}
		if got == nil {
			t.Fatalf("size %d: got a nil frame, want an empty one", size)
		}
		for _, cut := range []int{0, 1, 4, 4 + size/2, 4 + size - 1, 4 + frameChunk, 4 + 2*frameChunk + 1} {
			if cut >= 4+size {
				continue
			}
			want := io.ErrUnexpectedEOF
			if cut == 0 {
				want = io.EOF
			}
			got, err := readFrame(&choppyReader{b: wire.Bytes()[:cut], rnd: rnd})
			if err != want || got != nil {
				t.Errorf("size %d cut at %d: got %d bytes, %v; want %v", size, cut, len(got), err, want)
			}
		}
	}
}

// TestReadFrameCommitsAsBytesArrive: a frame that declares MaxFrameSize
// and then stops allocates in proportion to what arrived, not to what it
// declared (the one-allocation reader took 16 MiB every time).
func TestReadFrameCommitsAsBytesArrive(t *testing.T) {
	for _, sent := range []int{0, 1, frameChunk, frameChunk + 1, 300 << 10, 1 << 20} {
		t.Run(fmt.Sprint(sent), func(t *testing.T) {
			wire := append(prefix(MaxFrameSize), make([]byte, sent)...)
			r := bytes.NewReader(wire)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := readFrame(r)
			runtime.ReadMemStats(&after)
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
			}
			// Buffers double from frameChunk: all of them together are at
			// most twice the last, which is at most max(frameChunk, 2×sent).
			// 64 KiB of slack for anything else the process allocated.
			alloc := after.TotalAlloc - before.TotalAlloc
			limit := uint64(2*max(frameChunk, 2*sent) + 64<<10)
			t.Logf("declared %d, sent %d: allocated %d (limit %d)", MaxFrameSize, sent, alloc, limit)
			if alloc > limit {
				t.Errorf("allocated %d bytes for %d sent, want at most %d", alloc, sent, limit)
			}
		})
	}
}

// goroutinesIn counts the goroutines whose stack passes through fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), fn+"(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestDeclaredFrameFlood: a peer with a legitimate certificate opens many
// streams, each declaring a 16 MiB frame and sending nothing more, on the
// rpc path (serveRPC) and the stream path (Stream.Recv). Once the node is
// waiting for every body, its heap has grown by a small fraction of what
// the prefixes declared (a full allocation per prefix would be the sum of
// them), and it still answers calls.
func TestDeclaredFrameFlood(t *testing.T) {
	const streams = 512
	const declared = streams * MaxFrameSize // 8 GiB
	for _, kind := range []string{"rpc", "stream"} {
		t.Run(kind, func(t *testing.T) {
			ids := pki(t, "core", "edge")
			core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
			var calls atomic.Int32
			core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
				calls.Add(1)
				return req, nil
			}, RoleEdge)
			core.HandleStream("sink", func(ctx context.Context, peer string, s *Stream) {
				if _, err := s.Recv(); err == nil {
					t.Error("Recv of a frame that never arrived succeeded")
				}
			}, RoleEdge)
			ctx := ctxT(t)
			if _, err := edge.Call(ctx, core.Addr(), "echo", []byte("warm")); err != nil {
				t.Fatal(err)
			}
			base := goroutinesIn("mesh.readBody")
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)

			var open []*quic.Stream
			defer func() {
				for _, s := range open {
					reset(s, codeCanceled)
				}
			}()
			for range streams {
				var s *quic.Stream
				if kind == "rpc" {
					var err error
					if s, _, err = edge.openStream(ctx, core.Addr(), kindRPC, "echo"); err != nil {
						t.Fatal(err)
					}
				} else {
					st, err := edge.OpenStream(ctx, core.Addr(), "sink")
					if err != nil {
						t.Fatal(err)
					}
					s = st.s
				}
				open = append(open, s)
				if _, err := s.Write(prefix(MaxFrameSize)); err != nil {
					t.Fatal(err)
				}
			}
			// Every stream's reader is past its length prefix and waiting
			// for the body: whatever it allocates up front is allocated.
			waitFor(t, 30*time.Second, "readers waiting for their bodies", func() error {
				if n := goroutinesIn("mesh.readBody") - base; n < streams {
					return fmt.Errorf("%d of %d", n, streams)
				}
				return nil
			})
			runtime.GC()
			runtime.ReadMemStats(&after)
			grew := int64(after.HeapInuse) - int64(before.HeapInuse)
			t.Logf("%d streams declaring %d bytes each (%d MiB): heap in use grew %.1f MiB (%.1f KiB a stream)",
				streams, MaxFrameSize, declared>>20, float64(grew)/(1<<20), float64(grew)/streams/1024)
			if limit := int64(declared / 64); grew > limit {
				t.Errorf("heap in use grew %d bytes for %d declared and nothing sent, want under %d", grew, declared, limit)
			}
			// The node still serves.
			if got, err := edge.Call(ctx, core.Addr(), "echo", []byte("still here")); err != nil || string(got) != "still here" {
				t.Fatalf("call during the flood: %q, %v", got, err)
			}
			if n := calls.Load(); n != 2 {
				t.Errorf("echo ran %d times, want 2 (the flood's requests never arrived)", n)
			}
			for _, s := range open {
				reset(s, codeCanceled)
			}
			open = nil
			waitFor(t, 30*time.Second, "readers to give up", func() error {
				if n := goroutinesIn("mesh.readBody") - base; n > 0 {
					return fmt.Errorf("%d still reading", n)
				}
				return nil
			})
		})
	}
}

// TestForbiddenRequestNotRead: a caller whose role may not call a method
// is answered ErrForbidden before its request is read. By hand: a prefix
// declaring 16 MiB and no body is refused at once (reading it would wait a
// minute for the body), and the node stops the stream's sending side, so
// the body cannot be delivered. Through Call: a 16 MiB request, which the
// flow-control window keeps from being written before the node answers,
// still comes back ErrForbidden.
func TestForbiddenRequestNotRead(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	var calls atomic.Int32
	core.HandleRPC("cores", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		calls.Add(1)
		return nil, nil
	}, RoleCore)
	ctx := ctxT(t)

	s, _, err := edge.openStream(ctx, core.Addr(), kindRPC, "cores")
	if err != nil {
		t.Fatal(err)
	}
	defer reset(s, codeNoError)
	// The node refuses on the header alone: its STOP_SENDING may beat even
	// this first write (CI saw it under the race detector).
	var serr *quic.StreamError
	if _, err := s.Write(prefix(MaxFrameSize)); err != nil && (!errors.As(err, &serr) || !serr.Remote || serr.ErrorCode != codeForbidden) {
		t.Fatal(err)
	}
	st, msg, err := readStatus(s)
	if err != nil || st != statusForbidden {
		t.Fatalf("status: got %d (%s), %v; want %d", st, msg, err, statusForbidden)
	}
	if !strings.Contains(string(msg), `role "edge" may not call "cores"`) {
		t.Errorf("refusal: got %q", msg)
	}
	s.SetWriteDeadline(time.Now().Add(10 * time.Second))
	chunk := make([]byte, 64<<10)
	for sent := 0; ; sent += len(chunk) {
		if sent >= MaxFrameSize {
			t.Fatal("the whole body was written after the refusal: the node read it")
		}
		_, err := s.Write(chunk)
		if err == nil {
			continue
		}
		if !errors.As(err, &serr) || !serr.Remote || serr.ErrorCode != codeForbidden {
			t.Fatalf("writing the body after the refusal: got %v after %d bytes, want the node's STOP_SENDING (code %d)", err, sent, codeForbidden)
		}
		t.Logf("body stopped after %d bytes: %v", sent, err)
		break
	}

	if _, err := edge.Call(ctx, core.Addr(), "cores", make([]byte, MaxFrameSize)); !errors.Is(err, ErrForbidden) || !errors.Is(err, ErrRemote) {
		t.Errorf("Call with a 16 MiB request: got %v, want ErrRemote and ErrForbidden", err)
	}
	if _, err := edge.Call(ctx, core.Addr(), "cores", []byte("x")); !errors.Is(err, ErrForbidden) {
		t.Errorf("Call with a small request: got %v, want ErrForbidden", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("handler ran %d times for a forbidden role", n)
	}
	// Positive control: a core's large request is read and served.
	if _, err := listen(t, ids["core"]).Call(ctx, core.Addr(), "cores", make([]byte, 1<<20)); err != nil {
		t.Errorf("core calling a core rpc: %v", err)
	}
}

// TestTruncatedFrameEndsStream: a request whose body stops short (the
// caller's FIN before the declared length) resets the stream with
// codeProtocol and never reaches the handler, below and above the
// chunk size; a stream frame cut short is io.ErrUnexpectedEOF to Recv.
func TestTruncatedFrameEndsStream(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	var calls atomic.Int32
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) {
		calls.Add(1)
		return req, nil
	})
	recvErr := make(chan error, 1)
	core.HandleStream("recv", func(ctx context.Context, peer string, s *Stream) {
		_, err := s.Recv()
		recvErr <- err
	})
	ctx := ctxT(t)
	for _, tc := range []struct{ declared, sent int }{{100, 10}, {frameChunk, frameChunk - 1}, {1 << 20, 200 << 10}, {MaxFrameSize, 0}} {
		t.Run(fmt.Sprintf("rpc %d of %d", tc.sent, tc.declared), func(t *testing.T) {
			s, _, err := edge.openStream(ctx, core.Addr(), kindRPC, "echo")
			if err != nil {
				t.Fatal(err)
			}
			defer reset(s, codeNoError)
			if _, err := s.Write(append(prefix(uint32(tc.declared)), make([]byte, tc.sent)...)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			st, msg, err := readStatus(s)
			var serr *quic.StreamError
			if !errors.As(err, &serr) || !serr.Remote || serr.ErrorCode != codeProtocol {
				t.Fatalf("got status %d (%q), %v; want the stream reset with code %d", st, msg, err, codeProtocol)
			}
		})
		t.Run(fmt.Sprintf("stream %d of %d", tc.sent, tc.declared), func(t *testing.T) {
			st, err := edge.OpenStream(ctx, core.Addr(), "recv")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, err := st.s.Write(append(prefix(uint32(tc.declared)), make([]byte, tc.sent)...)); err != nil {
				t.Fatal(err)
			}
			st.s.Close() // FIN, mid-frame
			select {
			case err := <-recvErr:
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("Recv: got %v, want io.ErrUnexpectedEOF", err)
				}
			case <-ctx.Done():
				t.Fatal("Recv did not return")
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("handler ran %d times for truncated requests", n)
	}
}

// TestLargeFrames: requests, replies and stream frames of the sizes around
// the chunk boundaries, up to MaxFrameSize itself, arrive whole.
func TestLargeFrames(t *testing.T) {
	ids := pki(t, "core", "edge")
	core, edge := listen(t, ids["core"]), listen(t, ids["edge"])
	core.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })
	core.HandleStream("echo", func(ctx context.Context, peer string, s *Stream) {
		for {
			b, err := s.Recv()
			if err != nil {
				return
			}
			if err := s.Send(b); err != nil {
				return
			}
		}
	})
	ctx := ctxT(t)
	st, err := edge.OpenStream(ctx, core.Addr(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetSendTimeout(-1)
	for _, size := range []int{frameChunk - 1, frameChunk, frameChunk + 1, 3*frameChunk + 5, MaxFrameSize} {
		req := make([]byte, size)
		rand.Read(req)
		got, err := edge.Call(ctx, core.Addr(), "echo", req)
		if err != nil || !bytes.Equal(got, req) {
			t.Fatalf("Call of %d bytes: got %d bytes (equal %v), %v", size, len(got), bytes.Equal(got, req), err)
		}
		if err := st.Send(req); err != nil {
			t.Fatalf("Send of %d bytes: %v", size, err)
		}
		got, err = st.Recv()
		if err != nil || !bytes.Equal(got, req) {
			t.Fatalf("stream frame of %d bytes: got %d bytes (equal %v), %v", size, len(got), bytes.Equal(got, req), err)
		}
	}
}
