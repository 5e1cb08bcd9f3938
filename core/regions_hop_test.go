package core

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
)

// hopPeer is a remote region's core as the region hop's sender sees it:
// it reads push frames and acks them, or (mute) reads them and never acks
// — what a core killed with kill -9 looks like until its connection's
// idle timeout: writes to its stream still succeed.
type hopPeer struct {
	node *mesh.Node
	mute bool

	mu   sync.Mutex
	got  []*meshpb.RegionDelivery // guarded by mu
	recv chan struct{}            // one per frame
}

// newHopPeer serves the region hop's pushes on n.
func newHopPeer(n *mesh.Node, mute bool) *hopPeer {
	p := &hopPeer{node: n, mute: mute, recv: make(chan struct{}, 1024)}
	n.HandleStream(meshpb.MethodRegionDeliveries, p.serve, mesh.RoleCore)
	return p
}

func (p *hopPeer) serve(ctx context.Context, peer string, st *mesh.Stream) {
	defer st.Close()
	for {
		b, err := st.Recv()
		if err != nil {
			return
		}
		d := new(meshpb.RegionDelivery)
		if proto.Unmarshal(b, d) != nil {
			return
		}
		p.mu.Lock()
		p.got = append(p.got, d)
		p.mu.Unlock()
		p.recv <- struct{}{}
		if p.mute {
			continue
		}
		a, _ := proto.Marshal(&meshpb.RegionAck{Seq: d.GetSeq()})
		if st.Send(a) != nil {
			return
		}
	}
}

// ids lists the message ids of the pushes received, in order, with
// whether each was marked a replay.
func (p *hopPeer) ids(t *testing.T) (ids []string, replay []bool) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.got {
		cmd := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(d.GetCommand(), cmd); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cmd.GetDirectMessage().GetId())
		replay = append(replay, d.GetReplay())
	}
	return ids, replay
}

// newHopSender is core-a, a region-2 core, with a region hop to region
// 1's two cores core-x and core-y, hop peers that ack or (mute) do not.
func newHopSender(t *testing.T, muteX, muteY bool) (g *Regions, x, y *hopPeer) {
	t.Helper()
	nodes, _ := devNodes(t, "core-a", "core-x", "core-y")
	x, y = newHopPeer(nodes["core-x"], muteX), newHopPeer(nodes["core-y"], muteY)
	rl := relay.New(relay.Config{})
	t.Cleanup(rl.Close)
	g, err := NewRegions(2, nodes["core-a"], rl, []RemoteRegion{{Number: 1, Cores: []string{x.node.Addr(), y.node.Addr()}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, x, y
}

func hopPush(g *Regions, id string) {
	cmd := &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Id: proto.String(id), Cid: proto.String("c1"), Msg: proto.String("hi")}}
	g.Fanout("app", []string{"alice", "bob"}, connKey{Edge: "e2", Conn: 1}, cmd, false)
}

// TestRegionHopLeavesAMuteCore: the core the hop streams to stops acking
// without its stream failing (kill -9: writes still succeed until the
// connection's idle timeout; a restart then answers with a stateless
// reset, and the sender went back to it — a fresh core whose relay knew
// no session yet, which acked the pushes without delivering them). The
// pushes it owes go to another core of the region, marked as a replay,
// and so do the later ones; the mute core is not tried first again.
func TestRegionHopLeavesAMuteCore(t *testing.T) {
	g, mute, live := newHopSender(t, true, false)
	// The mute core answered last as the region's router: the hop tries
	// it first.
	rr := g.peers[1]
	rr.mu.Lock()
	rr.router = mute.node.Addr()
	rr.mu.Unlock()

	hopPush(g, "m1")
	hopPush(g, "m2")
	wait := func(p *hopPeer, k int, what string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for range k {
			select {
			case <-p.recv:
			case <-deadline:
				got, _ := p.ids(t)
				t.Fatalf("%s: got %v after 30s", what, got)
			}
		}
	}
	wait(mute, 2, "the mute core")
	wait(live, 2, "the live core, after the mute one acked nothing")
	hopPush(g, "m3")
	wait(live, 1, "the live core, a push after the move")

	got, replay := live.ids(t)
	want := []string{"m1", "m2", "m3"}
	wantReplay := []bool{true, true, false}
	if len(got) != len(want) {
		t.Fatalf("live core got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] || replay[i] != wantReplay[i] {
			t.Fatalf("live core got %v (replay %v), want %v (replay %v)", got, replay, want, wantReplay)
		}
	}
	if m, _ := mute.ids(t); len(m) != 2 {
		t.Errorf("the mute core got %v, want m1 and m2 only", m)
	}
	// Every push acked, by the live core.
	for deadline := time.Now().Add(10 * time.Second); g.Stats().Sent.Load() != 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d pushes acked, want 3", g.Stats().Sent.Load())
		}
	}
}

