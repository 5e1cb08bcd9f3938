package core

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestNotifBurst: a burst of events, some for more recipients than one
// shard command may carry, is stored for every recipient (in parts and
// batches), each event once, in the order pushed; pushes that are not
// conversation events or receipts are not stored.
func TestNotifBurst(t *testing.T) {
	e := newEnv(t)
	const recipients = 2*shard.MaxNotifFanout + 7
	peers := make([]string, recipients)
	for i := range peers {
		peers[i] = fmt.Sprintf("p%04d", i)
	}
	const events = 12 // 24k records: under notifPendingMax, over several proposals
	for i := range events {
		cmd := convPush(lcpb.OpType_members_joined, fmt.Sprintf("c%02d", i), "admin")
		cmd.ConvMessage.M = []string{"x"}
		e.core.pushEnvelope(cmd)
		e.core.recordNotif("app", peers, cmd)
	}
	direct := &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c00")}}
	e.core.recordNotif("app", peers, direct)
	waitFor(t, "every event stored", func() bool {
		return e.core.NotifStats().Stored == events*3 // each event in three parts
	})
	for _, p := range []string{peers[0], peers[shard.MaxNotifFanout], peers[recipients-1]} {
		evs, more, err := shard.Notifs(e.rep.State(), "app", p, shard.NotifPermanent, 0, e.now.Load(), 1000)
		if err != nil || more || len(evs) != events {
			t.Fatalf("%s: %d events (more %v, err %v), want %d", p, len(evs), more, err, events)
		}
		for i, ev := range evs {
			if ev.CID != fmt.Sprintf("c%02d", i) || ev.Op != "members_joined" || ev.InitBy != "admin" || len(ev.M) != 1 {
				t.Fatalf("%s event %d: %+v", p, i, ev)
			}
		}
	}
	if s := e.core.NotifStats(); s.Dropped != 0 || s.Failed != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestNotifOverflow: while proposals are stuck, at most notifPendingMax
// records wait; later events are dropped and counted, and the waiting
// ones are stored once the replica moves again.
func TestNotifOverflow(t *testing.T) {
	e := newEnv(t)
	peers := make([]string, shard.MaxNotifFanout)
	for i := range peers {
		peers[i] = fmt.Sprintf("p%04d", i)
	}
	push := func(i int) {
		cmd := convPush(lcpb.OpType_joined, fmt.Sprintf("c%03d", i), "admin")
		e.core.pushEnvelope(cmd)
		e.core.recordNotif("app", peers, cmd)
	}
	e.rep.mu.Lock() // proposals block
	push(0)
	waitFor(t, "the first proposal in flight", func() bool {
		b := &e.core.notifs
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.n == 0 && b.running
	})
	fits := notifPendingMax / shard.MaxNotifFanout
	for i := 1; i <= fits+5; i++ {
		push(i)
	}
	if s := e.core.NotifStats(); s.Dropped != 5 {
		t.Errorf("dropped %d events, want 5", s.Dropped)
	}
	e.rep.mu.Unlock()
	waitFor(t, "the waiting events stored", func() bool { return e.core.NotifStats().Stored == int64(1+fits) })
	evs, _, _ := shard.Notifs(e.rep.State(), "app", peers[7], shard.NotifPermanent, 0, e.now.Load(), 1000)
	if len(evs) != 1+fits {
		t.Fatalf("stored for one recipient: %d, want %d", len(evs), 1+fits)
	}
}
