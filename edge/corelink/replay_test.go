package corelink

import (
	"fmt"
	"testing"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func delivery(msgID string, replay bool, targets ...*meshpb.Target) *meshpb.Delivery {
	return &meshpb.Delivery{AppId: "app", MsgId: msgID, Replay: replay, Targets: targets}
}

// TestReplayFilter: a replayed push reaches only the sessions that have not
// had the message through this edge; first copies always pass; pushes
// without a message id are not looked at.
func TestReplayFilter(t *testing.T) {
	var f replayFilter
	bob1, bob2, carol := &meshpb.Target{PeerId: "bob", ConnId: 1}, &meshpb.Target{PeerId: "bob", ConnId: 2}, &meshpb.Target{PeerId: "carol", ConnId: 3}
	if !f.filter(delivery("m1", false, bob1)) {
		t.Fatal("a first copy was filtered")
	}
	if !f.filter(delivery("m1", false, bob1)) {
		t.Fatal("a second first copy was filtered (only replays are)")
	}
	d := delivery("m1", true, bob1, bob2, carol)
	if !f.filter(d) || len(d.Targets) != 2 || d.Targets[0] != bob2 || d.Targets[1] != carol {
		t.Fatalf("replay of m1: targets %v, want bob/2 and carol/3", d.Targets)
	}
	if f.filter(delivery("m1", true, bob1, bob2, carol)) {
		t.Fatal("a second replay of m1 still had targets")
	}
	if d := delivery("m2", true, bob1); !f.filter(d) || len(d.Targets) != 1 {
		t.Fatal("replay of a message never seen was filtered")
	}
	if !f.filter(&meshpb.Delivery{AppId: "app", Replay: true, Targets: []*meshpb.Target{bob1}}) {
		t.Fatal("a push without a message id was filtered")
	}
	if f.dropped.Load() != 4 || f.passed.Load() != 3 {
		t.Errorf("dropped %d passed %d, want 4 and 3", f.dropped.Load(), f.passed.Load())
	}
}

// TestReplayFilterBounded: the filter forgets the oldest messages past
// replayMaxTargets, and then lets their replays through.
func TestReplayFilterBounded(t *testing.T) {
	var f replayFilter
	tg := func() *meshpb.Target { return &meshpb.Target{PeerId: "bob", ConnId: 1} }
	for i := range replayMaxTargets + 10 {
		f.filter(delivery(fmt.Sprint("m", i), false, tg()))
	}
	if len(f.seen) != replayMaxTargets || len(f.ring) != replayMaxTargets {
		t.Fatalf("filter holds %d pairs (ring %d), want %d", len(f.seen), len(f.ring), replayMaxTargets)
	}
	if d := delivery("m0", true, tg()); !f.filter(d) {
		t.Error("replay of a forgotten message was dropped")
	}
	if d := delivery(fmt.Sprint("m", replayMaxTargets+9), true, tg()); f.filter(d) {
		t.Error("replay of a recent message passed")
	}
}

// TestReplayFilterPeerWide: a push recorded for every session of a peer
// (connection 0) covers a replay to any one of them; one recorded for a
// session does not cover the peer's other sessions.
func TestReplayFilterPeerWide(t *testing.T) {
	var f replayFilter
	f.filter(delivery("m1", false, &meshpb.Target{PeerId: "bob"}))
	f.filter(delivery("m1", false, &meshpb.Target{PeerId: "carol", ConnId: 7}))
	d := delivery("m1", true,
		&meshpb.Target{PeerId: "bob", ConnId: 4}, // covered by bob's peer-wide copy
		&meshpb.Target{PeerId: "carol", ConnId: 8},
		&meshpb.Target{PeerId: "carol"},
		&meshpb.Target{PeerId: "dave", ConnId: 7}, // carol's connection id, another peer
	)
	if !f.filter(d) || len(d.Targets) != 3 || d.Targets[0].PeerId != "carol" || d.Targets[1].PeerId != "carol" || d.Targets[2].PeerId != "dave" {
		t.Fatalf("replay of m1: targets %v, want carol/8, carol/0 and dave/7", d.Targets)
	}
	if d := delivery("m1", true, &meshpb.Target{PeerId: "bob", ConnId: 4}); f.filter(d) {
		t.Fatal("bob's replay passed a second time")
	}
	// Another app's message with the same id is another message.
	if d := (&meshpb.Delivery{AppId: "app2", MsgId: "m1", Replay: true, Targets: []*meshpb.Target{{PeerId: "bob", ConnId: 4}}}); !f.filter(d) {
		t.Fatal("a replay in another app was taken for app's")
	}
}

// TestReplayFilterForgetsOldestPair: full, the filter forgets pairs in the
// order it learnt them; a first copy sent twice is one pair, so it is not
// forgotten early, nor does it push two others out.
func TestReplayFilterForgetsOldestPair(t *testing.T) {
	var f replayFilter
	bob := func() *meshpb.Target { return &meshpb.Target{PeerId: "bob", ConnId: 1} }
	f.filter(delivery("first", false, bob()))
	f.filter(delivery("first", false, bob())) // again: still one pair
	for i := range replayMaxTargets - 1 {
		f.filter(delivery(fmt.Sprint("m", i), false, bob()))
	}
	if len(f.seen) != replayMaxTargets {
		t.Fatalf("%d pairs, want %d", len(f.seen), replayMaxTargets)
	}
	if f.filter(delivery("first", true, bob())) {
		t.Fatal("the oldest pair was forgotten before the filter overflowed")
	}
	f.filter(delivery("one more", false, bob())) // pushes out "first" only
	if f.filter(delivery("m0", true, bob())) {
		t.Error("the second oldest pair was forgotten too")
	}
	if !f.filter(delivery("first", true, bob())) {
		t.Error("the oldest pair is still remembered after an overflow")
	}
}
