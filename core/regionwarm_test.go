package core

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
)

// TestRelayEdgesMisused attacks relay-edges (regionwarm.go) over the raw
// mesh. It is a core-to-core rpc: edge and admin certificates are refused
// before it runs, however they call. Its request is empty and a core
// ignores whatever body comes (so a later version's request still gets
// this version's answer): garbage, JSON that looks like a list, or a
// body at the frame limit change nothing in the answer. Frames over the
// limit, truncated or with trailing bytes are refused by the mesh. A
// flood, with edges attaching and detaching meanwhile, gets every answer
// right, and after each attack the core still answers a core.
func TestRelayEdgesMisused(t *testing.T) {
	nodes, ids := devNodes(t, "core-r", "core-x", "core-m", "edge-m", "admin-m")
	// core-r: a region-2 core whose relay has edges e1 and e2 attached;
	// core-x stands for region 1 (it serves nothing).
	nr, nx := nodes["core-r"], nodes["core-x"]
	rl := relay.New(relay.Config{})
	t.Cleanup(rl.Close)
	for _, e := range []string{"e1", "e2"} {
		rl.AttachEdge(e, func(*meshpb.Delivery) error { return nil })
	}
	g, err := NewRegions(2, nr, rl, []RemoteRegion{{Number: 1, Cores: []string{nx.Addr()}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	g.Serve()
	mallory, edge, admin := nodes["core-m"], nodes["edge-m"], nodes["admin-m"]
	addr := nr.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// edgesOf decodes an answer, sorted.
	edgesOf := func(b []byte) ([]string, error) {
		var got []string
		if err := json.Unmarshal(b, &got); err != nil {
			return nil, err
		}
		slices.Sort(got)
		return got, nil
	}
	want := []string{"e1", "e2"}
	serves := func(step string) {
		t.Helper()
		b, err := mallory.Call(ctx, addr, meshpb.MethodRelayEdges, nil)
		if err != nil {
			t.Fatalf("after %s: relay-edges from a core: %v", step, err)
		}
		if got, err := edgesOf(b); err != nil || !slices.Equal(got, want) {
			t.Fatalf("after %s: relay-edges from a core: got %q (%v), want %q", step, b, err, want)
		}
	}
	serves("setup")

	bodies := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"garbage", []byte{0xff, 0x00, 0xfe}},
		{"JSON naming other edges", []byte(`["e9","../../etc"]`)},
		{"JSON null", []byte("null")},
		{"1 MiB of garbage", []byte(strings.Repeat("\xff", 1<<20))},
		{"a body at the frame limit", make([]byte, mesh.MaxFrameSize)},
	}

	t.Run("edge and admin certificates are refused", func(t *testing.T) {
		for _, n := range []*mesh.Node{edge, admin} {
			for _, b := range bodies {
				out, err := n.Call(ctx, addr, meshpb.MethodRelayEdges, b.body)
				if !errors.Is(err, mesh.ErrForbidden) {
					t.Errorf("%s, %s body: got %q, %v; want ErrForbidden", n.Name(), b.name, out, err)
				}
			}
		}
	})
	serves("role attacks")

	t.Run("a body is ignored", func(t *testing.T) {
		for _, b := range bodies {
			out, err := mallory.Call(ctx, addr, meshpb.MethodRelayEdges, b.body)
			if err != nil {
				t.Errorf("%s body: %v, want the edges", b.name, err)
				continue
			}
			if got, err := edgesOf(out); err != nil || !slices.Equal(got, want) {
				t.Errorf("%s body: got %q (%v), want %q", b.name, out, err, want)
			}
		}
	})
	serves("bodies")

	t.Run("frames the mesh refuses", func(t *testing.T) {
		// Over the limit, the caller's side does not send it.
		if _, err := mallory.Call(ctx, addr, meshpb.MethodRelayEdges, make([]byte, mesh.MaxFrameSize+1)); !errors.Is(err, mesh.ErrFrameTooLarge) {
			t.Errorf("a body over the frame limit: %v, want ErrFrameTooLarge", err)
		}
		// By hand: the core refuses the length prefix before reading or
		// allocating the body (a core may call the method: too large); an
		// edge is refused for its role before anything of its request is
		// read (mesh/rpc.go serveRPC: forbidden).
		const statusTooLarge, statusForbidden = 3, 4 // mesh/rpc.go
		for id, want := range map[string]byte{"core-m": statusTooLarge, "edge-m": statusForbidden} {
			s, done := rawRPC(t, ctx, ids[id], addr, meshpb.MethodRelayEdges)
			// The edge's write may already find its stream stopped.
			_, _ = s.Write(binary.BigEndian.AppendUint32(nil, mesh.MaxFrameSize+1))
			st, err := readByte(s)
			if err != nil || st != want {
				t.Errorf("%s: a length prefix over the limit: status %d (%v), want %d", id, st, err, want)
			}
			done()
		}
		// Truncated (a length of 100, 10 bytes, end of stream), and a
		// frame with a byte after it: the core resets the stream without
		// an answer.
		for _, tc := range []struct {
			name string
			raw  []byte
		}{
			{"truncated", append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...)},
			{"trailing bytes", append(binary.BigEndian.AppendUint32(nil, 2), '[', ']', 'x')},
		} {
			s, done := rawRPC(t, ctx, ids["core-m"], addr, meshpb.MethodRelayEdges)
			write(t, s, tc.raw)
			s.Close()
			st, err := readByte(s)
			var se *quic.StreamError
			if !errors.As(err, &se) {
				t.Errorf("%s frame: status %d, %v; want the stream reset", tc.name, st, err)
			}
			done()
		}
	})
	serves("frame attacks")

	t.Run("a flood while edges come and go", func(t *testing.T) {
		// e3 attaches and detaches all along: an answer has e1 and e2,
		// and e3 or not, never anything else.
		stop := make(chan struct{})
		var churn sync.WaitGroup
		churn.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				detach := rl.AttachEdge("e3", func(*meshpb.Delivery) error { return nil })
				time.Sleep(time.Millisecond)
				detach()
			}
		})
		const workers, calls = 32, 50
		var wg sync.WaitGroup
		errs := make(chan error, 2*workers)
		for w := range workers {
			wg.Go(func() {
				for range calls {
					out, err := mallory.Call(ctx, addr, meshpb.MethodRelayEdges, nil)
					if err != nil {
						errs <- err
						return
					}
					got, err := edgesOf(out)
					if err != nil || !(slices.Equal(got, want) || slices.Equal(got, []string{"e1", "e2", "e3"})) {
						errs <- errors.New("relay-edges answered " + string(out))
						return
					}
				}
			})
			if w%4 == 0 { // and a quarter as many refused edge calls
				wg.Go(func() {
					for range calls {
						if _, err := edge.Call(ctx, addr, meshpb.MethodRelayEdges, nil); !errors.Is(err, mesh.ErrForbidden) {
							errs <- errors.New("an edge's call in the flood: not refused: " + errString(err))
							return
						}
					}
				})
			}
		}
		wg.Wait()
		close(stop)
		churn.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	serves("the flood")
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// rawRPC opens an rpc stream to method at addr over a QUIC connection of
// its own, with id's certificate, and writes the stream header (mesh/rpc.go:
// kind 1, the method's length and name); the caller writes the rest.
// done closes the connection.
func rawRPC(t *testing.T, ctx context.Context, id *mesh.Identity, addr, method string) (s *quic.Stream, done func()) {
	t.Helper()
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.Cert},
		NextProtos:         []string{mesh.ALPN},
		InsecureSkipVerify: true, // the test trusts the core it started
	}, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err = conn.OpenStreamSync(ctx)
	if err != nil {
		conn.CloseWithError(0, "")
		t.Fatal(err)
	}
	write(t, s, append([]byte{1, byte(len(method))}, method...))
	return s, func() { conn.CloseWithError(0, "") }
}

func write(t *testing.T, w io.Writer, b []byte) {
	t.Helper()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

func readByte(r io.Reader) (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(r, b[:])
	return b[0], err
}
