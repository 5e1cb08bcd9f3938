package corelink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// fakeCore is a mesh node that answers the edge's "client" rpc and
// "deliveries" stream the way a test scripts it.
type fakeCore struct {
	t    *testing.T
	node *mesh.Node

	mu       sync.Mutex
	leader   bool            // guarded by mu: answers requests (else not_leader)
	hint     string          // guarded by mu: not_leader's leader
	block    bool            // guarded by mu: COMMAND requests hang until the caller gives up
	delay    time.Duration   // guarded by mu: COMMAND requests are answered this late
	stuck    bool            // guarded by mu: the deliveries stream is never read after hello
	keys     []string        // guarded by mu: idempotency keys of the COMMANDs answered or held
	calls    int             // guarded by mu: requests of any kind
	sessions map[uint64]bool // guarded by mu: presence as received
	streams  []*mesh.Stream  // guarded by mu: open delivery streams
	held     chan struct{}   // guarded by mu: closed when a blocked COMMAND arrived
	heldDone bool            // guarded by mu: held is closed
}

func newFakeCore(t *testing.T, id *mesh.Identity) *fakeCore {
	t.Helper()
	n, err := mesh.Listen("127.0.0.1:0", id, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCore{t: t, node: n, sessions: map[uint64]bool{}, held: make(chan struct{})}
	n.HandleRPC(meshpb.MethodClient, f.handleClient)
	n.HandleStream(meshpb.MethodDeliveries, f.handleDeliveries)
	t.Cleanup(func() { n.Close() })
	return f
}

func (f *fakeCore) set(fn func(f *fakeCore)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func (f *fakeCore) handleClient(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	leader, hint, block, delay := f.leader, f.hint, f.block, f.delay
	f.calls++
	if req.Kind == meshpb.ClientRequest_COMMAND {
		f.keys = append(f.keys, req.IdempotencyKey)
	}
	f.mu.Unlock()
	if !leader {
		return proto.Marshal(&meshpb.ClientReply{NotLeader: true, Leader: hint})
	}
	if block && req.Kind == meshpb.ClientRequest_COMMAND {
		f.mu.Lock()
		if !f.heldDone {
			f.heldDone = true
			close(f.held)
		}
		f.mu.Unlock()
		<-ctx.Done() // a leader that died with the request
		return nil, ctx.Err()
	}
	if delay > 0 && req.Kind == meshpb.ClientRequest_COMMAND {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return proto.Marshal(&meshpb.ClientReply{ErrorReason: "from " + f.node.Addr()})
}

func (f *fakeCore) handleDeliveries(ctx context.Context, peer string, s *mesh.Stream) {
	if _, err := s.Recv(); err != nil { // hello
		return
	}
	f.mu.Lock()
	f.streams = append(f.streams, s)
	stuck := f.stuck
	f.mu.Unlock()
	if stuck {
		<-ctx.Done()
		return
	}
	for {
		b, err := s.Recv()
		if err != nil {
			return
		}
		p := new(meshpb.Presence)
		if err := proto.Unmarshal(b, p); err != nil {
			f.t.Errorf("bad presence: %v", err)
			return
		}
		f.mu.Lock()
		if p.ReplaceAll {
			f.sessions = map[uint64]bool{}
		}
		for _, r := range p.Remove {
			delete(f.sessions, r.ConnId)
		}
		for _, a := range p.Add {
			f.sessions[a.ConnId] = true
		}
		f.mu.Unlock()
	}
}

// announce sends a LinkLeader frame on every delivery stream of f.
func (f *fakeCore) announce(addr string, term uint64) {
	b, _ := proto.Marshal(&meshpb.Delivery{Leader: &meshpb.LinkLeader{Addr: addr, Term: term}})
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.streams {
		_ = s.Send(b)
	}
}

func (f *fakeCore) streamCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

func (f *fakeCore) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// startLinkOver starts a link of edge-1 over its own mesh node to cores,
// with its delivery streams open (deliveries are dropped).
func startLinkOver(t *testing.T, id *mesh.Identity, cores []string) *Link {
	t.Helper()
	node, err := mesh.Listen("127.0.0.1:0", id, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l := New(Config{Node: node, Cores: cores, EdgeID: "edge-1"})
	l.Start(func(*meshpb.Delivery) {})
	t.Cleanup(func() {
		l.Close()
		node.Close()
	})
	return l
}

func testPKI(t *testing.T) map[string]*mesh.Identity {
	t.Helper()
	ids, err := mesh.EnsureDevPKI(filepath.Join(t.TempDir(), "pki"), "edge-1", "core-1", "core-2", "core-3")
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func directReq(dt string) *meshpb.ClientRequest {
	d := &lcpb.DirectCommand{Cid: proto.String("c1"), Msg: proto.String("hi")}
	if dt != "" {
		d.Dt = proto.String(dt)
	}
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(1), DirectMessage: d})
	return &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: "app", PeerId: "alice", EdgeId: "edge-1", ConnId: 1, Command: b}
}

func convStartReq() *meshpb.ClientRequest {
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_start.Enum(), I: proto.Int32(2),
		ConvMessage: &lcpb.ConvCommand{M: []string{"bob"}}})
	return &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: "app", PeerId: "alice", EdgeId: "edge-1", ConnId: 1, Command: b}
}

