package core

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// sent is the outcome of one send made off the test goroutine.
type sent struct {
	peer, text string
	reply      *lcpb.GenericCommand // the ack or cmd:error; nil with err
	err        error
}

// sendAsync sends text (with dt, may be "") to cid from c's session as
// the edge would, on its own goroutine, with request number i, and
// reports the outcome on out. It never calls t.Fatal.
func (c *client) sendAsync(core *Core, cid, text, dt string, i int32, out chan<- sent) {
	d := &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}
	if dt != "" {
		d.Dt = proto.String(dt)
	}
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(i), DirectMessage: d})
	req := c.req(meshpb.ClientRequest_COMMAND, b)
	req.IdempotencyKey = fmt.Sprintf("%s-%d", c.peer, i)
	go func() {
		s := sent{peer: c.peer, text: text}
		rep, err := core.HandleClient(context.Background(), req)
		switch {
		case err != nil:
			s.err = err
		case len(rep.Commands) != 1:
			s.err = fmt.Errorf("%d replies, want 1", len(rep.Commands))
		default:
			g := new(lcpb.GenericCommand)
			if s.err = proto.Unmarshal(rep.Commands[0], g); s.err == nil {
				s.reply = g
			}
		}
		out <- s
	}()
}

// queued returns how many sends wait in cid's queue (not taken by a round).
func queued(c *Core, cid string) int {
	c.sends.mu.Lock()
	defer c.sends.mu.Unlock()
	if q := c.sends.m[testApp+"\x00"+cid]; q != nil {
		return len(q.waiting)
	}
	return 0
}

// proposing reports whether a round of cid's sends has taken its sends
// and reached the replica (entered moved past since): later sends queue.
func proposing(e *env, c *Core, cid string, since int64) bool {
	c.sends.mu.Lock()
	q := c.sends.m[testApp+"\x00"+cid]
	c.sends.mu.Unlock()
	return q != nil && e.rep.entered.Load() > since
}

// hold makes the replica's proposals wait until the returned func runs.
func (f *fakeReplica) hold() (release func()) {
	ch := make(chan struct{})
	f.gate.Store(&ch)
	return func() {
		f.gate.Store(nil)
		close(ch)
	}
}

func (f *fakeReplica) appendRounds() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.rounds...)
}

// history pages through cid's whole history, oldest first, 100 at a time.
func (c *client) history(cid string) []*lcpb.LogItem {
	var all []*lcpb.LogItem
	lc := &lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100), Direction: lcpb.LogsCommand_NEW.Enum()}
	for {
		page := c.logs(lc)
		all = append(all, page...)
		if len(page) < 100 {
			return all
		}
		last := page[len(page)-1]
		lc.T, lc.Mid = proto.Int64(last.GetTimestamp()), proto.String(last.GetMsgId())
	}
}

// directIDs returns the ids of the direct pushes (peer, conn) got.
func directIDs(t *testing.T, e *fakeEdge, peer string, conn uint64) []string {
	var ids []string
	for _, g := range e.pushes(t, peer, conn) {
		if g.GetCmd() == lcpb.CommandType_direct {
			ids = append(ids, g.GetDirectMessage().GetId())
		}
	}
	return ids
}

