package relay

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeEdge records what its link sends; with a gate, send blocks until
// the gate opens.
type fakeEdge struct {
	gate chan struct{} // nil: never blocks

	mu  sync.Mutex
	got []*meshpb.Delivery
}

func (e *fakeEdge) send(d *meshpb.Delivery) error {
	if e.gate != nil {
		<-e.gate
	}
	e.mu.Lock()
	e.got = append(e.got, d)
	e.mu.Unlock()
	return nil
}

func (e *fakeEdge) deliveries() []*meshpb.Delivery {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

// waitFor polls cond with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newRelay(t *testing.T) *Relay {
	t.Helper()
	r := New(Config{})
	t.Cleanup(r.Close)
	return r
}

func open(t *testing.T, r *Relay, peer, tag, edge string, conn uint64) {
	t.Helper()
	if _, _, err := r.Open(&Session{App: "app", Peer: peer, Tag: tag, Edge: edge, Conn: conn, Version: 3}, false, false); err != nil {
		t.Fatal(err)
	}
}

func text(s string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Id: proto.String("m1"), Msg: proto.String(s)}}
}

// TestFanoutOnePerEdge: one delivery per edge holding any recipient's
// session, every session of the recipients but the skipped connection,
// peerId set only when one clientId is targeted, msg_id named; each
// delivery's Wait has left once the edge got it.
func TestFanoutOnePerEdge(t *testing.T) {
	r := newRelay(t)
	e1, e2 := &fakeEdge{}, &fakeEdge{}
	defer r.AttachEdge("e1", e1.send)()
	defer r.AttachEdge("e2", e2.send)()
	open(t, r, "alice", "", "e1", 1)
	open(t, r, "alice", "web", "e1", 2)
	open(t, r, "bob", "", "e2", 3)
	open(t, r, "carol", "", "e2", 4)
	waits := r.Fanout("app", []string{"alice", "bob", "carol", "zed"}, ConnKey{"e1", 1}, text("hi"), false)
	if len(waits) != 2 {
		t.Fatalf("got %d waits, want 2 (one per edge)", len(waits))
	}
	waitFor(t, "both edges got their delivery", func() bool { return len(e1.deliveries()) == 1 && len(e2.deliveries()) == 1 })
	for _, w := range waits {
		if !w.Left() {
			t.Error("a delivery the edge got has not left")
		}
	}
	d1, d2 := e1.deliveries()[0], e2.deliveries()[0]
	if len(d1.Targets) != 1 || d1.Targets[0].PeerId != "alice" || d1.Targets[0].ConnId != 2 {
		t.Fatalf("e1 targets: got %v, want alice/2 only (alice/1 skipped)", d1.Targets)
	}
	if len(d2.Targets) != 2 || d1.MsgId != "m1" || d2.MsgId != "m1" {
		t.Fatalf("e2: got %v msg_id %q, want bob and carol, m1", d2.Targets, d2.MsgId)
	}
	var g1, g2 lcpb.GenericCommand
	if proto.Unmarshal(d1.Command, &g1) != nil || proto.Unmarshal(d2.Command, &g2) != nil {
		t.Fatal("undecodable command")
	}
	if g1.GetPeerId() != "alice" || g2.PeerId != nil {
		t.Fatalf("peerId: e1 %q, e2 %v; want alice and none (two clientIds)", g1.GetPeerId(), g2.PeerId)
	}
	if n := r.Stats().Delivered.Load(); n != 2 {
		t.Fatalf("Delivered: got %d, want 2", n)
	}
}