// TestRegionHopAllMute: no core of the region acks. The pushes are not
// counted sent nor dropped: the hop keeps them and offers them to each
// core in turn (the one that failed last, last), until one acks.
func TestRegionHopAllMute(t *testing.T) {
	g, x, y := newHopSender(t, true, true)
	for i := range 50 {
		hopPush(g, "m"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	// x takes all 50 first, then y all 50 again, then x again.
	count := func(p *hopPeer) int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.got) }
	deadline := time.Now().Add(30 * time.Second)
	for count(x) < 100 || count(y) < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: x got %d, y got %d pushes; want each offered every push in turn", count(x), count(y))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := g.Stats()
	dropped := int64(0)
	for i := range s.Dropped {
		dropped += s.Dropped[i].Load()
	}
	if s.Sent.Load() != 0 || dropped != 0 {
		t.Errorf("sent %d dropped %d with no core acking, want 0 and 0", s.Sent.Load(), dropped)
	}
	// Each turn offers all 50, in order, replays past the first offer.
	got, replay := y.ids(t)
	for i := range 50 {
		if want := "m" + string(rune('a'+i%26)) + string(rune('a'+i/26)); got[i] != want || !replay[i] {
			t.Fatalf("y's push %d is %s (replay %v), want %s as a replay", i, got[i], replay[i], want)
		}
	}
}

// warmRig is a region-2 core that just started (its relay knows no edge)
// with another core of its region that has edge e1 attached, and a
// region-1 core that pushes to it.
type warmRig struct {
	sender, recv *Regions
	rl           *relay.Relay // the receiver's
	mu           sync.Mutex
	got          []string // message ids the receiver's edge e1 was handed
}

func newWarmRig(t *testing.T, peerEdges []string) *warmRig {
	t.Helper()
	nodes, _ := devNodes(t, "core-a", "core-r", "core-p")
	na, nr, np := nodes["core-a"], nodes["core-r"], nodes["core-p"]
	np.HandleRPC(meshpb.MethodRelayEdges, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(peerEdges)
	}, mesh.RoleCore)
	w := &warmRig{rl: relay.New(relay.Config{})}
	rla := relay.New(relay.Config{})
	t.Cleanup(rla.Close)
	t.Cleanup(w.rl.Close)
	var err error
	if w.recv, err = NewRegions(2, nr, w.rl, []RemoteRegion{{Number: 1, Cores: []string{na.Addr()}}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.recv.Close)
	w.recv.Serve()
	w.recv.SetLocalCores([]string{np.Addr()})
	if w.sender, err = NewRegions(1, na, rla, []RemoteRegion{{Number: 2, Cores: []string{nr.Addr()}}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.sender.Close)
	return w
}

// attach attaches edge e1 to the receiver's relay and sends its full list
// (alice on connection 1).
func (w *warmRig) attach() {
	w.rl.AttachEdge("e1", func(d *meshpb.Delivery) error {
		cmd := new(lcpb.GenericCommand)
		if proto.Unmarshal(d.GetCommand(), cmd) == nil {
			w.mu.Lock()
			w.got = append(w.got, cmd.GetDirectMessage().GetId())
			w.mu.Unlock()
		}
		return nil
	})
	w.rl.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, Add: []*meshpb.PresenceSession{{AppId: "app", PeerId: "alice", ConnId: 1}}}, true)
}

func (w *warmRig) delivered() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

func (w *warmRig) push(id string) {
	w.sender.MarkOnline(2, "app", "alice", "", true) // no summary says otherwise
	hopPush(w.sender, id)
}

