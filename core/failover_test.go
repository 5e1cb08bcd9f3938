package core

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// sendKeyed sends text to cid as the edge would retry it: with dt (may be
// "") and the edge's idempotency key.
func (c *client) sendKeyed(cid, text, dt, key string) *lcpb.GenericCommand {
	c.e.t.Helper()
	d := &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}
	if dt != "" {
		d.Dt = proto.String(dt)
	}
	c.i++
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(c.i), DirectMessage: d})
	req := c.req(meshpb.ClientRequest_COMMAND, b)
	req.IdempotencyKey = key
	rep, err := c.e.core.HandleClient(context.Background(), req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	out := decodeAll(c.e.t, rep)
	if len(out) != 1 {
		c.e.t.Fatalf("got %d replies, want 1", len(out))
	}
	return mustOK(c.e.t, out[0])
}

// TestRetriedSendStoredOnce: a send the edge repeats on a new leader (same
// idempotency key, the client sent no dt) is stored once and acked with
// the first id and timestamp; another key is another message; a client's
// dt wins over the key.
func TestRetriedSendStoredOnce(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.client("alice"), e.client("bob")
	alice.open("", false, 0)
	bob.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()

	a1 := alice.sendKeyed(cid, "once", "", "k1").GetAckMessage()
	a2 := alice.sendKeyed(cid, "once", "", "k1").GetAckMessage()
	if a1.GetUid() == "" || a1.GetUid() != a2.GetUid() || a1.GetT() != a2.GetT() {
		t.Fatalf("retried send acked %s@%d then %s@%d, want the same", a1.GetUid(), a1.GetT(), a2.GetUid(), a2.GetT())
	}
	a3 := alice.sendKeyed(cid, "once", "", "k2").GetAckMessage()
	if a3.GetUid() == a1.GetUid() {
		t.Fatal("a send with another key was taken for a retry")
	}
	d1 := alice.sendKeyed(cid, "dt", "dt-1", "k3").GetAckMessage()
	d2 := alice.sendKeyed(cid, "dt", "dt-1", "k4").GetAckMessage()
	if d1.GetUid() != d2.GetUid() {
		t.Fatal("the client's dt did not dedup across keys")
	}
	if n := len(alice.logs(&lcpb.LogsCommand{Cid: proto.String(cid)})); n != 3 {
		t.Fatalf("history has %d messages, want 3", n)
	}
	drain(t, e.core)
	got := 0
	for _, g := range e.edge.pushes(t, "bob", bob.conn) {
		if g.GetCmd() == lcpb.CommandType_direct && g.GetDirectMessage().GetId() == a1.GetUid() {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("bob got the retried message %d times, want 1", got)
	}
}
