package edge

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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

// loginPeers dials and logs in one client for each peer, and returns the
// clients and the delivery targets naming them, in the same order.
func loginPeers(t *testing.T, env *testEnv, peers ...string) ([]*client, []*meshpb.Target) {
	t.Helper()
	clients := make([]*client, len(peers))
	targets := make([]*meshpb.Target, len(peers))
	for i, p := range peers {
		clients[i] = env.dial(t, lcpb.SubprotocolBinary3)
		clients[i].login(1, p)
		targets[i] = &meshpb.Target{PeerId: p}
	}
	return clients, targets
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
	peers := make([]string, conns)
	for i := range peers {
		peers[i] = fmt.Sprint("u", i)
	}
	clients, targets := loginPeers(t, env, peers...)
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
				cmd, err := c.next(10 * time.Second)
				if err != nil {
					errs <- fmt.Sprintf("client %d: %v after %v", i, err, next)
					return
				}
				var s, k int
				if _, err := fmt.Sscanf(cmd.GetDirectMessage().GetId(), "%d/%d", &s, &k); err != nil || s >= senders || k != next[s] {
					errs <- fmt.Sprintf("client %d: got %q, want sender %d's push %d", i, cmd.GetDirectMessage().GetId(), s, next[s%senders])
					return
				}
				next[s]++
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

// TestWriterPoolLanes: with connections waiting in both lanes, the pool's
// writers run at most fanMax fan-out turns at a time while the first lane
// runs several, and give each scheduled connection exactly one turn.
func TestWriterPoolLanes(t *testing.T) {
	const n = 60
	var (
		mu              sync.Mutex
		turns           = map[*conn]int{}
		inLane, maxLane [2]int
	)
	p := &writerPool{max: 4, fanMax: 1}
	p.turn = func(c *conn, ln int) {
		mu.Lock()
		turns[c]++
		inLane[ln]++
		maxLane[ln] = max(maxLane[ln], inLane[ln])
		mu.Unlock()
		time.Sleep(time.Millisecond) // a write's system call
		mu.Lock()
		inLane[ln]--
		mu.Unlock()
	}
	conns := make([]*conn, 2*n)
	p.mu.Lock()
	for i := range conns {
		conns[i] = new(conn)
		p.lanes[i%2].push(conns[i]) // first, fan, first, ...
	}
	p.running = p.max
	p.mu.Unlock()
	for range p.max {
		go p.work()
	}
	waitPoolIdle(t, p)

	mu.Lock()
	defer mu.Unlock()
	for i, c := range conns {
		if turns[c] != 1 {
			t.Fatalf("connection %d had %d turns, want 1", i, turns[c])
		}
	}
	if maxLane[laneFan] != 1 {
		t.Errorf("%d fan-out turns ran at once, want fanMax = 1", maxLane[laneFan])
	}
	if maxLane[laneFirst] < 2 {
		t.Errorf("at most %d first-lane turn ran at once, want several writers on it", maxLane[laneFirst])
	}
}

// TestWriterPoolLaneOrder: one writer, both lanes waiting: firstStreakMax
// first-lane turns, then a fan-out one, and so on until the first lane is
// empty; then the rest of the fan-out lane.
func TestWriterPoolLaneOrder(t *testing.T) {
	const first, fan = 20, 10
	var order []int
	var mu sync.Mutex
	p := &writerPool{max: 1, fanMax: 1}
	p.turn = func(c *conn, ln int) {
		mu.Lock()
		order = append(order, ln)
		mu.Unlock()
	}
	p.mu.Lock()
	for range first {
		p.lanes[laneFirst].push(new(conn))
	}
	for range fan {
		p.lanes[laneFan].push(new(conn))
	}
	p.running = 1
	p.mu.Unlock()
	go p.work()
	waitPoolIdle(t, p)

	var want []int
	f, n := first, fan
	for f > 0 || n > 0 {
		for k := 0; k < firstStreakMax && f > 0; k++ {
			want = append(want, laneFirst)
			f--
		}
		if f == 0 {
			for ; n > 0; n-- {
				want = append(want, laneFan)
			}
			break
		}
		if n > 0 {
			want = append(want, laneFan)
			n--
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("turns in lanes\n%v\nwant\n%v", order, want)
	}
}

// TestWriterPoolFanNotStarved: replies keep the first lane full (every turn
// schedules its connection again, on both writers); connections waiting in
// the fan-out lane still get their turns.
func TestWriterPoolFanNotStarved(t *testing.T) {
	const fan = 50
	var (
		stop    atomic.Bool
		fanDone atomic.Int64
	)
	p := &writerPool{max: 2, fanMax: 1}
	p.turn = func(c *conn, ln int) {
		if ln == laneFan {
			fanDone.Add(1)
			return
		}
		if !stop.Load() {
			p.schedule(c, laneFirst) // another reply queued at once
		}
	}
	for range 8 {
		p.schedule(new(conn), laneFirst)
	}
	for range fan {
		p.schedule(new(conn), laneFan)
	}
	waitFor(t, "every fan-out turn while the first lane stays full", func() bool { return fanDone.Load() == fan })
	stop.Store(true)
	waitPoolIdle(t, p)
}

// TestWriterPoolFanScheduleNoSpare: a fan-out turn scheduled while the
// lane's one writer is busy starts no writer (one would find nothing it may
// take); the busy writer takes it next. A first-lane turn does start one.
func TestWriterPoolFanScheduleNoSpare(t *testing.T) {
	gate := make(chan struct{})
	var (
		mu    sync.Mutex
		turns []int
	)
	p := &writerPool{max: 4, fanMax: 1}
	p.turn = func(c *conn, ln int) {
		mu.Lock()
		turns = append(turns, ln)
		first := len(turns) == 1
		mu.Unlock()
		if first {
			<-gate
		}
	}
	p.schedule(new(conn), laneFan)
	waitFor(t, "the first fan-out turn", func() bool { mu.Lock(); defer mu.Unlock(); return len(turns) == 1 })
	p.schedule(new(conn), laneFan)
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	if running != 1 {
		t.Fatalf("%d writers after a second fan-out turn while the lane's writer is busy, want 1", running)
	}
	p.schedule(new(conn), laneFirst)
	waitFor(t, "the first-lane turn", func() bool { mu.Lock(); defer mu.Unlock(); return len(turns) == 2 })
	mu.Lock()
	if turns[1] != laneFirst {
		t.Fatalf("second turn in lane %d, want the first lane's, taken by a new writer", turns[1])
	}
	mu.Unlock()
	close(gate)
	waitPoolIdle(t, p)
	mu.Lock()
	defer mu.Unlock()
	if len(turns) != 3 || turns[2] != laneFan {
		t.Fatalf("turns %v, want [fan first fan]", turns)
	}
}

// waitPoolIdle waits for p's writers to exit.
func waitPoolIdle(t *testing.T, p *writerPool) {
	t.Helper()
	waitFor(t, "the pool's writers to exit", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.running == 0
	})
}

// TestDeliverFanLane: a delivery to several sessions on the edge puts its
// copies in the pool's fan-out lane, a delivery to one session and a reply
// in the first lane; every copy still arrives.
func TestDeliverFanLane(t *testing.T) {
	env := newEnv(t, nil)
	var (
		mu    sync.Mutex
		lanes = map[int]int{}
	)
	env.srv.writers.turn = func(c *conn, ln int) {
		mu.Lock()
		lanes[ln]++
		mu.Unlock()
		c.poolTurn(ln)
	}
	peers := []string{"alice", "bob", "carol"}
	clients, targets := loginPeers(t, env, peers...)
	// count waits for the pool's writers to exit, every turn over (a
	// client may read a frame before the turn that wrote it has ended, and
	// a frame queued then joins that turn), then returns the turns taken
	// and forgets them.
	count := func() (first, fan int) {
		waitPoolIdle(t, env.srv.writers)
		mu.Lock()
		defer mu.Unlock()
		f, n := lanes[laneFirst], lanes[laneFan]
		clear(lanes)
		return f, n
	}
	if first, fan := count(); first == 0 || fan != 0 {
		t.Fatalf("logins' replies took %d first-lane and %d fan-out turns, want some and 0", first, fan)
	}
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: targets, Command: push(t, "room", "m")})
	for i, c := range clients {
		if id := c.recv().GetDirectMessage().GetId(); id != "room" {
			t.Fatalf("%s got %q, want the room's push", peers[i], id)
		}
	}
	if first, fan := count(); first != 0 || fan != len(peers) {
		t.Fatalf("a delivery to %d sessions took %d first-lane and %d fan-out turns, want 0 and %d", len(peers), first, fan, len(peers))
	}
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: targets[:1], Command: push(t, "direct", "m")})
	if id := clients[0].recv().GetDirectMessage().GetId(); id != "direct" {
		t.Fatalf("alice got %q, want the direct push", id)
	}
	if first, fan := count(); first != 1 || fan != 0 {
		t.Fatalf("a delivery to one session took %d first-lane and %d fan-out turns, want 1 and 0", first, fan)
	}
}

