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

// holdProposals blocks the replica's proposals, so no cursor round can be
// applied, until the returned release is called (at the latest when the
// test ends, so a failed check does not leave them blocked).
func holdProposals(t *testing.T, e *env) (release func()) {
	e.rep.mu.Lock()
	release = sync.OnceFunc(e.rep.mu.Unlock)
	t.Cleanup(release)
	return release
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
// go into one proposal, every ack request returns once its move is queued
// (the client waits for no reply), and each member's receipt still
// reaches the sender.
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
	release := holdProposals(t, e) // the first round stays in flight
	ack(peers[0])                  // returns at once, its round blocked in Propose
	waitFor(t, "first round blocked in Propose", func() bool {
		return e.rep.ackEntered.Load() == entered+1 && e.rep.ackRounds.Load() == before && queuedCursors(e.core) == 0
	})
	var wg sync.WaitGroup
	for _, p := range peers[1:] {
		wg.Go(func() { ack(p) })
	}
	wg.Wait() // every ack returned while no round could be applied
	if q := queuedCursors(e.core); q != n-1 {
		t.Fatalf("%d moves queued behind the blocked round, want %d", q, n-1)
	}
	if got := e.rep.ackRounds.Load(); got != before {
		t.Fatalf("a cursor round was applied while proposals were blocked (%d, want %d)", got, before)
	}
	release()
	waitFor(t, "both rounds applied", func() bool { return e.rep.ackRounds.Load()-before >= 2 && queuedCursors(e.core) == 0 })
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
	release := holdProposals(t, e)
	r1, _ := e.core.moveCursor(testApp, cid, "bob", "", ts[2], false, 1)
	r2, _ := e.core.moveCursor(testApp, cid, "bob", "", ts[0], true, 2)
	r3, _ := e.core.moveCursor(testApp, cid, "bob", "", ts[1], false, 3)
	release()
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

// TestAckAnsweredQueued: an ack is answered once queued, and what the same
// client asks next (a history query, a reopen's unread counts) waits until
// the move is applied; another client's query does not wait.
func TestAckAnsweredQueued(t *testing.T) {
	e := newEnv(t)
	a, b := e.client("alice"), e.client("bob")
	a.open("", false, 0)
	b.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	var ms []*lcpb.AckCommand
	for i := range 3 {
		ms = append(ms, mustOK(t, a.sendText(cid, fmt.Sprint(i))).AckMessage)
	}
	move := func(g *lcpb.GenericCommand) func() {
		return func() {
			t.Helper()
			if rep := b.send(g); rep != nil {
				t.Fatalf("%v replied %v", g.GetCmd(), rep)
			}
		}
	}
	unread := func(rep *meshpb.ClientReply) int32 {
		t.Helper()
		for _, g := range decodeAll(t, rep) {
			for _, c := range g.GetUnreadMessage().GetConvs() {
				if c.GetCid() == cid {
					return c.GetUnread()
				}
			}
		}
		return 0
	}
	for _, step := range []struct {
		name string
		move func()                   // bob's ack or read
		at   func(shard.Cursor) int64 // the cursor it moves
		want int64                    // to where
		ask  func()                   // bob's next request
	}{
		{"ack, then logs", move(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
			AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Mid: proto.String(ms[0].GetUid())}}),
			func(c shard.Cursor) int64 { return c.Ack }, ms[0].GetT(),
			func() { b.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}) }},
		{"read, then reopen", move(&lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum(),
			ReadMessage: &lcpb.ReadCommand{Cid: proto.String(cid)}}),
			func(c shard.Cursor) int64 { return c.Read }, ms[2].GetT(),
			func() {
				if n := unread(b.open("", false, 0)); n != 0 {
					t.Errorf("reopen after reading everything: %d unread, want 0", n)
				}
			}},
	} {
		waits := e.core.stats.CursorWaits.Load()
		release := holdProposals(t, e) // no round can be applied
		moved := make(chan struct{})
		go func() { defer close(moved); step.move() }()
		select { // answered once queued
		case <-moved:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not answered while its round could not be applied", step.name)
		}
		if got := step.at(cursorOf(t, e, cid, "bob")); got >= step.want {
			t.Fatalf("%s: cursor at %d before the round was applied", step.name, got)
		}
		done := make(chan struct{})
		go func() { defer close(done); step.ask() }()
		waitFor(t, step.name+": waiting for bob's moves", func() bool { return e.core.stats.CursorWaits.Load() == waits+1 })
		a.logs(&lcpb.LogsCommand{Cid: proto.String(cid)}) // alice has nothing queued: answered now
		select {
		case <-done:
			t.Fatalf("%s: answered before bob's move was applied", step.name)
		default:
		}
		release()
		<-done
		if got := step.at(cursorOf(t, e, cid, "bob")); got != step.want {
			t.Fatalf("%s: cursor at %d after the wait, want %d", step.name, got, step.want)
		}
	}
	if e.core.stats.CursorHeld.Load() != 0 {
		t.Fatalf("%d acks held with a short queue", e.core.stats.CursorHeld.Load())
	}
}

// TestAckHeldWhenQueueDeep: with more than cursorQueueFree rounds waiting,
// an ack is answered only once applied, so the edges' request windows
// bound the queue as before.
func TestAckHeldWhenQueueDeep(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.client("alice"), e.client("bob"), e.client("carol")
	a.open("", false, 0)
	b.open("", false, 0)
	c.open("", false, 0)
	cid := a.start([]string{"bob", "carol"}, "", false).ConvMessage.GetCid()
	m := mustOK(t, a.sendText(cid, "hi")).AckMessage
	release := holdProposals(t, e)
	// One round in flight (carol's move, blocked in Propose), then enough
	// moves of strangers (no members: dropped when resolved) to queue
	// cursorQueueFree+1 rounds behind it.
	entered := e.rep.ackEntered.Load()
	e.core.moveCursor(testApp, cid, "carol", "", m.GetT(), false, 1)
	waitFor(t, "a round in flight", func() bool { return e.rep.ackEntered.Load() == entered+1 && queuedCursors(e.core) == 0 })
	for i := range (cursorQueueFree + 1) * maxCursorRound {
		e.core.moveCursor(testApp, cid, fmt.Sprintf("s%d", i), "", 1, false, 1)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.send(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
			AckMessage: &lcpb.AckCommand{Cid: proto.String(cid), Mid: proto.String(m.GetUid())}})
	}()
	waitFor(t, "the ack held", func() bool { return e.core.stats.CursorHeld.Load() == 1 })
	select {
	case <-done:
		t.Fatal("an ack behind a deep queue was answered before it was applied")
	default:
	}
	release()
	<-done
	if cur := cursorOf(t, e, cid, "bob"); cur.Ack != m.GetT() {
		t.Fatalf("cursor at %d, want %d", cur.Ack, m.GetT())
	}
	if n := e.core.cursors.npending.Load(); n != 0 {
		t.Fatalf("%d peers still pending after every round was applied", n)
	}
}
