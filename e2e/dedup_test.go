package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestSendDedupRaw floods a conversation over the raw protocol with sends
// written in one burst, before any reply is read: 40 with one dt,
// interleaved with 40 of their own. The 40 repeats are acked with one uid
// and t and stored once; the others are 40 messages. The same dt from
// another sender, or in another conversation, is a new message.
func TestSendDedupRaw(t *testing.T) {
	p := startDev(t, t.TempDir(), freeAddr(t), "--ops-per-minute", "-1", "--sends-per-minute", "-1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const app = "dedup-app"
	alice := rawSession(t, ctx, p.URL, app, "alice")
	bob := rawSession(t, ctx, p.URL, app, "bob")
	cid := alice.start(ctx, []string{"bob"}, "")
	other := alice.start(ctx, []string{"bob", "carol"}, "")

	const n = 40
	dts := map[int32]string{} // request i -> dt
	for k := range 2 * n {
		dt := "same-dt"
		if k%2 == 1 {
			dt = fmt.Sprint("own-", k)
		}
		alice.i++
		dts[alice.i] = dt
		c := direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(fmt.Sprintf(`{"_lctype":-1,"_lctext":"%d"}`, k)),
			Dt: proto.String(dt)})
		c.I = proto.Int32(alice.i)
		alice.r.send(ctx, c)
	}
	type ack struct {
		uid string
		t   int64
	}
	acks := map[int32]ack{}
	for len(acks) < 2*n {
		c := alice.r.next(ctx)
		if _, ok := dts[c.GetI()]; !ok || c.I == nil {
			continue // a push
		}
		if c.GetCmd() != lcpb.CommandType_ack || c.GetAckMessage().GetUid() == "" || c.GetAckMessage().GetT() <= 0 {
			t.Fatalf("send %d (dt %s): %v", c.GetI(), dts[c.GetI()], c)
		}
		acks[c.GetI()] = ack{c.GetAckMessage().GetUid(), c.GetAckMessage().GetT()}
	}
	var same *ack
	uids := map[string]bool{}
	for i, a := range acks {
		uids[a.uid] = true
		if dts[i] != "same-dt" {
			continue
		}
		if same == nil {
			same = &a
		} else if a != *same {
			t.Fatalf("repeats of one dt acked as %v and %v", *same, a)
		}
	}
	if len(uids) != n+1 {
		t.Fatalf("%d distinct message ids for %d distinct dts", len(uids), n+1)
	}
	logs := alice.ok(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(),
		LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid), L: proto.Int32(1000)}}).GetLogsMessage().GetLogs()
	if len(logs) != n+1 {
		t.Fatalf("history holds %d messages, want %d", len(logs), n+1)
	}
	for _, l := range logs {
		if !uids[l.GetMsgId()] {
			t.Fatalf("history holds %s, which no send was acked with", l.GetMsgId())
		}
	}

	// The token is the sender's, in one conversation.
	fromBob := bob.ok(ctx, direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("bob"), Dt: proto.String("same-dt")}))
	elsewhere := alice.ok(ctx, direct(&lcpb.DirectCommand{Cid: proto.String(other), Msg: proto.String("x"), Dt: proto.String("same-dt")}))
	for what, g := range map[string]*lcpb.GenericCommand{"another sender": fromBob, "another conversation": elsewhere} {
		if g.GetCmd() != lcpb.CommandType_ack || g.GetAckMessage().GetUid() == same.uid || uids[g.GetAckMessage().GetUid()] {
			t.Fatalf("%s with the same dt: %v, want a new message", what, g)
		}
	}
	again := alice.ok(ctx, direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("late"), Dt: proto.String("same-dt")}))
	if a := (ack{again.GetAckMessage().GetUid(), again.GetAckMessage().GetT()}); a != *same {
		t.Fatalf("a later resend: %v, want %v", a, *same)
	}
}
