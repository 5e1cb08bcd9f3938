package core

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/core/shard"
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

// tail returns the indexes in the fan-out tail.
func (e *env) tail() []uint64 {
	e.t.Helper()
	es, err := shard.FanoutTail(e.rep.db, e.rep.AppliedIndex(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []uint64
	for _, x := range es {
		out = append(out, x.Index)
	}
	return out
}

// TestFanoutTailNamedDone: a message the core fans out leaves the fan-out
// tail once its deliveries left the core (named on the next proposal, or
// by the flush when nothing else is proposed), and a replay does not push
// it again.
func TestFanoutTailNamedDone(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.client("alice"), e.client("bob")
	alice.open("", false, 0)
	bob.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	mustOK(t, alice.sendText(cid, "hello"))
	waitUntil(t, "the tail to empty", func() bool { return len(e.tail()) == 0 })
	waitUntil(t, "nothing unsettled", func() bool {
		return value1(t, e.core.Collector(), "relaymesh_core_fanout_unsettled") == 0
	})
	n, err := e.core.ReplayFanout(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("replay after a normal fan-out: %d, %v; want 0", n, err)
	}
}

// TestFanoutUnsettled: the tracker counts a fan-out from its proposal until
// the proposal naming it done is applied; a proposal that failed leaves it
// counted, to be named again.
func TestFanoutUnsettled(t *testing.T) {
	var tr fanoutTracker
	tr.init()
	step := func(what string, want int) {
		t.Helper()
		if got := tr.unsettled(); got != want {
			t.Fatalf("%s: unsettled %d, want %d", what, got, want)
		}
	}
	step("empty", 0)
	a, b := tr.begin(), tr.begin()
	step("two appends proposed", 2)
	tr.end(a, 7, nil) // stored, nothing to wait for: done
	tr.end(b, 0, nil) // a duplicate: nothing stored
	step("one stored", 1)
	idxs := tr.take()
	if len(idxs) != 1 || idxs[0] != 7 {
		t.Fatalf("take: %v, want [7]", idxs)
	}
	step("named in a proposal", 1)
	tr.settle(idxs, false)
	step("that proposal failed", 1)
	idxs = tr.take()
	tr.settle(idxs, true)
	step("named again and applied", 0)
}

// TestReplayFanout: a message another leader stored but never pushed (a
// tail entry this core does not know) is pushed by ReplayFanout to every
// recipient's session, marked as a replay with its message id, not to the
// sending session; then it leaves the tail.
func TestReplayFanout(t *testing.T) {
	e := newEnv(t)
	alice, alice2, bob := e.client("alice"), e.client("alice"), e.client("bob")
	alice.open("", false, 0)
	alice2.open("", false, 0)
	bob.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	waitUntil(t, "the tail to empty", func() bool { return len(e.tail()) == 0 })
	// Stored by "the previous leader": straight into the replica.
	b, _ := (&shard.Command{Op: shard.OpAppend, App: testApp, CID: cid, From: "alice", MID: "orphan-1",
		Now: e.now.Add(1), Data: "lost?", Edge: "e1", Conn: alice.conn}).Encode()
	if _, err := e.rep.Propose(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(e.tail()) != 1 {
		t.Fatalf("tail %v, want the orphan", e.tail())
	}
	n, err := e.core.ReplayFanout(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("ReplayFanout: %d, %v; want 1", n, err)
	}
	isOrphan := func(g *lcpb.GenericCommand) bool {
		return g.GetCmd() == lcpb.CommandType_direct && g.GetDirectMessage().GetId() == "orphan-1"
	}
	e.edge.waitPush(t, "bob", bob.conn, isOrphan)
	e.edge.waitPush(t, "alice", alice2.conn, isOrphan)
	e.edge.noPush(t, e.core, "alice", alice.conn, isOrphan)
	e.edge.mu.Lock()
	for _, d := range e.edge.got {
		if d.MsgId == "orphan-1" && !d.Replay {
			t.Error("replayed delivery without the replay mark")
		}
	}
	e.edge.mu.Unlock()
	waitUntil(t, "the orphan to leave the tail", func() bool { return len(e.tail()) == 0 })
	if got := e.core.Stats().Replayed.Load(); got != 1 {
		t.Errorf("Stats.Replayed = %d, want 1", got)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSendWaitsForReplay: on a new leader (a raft term not yet replayed) a
// send waits for the fan-out replay, so a recipient gets the message the
// previous leader left before a newer one.
func TestSendWaitsForReplay(t *testing.T) {
	var term atomic.Uint64
	term.Store(1)
	e := &env{t: t, rep: newFakeReplica(t), edge: &fakeEdge{}}
	e.now.Store(1_700_000_000_000)
	e.core = New(Config{Replica: e.rep, Apps: apps.NewDev(), LeaderTerm: term.Load,
		Now: func() time.Time { return time.UnixMilli(e.now.Add(1)) }})
	detach := e.core.AttachEdge("e1", e.edge.send)
	t.Cleanup(func() { detach(); e.core.Close() })
	if _, err := e.core.ReplayFanout(context.Background()); err != nil { // term 1: nothing left
		t.Fatal(err)
	}
	alice, bob := e.client("alice"), e.client("bob")
	alice.open("", false, 0)
	bob.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()

	// Term 2: "the previous leader" stored orphan-2 and died.
	term.Store(2)
	b, _ := (&shard.Command{Op: shard.OpAppend, App: testApp, CID: cid, From: "alice", MID: "orphan-2",
		Now: e.now.Add(1), Data: "left behind"}).Encode()
	if _, err := e.rep.Propose(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	sent := make(chan string, 1)
	go func() { sent <- alice.sendText(cid, "newer").GetAckMessage().GetUid() }()
	select {
	case <-sent:
		t.Fatal("a send on a new leader went through before the replay")
	case <-time.After(200 * time.Millisecond):
	}
	if n, err := e.core.ReplayFanout(context.Background()); err != nil || n != 1 {
		t.Fatalf("ReplayFanout: %d, %v", n, err)
	}
	newer := <-sent // positive control: the send goes on after the replay
	isDirect := func(id string) func(*lcpb.GenericCommand) bool {
		return func(g *lcpb.GenericCommand) bool {
			return g.GetCmd() == lcpb.CommandType_direct && g.GetDirectMessage().GetId() == id
		}
	}
	e.edge.waitPush(t, "bob", bob.conn, isDirect(newer))
	var order []string
	for _, g := range e.edge.pushes(t, "bob", bob.conn) {
		if g.GetCmd() == lcpb.CommandType_direct {
			order = append(order, g.GetDirectMessage().GetId())
		}
	}
	if len(order) != 2 || order[0] != "orphan-2" || order[1] != newer {
		t.Errorf("bob's pushes %v, want orphan-2 then %s", order, newer)
	}
}

// TestSendDuringLeadershipTransfer: a send proposed while the leader hands
// its lead over (raft refuses it, the replica still leading) fails as
// not-leader, which the edge retries on the next leader, and not as an
// internal error the client would see (found by `relaymesh admin shard
// transfer-leader` under load, e2e TestAdminOps).
func TestSendDuringLeadershipTransfer(t *testing.T) {
	e := newEnv(t)
	alice := e.client("alice")
	alice.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	e.rep.transferring.Store(true)
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(9), DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("x")}})
	rep, err := e.core.HandleClient(context.Background(), alice.req(meshpb.ClientRequest_COMMAND, b))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a send during a transfer: got %v, %v; want ErrNotLeader", rep, err)
	}
	e.rep.transferring.Store(false)
	mustOK(t, alice.sendKeyed(cid, "x", "", "k"))
}
