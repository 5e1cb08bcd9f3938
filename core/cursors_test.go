package core

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// queuedCursors returns how many cursor moves wait for a round.
func cursorOf(t *testing.T, e *env, cid, peer string) shard.Cursor {
	t.Helper()
	cur, err := shard.GetCursor(e.rep.db, testApp, cid, peer)
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

func queuedCursors(c *Core) int {
	c.cursors.mu.Lock()
	defer c.cursors.mu.Unlock()
	n := 0
	for _, r := range c.cursors.queue {
		n += len(r.reqs)
	}
	return n
}

// TestAckCoalescing: acks that arrive while a cursor proposal is in flight
// go into one proposal, every ack request returns only after its move is
// applied, and each member's receipt still reaches the sender.
func TestAckCoalescing(t *testing.T) {
	e := newEnv(t)
	a := e.client("alice")
	a.open("", false, 0)
	a.config |= configGroupReceipt
	const n = 30
	var members []string
	var peers []*client
	for i := range n {
		p := e.client(fmt.Sprintf("m%02d", i))
		p.open("", false, 0)
		peers = append(peers, p)
		members = append(members, p.peer)
	}
	cid := a.start(members, "", false).ConvMessage.GetCid()
	m := mustOK(t, a.direct(&lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"), R: proto.Bool(true)})).AckMessage

	ack := func(p *client) {
		b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
			AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Mid: proto.String(m.GetUid())}})
		if _, err := e.core.HandleClient(context.Background(), p.req(meshpb.ClientRequest_COMMAND, b)); err != nil {
			t.Error(err)
		}
	}
	// Counted: proposals of cursor moves. Others may come in between
	// (a first login's seen mark is proposed in the background; the
	// message's fan-out done): CI once counted 3 proposals here.
	before, entered := e.rep.ackRounds.Load(), e.rep.ackEntered.Load()
	e.rep.mu.Lock() // proposals block: the first round stays in flight
	locked := true
	defer func() { // a failed wait below must not leave the replica locked
		if locked {
			e.rep.mu.Unlock()
		}
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ack(peers[0]) }()
	waitFor(t, "first round blocked in Propose", func() bool {
		return e.rep.ackEntered.Load() == entered+1 && e.rep.ackRounds.Load() == before && queuedCursors(e.core) == 0
	})
	returned := make(chan struct{}, n)
	for _, p := range peers[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); ack(p); returned <- struct{}{} }()
	}
	waitFor(t, "acks queued", func() bool { return queuedCursors(e.core) == n-1 })
	select {
	case <-returned:
		t.Fatal("an ack returned before its move was applied")
	default:
	}
	e.rep.mu.Unlock()
	locked = false
	wg.Wait()
	if got := e.rep.ackRounds.Load() - before; got != 2 {
		t.Fatalf("%d acks made %d proposals, want 2 (one in flight, one for the rest)", n, got)
	}
	for _, p := range peers {
		e.edge.waitPush(t, "alice", a.conn, func(g *lcpb.GenericCommand) bool {
			return isRcp(m.GetUid(), false)(g) && g.GetRcpMessage().GetFrom() == p.peer
		})
	}
	// Repeats change nothing and are not proposed.
	before = e.rep.ackRounds.Load()
	for _, p := range peers[:5] {
		ack(p)
	}
	if got := e.rep.ackRounds.Load() - before; got != 0 {
		t.Fatalf("repeated acks made %d proposals, want 0", got)
	}
}

// TestCursorMerge: moves of one member queued together merge into the
// furthest, and a read covers the delivered cursor.
func TestCursorMerge(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	var ts []int64
	for i := range 3 {
		ts = append(ts, mustOK(t, a.sendText(cid, fmt.Sprint(i))).AckMessage.GetT())
	}
	e.rep.mu.Lock()
	r1 := e.core.moveCursor(testApp, cid, "bob", "", ts[2], false, 1)
	r2 := e.core.moveCursor(testApp, cid, "bob", "", ts[0], true, 2)
	r3 := e.core.moveCursor(testApp, cid, "bob", "", ts[1], false, 3)
	e.rep.mu.Unlock()
	waitCursors(context.Background(), r1, r2, r3)
	cur := cursorOf(t, e, cid, "bob")
	if cur.Ack != ts[2] || cur.Read != ts[0] {
		t.Fatalf("cursor: got %+v, want ack %d read %d", cur, ts[2], ts[0])
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
