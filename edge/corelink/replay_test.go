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
	if f.total > replayMaxTargets || len(f.seen) > replayMaxTargets {
		t.Fatalf("filter holds %d targets in %d messages, want at most %d", f.total, len(f.seen), replayMaxTargets)
	}
	if d := delivery("m0", true, tg()); !f.filter(d) {
		t.Error("replay of a forgotten message was dropped")
	}
	if d := delivery(fmt.Sprint("m", replayMaxTargets+9), true, tg()); f.filter(d) {
		t.Error("replay of a recent message passed")
	}
}