// TestFanLaneSlowMember: a room of three whose member alice stops reading.
// The fan-out lane's one writer does not wait for her full socket: her
// burst is handed to a goroutine of its own, and bob and carol get every
// copy meanwhile. When alice reads again, every copy arrives in order.
func TestFanLaneSlowMember(t *testing.T) {
	const n = 4000 // 64 MB a member: more than a client's channel and both kernel buffers hold
	env := newEnv(t, func(c *Config) { c.Limits.QueueLen = n + 64 })
	if env.srv.writers.fanMax != max(1, env.srv.writers.max/2) {
		t.Fatalf("fanMax %d of %d writers", env.srv.writers.fanMax, env.srv.writers.max)
	}
	peers := []string{"alice", "bob", "carol"}
	clients, targets := loginPeers(t, env, peers...)
	big := strings.Repeat("x", 16<<10)
	errs := make(chan error, 2)
	for _, i := range []int{1, 2} { // bob and carol read as the copies come
		go func() {
			for k := range n {
				r, err := clients[i].next(10 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("%s's copy %d: %v", peers[i], k, err)
					return
				}
				if r.GetDirectMessage().GetId() != fmt.Sprint(k) || r.GetPeerId() != peers[i] {
					errs <- fmt.Errorf("%s's copy %d: got id %q peer %q", peers[i], k, r.GetDirectMessage().GetId(), r.GetPeerId())
					return
				}
			}
			errs <- nil
		}()
	}
	for k := range n {
		env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: targets, Command: push(t, fmt.Sprint(k), big)})
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if env.srv.Metrics().PoolHandoffs.Load() == 0 {
		t.Fatalf("no handoff: alice's full socket never stopped a fan-out turn (queued %d)", connOf(t, env.srv, "alice").q.Len())
	}
	for k := range n {
		r := clients[0].recv()
		if r.GetDirectMessage().GetId() != fmt.Sprint(k) || len(r.GetDirectMessage().GetMsg()) != len(big) {
			t.Fatalf("alice's copy %d: got id %q, %d bytes", k, r.GetDirectMessage().GetId(), len(r.GetDirectMessage().GetMsg()))
		}
	}
	clients[0].expectNothing(0)
}
