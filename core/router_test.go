package core

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
)

// routerEnv is a router over n shard cores on fake replicas sharing one
// relay, with forward as its mesh.
type routerEnv struct {
	rt    *Router
	reps  []*fakeReplica
	cores []*Core
	mu    sync.Mutex
	hints []string // guarded by mu; Leader() of each shard (setHint)
}

// setHint sets shard i's leader as the router's replica knows it.
func (e *routerEnv) setHint(i int, addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hints[i] = addr
}

func newRouterEnv(t *testing.T, n int, forward func(ctx context.Context, addr string, req *meshpb.ShardRequest) (*meshpb.ClientReply, error)) *routerEnv {
	t.Helper()
	e := &routerEnv{hints: make([]string, n)}
	rl := relay.New(relay.Config{})
	t.Cleanup(rl.Close)
	var shards []RouterShard
	for i := range n {
		rep := newFakeReplica(t)
		var sys *Core
		if i > 0 {
			sys = e.cores[0]
		}
		c := New(Config{Replica: rep, Apps: apps.NewDev(), Relay: rl, System: sys, Home: catalog.ConvID{Region: 1, Shard: uint16(i)}})
		t.Cleanup(func() { c.Close() })
		e.reps, e.cores = append(e.reps, rep), append(e.cores, c)
		shards = append(shards, RouterShard{Core: c, Leader: func() string {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.hints[i]
		}})
	}
	rt, err := NewRouter(RouterConfig{Region: 1, Shards: shards, Self: "self", Forward: forward})
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt
	return e
}

func openReq(peer string) *meshpb.ClientRequest {
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
		SessionMessage: &lcpb.SessionCommand{}})
	return &meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN, AppId: testApp, PeerId: peer, EdgeId: "e1", ConnId: 1,
		ProtocolVersion: 3, Command: b}
}

// An edge cannot ask for a shard's part: a part OPEN skips the token
// check, so the router clears the flag on everything that comes in.
func TestRouterIgnoresPartFlagsFromEdges(t *testing.T) {
	e := newRouterEnv(t, 2, nil)
	req := openReq("mallory")
	req.StReopen, req.StGeneration = true, 7 // no token of generation 7 was ever issued
	req.ShardPart, req.LoginSplit, req.RegionPart, req.LoginAtMs, req.GoneFromRegion = true, true, true, 1, true
	rep, err := e.rt.HandleClient(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetErrorCode() != lcpb.ErrSessionTokenExpired {
		t.Fatalf("reopen with a forged generation and shard_part: error_code %d (%s), want %d", rep.GetErrorCode(), rep.GetErrorReason(), lcpb.ErrSessionTokenExpired)
	}
	if e.cores[0].online(testApp, "mallory") {
		t.Fatal("the refused session is registered")
	}
}

// A shard that this node does not lead is reached through its leader,
// following not_leader hints; a shard with no leader in sight fails the
// request by its context, never hangs.
func TestRouterForwardsAndFollowsHints(t *testing.T) {
	var calls []string
	forward := func(ctx context.Context, addr string, req *meshpb.ShardRequest) (*meshpb.ClientReply, error) {
		calls = append(calls, addr)
		if req.GetShard() != 1 {
			t.Errorf("forwarded for shard %d, want 1", req.GetShard())
		}
		switch addr {
		case "old":
			return &meshpb.ClientReply{NotLeader: true, Leader: "new"}, nil
		case "new":
			return &meshpb.ClientReply{ErrorReason: "served by new"}, nil
		}
		return nil, errors.New("unknown core")
	}
	e := newRouterEnv(t, 2, forward)
	e.reps[1].follower.Store(true)
	e.setHint(1, "old")
	cid, _ := catalog.NewConvID(1, 1)
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid)}})
	req := &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: testApp, PeerId: "p", Command: b}
	rep, err := e.rt.HandleClient(context.Background(), req)
	if err != nil || rep.GetErrorReason() != "served by new" {
		t.Fatalf("got %v, %v; want the reply of core new", rep, err)
	}
	if len(calls) != 2 || calls[0] != "old" || calls[1] != "new" {
		t.Fatalf("forwarded to %v, want [old new]", calls)
	}
	if e.rt.Stats().Hints.Load() != 1 || e.rt.Stats().Forwarded.Load() != 2 {
		t.Fatalf("hints %d forwarded %d, want 1 and 2", e.rt.Stats().Hints.Load(), e.rt.Stats().Forwarded.Load())
	}

	// No leader known: bounded by the request's context.
	e.setHint(1, "")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := e.rt.HandleClient(ctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no leader: got %v, want the context's deadline", err)
	}
	// A shard this region does not have: 4303, nothing forwarded.
	calls = nil
	other, _ := catalog.NewConvID(1, 7)
	b, _ = proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), I: proto.Int32(3), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(other)}})
	req.Command = b
	rep, err = e.rt.HandleClient(context.Background(), req)
	if err != nil || len(rep.GetCommands()) != 1 {
		t.Fatalf("got %v, %v", rep, err)
	}
	g := new(lcpb.GenericCommand)
	proto.Unmarshal(rep.GetCommands()[0], g)
	if g.GetErrorMessage().GetCode() != lcpb.ErrConversationNotFound || g.GetI() != 3 || len(calls) != 0 {
		t.Fatalf("shard 7 of 2: got %v (calls %v), want error %d with i=3", g, calls, lcpb.ErrConversationNotFound)
	}
	// HandleShard on a shard it does not lead answers not_leader with
	// the hint, doing nothing.
	e.setHint(1, "new")
	rep, err = e.rt.HandleShard(context.Background(), 1, req)
	if err != nil || !rep.GetNotLeader() || rep.GetLeader() != "new" {
		t.Fatalf("HandleShard on a follower: %v, %v", rep, err)
	}
	if rep, _ := e.rt.HandleShard(context.Background(), 9, req); rep.GetErrorCode() != lcpb.ErrConversationNotFound {
		t.Fatalf("HandleShard of shard 9: %v", rep)
	}
}

