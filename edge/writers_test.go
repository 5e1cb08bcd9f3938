package edge

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// push encodes a direct message with id and text for Deliver.
func push(t *testing.T, id, text string) []byte {
	t.Helper()
	b, err := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String(id), Msg: proto.String(text)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// connOf returns the connection of peer's one session.
func connOf(t *testing.T, s *Server, peer string) *conn {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.peers[peerKey{testApp, peer}] {
		return ss.c
	}
	t.Fatalf("no session of %s", peer)
	return nil
}

// TestPoolWriterSlowClient: alice stops reading and her socket fills; the
// pool writer does not wait for it: it hands her burst to a goroutine of
// its own (counted), and bob's pushes keep reaching bob meanwhile. When
// alice reads again, every push arrives whole and in order.
func TestPoolWriterSlowClient(t *testing.T) {
	const n = 4000 // 64 MB: more than the client's channel and both kernel buffers hold
	env := newEnv(t, func(c *Config) { c.Limits.QueueLen = n + 64 })
	alice := env.dial(t, lcpb.SubprotocolBinary3)
	alice.login(1, "alice")
	bob := env.dial(t, lcpb.SubprotocolBinary3)
	bob.login(1, "bob")
	if nb, ok := connOf(t, env.srv, "alice").t.(nbWriter); !ok || !nb.pooled() {
		t.Fatal("alice's WebSocket is not written by the pool")
	}

	big := strings.Repeat("x", 16<<10)
	for i := range n {
		env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "alice"}}, Command: push(t, fmt.Sprint(i), big)})
	}
	deadline := time.Now().Add(20 * time.Second)
	for env.srv.Metrics().PoolHandoffs.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no handoff: alice's full socket never stopped a pool turn (queued %d)", connOf(t, env.srv, "alice").q.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !connOf(t, env.srv, "alice").writing.Load() {
		t.Fatal("alice's burst is not running while her socket is full")
	}

	// bob is served while alice's burst waits for her socket.
	for i := range 50 {
		env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "bob"}}, Command: push(t, fmt.Sprint(i), "hi bob")})
		if r := bob.recv(); r.GetDirectMessage().GetId() != fmt.Sprint(i) || r.GetPeerId() != "bob" {
			t.Fatalf("bob's push %d: got %v", i, r)
		}
	}
	if got := connOf(t, env.srv, "alice").q.Len(); got == 0 {
		t.Log("alice's queue emptied already (her kernel buffers took the rest)")
	}

	for i := range n {
		r := alice.recv()
		if r.GetDirectMessage().GetId() != fmt.Sprint(i) || len(r.GetDirectMessage().GetMsg()) != len(big) || r.GetPeerId() != "alice" {
			t.Fatalf("alice's push %d: got id %q, %d bytes, peer %q", i, r.GetDirectMessage().GetId(), len(r.GetDirectMessage().GetMsg()), r.GetPeerId())
		}
	}
	alice.expectNothing(0)
	t.Logf("%d handoffs", env.srv.Metrics().PoolHandoffs.Load())
}

// TestPoolWriterConcurrentDeliveries: eight goroutines deliver to twenty
// connections at once, 300 pushes each, all in the same milliseconds;
// every client gets every push once, each goroutine's in the order it
// delivered them (no lost wake-up, no turn writing out of order).
func TestPoolWriterConcurrentDeliveries(t *testing.T) {
	const conns, senders, each = 20, 8, 300
	env := newEnv(t, func(c *Config) { c.Limits.QueueLen = senders*each + 64 })
	clients := make([]*client, conns)
	targets := make([]*meshpb.Target, conns)
	for i := range clients {
		clients[i] = env.dial(t, lcpb.SubprotocolBinary3)
		clients[i].login(1, fmt.Sprint("u", i))
		targets[i] = &meshpb.Target{PeerId: fmt.Sprint("u", i)}
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: targets, Command: push(t, fmt.Sprintf("%d/%d", s, k), "m")})
			}
		}()
	}
	var rwg sync.WaitGroup
	errs := make(chan string, conns)
	for i, c := range clients {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			next := make([]int, senders)
			for range senders * each {
				select {
				case f := <-c.in:
					cmd := new(lcpb.GenericCommand)
					if err := proto.Unmarshal(f.b, cmd); err != nil {
						errs <- fmt.Sprintf("client %d: %v", i, err)
						return
					}
					var s, k int
					if _, err := fmt.Sscanf(cmd.GetDirectMessage().GetId(), "%d/%d", &s, &k); err != nil || s >= senders || k != next[s] {
						errs <- fmt.Sprintf("client %d: got %q, want sender %d's push %d", i, cmd.GetDirectMessage().GetId(), s, next[s%senders])
						return
					}
					next[s]++
				case <-time.After(10 * time.Second):
					errs <- fmt.Sprintf("client %d: timed out after %v", i, next)
					return
				}
			}
		}()
	}
	wg.Wait()
	rwg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, c := range clients {
		c.expectNothing(0)
	}
}
