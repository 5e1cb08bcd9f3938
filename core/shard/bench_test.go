package shard

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble"
)

// BenchmarkGroupMessage applies what one message to a group of 500 costs
// the state machine: the append and every member's ack, one raft batch
// each, as raftstore applies them. Reported per message.
func BenchmarkGroupMessage(b *testing.B) {
	h := newHarness(b)
	var members []string
	for i := range MaxMembers - 1 {
		members = append(members, fmt.Sprintf("member-%03d", i))
	}
	start, _ := (&Command{Op: OpStart, App: app, CID: "g", From: "owner", Members: members, Now: 1}).Encode()
	apply := func(cmds ...[]byte) {
		batch := h.db.NewIndexedBatch()
		for _, c := range cmds {
			h.idx++
			if v, ok := h.fsm.Apply(batch, h.idx, c).(error); ok {
				b.Fatal(v)
			}
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
	}
	apply(start)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		now := int64(10 + i)
		m, _ := (&Command{Op: OpAppend, App: app, CID: "g", From: "owner", MID: fmt.Sprint("m", i), Data: "hello", DT: fmt.Sprint("dt", i), Now: now}).Encode()
		apply(m)
		acks := make([][]byte, 0, len(members))
		for _, p := range members {
			a, _ := (&Command{Op: OpAck, App: app, CID: "g", From: p, T: now, Now: now}).Encode()
			acks = append(acks, a)
		}
		apply(acks...)
	}
}