// TestGroupCommitManySenders: 19 members send 20 messages each into one
// group of 21 at once; the first round is held until every sender's first
// message waits, so rounds of several sends form. Every send is acked
// with a distinct id; the history, paged, holds exactly the acked
// messages once each with the acked timestamps, rising, each sender's in
// its sending order; a member who does not send was pushed them in that
// same order; the fan-out tail empties.
func TestGroupCommitManySenders(t *testing.T) {
	e := newEnv(t)
	const senders, each = 19, 20
	var peers []string
	for i := range senders {
		peers = append(peers, fmt.Sprintf("u%02d", i))
	}
	owner, watcher := e.client("owner"), e.client("watcher")
	owner.open("", false, 0)
	watcher.open("", false, 0)
	cid := owner.start(append([]string{"watcher"}, peers...), "", false).GetConvMessage().GetCid()
	clients := make([]*client, senders)
	for i, p := range peers {
		clients[i] = e.client(p)
		clients[i].open("", false, 0)
	}

	release := e.rep.hold()
	since := e.rep.entered.Load()
	var wg sync.WaitGroup
	acks := make(chan sent, senders*each)
	var first atomic.Int32
	for i, c := range clients {
		if i == 1 {
			// The others start once the first sender's round holds only
			// its own send: started together, a round could take two
			// first messages, and then never would senders-1 wait.
			waitUntil(t, "the first round at the replica", func() bool { return proposing(e, e.core, cid, since) })
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make(chan sent, 1)
			for k := range each {
				c.sendAsync(e.core, cid, fmt.Sprintf("%s %d", c.peer, k), "", int32(k+1), out)
				if k == 0 {
					first.Add(1)
				}
				acks <- <-out
			}
		}()
	}
	waitUntil(t, "every sender's first message to wait", func() bool {
		return first.Load() == senders && queued(e.core, cid) == senders-1
	})
	release()
	wg.Wait()
	close(acks)

	byID := map[string]sent{}
	for s := range acks {
		if s.err != nil || s.reply.GetCmd() != lcpb.CommandType_ack {
			t.Fatalf("%s %q: got %v %v, want an ack", s.peer, s.text, s.err, s.reply)
		}
		id := s.reply.GetAckMessage().GetUid()
		if _, dup := byID[id]; dup {
			t.Fatalf("id %s acked twice", id)
		}
		byID[id] = s
	}
	hist := owner.history(cid)
	if len(hist) != senders*each {
		t.Fatalf("history holds %d messages, want %d", len(hist), senders*each)
	}
	next := map[string]int{} // each sender's next message number
	var order []string
	for i, it := range hist {
		s, ok := byID[it.GetMsgId()]
		if !ok {
			t.Fatalf("history message %s %q was not acked", it.GetMsgId(), it.GetData())
		}
		delete(byID, it.GetMsgId())
		if at := s.reply.GetAckMessage().GetT(); at != it.GetTimestamp() {
			t.Fatalf("%s acked at %d, stored at %d", it.GetMsgId(), at, it.GetTimestamp())
		}
		if i > 0 && it.GetTimestamp() <= hist[i-1].GetTimestamp() {
			t.Fatalf("timestamps not rising at %d: %d after %d", i, it.GetTimestamp(), hist[i-1].GetTimestamp())
		}
		if want := fmt.Sprintf("%s %d", s.peer, next[s.peer]); it.GetData() != want {
			t.Fatalf("%s's message %d is %q, want %q", s.peer, next[s.peer], it.GetData(), want)
		}
		next[s.peer]++
		order = append(order, it.GetMsgId())
	}
	rounds := e.rep.appendRounds()
	if len(rounds) < 2 || rounds[0] != 1 || rounds[1] < senders-1 {
		t.Fatalf("rounds %v, want the held one, then one of at least the %d that waited", rounds, senders-1)
	}
	t.Logf("%d sends in %d rounds", senders*each, len(rounds))
	drain(t, e.core)
	if got := directIDs(t, e.edge, "watcher", watcher.conn); !reflect.DeepEqual(got, order) {
		t.Fatalf("watcher got %d pushes, out of history order (or some missing)", len(got))
	}
	waitUntil(t, "the tail to empty", func() bool { return len(e.tail()) == 0 })
}