// TestWaitLeavesOnSendOrDetach: a HIGH delivery behind a blocked send has
// not left; it leaves when the send returns, and every delivery of an edge
// leaves when the edge detaches. A delivery to an edge not attached is
// counted as dropped.
func TestWaitLeavesOnSendOrDetach(t *testing.T) {
	r := newRelay(t)
	gated := &fakeEdge{gate: make(chan struct{})}
	t.Cleanup(func() { close(gated.gate) }) // before r.Close, which waits for the send
	detach := r.AttachEdge("e1", gated.send)
	open(t, r, "bob", "", "e1", 1)
	w1 := r.Fanout("app", []string{"bob"}, ConnKey{}, text("one"), false)
	w2 := r.Fanout("app", []string{"bob"}, ConnKey{}, text("two"), false)
	if len(w1) != 1 || len(w2) != 1 {
		t.Fatal("no wait")
	}
	if w1[0].Left() || w2[0].Left() {
		t.Fatal("left while the send is blocked")
	}
	gated.gate <- struct{}{} // the first send returns
	waitFor(t, "the first delivery leaves", w1[0].Left)
	if w2[0].Left() {
		t.Fatal("the second left with the first")
	}
	detach()
	if !w2[0].Left() {
		t.Fatal("a delivery of a detached edge has not left")
	}
	if r.Online("app", "bob") {
		t.Fatal("bob online after his edge detached")
	}
	if _, ok := r.Deliver("e1", &meshpb.Delivery{AppId: "app", Targets: []*meshpb.Target{{PeerId: "bob"}}}, pq.High, text("x")); ok {
		t.Fatal("a delivery to a detached edge was queued")
	}
	if n := r.Stats().Dropped.Load(); n != 1 {
		t.Fatalf("Dropped: got %d, want 1", n)
	}
}

// TestOpenTagRule: an OPEN with a tag kicks the clientId's session of the
// same tag on another connection; a reconnecting one is refused instead,
// with nothing changed; another tag, or none, does not kick.
func TestOpenTagRule(t *testing.T) {
	r := newRelay(t)
	open(t, r, "alice", "mobile", "e1", 1)
	open(t, r, "alice", "", "e1", 2)
	_, _, err := r.Open(&Session{App: "app", Peer: "alice", Tag: "mobile", Edge: "e2", Conn: 3}, true, false)
	if !errors.Is(err, ErrTagConflict) {
		t.Fatalf("reconnect with a held tag: got %v, want ErrTagConflict", err)
	}
	if n := len(r.Sessions("app", "alice")); n != 2 {
		t.Fatalf("after the refusal: %d sessions, want 2", n)
	}
	kicked, _, err := r.Open(&Session{App: "app", Peer: "alice", Tag: "mobile", Edge: "e2", Conn: 3}, false, false)
	if err != nil || len(kicked) != 1 || kicked[0].Key() != (ConnKey{"e1", 1}) {
		t.Fatalf("tag kick: got %v %v, want e1/1 kicked", kicked, err)
	}
	if n := len(r.Sessions("app", "alice")); n != 2 {
		t.Fatalf("after the kick: %d sessions, want 2", n)
	}
	if tag := r.SessionTag("app", "alice", ConnKey{"e2", 3}); tag != "mobile" {
		t.Fatalf("tag: got %q, want mobile", tag)
	}
	if online, today := r.Usage("app"); online != 1 || today != 1 {
		t.Fatalf("usage: got %d online, %d today, want 1 and 1", online, today)
	}
}

// TestOpenVouchedReconnect: a reconnect with a valid session token
// (vouched) replaces its own stale session holding the tag, quietly (not
// kicked), keeps the others and its chatroom; unvouched, it is refused.
func TestOpenVouchedReconnect(t *testing.T) {
	r := newRelay(t)
	open(t, r, "alice", "mobile", "e1", 1) // the client's, on an edge that died
	open(t, r, "alice", "pad", "e1", 2)    // another device
	r.JoinRoom(Member{"app", "alice", "mobile"}, ConnKey{"e1", 1}, "room1")
	kicked, room, err := r.Open(&Session{App: "app", Peer: "alice", Tag: "mobile", Edge: "e2", Conn: 3}, true, true)
	if err != nil || len(kicked) != 0 || room != "room1" {
		t.Fatalf("vouched reconnect: kicked %v, room %q, %v; want none kicked, back in room1", kicked, room, err)
	}
	var keys []ConnKey
	for _, s := range r.Sessions("app", "alice") {
		keys = append(keys, s.Key())
	}
	if !slices.Equal(keys, []ConnKey{{"e1", 2}, {"e2", 3}}) {
		t.Fatalf("sessions after: %v, want the pad's and the reconnect's", keys)
	}
	if r.InRoom("app", "alice", ConnKey{"e1", 1}, "room1") || !r.InRoom("app", "alice", ConnKey{"e2", 3}, "room1") || r.RoomCount("app", "room1") != 1 {
		t.Fatal("the chatroom did not move to the reconnect's connection")
	}
	if n := r.Stats().TagReplaced.Load(); n != 1 {
		t.Fatalf("TagReplaced %d, want 1", n)
	}
	if _, _, err := r.Open(&Session{App: "app", Peer: "alice", Tag: "pad", Edge: "e2", Conn: 4}, true, false); !errors.Is(err, ErrTagConflict) {
		t.Fatalf("unvouched reconnect with a held tag: %v, want ErrTagConflict", err)
	}
}

