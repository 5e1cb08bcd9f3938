package core

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// fakeReplica applies proposals synchronously through the FSM, as a
// single-node raft would.
type fakeReplica struct {
	mu       sync.Mutex
	db       *pebble.DB
	fsm      *shard.FSM
	idx      uint64
	follower atomic.Bool
	// transferring: proposals fail as raftstore's do while a leadership
	// transfer is in progress, the replica still leading.
	transferring atomic.Bool
	proposed     atomic.Int64
	entered      atomic.Int64 // calls that reached Propose, counted before mu (notifications not)
	// ackEntered, ackRounds: entered and proposed, of the proposals that
	// move a delivered cursor (an ack, alone or in a batch).
	ackEntered, ackRounds atomic.Int64
	// gate, when set, holds every counted proposal (after entered) until
	// the channel is closed: a raft round that does not end (sendgroup_test.go).
	gate atomic.Pointer[chan struct{}]
	// rounds: the appends of each proposal that had some, in order
	// (guarded by mu).
	rounds []int
	// last: the bytes of the last proposal (guarded by mu).
	last []byte
}

func newFakeReplica(t *testing.T) *fakeReplica {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &fakeReplica{db: db, fsm: NewStateMachine()}
}

func (f *fakeReplica) Propose(ctx context.Context, cmd []byte) (any, error) {
	if f.follower.Load() {
		return nil, ErrNotLeader
	}
	if f.transferring.Load() {
		return nil, fmt.Errorf("%w: leadership transfer in progress", raftstore.ErrNotLeader)
	}
	// Stored notifications follow pushes, off the request path
	// (notif.go): they are neither entered nor proposed for the counters.
	decoded, _ := shard.DecodeCommand(cmd)
	counted := !notifOnly(decoded)
	acks := counted && countOp(decoded, shard.OpAck) > 0
	if counted {
		f.entered.Add(1)
		if acks {
			f.ackEntered.Add(1)
		}
		if g := f.gate.Load(); g != nil {
			<-*g
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if counted {
		f.proposed.Add(1)
		if acks {
			f.ackRounds.Add(1)
		}
	}
	if n := countAppends(decoded); counted && n > 0 {
		f.rounds = append(f.rounds, n)
	}
	b := f.db.NewIndexedBatch()
	f.idx++
	f.last = bytes.Clone(cmd)
	res := f.fsm.Apply(b, f.idx, cmd)
	if fe, ok := res.(*shard.FatalError); ok { // as raftstore: discard, stop
		b.Close()
		f.fsm.Reset()
		f.follower.Store(true)
		return nil, fmt.Errorf("%w: %w", raftstore.ErrReplicaFailed, fe)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, err
	}
	// Like raftstore.Node.Propose: an error value from Apply is returned as
	// the error.
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

// notifOnly reports whether c only stores notifications (notif.go).
func notifOnly(c *shard.Command) bool {
	if c == nil || c.Op != shard.OpBatch || len(c.Batch) == 0 {
		return false
	}
	for _, sub := range c.Batch {
		if sub.Op != shard.OpNotif {
			return false
		}
	}
	return true
}

// countAppends returns how many messages c appends.
func countAppends(c *shard.Command) int { return countOp(c, shard.OpAppend) }

// countOp counts the commands of op in c and its batch.
func countOp(c *shard.Command, op shard.Op) int {
	if c == nil {
		return 0
	}
	n := 0
	for _, sub := range append([]*shard.Command{c}, c.Batch...) {
		if sub != nil && sub.Op == op {
			n++
		}
	}
	return n
}

func (f *fakeReplica) State() *pebble.DB { return f.db }
func (f *fakeReplica) IsLeader() bool    { return !f.follower.Load() }

// fakeEdge captures deliveries.
type fakeEdge struct {
	mu  sync.Mutex
	got []*meshpb.Delivery
}

func (e *fakeEdge) send(d *meshpb.Delivery) error {
	e.mu.Lock()
	e.got = append(e.got, d)
	e.mu.Unlock()
	return nil
}

// pushes returns the decoded pushes delivered so far to (peer, conn).
func (e *fakeEdge) pushes(t *testing.T, peer string, conn uint64) []*lcpb.GenericCommand {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*lcpb.GenericCommand
	for _, d := range e.got {
		for _, tg := range d.Targets {
			if tg.PeerId == peer && (tg.ConnId == conn || tg.ConnId == 0) {
				g := new(lcpb.GenericCommand)
				if err := proto.Unmarshal(d.Command, g); err != nil {
					t.Fatal(err)
				}
				out = append(out, g)
			}
		}
	}
	return out
}

// waitPush polls until (peer, conn) got a push matching ok.
func (e *fakeEdge) waitPush(t *testing.T, peer string, conn uint64, ok func(*lcpb.GenericCommand) bool) *lcpb.GenericCommand {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, g := range e.pushes(t, peer, conn) {
			if ok(g) {
				return g
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no matching push for %s/%d; got %v", peer, conn, e.pushes(t, peer, conn))
	return nil
}

// noPush checks that nothing queued for (peer, conn) so far matches ok:
// settle's marker is the positive control.
func (e *fakeEdge) noPush(t *testing.T, c *Core, peer string, conn uint64, ok func(*lcpb.GenericCommand) bool) {
	t.Helper()
	for _, g := range e.settle(t, c, peer, conn) {
		if ok(g) {
			t.Fatalf("unexpected push to %s/%d: %v", peer, conn, g)
		}
	}
}

var markerSeq atomic.Int32

// settle returns the pushes to (peer, conn) queued before it was called. It
// queues a marker to (peer, conn) on the edge link at relay class LOW and
// waits for it: the link's sender pops HIGH before NORMAL before LOW, FIFO
// within a class, so every delivery queued earlier, of any class, reached
// the edge before the marker (relay/pq). A push that is queued but
// never sent fails the wait instead of passing as silence.
func (e *fakeEdge) settle(t *testing.T, c *Core, peer string, conn uint64) []*lcpb.GenericCommand {
	t.Helper()
	id := markerSeq.Add(1)
	c.relay.Deliver("e1", &meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: peer, ConnId: conn}}}, pq.Low,
		&lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(id)}) // the core pushes no echo
	isMarker := func(g *lcpb.GenericCommand) bool { return g.GetCmd() == lcpb.CommandType_echo && g.GetI() == id }
	e.waitPush(t, peer, conn, isMarker)
	var before []*lcpb.GenericCommand
	for _, g := range e.pushes(t, peer, conn) {
		if isMarker(g) {
			return before
		}
		if g.GetCmd() != lcpb.CommandType_echo { // not an earlier settle's marker
			before = append(before, g)
		}
	}
	t.Fatal("settle: marker vanished")
	return nil
}

// drain waits until every queued delivery was handed to its edge.
func drain(t *testing.T, c *Core) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c.relay.Queued() == 0 {
			time.Sleep(5 * time.Millisecond) // the last one may be in send
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("queues did not drain")
}

type env struct {
	t    *testing.T
	core *Core
	rep  *fakeReplica
	edge *fakeEdge
	now  atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, rep: newFakeReplica(t), edge: &fakeEdge{}}
	e.now.Store(1_700_000_000_000)
	e.core = New(Config{Replica: e.rep, Apps: apps.NewDev(), Now: func() time.Time {
		return time.UnixMilli(e.now.Add(1))
	}})
	detach := e.core.AttachEdge("e1", e.edge.send)
	t.Cleanup(func() {
		detach()
		e.core.Close()
	})
	return e
}