// mergeLogin caps and orders the shards' shares as one shard would.
func TestMergeLogin(t *testing.T) {
	enc := func(gs ...*lcpb.GenericCommand) [][]byte {
		var out [][]byte
		for _, g := range gs {
			b, _ := proto.Marshal(g)
			out = append(out, b)
		}
		return out
	}
	unread := func(notif int64, ts ...int64) *lcpb.GenericCommand {
		u := &lcpb.UnreadCommand{NotifTime: proto.Int64(notif)}
		for _, t := range ts {
			u.Convs = append(u.Convs, &lcpb.UnreadTuple{Cid: proto.String("c" + string(rune('a'+t%26))), Timestamp: proto.Int64(t), Unread: proto.Int32(1)})
		}
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_unread.Enum(), UnreadMessage: u}
	}
	direct := func(cid string, t int64) *lcpb.GenericCommand {
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{
			Cid: proto.String(cid), Timestamp: proto.Int64(t), Offline: proto.Bool(true)}}
	}
	patch := &lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum()}

	t.Run("unread newest first, capped, one command", func(t *testing.T) {
		reps := []*meshpb.ClientReply{
			{Commands: enc(unread(100, 5, 1), patch)},
			{Commands: enc(unread(300, 9, 3)), SysCommands: enc(direct("sys", 50), direct("sys", 40))},
			{Commands: enc(unread(200, 7))},
		}
		out := mergeLogin(reps, 3, 3)
		var gs []*lcpb.GenericCommand
		for _, b := range out {
			g := new(lcpb.GenericCommand)
			proto.Unmarshal(b, g)
			gs = append(gs, g)
		}
		if len(gs) != 4 || gs[0].GetCmd() != lcpb.CommandType_unread || gs[1].GetCmd() != lcpb.CommandType_patch {
			t.Fatalf("got %v, want unread, patch, then two system pushes", gs)
		}
		var ts []int64
		for _, c := range gs[0].GetUnreadMessage().GetConvs() {
			ts = append(ts, c.GetTimestamp())
		}
		if len(ts) != 3 || ts[0] != 9 || ts[1] != 7 || ts[2] != 5 {
			t.Fatalf("unread tuples %v, want the newest 3: [9 7 5]", ts)
		}
		if gs[0].GetUnreadMessage().GetNotifTime() != 300 {
			t.Fatalf("notifTime %d, want the latest, 300", gs[0].GetUnreadMessage().GetNotifTime())
		}
		if gs[2].GetDirectMessage().GetTimestamp() != 40 || gs[3].GetDirectMessage().GetTimestamp() != 50 {
			t.Fatal("system pushes not oldest first")
		}
	})
	t.Run("offline messages of the newest conversations, kept whole", func(t *testing.T) {
		reps := []*meshpb.ClientReply{
			{Commands: enc(direct("a", 1), direct("a", 2), direct("b", 10))},
			{Commands: enc(direct("c", 5), direct("c", 6), direct("c", 7))},
		}
		out := mergeLogin(reps, 1, 2)
		var got []string
		for _, b := range out {
			g := new(lcpb.GenericCommand)
			proto.Unmarshal(b, g)
			got = append(got, g.GetDirectMessage().GetCid())
		}
		want := []string{"b", "c", "c", "c"} // b (newest 10), then c (7); a (2) is over the cap
		if len(got) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	})
}