// TestOpenVouchedChains: a vouched reconnect replaces a session holding
// its tag only when it is of its own chain (or of an unknown one, 0: an
// edge of an earlier release); another chain's session is another device
// that took the tag meanwhile, and the reconnect is refused. ReplaceTag
// and TagHeld follow the same rule; presence carries the chain.
func TestOpenVouchedChains(t *testing.T) {
	r := newRelay(t)
	if _, _, err := r.Open(&Session{App: "app", Peer: "bea", Tag: "phone", Edge: "e1", Conn: 1, Chain: 7}, false, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Open(&Session{App: "app", Peer: "bea", Tag: "phone", Edge: "e2", Conn: 2, Chain: 8}, true, true); !errors.Is(err, ErrTagConflict) {
		t.Fatalf("vouched reconnect of another chain: %v, want ErrTagConflict", err)
	}
	if !r.TagHeld("app", "bea", "phone", 8) || r.TagHeld("app", "bea", "phone", 7) || !r.TagHeld("app", "bea", "phone", 0) || r.TagHeld("app", "bea", "pad", 0) {
		t.Fatal("TagHeld: want held for chain 8 and for any (0), not for its own chain 7 nor another tag")
	}
	if n := r.ReplaceTag("app", "bea", "phone", 8); n != 0 || len(r.Sessions("app", "bea")) != 1 {
		t.Fatalf("ReplaceTag of another chain took %d sessions", n)
	}
	if _, _, err := r.Open(&Session{App: "app", Peer: "bea", Tag: "phone", Edge: "e2", Conn: 3, Chain: 7}, true, true); err != nil {
		t.Fatalf("vouched reconnect of its own chain: %v", err)
	}
	if ss := r.Sessions("app", "bea"); len(ss) != 1 || ss[0].Conn != 3 {
		t.Fatalf("sessions after its own chain's reconnect: %v, want only conn 3", ss)
	}
	// Chain unknown on either side: replaced, as before chains.
	if _, _, err := r.Open(&Session{App: "app", Peer: "bea", Tag: "phone", Edge: "e2", Conn: 4}, true, true); err != nil {
		t.Fatalf("vouched reconnect with no chain: %v", err)
	}
	r.SyncPresence("e3", &meshpb.Presence{Add: []*meshpb.PresenceSession{{AppId: "app", PeerId: "cy", ConnId: 5, Tag: "phone", Chain: 9}}}, false)
	if ss := r.Sessions("app", "cy"); len(ss) != 1 || ss[0].Chain != 9 {
		t.Fatalf("a session learnt from presence: %v, want chain 9", ss)
	}
	if n := r.ReplaceTag("app", "cy", "phone", 9); n != 1 {
		t.Fatalf("ReplaceTag of its chain took %d, want 1", n)
	}
}

// TestSyncPresence: sessions learnt from an edge's frames; replace_all
// replaces only that edge's; a re-add keeps the address its OPEN gave.
func TestSyncPresence(t *testing.T) {
	r := newRelay(t)
	if _, _, err := r.Open(&Session{App: "app", Peer: "alice", Edge: "e1", Conn: 1, IP: "192.0.2.1"}, false, false); err != nil {
		t.Fatal(err)
	}
	ps := func(peer string, conn uint64) *meshpb.PresenceSession {
		return &meshpb.PresenceSession{AppId: "app", PeerId: peer, ConnId: conn}
	}
	r.SyncPresence("e1", &meshpb.Presence{Add: []*meshpb.PresenceSession{ps("alice", 1)}}, false)
	if ss := r.Sessions("app", "alice"); len(ss) != 1 || ss[0].IP != "192.0.2.1" {
		t.Fatalf("alice after a re-add: %v, want one session with its address", ss)
	}
	r.SyncPresence("e2", &meshpb.Presence{ReplaceAll: true, Add: []*meshpb.PresenceSession{ps("bob", 7)}}, false)
	r.SyncPresence("e2", &meshpb.Presence{ReplaceAll: true, Add: []*meshpb.PresenceSession{ps("carol", 8)}}, false)
	online, offline := r.SplitOnline("app", []string{"alice", "bob", "carol"})
	if !slices.Equal(online, []string{"alice", "carol"}) || !slices.Equal(offline, []string{"bob"}) {
		t.Fatalf("online %v offline %v, want [alice carol] [bob]", online, offline)
	}
	r.SyncPresence("e2", &meshpb.Presence{Remove: []*meshpb.PresenceSession{ps("carol", 8)}}, false)
	if r.Online("app", "carol") {
		t.Fatal("carol online after her remove")
	}
}

// TestFullListKeepsLaterOpens: an edge's full presence list (replace_all)
// made before an OPEN that the relay already registered keeps that
// session; a list made after it, which does not hold it, drops it; and
// numbers of another epoch (the edge restarted) never keep one.
func TestFullListKeepsLaterOpens(t *testing.T) {
	r := newRelay(t)
	epoch := meshpb.NewPresenceEpoch()
	ps := func(peer string, conn, seq uint64) *meshpb.PresenceSession {
		return &meshpb.PresenceSession{AppId: "app", PeerId: peer, ConnId: conn, Seq: seq}
	}
	// bob is on the list; alice opened after it was made.
	if _, _, err := r.Open(&Session{App: "app", Peer: "alice", Edge: "e1", Conn: 2, Seq: epoch + 2}, false, false); err != nil {
		t.Fatal(err)
	}
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, SnapshotSeq: epoch + 1, Add: []*meshpb.PresenceSession{ps("bob", 1, epoch+1)}}, true)
	if !r.Online("app", "alice") || !r.Online("app", "bob") {
		t.Fatalf("after a list older than alice's OPEN: alice %v bob %v, want both online", r.Online("app", "alice"), r.Online("app", "bob"))
	}
	// A later list without alice: she logged out meanwhile.
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, SnapshotSeq: epoch + 3, Add: []*meshpb.PresenceSession{ps("bob", 1, epoch+1)}}, true)
	if r.Online("app", "alice") {
		t.Fatal("alice online after a list made after her OPEN that does not hold her")
	}
	// The same from presence: carol added by a change frame keeps her seq.
	r.SyncPresence("e1", &meshpb.Presence{Add: []*meshpb.PresenceSession{ps("carol", 4, epoch+4)}}, false)
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, SnapshotSeq: epoch + 3}, false)
	if !r.Online("app", "carol") || r.Online("app", "bob") {
		t.Fatalf("after an older empty list: carol %v (want online), bob %v (want gone)", r.Online("app", "carol"), r.Online("app", "bob"))
	}
	// The edge restarted (a new epoch): its first list drops everything
	// the old process had, whatever the numbers.
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, SnapshotSeq: meshpb.NewPresenceEpoch()}, false)
	if r.Online("app", "carol") {
		t.Fatal("carol of the old edge process online after the new process's first list")
	}
	// Other edges' sessions are never touched.
	open(t, r, "dave", "", "e2", 9)
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, SnapshotSeq: epoch + 100}, false)
	if !r.Online("app", "dave") {
		t.Fatal("dave of e2 dropped by e1's list")
	}
}