const testApp = "testapp"

// client is one session of a clientId on edge e1.
type client struct {
	e      *env
	peer   string
	conn   uint64
	ver    int32
	config int64 // configBitmap
	i      int32
}

var connSeq atomic.Uint64

func (e *env) client(peer string) *client {
	return &client{e: e, peer: peer, conn: connSeq.Add(1), ver: 3, config: 59}
}

func (c *client) req(kind meshpb.ClientRequest_Kind, cmd []byte) *meshpb.ClientRequest {
	return &meshpb.ClientRequest{Kind: kind, AppId: testApp, PeerId: c.peer, EdgeId: "e1", ConnId: c.conn,
		ProtocolVersion: c.ver, Command: cmd, ConfigBitmap: c.config}
}

// open logs the session in and returns the reply.
func (c *client) open(tag string, reconnect bool, lastPatch int64) *meshpb.ClientReply {
	c.e.t.Helper()
	openCmd := &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
		SessionMessage: &lcpb.SessionCommand{}}
	if lastPatch > 0 {
		openCmd.SessionMessage.LastPatchTime = proto.Int64(lastPatch)
	}
	b, _ := proto.Marshal(openCmd)
	r := c.req(meshpb.ClientRequest_OPEN, b)
	r.Tag, r.Reconnect = tag, reconnect
	rep, err := c.e.core.HandleClient(context.Background(), r)
	if err != nil {
		c.e.t.Fatal(err)
	}
	waitSeenRecords(c.e.t, c.e.core)
	return rep
}

