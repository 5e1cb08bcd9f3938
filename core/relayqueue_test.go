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
)

// rd is a test delivery named by its AppId.
func rd(name string) *meshpb.Delivery { return &meshpb.Delivery{AppId: name} }

// popAll drains q and returns the names in pop order.
func popAll(q *relayQueue) []string {
	var out []string
	for d := q.pop(); d != nil; d = q.pop() {
		out = append(out, d.AppId)
	}
	return out
}

// TestRelayQueue drives the overflow rule step by step: each push's
// outcome, then the pop order (HIGH > NORMAL > LOW, FIFO within a class).
func TestRelayQueue(t *testing.T) {
	type push struct {
		name    string
		class   RelayClass
		dropped bool
		victim  RelayClass // when dropped
	}
	tests := []struct {
		name   string
		cap    int
		pushes []push
		want   []string // pop order after the pushes
	}{
		{"order by class, FIFO within", 8, []push{
			{name: "l1", class: RelayLow}, {name: "n1", class: RelayNormal}, {name: "h1", class: RelayHigh},
			{name: "l2", class: RelayLow}, {name: "n2", class: RelayNormal}, {name: "h2", class: RelayHigh},
		}, []string{"h1", "h2", "n1", "n2", "l1", "l2"}},
		{"full: a new LOW is dropped", 2, []push{
			{name: "l1", class: RelayLow}, {name: "l2", class: RelayLow},
			{name: "l3", class: RelayLow, dropped: true, victim: RelayLow},
		}, []string{"l1", "l2"}},
		{"full: a NORMAL evicts the oldest LOW", 3, []push{
			{name: "l1", class: RelayLow}, {name: "n1", class: RelayNormal}, {name: "l2", class: RelayLow},
			{name: "n2", class: RelayNormal, dropped: true, victim: RelayLow},
		}, []string{"n1", "n2", "l2"}},
		{"full, no LOW: a NORMAL is dropped", 2, []push{
			{name: "n1", class: RelayNormal}, {name: "h1", class: RelayHigh},
			{name: "n2", class: RelayNormal, dropped: true, victim: RelayNormal},
		}, []string{"h1", "n1"}},
		{"full: a HIGH evicts LOW before NORMAL", 3, []push{
			{name: "n1", class: RelayNormal}, {name: "l1", class: RelayLow}, {name: "n2", class: RelayNormal},
			{name: "h1", class: RelayHigh, dropped: true, victim: RelayLow},
			{name: "h2", class: RelayHigh, dropped: true, victim: RelayNormal},
		}, []string{"h1", "h2", "n2"}},
		{"full of HIGH: a new HIGH is dropped", 2, []push{
			{name: "h1", class: RelayHigh}, {name: "h2", class: RelayHigh},
			{name: "h3", class: RelayHigh, dropped: true, victim: RelayHigh},
			{name: "l1", class: RelayLow, dropped: true, victim: RelayLow},
			{name: "n1", class: RelayNormal, dropped: true, victim: RelayNormal},
		}, []string{"h1", "h2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newRelayQueue(tt.cap)
			for _, p := range tt.pushes {
				victim, dropped := q.push(rd(p.name), p.class)
				if dropped != p.dropped || (dropped && victim != p.victim) {
					t.Fatalf("push %s: got dropped=%v victim=%v, want dropped=%v victim=%v",
						p.name, dropped, victim, p.dropped, p.victim)
				}
				if n := q.len(); n > tt.cap {
					t.Fatalf("push %s: len %d over cap %d", p.name, n, tt.cap)
				}
			}
			if got := popAll(q); !slices.Equal(got, tt.want) {
				t.Fatalf("pop order: got %v, want %v", got, tt.want)
			}
			if n := q.len(); n != 0 {
				t.Fatalf("len after draining: %d", n)
			}
		})
	}
}

// TestRelayQueueBounded pushes far more than the capacity in a mix and
// checks the bound, that no HIGH is lost while lower classes can make room,
// and that pushes minus drops equal what pops.
func TestRelayQueueBounded(t *testing.T) {
	const capacity = 16
	q := newRelayQueue(capacity)
	var dropped [NumRelayClasses]int
	// 10% HIGH, 40% NORMAL, 50% LOW; a consumer taking one in three.
	mix := []RelayClass{RelayHigh, RelayNormal, RelayLow, RelayLow, RelayNormal, RelayLow, RelayNormal, RelayLow, RelayNormal, RelayLow}
	pushed, popped := 0, 0
	for i := range 1000 {
		if v, ok := q.push(rd(fmt.Sprint(i)), mix[i%len(mix)]); ok {
			dropped[v]++
		}
		pushed++
		if q.len() > capacity {
			t.Fatalf("len %d over cap", q.len())
		}
		if i%3 == 0 && q.pop() != nil {
			popped++
		}
	}
	rest := len(popAll(q))
	if sum := dropped[0] + dropped[1] + dropped[2]; pushed-sum != popped+rest {
		t.Fatalf("pushed %d - dropped %v != popped %d + rest %d", pushed, dropped, popped, rest)
	}
	if dropped[RelayHigh] != 0 || dropped[RelayLow] == 0 {
		t.Fatalf("dropped %v: want LOW shed and no HIGH lost", dropped)
	}
}

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
	e.core.relayQueueLen = 8
	detach := e.core.AttachEdge("e1", g.send)
	t.Cleanup(func() {
		g.open()
		detach()
	})
	st := e.core.Stats()
	var before [NumRelayClasses]uint64
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

	e.core.mu.Lock()
	l := e.core.edges["e1"]
	e.core.mu.Unlock()
	if n := l.q.len(); n != 8 {
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
	var got [NumRelayClasses]uint64
	for i := range got {
		got[i] = st.DroppedByPriority[i].Load() - before[i]
	}
	if wantDrops := [NumRelayClasses]uint64{RelayHigh: 0, RelayNormal: 1, RelayLow: 5}; got != wantDrops {
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