// TestRegionPushesWaitForEdges: a core that just started turns other
// regions' push streams away until the edges its region's other cores
// have attached have attached to it and sent their sessions; the sender
// holds the push meanwhile and it reaches alice once her edge is back.
// Before, the core took the push, delivered it to nobody (its relay knew
// no session yet) and acked it: alice, whose edge never lost her, never
// got it.
func TestRegionPushesWaitForEdges(t *testing.T) {
	w := newWarmRig(t, []string{"e1"})
	w.push("m1")
	for deadline := time.Now().Add(10 * time.Second); w.recv.Stats().Refused.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("push streams refused: %d after 10 s, want the sender to keep trying", w.recv.Stats().Refused.Load())
		}
	}
	if s := w.sender.Stats(); s.Sent.Load() != 0 || w.recv.Stats().Received.Load() != 0 {
		t.Fatalf("before the edge is back: %d pushes acked, %d received; want none", s.Sent.Load(), w.recv.Stats().Received.Load())
	}
	w.attach()
	for deadline := time.Now().Add(10 * time.Second); len(w.delivered()) == 0 || w.sender.Stats().Sent.Load() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the edge came back: delivered %v, acked %d; want m1 delivered and acked", w.delivered(), w.sender.Stats().Sent.Load())
		}
	}
	if got := w.delivered(); len(got) != 1 || got[0] != "m1" {
		t.Fatalf("edge e1 got %v, want m1 once", got)
	}
	// Ready for good: a later push goes straight through.
	w.push("m2")
	for deadline := time.Now().Add(10 * time.Second); len(w.delivered()) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a push after the warm-up: edge got %v", w.delivered())
		}
	}
}

// TestRegionWarmUpBounded: an edge the other cores name that never comes
// back (it died meanwhile) holds the pushes for warmUpMax at most; a
// region whose other cores have no edge holds nothing.
func TestRegionWarmUpBounded(t *testing.T) {
	old := warmUpMax
	warmUpMax = 1500 * time.Millisecond
	defer func() { warmUpMax = old }()
	w := newWarmRig(t, []string{"e1", "e-dead"})
	w.attach() // e1 is back; e-dead never
	start := time.Now()
	w.push("m1")
	for deadline := time.Now().Add(10 * time.Second); len(w.delivered()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the push was held past the warm-up's bound")
		}
	}
	if held := time.Since(start); held < time.Second {
		t.Errorf("delivered after %v, before the warm-up's bound (1.5 s) with an edge missing", held)
	}
	if w.recv.Stats().Refused.Load() == 0 {
		t.Error("no stream refused during the warm-up")
	}

	// No edge elsewhere: ready once the other core answers, not by the
	// bound (an hour now: a push delivered proves the answer did it).
	warmUpMax = time.Hour
	w2 := newWarmRig(t, nil)
	w2.attach()
	w2.push("m1")
	for deadline := time.Now().Add(10 * time.Second); len(w2.delivered()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a core whose region has no edge elsewhere held the push")
		}
	}
}

// TestMarkTags: a login mark names its login's tag, so a tagged reconnect
// elsewhere asks that region only about a tag one of its marked logins
// holds, or when a mark cannot say (a core of an earlier release).
func TestMarkTags(t *testing.T) {
	g, _, _ := newHopSender(t, false, false)
	rr := g.peers[1] // the hop sender is region 2; region 1 is the other
	fresh := func() { rr.mu.Lock(); rr.pulled = time.Now(); rr.mu.Unlock() }
	ask := func(peer, tag string) bool {
		fresh()
		a, _ := g.mayHoldTag(rr, "app", peer, tag)
		return a
	}
	if ask("amy", "phone") {
		t.Fatal("asked with no mark and a fresh summary naming nothing")
	}
	g.MarkOnline(1, "app", "amy", "pad", true)
	if ask("amy", "phone") || !ask("amy", "pad") {
		t.Fatalf("a mark naming pad: asked about phone %v (want false), about pad %v (want true)", ask("amy", "phone"), ask("amy", "pad"))
	}
	g.MarkOnline(1, "app", "amy", "phone", true) // a second login there
	if !ask("amy", "phone") || !ask("amy", "pad") {
		t.Fatal("a mark of two logins forgot one's tag")
	}
	g.MarkOnline(1, "app", "bea", "", true) // untagged: holds no tag
	if ask("bea", "phone") {
		t.Fatal("asked about a tag after an untagged login")
	}
	g.MarkOnline(1, "app", "bea", "", false) // from a core of an earlier release
	if !ask("bea", "phone") {
		t.Fatal("a mark that cannot name tags must be asked about any")
	}
	for i := range maxMarkTags + 1 {
		g.MarkOnline(1, "app", "cal", fmt.Sprint("t", i), true)
	}
	if !ask("cal", "other") {
		t.Fatalf("more than %d tags marked: asked %v about any other, want true", maxMarkTags, ask("cal", "other"))
	}
	if !g.ReachedElsewhere("app", "amy") || g.ReachedElsewhere("app", "dan") {
		t.Fatal("ReachedElsewhere does not follow the marks")
	}
}