// waitSeenRecords waits until the seen records that logins proposed in the
// background (sysconv.go) are done, so tests that count proposals start
// from a quiet replica.
func waitSeenRecords(t *testing.T, c *Core) {
	t.Helper()
	waitFor(t, "login seen records", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.seenInFlight == 0
	})
}

func decodeAll(t *testing.T, rep *meshpb.ClientReply) []*lcpb.GenericCommand {
	t.Helper()
	var out []*lcpb.GenericCommand
	for _, b := range rep.Commands {
		g := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(b, g); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

// do sends cmd with a fresh i and returns the single reply (nil if none).
func (c *client) do(cmd *lcpb.GenericCommand) *lcpb.GenericCommand {
	c.e.t.Helper()
	c.i++
	cmd.I = proto.Int32(c.i)
	g := c.send(cmd)
	if g != nil && g.GetI() != c.i {
		c.e.t.Fatalf("reply i: got %d, want %d", g.GetI(), c.i)
	}
	if g != nil && g.GetPeerId() != c.peer {
		c.e.t.Fatalf("reply peerId: got %q, want %q", g.GetPeerId(), c.peer)
	}
	return g
}

// send sends cmd as is (no i added).
func (c *client) send(cmd *lcpb.GenericCommand) *lcpb.GenericCommand {
	c.e.t.Helper()
	b, err := proto.Marshal(cmd)
	if err != nil {
		c.e.t.Fatal(err)
	}
	rep, err := c.e.core.HandleClient(context.Background(), c.req(meshpb.ClientRequest_COMMAND, b))
	if err != nil {
		c.e.t.Fatal(err)
	}
	out := decodeAll(c.e.t, rep)
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	c.e.t.Fatalf("got %d replies, want 1", len(out))
	return nil
}

// mustOK fails on a cmd:error reply.
func mustOK(t *testing.T, g *lcpb.GenericCommand) *lcpb.GenericCommand {
	t.Helper()
	if g == nil {
		t.Fatal("no reply")
	}
	if g.GetCmd() == lcpb.CommandType_error {
		t.Fatalf("error reply: %v", g.GetErrorMessage())
	}
	return g
}

func wantError(t *testing.T, g *lcpb.GenericCommand, code int32) {
	t.Helper()
	if g == nil || g.GetCmd() != lcpb.CommandType_error || g.GetErrorMessage().GetCode() != code {
		t.Fatalf("got %v, want error %d", g, code)
	}
	if g.GetErrorMessage().GetReason() == "" {
		t.Fatal("error without reason")
	}
}

func convCmd(op lcpb.OpType, cm *lcpb.ConvCommand) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm}
}

func (c *client) start(members []string, attr string, unique bool) *lcpb.GenericCommand {
	cm := &lcpb.ConvCommand{M: members, Unique: proto.Bool(unique)}
	if attr != "" {
		cm.Attr = &lcpb.JsonObjectMessage{Data: proto.String(attr)}
	}
	return mustOK(c.e.t, c.do(convCmd(lcpb.OpType_start, cm)))
}

func (c *client) sendText(cid, text string) *lcpb.GenericCommand {
	return c.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}})
}

func (c *client) logs(lc *lcpb.LogsCommand) []*lcpb.LogItem {
	g := mustOK(c.e.t, c.do(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: lc}))
	if g.LogsMessage == nil {
		c.e.t.Fatal("logs reply without logsMessage")
	}
	return g.LogsMessage.Logs
}

func isOp(cmd lcpb.CommandType, op lcpb.OpType) func(*lcpb.GenericCommand) bool {
	return func(g *lcpb.GenericCommand) bool { return g.GetCmd() == cmd && g.GetOp() == op }
}

func (f *fakeReplica) StateMachine() raftstore.StateMachine { return f.fsm }

// AppliedIndex is raftstore.Node's: the index of the last command applied.
func (f *fakeReplica) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.idx
}