// TestPresenceOffRequestPath: a core that stops reading its delivery
// stream (stuck, or killed and not yet noticed) holds up neither logins nor
// requests to the leader; its presence queue overflows into a resync, and
// the leader gets every session.
func TestPresenceOffRequestPath(t *testing.T) {
	ids := testPKI(t)
	leader, stuck := newFakeCore(t, ids["core-1"]), newFakeCore(t, ids["core-2"])
	leader.set(func(f *fakeCore) { f.leader = true })
	stuck.set(func(f *fakeCore) { f.stuck, f.hint = true, leader.node.Addr() })
	l := startLinkOver(t, ids["edge-1"], []string{stuck.node.Addr(), leader.node.Addr()})
	// Longer than the test: no send timeout rescues a link that would wait
	// for the stuck core.
	l.sendTimeout.Store(int64(5 * time.Minute))
	pollUntil(t, 10*time.Second, "delivery streams to both cores", func() bool {
		return leader.streamCount() > 0 && stuck.streamCount() > 0
	})
	// Enough bytes (long peer ids) to fill the stuck core's stream window,
	// then enough changes to overflow the queue behind it.
	const sessions = 4 * presenceQueueLen
	long := strings.Repeat("x", 100)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range sessions {
		req := &meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN, AppId: "app", PeerId: fmt.Sprintf("p%d-%s", i, long),
			EdgeId: "edge-1", ConnId: uint64(i + 1), ProtocolVersion: 3}
		if _, err := l.Do(ctx, req); err != nil {
			t.Fatalf("login %d with a stuck core in the region: %v", i, err)
		}
	}
	if _, err := l.Do(ctx, directReq("dt-1")); err != nil {
		t.Fatalf("send with a stuck core in the region: %v", err)
	}
	if l.stats.presenceOverflow.Load() == 0 {
		t.Error("the stuck core's presence queue never overflowed")
	}
	pollUntil(t, 20*time.Second, "the leader mirrors every session", func() bool { return leader.sessionCount() == sessions })
}