// Unique conversations are placed by their member set, the same whoever
// creates them; others round-robin.
func TestRouterPlacement(t *testing.T) {
	e := newRouterEnv(t, 4, nil)
	uniq := func(from string, m ...string) *lcpb.ConvCommand {
		return &lcpb.ConvCommand{M: m, Unique: proto.Bool(true)}
	}
	for _, pair := range [][2]string{{"a", "b"}, {"x", "y"}, {"p", "q"}} {
		one := e.rt.place(testApp, pair[0], uniq(pair[0], pair[1]))
		two := e.rt.place(testApp, pair[1], uniq(pair[1], pair[0]))
		if one != two {
			t.Fatalf("unique %v: shard %d by one creator, %d by the other", pair, one, two)
		}
	}
	seen := map[int]bool{}
	for range 8 {
		seen[e.rt.place(testApp, "a", &lcpb.ConvCommand{M: []string{"b"}})] = true
	}
	if len(seen) != 4 {
		t.Fatalf("round-robin used shards %v of 4", seen)
	}
	// A unique conversation created earlier on another shard (under another
	// shard count) is found where it is.
	want := (e.rt.place(testApp, "n", uniq("n", "m")) + 1) % 4
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_start.Enum(),
		ConvMessage: &lcpb.ConvCommand{M: []string{"m"}, Unique: proto.Bool(true)}})
	rep, err := e.cores[want].HandleClient(context.Background(), &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND,
		AppId: testApp, PeerId: "n", EdgeId: "e1", ConnId: 9, ProtocolVersion: 3, Command: b})
	if err != nil || len(rep.GetCommands()) != 1 {
		t.Fatalf("start on shard %d: %v, %v", want, rep, err)
	}
	if got := e.rt.place(testApp, "n", uniq("n", "m")); got != want {
		t.Fatalf("existing unique conversation on shard %d: placed on %d", want, got)
	}
}

// A forward to a shard leader that dies without a close (kill -9: its
// connection takes the request and never answers) is abandoned once the
// router's replica learns the new leader: a retry-safe request goes to the
// new leader, another fails at once as outcome unknown, neither waits out
// its context. Before, the lab's leader kill failed sends for 5 s.
func TestRouterForwardMovesToNewLeader(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	forward := func(ctx context.Context, addr string, req *meshpb.ShardRequest) (*meshpb.ClientReply, error) {
		mu.Lock()
		calls = append(calls, addr)
		mu.Unlock()
		if addr == "dead" {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return &meshpb.ClientReply{ErrorReason: "served by " + addr}, nil
	}
	e := newRouterEnv(t, 2, forward)
	e.reps[1].follower.Store(true)
	cid, _ := catalog.NewConvID(1, 1)
	send := func(dt string) *meshpb.ClientRequest {
		b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("hi"), Dt: proto.String(dt)}})
		return &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: testApp, PeerId: "p", Command: b}
	}
	add, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_add.Enum(),
		ConvMessage: &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"q"}}})
	for _, tc := range []struct {
		name string
		req  *meshpb.ClientRequest
		safe bool
	}{
		{"send with dt", send("dt-1"), true},
		{"conv add", &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: testApp, PeerId: "p", Command: add}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			calls = nil
			mu.Unlock()
			e.setHint(1, "dead")
			moved := e.rt.Stats().Moved.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			elected := time.AfterFunc(400*time.Millisecond, func() { e.setHint(1, "new") })
			defer elected.Stop()
			rep, err := e.rt.HandleClient(ctx, tc.req)
			if ctx.Err() != nil {
				t.Fatalf("the request waited out its context: %v", err)
			}
			mu.Lock()
			got := append([]string(nil), calls...)
			mu.Unlock()
			if e.rt.Stats().Moved.Load() != moved+1 {
				t.Errorf("moved counted %d, want %d", e.rt.Stats().Moved.Load(), moved+1)
			}
			if tc.safe {
				if err != nil || rep.GetErrorReason() != "served by new" {
					t.Fatalf("got %v, %v; want the new leader's reply", rep, err)
				}
				if len(got) != 2 || got[0] != "dead" || got[1] != "new" {
					t.Fatalf("forwarded to %v, want [dead new]", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "outcome unknown") {
				t.Fatalf("got %v, %v; want an outcome-unknown error", rep, err)
			}
			if len(got) != 1 {
				t.Fatalf("forwarded to %v, want only the dead leader (not safe to repeat)", got)
			}
		})
	}
}