// TestGroupCommitRound: sends that wait behind a held round go as one
// raft entry, at most maxSendBatch of them, in arrival order: a dedup
// token repeated in the round is stored once and acked twice with the
// same id and time, a muted member's send is refused alone, the others are
// stored; a member is pushed them in history order and the tail empties.
func TestGroupCommitRound(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, dave := e.client("alice"), e.client("bob"), e.client("carol"), e.client("dave")
	for _, c := range []*client{alice, bob, carol, dave} {
		c.open("", false, 0)
	}
	cid := alice.start([]string{"bob", "carol", "dave"}, "", false).GetConvMessage().GetCid()
	mustOK(t, alice.do(convCmd(lcpb.OpType_add_shutup, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"carol"}})))

	release := e.rep.hold()
	entered := e.rep.entered.Load()
	out := make(chan sent, 100)
	i := int32(100)
	send := func(c *client, text, dt string) {
		i++
		c.sendAsync(e.core, cid, text, dt, i, out)
	}
	send(alice, "first", "")
	waitUntil(t, "the first send to be proposed", func() bool { return proposing(e, e.core, cid, entered) })
	const daves = maxSendBatch + 2
	type q struct {
		c        *client
		text, dt string
	}
	waiting := []q{{alice, "dt once", "x"}, {carol, "muted", ""}, {alice, "dt twice", "x"}, {bob, "b", ""}}
	for k := range daves {
		waiting = append(waiting, q{dave, fmt.Sprintf("d%02d", k), ""})
	}
	for n, w := range waiting { // one at a time, so they queue in this order
		send(w.c, w.text, w.dt)
		waitUntil(t, "the send to queue", func() bool { return queued(e.core, cid) == n+1 })
	}
	release()
	got := map[string]sent{}
	for range 1 + len(waiting) {
		s := <-out
		if s.err != nil {
			t.Fatalf("%s: %v", s.text, s.err)
		}
		got[s.text] = s
	}

	total := 1 + len(waiting)
	if rounds, want := e.rep.appendRounds(), []int{1, maxSendBatch, total - 1 - maxSendBatch}; !reflect.DeepEqual(rounds, want) {
		t.Fatalf("rounds %v, want %v", rounds, want)
	}
	if r, n := e.core.Stats().SendRounds.Load(), e.core.Stats().RoundSends.Load(); r != 3 || n != uint64(total) {
		t.Errorf("Stats: %d rounds of %d sends, want 3 of %d", r, n, total)
	}
	wantError(t, got["muted"].reply, codeSilenced)
	once, twice := got["dt once"].reply.GetAckMessage(), got["dt twice"].reply.GetAckMessage()
	if once.GetUid() == "" || once.GetUid() != twice.GetUid() || once.GetT() != twice.GetT() {
		t.Fatalf("the dt's sends acked %s@%d and %s@%d, want the same", once.GetUid(), once.GetT(), twice.GetUid(), twice.GetT())
	}
	wantTexts := []string{"first", "dt once", "b"}
	for k := range daves {
		wantTexts = append(wantTexts, fmt.Sprintf("d%02d", k))
	}
	var texts, ids []string
	for _, it := range alice.history(cid) {
		texts, ids = append(texts, it.GetData()), append(ids, it.GetMsgId())
		if s := got[it.GetData()]; s.reply.GetAckMessage().GetUid() != it.GetMsgId() {
			t.Fatalf("%q stored as %s, acked as %s", it.GetData(), it.GetMsgId(), s.reply.GetAckMessage().GetUid())
		}
	}
	if !reflect.DeepEqual(texts, wantTexts) {
		t.Fatalf("history %q,\nwant %q", texts, wantTexts)
	}
	drain(t, e.core)
	if got := directIDs(t, e.edge, "carol", carol.conn); !reflect.DeepEqual(got, ids) {
		t.Fatalf("carol's pushes %v,\nwant %v", got, ids)
	}
	waitUntil(t, "the tail to empty", func() bool { return len(e.tail()) == 0 })
}

// TestGroupCommitPinnedVersion: a core pinned below shard.Version4 (an
// upgrade in progress) proposes no batch of appends: the sends that
// waited go one per round, each still stored once and acked.
func TestGroupCommitPinnedVersion(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.CommandVersion = shard.Version3 })
	alice, bob := e.client("alice"), e.client("bob")
	alice.open("", false, 0)
	bob.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	release := e.rep.hold()
	entered := e.rep.entered.Load()
	out := make(chan sent, 10)
	alice.sendAsync(e.core, cid, "m0", "", 1, out)
	waitUntil(t, "the first send to be proposed", func() bool { return proposing(e, e.core, cid, entered) })
	for k := 1; k < 5; k++ {
		bob.sendAsync(e.core, cid, fmt.Sprintf("m%d", k), "", int32(k), out)
		waitUntil(t, "the send to queue", func() bool { return queued(e.core, cid) == k })
	}
	release()
	for range 5 {
		if s := <-out; s.err != nil || s.reply.GetCmd() != lcpb.CommandType_ack {
			t.Fatalf("%s: %v %v", s.text, s.err, s.reply)
		}
	}
	if rounds := e.rep.appendRounds(); !reflect.DeepEqual(rounds, []int{1, 1, 1, 1, 1}) {
		t.Fatalf("rounds %v, want five of one", rounds)
	}
	if n := len(alice.history(cid)); n != 5 {
		t.Fatalf("history holds %d, want 5", n)
	}
}