// TestLinkMovesSafeRequestOnLeaderHint: a send in flight to a leader that
// died is sent again, with the same idempotency key, to the core a
// LinkLeader frame names; a request that is not safe to repeat fails at
// once with ErrOutcomeUnknown instead of waiting out its deadline.
func TestLinkMovesSafeRequestOnLeaderHint(t *testing.T) {
	ids := testPKI(t)
	old, next := newFakeCore(t, ids["core-1"]), newFakeCore(t, ids["core-2"])
	old.set(func(f *fakeCore) { f.leader, f.block = true, true })
	next.set(func(f *fakeCore) { f.hint = old.node.Addr() })
	l := startLinkOver(t, ids["edge-1"], []string{old.node.Addr(), next.node.Addr()})
	pollUntil(t, 10*time.Second, "delivery streams", func() bool { return next.streamCount() > 0 })
	l.follow(old.node.Addr(), 1, false)

	for _, tc := range []struct {
		name string
		req  *meshpb.ClientRequest
		safe bool
	}{
		{"send with dt", directReq("dt-1"), true},
		{"send without dt", directReq(""), true},
		{"conv start", convStartReq(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old.set(func(f *fakeCore) {
				f.leader, f.block, f.keys = true, true, nil
				f.held, f.heldDone = make(chan struct{}), false
			})
			next.set(func(f *fakeCore) { f.leader, f.keys = false, nil })
			l.follow(old.node.Addr(), 0, true)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type result struct {
				rep *meshpb.ClientReply
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := l.Do(ctx, tc.req)
				done <- result{rep, err}
			}()
			old.mu.Lock()
			held := old.held
			old.mu.Unlock()
			<-held
			// The old leader is gone; the new one says so on its stream.
			next.set(func(f *fakeCore) { f.leader = true })
			old.set(func(f *fakeCore) { f.leader, f.hint = false, next.node.Addr() })
			l.mu.Lock()
			term := l.term + 1
			l.mu.Unlock()
			next.announce(next.node.Addr(), term)
			r := <-done
			if ctx.Err() != nil {
				t.Fatal("Do waited for its deadline")
			}
			if !tc.safe {
				if !errors.Is(r.err, ErrOutcomeUnknown) {
					t.Fatalf("got %v, want ErrOutcomeUnknown", r.err)
				}
				return
			}
			if r.err != nil || r.rep.ErrorReason != "from "+next.node.Addr() {
				t.Fatalf("got %v %v, want the new leader's answer", r.rep, r.err)
			}
			old.mu.Lock()
			k1 := old.keys
			old.mu.Unlock()
			next.mu.Lock()
			k2 := next.keys
			next.mu.Unlock()
			if len(k1) != 1 || len(k2) != 1 || k1[0] == "" || k1[0] != k2[0] {
				t.Errorf("idempotency keys: old leader %q, new leader %q; want one and the same", k1, k2)
			}
		})
	}
}

// TestLinkDiscoversWithoutHint: with no LinkLeader frame at all, a send
// stuck at a dead leader moves once a background discovery finds the core
// that leads now.
func TestLinkDiscoversWithoutHint(t *testing.T) {
	ids := testPKI(t)
	old, next := newFakeCore(t, ids["core-1"]), newFakeCore(t, ids["core-2"])
	old.set(func(f *fakeCore) { f.leader, f.block = true, true })
	l := startLinkOver(t, ids["edge-1"], []string{old.node.Addr(), next.node.Addr()})
	l.follow(old.node.Addr(), 0, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	var rep *meshpb.ClientReply
	go func() {
		var err error
		rep, err = l.Do(ctx, directReq("dt-2"))
		done <- err
	}()
	old.mu.Lock()
	held := old.held
	old.mu.Unlock()
	<-held
	// old now hangs every request (PING included: it is not a COMMAND, so
	// make it refuse instead); next leads.
	old.set(func(f *fakeCore) { f.leader = false })
	next.set(func(f *fakeCore) { f.leader = true })
	if err := <-done; err != nil || rep.ErrorReason != "from "+next.node.Addr() {
		t.Fatalf("got %v %v, want the new leader's answer", rep, err)
	}
	if ctx.Err() != nil {
		t.Fatal("Do waited for its deadline")
	}
}

// TestLinkSkipsDeadCore: the first request of an edge whose core list
// starts with a dead address is answered by the leader without waiting for
// the dead core's dial (discovery asks every core at once).
func TestLinkSkipsDeadCore(t *testing.T) {
	ids := testPKI(t)
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // swallows QUIC
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	leader := newFakeCore(t, ids["core-1"])
	leader.set(func(f *fakeCore) { f.leader = true })
	l := startLinkOver(t, ids["edge-1"], []string{dead.LocalAddr().String(), leader.node.Addr()})
	// Shorter than a dial of the dead address (3 s): only a link that does
	// not wait for it answers in time.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := l.Do(ctx, directReq("dt-3")); err != nil {
		t.Fatalf("request with a dead core first in the list: %v", err)
	}
}

