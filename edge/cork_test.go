package edge

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// recordConn is a net.Conn that records each Write it is given.
type recordConn struct {
	net.Conn
	mu        sync.Mutex
	writes    [][]byte
	deadlines int
}

func (r *recordConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recordConn) SetWriteDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !t.IsZero() {
		r.deadlines++
	}
	return nil
}

func TestCorkConn(t *testing.T) {
	rec := &recordConn{}
	c := &corkConn{Conn: rec}

	// Uncorked: straight through.
	c.Write([]byte("a"))
	if len(rec.writes) != 1 {
		t.Fatalf("uncorked write: %d socket writes, want 1", len(rec.writes))
	}
	// Corked: collected, then one write with a deadline.
	c.cork(time.Second)
	var want []byte
	for i := range 100 {
		p := fmt.Appendf(nil, "frame %d;", i)
		want = append(want, p...)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("corked write: %d %v", n, err)
		}
	}
	if len(rec.writes) != 1 {
		t.Fatalf("corked writes reached the socket: %d", len(rec.writes)-1)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 2 || !bytes.Equal(rec.writes[1], want) || rec.deadlines != 1 {
		t.Fatalf("after uncork: %d writes, deadlines %d, second equal: %v", len(rec.writes), rec.deadlines, len(rec.writes) > 1 && bytes.Equal(rec.writes[1], want))
	}
	if c.buf != nil {
		t.Fatal("an uncorked connection keeps its buffer")
	}
	// Uncork with nothing collected writes nothing.
	c.cork(time.Second)
	c.uncork()
	if len(rec.writes) != 2 {
		t.Fatal("an empty uncork wrote")
	}
	// Past corkMax: what is buffered goes first, then the big write, in order.
	c.cork(time.Second)
	small := bytes.Repeat([]byte("s"), 100)
	big := bytes.Repeat([]byte("B"), corkMax)
	c.Write(small)
	c.Write(big)
	c.Write(small)
	c.uncork()
	var got []byte
	for _, w := range rec.writes[2:] {
		got = append(got, w...)
	}
	if !bytes.Equal(got, append(append(append([]byte(nil), small...), big...), small...)) || len(rec.writes) != 5 {
		t.Fatalf("overflow: %d writes, order kept: %v", len(rec.writes)-2, bytes.Equal(got, append(append(append([]byte(nil), small...), big...), small...)))
	}
}

// TestCorkedBurstInOrder: 3,000 pushes of ~4 KB queued while the writer is
// held (the test takes the connection's write lock, as a writer blocked on
// a slow socket would) make a backlog, which the writer then drains in
// corked bursts of up to 64 KiB; everything reaches the client whole and
// in order, on both WebSocket subprotocols.
func TestCorkedBurstInOrder(t *testing.T) {
	for _, sub := range []string{lcpb.SubprotocolBinary3, lcpb.SubprotocolBase64v3} {
		t.Run(sub, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.Limits.QueueLen = 4096 })
			c := env.dial(t, sub)
			c.login(1, "alice")
			const n = 3000
			before := env.srv.Metrics().SocketWrites.Load()
			var conn *conn
			env.srv.mu.Lock()
			for ss := range env.srv.peers[peerKey{testApp, "alice"}] {
				conn = ss.c
			}
			env.srv.mu.Unlock()
			conn.wmu.Lock() // the writer waits: the frames queue up
			for i := range n {
				push, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
					DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String(fmt.Sprint(i)), Msg: proto.String(string(bytes.Repeat([]byte("x"), 4000)))}})
				env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "alice"}}, Command: push})
			}
			if q := conn.q.Len(); q != n {
				t.Fatalf("%d frames queued behind the held writer, want %d", q, n)
			}
			conn.wmu.Unlock()
			for i := range n {
				r := c.recv()
				if r.GetDirectMessage().GetId() != fmt.Sprint(i) || r.GetPeerId() != "alice" {
					t.Fatalf("frame %d: got id %q peer %q", i, r.GetDirectMessage().GetId(), r.GetPeerId())
				}
			}
			// ~12 MB (16 MB in base64) in writes of up to 64 KiB plus one
			// frame: about one write per 15 frames, far fewer than frames.
			w := env.srv.Metrics().SocketWrites.Load() - before
			if w == 0 || w > n/4 {
				t.Fatalf("%d frames took %d burst socket writes, want 1..%d", n, w, n/4)
			}
			t.Logf("%d frames in %d socket writes", n, w)
		})
	}
}