// TestFullListInFrames: a full list in several frames replaces the
// edge's sessions once its last frame is in: a session the core had that
// only a later frame lists is never offline in between, and one the list
// does not hold is dropped at the end.
func TestFullListInFrames(t *testing.T) {
	r := newRelay(t)
	open(t, r, "alice", "", "e1", 1)
	open(t, r, "bob", "", "e1", 2)
	epoch := meshpb.NewPresenceEpoch()
	ps := func(peer string, conn uint64) *meshpb.PresenceSession {
		return &meshpb.PresenceSession{AppId: "app", PeerId: peer, ConnId: conn, Seq: epoch + conn}
	}
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, More: true, SnapshotSeq: epoch + 9, Add: []*meshpb.PresenceSession{ps("carol", 3)}}, true)
	if !r.Online("app", "alice") || !r.Online("app", "bob") || !r.Online("app", "carol") {
		t.Fatal("a session offline between the frames of a full list")
	}
	r.SyncPresence("e1", &meshpb.Presence{More: true, Add: []*meshpb.PresenceSession{ps("alice", 1)}}, true)
	if !r.Online("app", "bob") {
		t.Fatal("bob dropped before the list's last frame")
	}
	if ss := r.Sessions("app", "alice"); len(ss) != 1 {
		t.Fatalf("alice: %v, want one session", ss)
	}
	// The last frame (more unset) ends it: bob, on no frame, is dropped.
	// A single-frame list that follows is complete at once.
	r.SyncPresence("e1", &meshpb.Presence{Add: []*meshpb.PresenceSession{}}, true)
	online, offline := r.SplitOnline("app", []string{"alice", "bob", "carol"})
	if !slices.Equal(online, []string{"alice", "carol"}) || !slices.Equal(offline, []string{"bob"}) {
		t.Fatalf("after the last frame: online %v offline %v, want [alice carol] [bob]", online, offline)
	}
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, SnapshotSeq: epoch + 9, Add: []*meshpb.PresenceSession{ps("carol", 3)}}, true)
	if r.Online("app", "alice") || !r.Online("app", "carol") {
		t.Fatal("a one-frame list did not replace the sessions at once")
	}
	// An edge detached in the middle of a list: the list is forgotten.
	detach := r.AttachEdge("e1", func(*meshpb.Delivery) error { return nil })
	r.SyncPresence("e1", &meshpb.Presence{ReplaceAll: true, More: true, SnapshotSeq: epoch + 9, Add: []*meshpb.PresenceSession{ps("dave", 4)}}, true)
	detach()
	r.mu.Lock()
	n := len(r.lists)
	r.mu.Unlock()
	if n != 0 || r.Online("app", "dave") {
		t.Fatalf("after a detach mid-list: %d lists pending, dave online %v", n, r.Online("app", "dave"))
	}
}