// TestLinkStaleHintsDoNotSpin: two cores that each name the other as
// leader (stale hints during an election) do not make the link spin: it
// pauses between rounds and gives up with ErrNoLeader at its deadline.
func TestLinkStaleHintsDoNotSpin(t *testing.T) {
	ids := testPKI(t)
	a, b := newFakeCore(t, ids["core-1"]), newFakeCore(t, ids["core-2"])
	a.set(func(f *fakeCore) { f.hint = b.node.Addr() })
	b.set(func(f *fakeCore) { f.hint = a.node.Addr() })
	l := startLinkOver(t, ids["edge-1"], []string{a.node.Addr(), b.node.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := l.Do(ctx, directReq("dt-4")); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("got %v, want ErrNoLeader", err)
	}
	a.mu.Lock()
	n := a.calls
	a.mu.Unlock()
	b.mu.Lock()
	n += b.calls
	b.mu.Unlock()
	if n > 200 {
		t.Errorf("%d requests in a second between two cores naming each other: the link spins", n)
	}
}

func TestRetrySafe(t *testing.T) {
	cmd := func(g *lcpb.GenericCommand) *meshpb.ClientRequest {
		b, _ := proto.Marshal(g)
		return &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, Command: b, IdempotencyKey: "k"}
	}
	conv := func(op lcpb.OpType) *meshpb.ClientRequest {
		return cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum()})
	}
	noKey := directReq("")
	for _, tt := range []struct {
		name string
		req  *meshpb.ClientRequest
		want bool
	}{
		{"ping", &meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING}, true},
		{"open", &meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN}, true},
		{"close", &meshpb.ClientRequest{Kind: meshpb.ClientRequest_CLOSE}, true},
		{"admin", &meshpb.ClientRequest{Kind: meshpb.ClientRequest_ADMIN}, false},
		{"direct with dt", directReq("x"), true},
		{"direct with a key", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{}}), true},
		{"direct with neither", noKey, false},
		{"ack", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum()}), true},
		{"read", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum()}), true},
		{"logs", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum()}), true},
		{"conv query", conv(lcpb.OpType_query), true},
		{"conv mute", conv(lcpb.OpType_mute), true},
		{"conv start", conv(lcpb.OpType_start), false},
		{"conv add", conv(lcpb.OpType_add), false},
		{"conv update", conv(lcpb.OpType_update), false},
		{"patch", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum()}), false},
		{"blacklist query", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: lcpb.OpType_query.Enum()}), true},
		{"blacklist block", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: lcpb.OpType_block.Enum()}), false},
		{"session query", cmd(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_query.Enum()}), true},
	} {
		if got := tt.req.RetrySafe(); got != tt.want {
			t.Errorf("%s: retrySafe = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestFullListHoldsOpening: a full presence list made while an OPEN is in
// flight lists that session and is numbered at or above its OPEN (so the
// core, which may register the session before it reads the list, keeps
// it: relay.SyncPresence); an OPEN sent after the list is numbered above
// it; a refused OPEN is told to every core as ended.
func TestFullListHoldsOpening(t *testing.T) {
	l := New(Config{EdgeID: "edge-1"})
	q := &presenceQueue{resync: true, wake: make(chan struct{}, 1)}
	l.presence["core-1"] = q
	a := &meshpb.PresenceSession{AppId: "app", PeerId: "alice", ConnId: 1}
	seqA := l.beginOpen(a)
	l.mu.Lock()
	frames := l.takeLocked(q)
	l.mu.Unlock()
	if len(frames) != 1 || !frames[0].ReplaceAll || len(frames[0].Add) != 1 || frames[0].Add[0].PeerId != "alice" {
		t.Fatalf("full list while alice's OPEN is in flight: %v, want alice on it", frames)
	}
	snap := frames[0].SnapshotSeq
	if snap < seqA || meshpb.PresenceAfter(seqA, snap) {
		t.Fatalf("list numbered %#x, alice's OPEN %#x: want the list at or after it", snap, seqA)
	}
	b := &meshpb.PresenceSession{AppId: "app", PeerId: "bob", ConnId: 2}
	if seqB := l.beginOpen(b); !meshpb.PresenceAfter(seqB, snap) {
		t.Fatalf("bob's OPEN after the list: %#x, list %#x; want it after", seqB, snap)
	}
	l.endOpen(a, true, "room-1")
	l.endOpen(b, false, "")
	l.mu.Lock()
	frames = l.takeLocked(q)
	l.mu.Unlock()
	if len(frames) != 1 || len(frames[0].Add) != 1 || frames[0].Add[0].PeerId != "alice" || frames[0].Add[0].Room != "room-1" ||
		len(frames[0].Remove) != 1 || frames[0].Remove[0].PeerId != "bob" {
		t.Fatalf("after alice logged in and bob was refused: %v; want alice added (room-1), bob removed", frames)
	}
	if a.Room != "" {
		t.Error("endOpen changed the session a full list may be sending")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.opening) != 0 || len(l.sessions) != 1 {
		t.Errorf("opening %v sessions %v, want none opening and alice", l.opening, l.sessions)
	}
}

// TestFullListFrames: a full list longer than one frame has more set on
// every frame but the last, replace_all and the number on the first.
func TestFullListFrames(t *testing.T) {
	l := New(Config{EdgeID: "edge-1"})
	q := &presenceQueue{resync: true, wake: make(chan struct{}, 1)}
	l.presence["core-1"] = q
	const n = 2*presenceChunk + 5
	for i := range n {
		ps := &meshpb.PresenceSession{AppId: "app", PeerId: fmt.Sprintf("p%d", i), ConnId: uint64(i + 1)}
		l.beginOpen(ps)
		if i%2 == 0 {
			l.endOpen(ps, true, "")
		}
	}
	l.mu.Lock()
	frames := l.takeLocked(q)
	l.mu.Unlock()
	total := 0
	for i, f := range frames {
		total += len(f.Add)
		last := i == len(frames)-1
		if f.More == last || f.ReplaceAll != (i == 0) || (i == 0) != (f.SnapshotSeq != 0) {
			t.Errorf("frame %d of %d: replace_all %v more %v snapshot %#x", i, len(frames), f.ReplaceAll, f.More, f.SnapshotSeq)
		}
	}
	if len(frames) != 3 || total != n {
		t.Fatalf("%d frames with %d sessions, want 3 with %d (logged in and opening)", len(frames), total, n)
	}
}

// TestSlowCallsProbeOnce: when many calls are slow at once (a backlog at
// the leader, which is alive), their probes start one discovery round a
// probeAfter, not one each: each round walks every attempt in flight. Slow
// calls do start a probe.
func TestSlowCallsProbeOnce(t *testing.T) {
	ids := testPKI(t)
	core := newFakeCore(t, ids["core-1"])
	core.set(func(f *fakeCore) { f.leader, f.delay = true, probeAfter+1500*time.Millisecond })
	l := startLinkOver(t, ids["edge-1"], []string{core.node.Addr()})
	l.follow(core.node.Addr(), 0, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const calls = 40
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			rep, err := l.Do(ctx, directReq(fmt.Sprintf("dt-%d", i)))
			if err == nil && rep.ErrorReason != "from "+core.node.Addr() {
				err = fmt.Errorf("answer %q", rep.ErrorReason)
			}
			errs <- err
		}()
		time.Sleep(25 * time.Millisecond) // their probes fire spread over a second
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The calls are slow for ~2.5 s in all: without the bound a probe
	// would start a round at every probeTick that found a slow call.
	if d, s := l.stats.discoveries.Load(), l.stats.probesSkipped.Load(); d < 1 || d > 3 || d+s > calls {
		t.Fatalf("%d discovery rounds, %d probes skipped for %d slow calls; want 1 to 3 rounds, at most a probe a call", d, s, calls)
	}
}
