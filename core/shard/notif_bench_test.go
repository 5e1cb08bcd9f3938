package shard

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble"
)

// BenchmarkNotifGroupEvent applies what one conversation event of a
// 500-member group costs the state machine: OpNotif appending it to 500
// logs that are already at their bound, so trims (one per log every
// NotifSlack appends) are included. Reported per event.
func BenchmarkNotifGroupEvent(b *testing.B) {
	h := newHarness(b)
	var members []string
	for i := range MaxMembers {
		members = append(members, fmt.Sprintf("member-%03d", i))
	}
	apply := func(c *Command) {
		enc, _ := c.Encode()
		batch := h.db.NewIndexedBatch()
		h.idx++
		if v, ok := h.fsm.Apply(batch, h.idx, enc).(error); ok {
			b.Fatal(v)
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
	}
	event := func(i int) *Command {
		ev := Notif{Cmd: "conv", Op: "members_joined", CID: "0123456789abcdef01234567", TS: int64(1000 + i), InitBy: "owner", M: []string{"newcomer"}}
		return &Command{Op: OpNotif, App: app, Now: int64(1000 + i), Notifs: []NotifAppend{{To: members, Event: ev}}}
	}
	for i := range NotifMaxPermanent {
		apply(event(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		apply(event(NotifMaxPermanent + i))
	}
}