// TestRoomFanoutClass: a chatroom delivery is queued with its message's
// priority as class: with the edge's send blocked behind one delivery, a
// queue of 2 keeps the HIGH ones and sheds the LOW (counted by class).
func TestRoomFanoutClass(t *testing.T) {
	r := New(Config{QueueLen: 2})
	defer r.Close()
	gated := &fakeEdge{gate: make(chan struct{})}
	defer close(gated.gate)
	defer r.AttachEdge("e1", gated.send)()
	open(t, r, "bob", "", "e1", 1)
	r.JoinRoom(Member{"app", "bob", ""}, ConnKey{"e1", 1}, "room")
	r.FanoutRoom("app", "room", "alice", nil, 2, text("plug"))
	waitFor(t, "the plug is in send", func() bool { return r.EdgeQueued("e1") == 0 })
	r.FanoutRoom("app", "room", "alice", nil, 3, text("low"))
	r.FanoutRoom("app", "room", "alice", nil, 1, text("high1"))
	r.FanoutRoom("app", "room", "alice", nil, 1, text("high2")) // evicts low
	st := r.Stats()
	if got := [3]uint64{st.DroppedByPriority[pq.High].Load(), st.DroppedByPriority[pq.Normal].Load(), st.DroppedByPriority[pq.Low].Load()}; got != [3]uint64{0, 0, 1} {
		t.Fatalf("DroppedByPriority: got %v, want [0 0 1]", got)
	}
	if r.RoomCount("app", "room") != 1 || !r.InRoom("app", "bob", ConnKey{"e1", 1}, "room") {
		t.Fatal("bob not counted in the room")
	}
}