// TestReplayGroupedEntryAfterLeaderChange: a leader stores a round of
// three sends in one entry and dies while fanning it out (the test hook
// holds it after the first message's fan-out; then it is closed, as
// killed); the next leader's replay pushes all three messages of the
// entry to a member, in order, and names the entry done.
func TestReplayGroupedEntryAfterLeaderChange(t *testing.T) {
	var term atomic.Uint64
	term.Store(1)
	e := &env{t: t, rep: newFakeReplica(t), edge: &fakeEdge{}}
	e.now.Store(1_700_000_000_000)
	clock := func() time.Time { return time.UnixMilli(e.now.Add(1)) }
	old := New(Config{Replica: e.rep, Apps: apps.NewDev(), LeaderTerm: term.Load, Now: clock, HaltBeforeFanout: "HALT"})
	e.core = old
	detach := old.AttachEdge("e1", e.edge.send)
	t.Cleanup(func() { detach(); old.Close() })
	if _, err := old.ReplayFanout(context.Background()); err != nil {
		t.Fatal(err)
	}
	alice, bob := e.client("alice"), e.client("bob")
	alice.open("", false, 0)
	bob.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	mustOK(t, alice.sendText(cid, "before"))
	waitUntil(t, "the tail to empty", func() bool { return len(e.tail()) == 0 })

	release := e.rep.hold()
	entered := e.rep.entered.Load()
	out := make(chan sent, 4)
	alice.sendAsync(old, cid, "held", "", 10, out)
	waitUntil(t, "the first send to be proposed", func() bool { return proposing(e, e.core, cid, entered) })
	for k, text := range []string{"g1", "g2 HALT", "g3"} {
		alice.sendAsync(old, cid, text, "", int32(11+k), out)
		waitUntil(t, "the send to queue", func() bool { return queued(old, cid) == k+1 })
	}
	release()
	<-out // "held": its own round
	waitUntil(t, "the round to halt", func() bool { return old.Stats().Halted.Load() == 1 })
	hist := alice.history(cid)
	if len(hist) != 5 {
		t.Fatalf("history holds %d messages, want 5", len(hist))
	}
	entry := []string{hist[2].GetMsgId(), hist[3].GetMsgId(), hist[4].GetMsgId()}
	// "held" leaves the tail (the idle flush names it); the round's entry
	// stays, its fan-out not over.
	waitUntil(t, "the tail to hold the round alone", func() bool {
		tail := e.tail()
		return len(tail) == 3 && tail[0] == tail[2]
	})
	old.Close() // killed
	for range 3 {
		// g1 was fanned out before the hold and may be acked; not g2 or g3.
		if s := <-out; s.text != "g1" && s.err == nil && s.reply.GetCmd() == lcpb.CommandType_ack {
			t.Fatalf("%s acked by a leader that died before fanning it out", s.text)
		}
	}

	// The next leader (no LeaderTerm: the test opens a session on it
	// before its replay).
	edge2 := &fakeEdge{}
	e.core = New(Config{Replica: e.rep, Apps: apps.NewDev(), Now: clock})
	detach2 := e.core.AttachEdge("e1", edge2.send)
	t.Cleanup(func() { detach2(); e.core.Close() })
	bob2 := e.client("bob")
	bob2.open("", false, 0)
	n, err := e.core.ReplayFanout(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("ReplayFanout: %d, %v; want 3", n, err)
	}
	waitUntil(t, "the replay's pushes", func() bool { return len(directIDs(t, edge2, "bob", bob2.conn)) == 3 })
	if got := directIDs(t, edge2, "bob", bob2.conn); !reflect.DeepEqual(got, entry) {
		t.Fatalf("replayed %v, want %v", got, entry)
	}
	waitUntil(t, "the entry to leave the tail", func() bool { return len(e.tail()) == 0 })
}

// TestProposesBinaryForm: a core proposes its sends in the binary form of
// shard.Version5 (core/shard/bincmd.go) and, pinned to Version4 for a
// rolling upgrade, as JSON, which a version 4 replica reads; each stores
// the message (in the form its version writes, shard.Version6).
func TestProposesBinaryForm(t *testing.T) {
	for _, tc := range []struct {
		ver    int
		prefix string
	}{
		{0, fmt.Sprintf(`{"v":%d,"bin":"`, shard.Version)},
		{shard.Version5, `{"v":5,"bin":"`}, // messages stored as JSON (shard.Version6)
		{shard.Version4, `{"v":4,"op":`},
	} {
		e := newEnvWith(t, func(c *Config) { c.CommandVersion = tc.ver })
		a := e.client("alice")
		a.open("", false, 0)
		cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
		ack := a.sendText(cid, "hello")
		e.rep.mu.Lock()
		last := string(e.rep.last)
		e.rep.mu.Unlock()
		if !strings.HasPrefix(last, tc.prefix) {
			t.Errorf("version %d: the send was proposed as %.40q, want the prefix %s", tc.ver, last, tc.prefix)
		}
		m, err := shard.GetMessage(e.rep.State(), testApp, cid, ack.GetAckMessage().GetUid())
		if err != nil || m == nil || m.Data != "hello" {
			t.Errorf("version %d: stored %+v, %v", tc.ver, m, err)
		}
	}
}
