package core

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// gatedEdge is a fake edge whose send blocks until the gate opens, so the
// relay queue fills behind the one delivery in send.
type gatedEdge struct {
	fakeEdge
	entered  chan struct{} // closed when the first send starts
	gate     chan struct{} // closed to let sends through
	once     sync.Once
	openOnce sync.Once
}

func newGatedEdge() *gatedEdge {
	return &gatedEdge{entered: make(chan struct{}), gate: make(chan struct{})}
}

func (g *gatedEdge) send(d *meshpb.Delivery) error {
	g.once.Do(func() { close(g.entered) })
	<-g.gate
	return g.fakeEdge.send(d)
}

func (g *gatedEdge) open() { g.openOnce.Do(func() { close(g.gate) }) }

// texts are the direct messages delivered to peer, in order.
func (g *gatedEdge) texts(t *testing.T, peer string, conn uint64) []string {
	var out []string
	for _, p := range g.pushes(t, peer, conn) {
		if p.GetCmd() == lcpb.CommandType_direct {
			out = append(out, p.GetDirectMessage().GetMsg())
		}
	}
	return out
}

// TestRelayQueueSheds blocks the edge's send while a chatroom's mixed
// traffic and one normal conversation push pile up in a relay queue of 8,
// then releases it: HIGH (and the non-chatroom push, relay class HIGH) all
// arrive first, NORMAL next, LOW is shed first; the counters match.
func TestRelayQueueSheds(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	room := mustOK(t, a.conv(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"alice"}, Transient: proto.Bool(true)})).ConvMessage.GetCid()
	mustOK(t, b.conv(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(room), M: []string{"bob"}}))
	conv := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	drain(t, e.core)

	// Re-attach e1 (sessions are kept) through the gate, with a queue of 8.
	g := newGatedEdge()
	e.core.relay.SetQueueLen(8)
	detach := e.core.AttachEdge("e1", g.send)
	t.Cleanup(func() {
		g.open()
		detach()
	})
	st := e.core.relay.Stats()
	var before [pq.NumClasses]uint64
	for i := range before {
		before[i] = st.DroppedByPriority[i].Load()
	}
	dropped0 := st.Dropped.Load()

	say := func(text string, prio int32) {
		t.Helper()
		mustOK(t, a.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), Priority: proto.Int32(prio),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String(room), Msg: proto.String(text)}}))
	}
	say("plug", 2) // taken by the sender goroutine, which blocks in send
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the edge's send was never called")
	}
	for i := 1; i <= 4; i++ {
		say(fmt.Sprintf("l%d", i), 3)
	}
	for i := 1; i <= 4; i++ {
		say(fmt.Sprintf("n%d", i), 0) // 0 is NORMAL
	}
	// Full (4 LOW, 4 NORMAL) from here on.
	say("n5", 2)                      // evicts l1
	say("l5", 3)                      // dropped
	say("h1", 1)                      // evicts l2
	mustOK(t, a.sendText(conv, "c1")) // not chatroom: HIGH, evicts l3
	say("h2", 1)                      // evicts l4
	say("h3", 1)                      // evicts n1

	if n := e.core.relay.EdgeQueued("e1"); n != 8 {
		t.Fatalf("queued: got %d, want 8", n)
	}
	g.open()
	want := []string{"plug", "h1", "c1", "h2", "h3", "n2", "n3", "n4", "n5"}
	deadline := time.Now().Add(5 * time.Second)
	for len(g.texts(t, "bob", b.conn)) < len(want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	drain(t, e.core)
	if got := g.texts(t, "bob", b.conn); !slices.Equal(got, want) {
		t.Fatalf("delivered: got %v, want %v", got, want)
	}
	var got [pq.NumClasses]uint64
	for i := range got {
		got[i] = st.DroppedByPriority[i].Load() - before[i]
	}
	if wantDrops := [pq.NumClasses]uint64{pq.High: 0, pq.Normal: 1, pq.Low: 5}; got != wantDrops {
		t.Fatalf("DroppedByPriority: got %v, want %v", got, wantDrops)
	}
	if n := st.Dropped.Load() - dropped0; n != 6 {
		t.Fatalf("Dropped: got %d, want 6", n)
	}
	// Persisted: every chatroom message is in history, shed or not.
	if logs := b.logs(&lcpb.LogsCommand{Cid: proto.String(room), L: proto.Int32(100)}); len(logs) != 14 {
		t.Fatalf("history: got %d messages, want 14", len(logs))
	}
}