// TestAttachEdgeOwner: an edge id attached by one owner (mesh identity)
// is refused to another while attached, and its deliveries and sessions
// stay with the first; the same owner attaching again replaces its link
// and keeps the sessions (a new stream after a broken one); once the
// owner detaches, the id is free for anyone. Plain AttachEdge cannot
// take an owned id either.
func TestAttachEdgeOwner(t *testing.T) {
	r := newRelay(t)
	first, thief, again := &fakeEdge{}, &fakeEdge{}, &fakeEdge{}
	d1, err := r.AttachEdgeAs("gw", "gateway-1", first.send)
	if err != nil {
		t.Fatal(err)
	}
	open(t, r, "alice", "", "gw", 1)
	if _, err := r.AttachEdgeAs("gw", "edge-9", thief.send); !errors.Is(err, ErrEdgeOwned) {
		t.Fatalf("attach by another owner: %v, want ErrEdgeOwned", err)
	}
	r.AttachEdge("gw", thief.send)() // refused: a no-op detach
	if owner, ok := r.EdgeOwner("gw"); !ok || owner != "gateway-1" {
		t.Fatalf("owner %q %v, want gateway-1", owner, ok)
	}
	r.Fanout("app", []string{"alice"}, ConnKey{}, text("hi"), false)
	waitFor(t, "the owner's delivery", func() bool { return len(first.deliveries()) == 1 })
	if !r.Online("app", "alice") {
		t.Fatal("alice went offline after refused attaches")
	}
	// The same owner again: replaces, keeps alice.
	d2, err := r.AttachEdgeAs("gw", "gateway-1", again.send)
	if err != nil {
		t.Fatal(err)
	}
	d1() // the replaced link's detach changes nothing
	if !r.Online("app", "alice") {
		t.Fatal("the replaced link's detach dropped alice")
	}
	r.Fanout("app", []string{"alice"}, ConnKey{}, text("hi"), false)
	waitFor(t, "the new link's delivery", func() bool { return len(again.deliveries()) == 1 })
	d2()
	if _, ok := r.EdgeOwner("gw"); ok || r.Online("app", "alice") {
		t.Fatal("gw still attached, or alice online, after its owner detached")
	}
	d3, err := r.AttachEdgeAs("gw", "edge-9", thief.send)
	if err != nil {
		t.Fatalf("a free edge id: %v", err)
	}
	d3()
	if n := len(thief.deliveries()); n != 0 {
		t.Fatalf("the refused owner got %d deliveries", n)
	}
}

// TestHighWaitsForRoom: with the edge's send blocked and its queue of 2
// full of HIGH, a further conversation push waits for room (counted in
// HighWaits) instead of being dropped; once the edge takes deliveries
// again every push arrives, in order, and none was dropped.
func TestHighWaitsForRoom(t *testing.T) {
	r := New(Config{QueueLen: 2})
	defer r.Close()
	gated := &fakeEdge{gate: make(chan struct{})}
	defer r.AttachEdge("e1", gated.send)()
	open(t, r, "bob", "", "e1", 1)
	r.Fanout("app", []string{"bob"}, ConnKey{}, text("m0"), false)
	waitFor(t, "m0 is in send", func() bool { return r.EdgeQueued("e1") == 0 })
	r.Fanout("app", []string{"bob"}, ConnKey{}, text("m1"), false)
	r.Fanout("app", []string{"bob"}, ConnKey{}, text("m2"), false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Fanout("app", []string{"bob"}, ConnKey{}, text("m3"), false) // waits: the queue is full of HIGH
	}()
	waitFor(t, "m3 waiting", func() bool {
		r.mu.Lock()
		l := r.edges["e1"]
		r.mu.Unlock()
		return l.q.Waiting()
	})
	if n := r.Stats().HighWaits.Load(); n != 0 || len(gated.deliveries()) != 0 {
		t.Fatalf("before the edge takes deliveries: %d waits ended, %d delivered", n, len(gated.deliveries()))
	}
	close(gated.gate)
	<-done
	waitFor(t, "every push delivered", func() bool { return len(gated.deliveries()) == 4 })
	var got []string
	for _, d := range gated.deliveries() {
		cmd := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(d.Command, cmd); err != nil {
			t.Fatal(err)
		}
		got = append(got, cmd.GetDirectMessage().GetMsg())
	}
	if !slices.Equal(got, []string{"m0", "m1", "m2", "m3"}) {
		t.Fatalf("delivered %v, want m0..m3 in order", got)
	}
	st := r.Stats()
	if st.HighWaits.Load() != 1 || st.DroppedByPriority[pq.High].Load() != 0 || st.Dropped.Load() != 0 {
		t.Fatalf("HighWaits %d, HIGH dropped %d, dropped %d; want 1, 0, 0",
			st.HighWaits.Load(), st.DroppedByPriority[pq.High].Load(), st.Dropped.Load())
	}
}
