package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestShardsDev drives a `relaymesh dev --shards 4` process (one region,
// four raft groups in one core) with Go SDK clients and the REST API:
// conversations are spread over the shards and every path that spans them
// answers as one shard would.
func TestShardsDev(t *testing.T) {
	const app = "shards-app-0001"
	const shards = 4
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addr := freeAddr(t)
	unlimited := []string{"--shards", fmt.Sprint(shards), "--ops-per-minute", "-1", "--sends-per-minute", "-1", "--logs-per-minute", "-1"}
	p := startDev(t, data, addr, unlimited...)
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: "anything,master"}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	alice := dial(t, ctx, p.URL, app, "alice")
	bob := dial(t, ctx, p.URL, app, "bob")

	// Twelve groups: placement spreads them over every shard, and each id
	// names its shard.
	const groups = 12
	var cids []string
	perShard := map[uint16]int{}
	for i := range groups {
		cid, err := alice.CreateConversation(ctx, []string{"bob", "carol"}, fmt.Sprintf("g%02d", i), nil, false)
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		w, ok := catalog.ParseConvID(cid)
		if !ok || w.Region != 1 || int(w.Shard) >= shards {
			t.Fatalf("conversation id %q: parsed %v, %v; want region 1, shard < %d", cid, w, ok, shards)
		}
		perShard[w.Shard]++
		cids = append(cids, cid)
	}
	if len(perShard) != shards {
		t.Fatalf("conversations per shard: %v; want all %d shards used", perShard, shards)
	}

	// A message in each reaches bob, online, whatever shard it lives in.
	for i, cid := range cids {
		text := fmt.Sprintf("hello %d", i)
		if _, err := alice.Send(ctx, cid, client.TextMessage(text), client.SendOptions{}); err != nil {
			t.Fatalf("send in %s: %v", cid, err)
		}
		m := nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == cid })
		if !strings.Contains(m.Text, text) {
			t.Fatalf("bob got %q in %s, want %q", m.Text, cid, text)
		}
	}
	// Two more in the first three conversations: unread counts differ.
	for _, cid := range cids[:3] {
		for range 2 {
			if _, err := alice.Send(ctx, cid, client.TextMessage("more"), client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("login sums unread over every shard", func(t *testing.T) {
		carol, err := client.Dial(ctx, p.URL, client.Options{AppID: app, ClientID: "carol"})
		if err != nil {
			t.Fatal(err)
		}
		defer carol.Close()
		u := nextEvent(t, carol, func(client.Unread) bool { return true })
		got := map[string]int{}
		for _, c := range u.Convs {
			got[c.ConvID] = c.Count
		}
		for i, cid := range cids {
			want := 1
			if i < 3 {
				want = 3
			}
			if got[cid] != want {
				t.Errorf("unread of %s (shard %d): got %d, want %d", cid, catalog.HomeOf(cid).Shard, got[cid], want)
			}
		}
		if len(got) != groups {
			t.Errorf("unread conversations: got %d, want %d", len(got), groups)
		}
		// Newest first, across shards.
		for i := 1; i < len(u.Convs); i++ {
			if u.Convs[i-1].LastTS < u.Convs[i].LastTS {
				t.Fatalf("unread not newest first at %d: %d < %d", i, u.Convs[i-1].LastTS, u.Convs[i].LastTS)
			}
		}
		// The REST count agrees.
		var n struct {
			Count int `json:"count"`
		}
		api.must("GET", "/1.2/rtm/clients/carol/unread-count", nil, &n)
		if n.Count != groups+2*3 {
			t.Errorf("REST unread-count: got %d, want %d", n.Count, groups+6)
		}
		// /metrics says how the router spread the work.
		if got := metric(t, p, "relaymesh_router_shards"); got != shards {
			t.Errorf("relaymesh_router_shards = %d, want %d", got, shards)
		}
		if got := metric(t, p, "relaymesh_router_shards_led"); got != shards {
			t.Errorf("relaymesh_router_shards_led = %d, want %d (one core leads them all in dev)", got, shards)
		}
		if got := metric(t, p, "relaymesh_router_split_total"); got < 2 { // logins and the REST count
			t.Errorf("relaymesh_router_split_total = %d, want at least 2", got)
		}
	})

	t.Run("conv/query merges every shard at every page size", func(t *testing.T) {
		where := map[string]any{"m": "alice"}
		all, err := alice.QueryConversations(ctx, where, "name", 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, row := range all {
			names = append(names, fmt.Sprint(row["name"]))
		}
		want := make([]string, groups)
		for i := range want {
			want[i] = fmt.Sprintf("g%02d", i)
		}
		if !slices.Equal(names, want) {
			t.Fatalf("query sorted by name: got %v, want %v", names, want)
		}
		for size := 1; size <= groups+1; size++ {
			var paged []string
			for skip := 0; skip < groups+size; skip += size {
				rows, err := alice.QueryConversations(ctx, where, "-name", size, skip)
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) > size {
					t.Fatalf("page of %d: %d rows", size, len(rows))
				}
				for _, row := range rows {
					paged = append(paged, fmt.Sprint(row["name"]))
				}
			}
			rev := slices.Clone(want)
			slices.Reverse(rev)
			if !slices.Equal(paged, rev) {
				t.Fatalf("pages of %d, -name: got %v, want %v", size, paged, rev)
			}
		}
		// An objectId query finds a conversation of any shard.
		for _, cid := range cids {
			rows, err := bob.QueryConversations(ctx, map[string]any{"objectId": cid}, "", 10, 0)
			if err != nil || len(rows) != 1 || rows[0]["objectId"] != cid {
				t.Fatalf("query objectId %s: %v, %v", cid, rows, err)
			}
		}
	})

	t.Run("unique conversations meet on one shard", func(t *testing.T) {
		pairs := [][2]*client.Client{{alice, bob}}
		for i := range 8 {
			x := dial(t, ctx, p.URL, app, fmt.Sprintf("u%d-x", i))
			y := dial(t, ctx, p.URL, app, fmt.Sprintf("u%d-y", i))
			pairs = append(pairs, [2]*client.Client{x, y})
		}
		homes := map[uint16]bool{}
		for _, pr := range pairs {
			a, err := pr[0].CreateConversation(ctx, []string{pr[1].ID()}, "dm", nil, true)
			if err != nil {
				t.Fatal(err)
			}
			b, err := pr[1].CreateConversation(ctx, []string{pr[0].ID()}, "dm", nil, true)
			if err != nil {
				t.Fatal(err)
			}
			if a != b {
				t.Fatalf("unique %s/%s: %s and %s", pr[0].ID(), pr[1].ID(), a, b)
			}
			homes[catalog.HomeOf(a).Shard] = true
		}
		if len(homes) < 2 {
			t.Errorf("9 unique conversations all on shards %v: placement by member set should spread them", homes)
		}
	})

	t.Run("raw: ids of shards and regions that do not exist", func(t *testing.T) {
		noShard, _ := catalog.NewConvID(1, 9)
		otherRegion, _ := catalog.NewConvID(2, 0)
		for _, cid := range []string{noShard, otherRegion} {
			for _, cmd := range []*lcpb.GenericCommand{
				{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("x")}},
				{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_add.Enum(), ConvMessage: &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"bob"}}},
				{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String(cid)}},
			} {
				_, err := alice.Request(ctx, cmd)
				var ce *client.Error
				if !errors.As(err, &ce) || ce.Code != lcpb.ErrConversationNotFound {
					t.Errorf("%v/%v to %s: got %v, want error %d", cmd.GetCmd(), cmd.GetOp(), cid, err, lcpb.ErrConversationNotFound)
				}
			}
		}
		// A read receipt spanning a bogus id and two conversations of two
		// shards marks both (the router splits it by shard).
		if catalog.HomeOf(cids[0]) == catalog.HomeOf(cids[1]) {
			t.Fatalf("%s and %s on one shard: placement is not round-robin", cids[0], cids[1])
		}
		var before, after struct {
			Count int `json:"count"`
		}
		api.must("GET", "/1.2/rtm/clients/dave/unread-count", nil, &before)
		for _, cid := range cids[:2] {
			if _, err := alice.AddMembers(ctx, cid, []string{"dave"}); err != nil {
				t.Fatal(err)
			}
			if _, err := alice.Send(ctx, cid, client.TextMessage("for dave"), client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		api.must("GET", "/1.2/rtm/clients/dave/unread-count", nil, &before)
		if before.Count != 2 { // what was sent after dave joined
			t.Fatalf("dave's unread before reading: %d, want 2", before.Count)
		}
		r, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
		if err != nil {
			t.Fatal(err)
		}
		r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
			AppId: proto.String(app), PeerId: proto.String("dave"), SessionMessage: &lcpb.SessionCommand{Ua: proto.String("raw/1")}})
		for got := r.next(ctx); got.GetOp() != lcpb.OpType_opened; got = r.next(ctx) {
			if got.GetCmd() == lcpb.CommandType_error || got.GetCmd() == lcpb.CommandType_session {
				t.Fatalf("dave's login: %v", got)
			}
		}
		r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum(), PeerId: proto.String("dave"), ReadMessage: &lcpb.ReadCommand{
			Convs: []*lcpb.ReadTuple{{Cid: proto.String(noShard)}, {Cid: proto.String(cids[0])}, {Cid: proto.String(cids[1])}}}})
		deadline := time.Now().Add(10 * time.Second)
		for {
			api.must("GET", "/1.2/rtm/clients/dave/unread-count", nil, &after)
			if after.Count == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dave's unread after reading both: %d, want 0", after.Count)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("restart keeps every shard; fewer shards are refused", func(t *testing.T) {
		p.Stop()
		out, err := exec.Command(relaymeshBin(t), "dev", "--data", data, "--addr", freeAddr(t), "--shards", "2").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "never removed") {
			t.Fatalf("dev --shards 2 on 4-shard data: err %v, output %q; want a refusal", err, out)
		}
		p2 := startDev(t, data, addr, unlimited...)
		c := dial(t, ctx, p2.URL, app, "carol")
		for i, cid := range cids {
			h, err := c.History(ctx, cid, client.HistoryQuery{Limit: 10})
			if err != nil {
				t.Fatalf("history of %s: %v", cid, err)
			}
			want := 1
			if i < 3 {
				want = 3
			}
			if i < 2 {
				want++ // "for dave"
			}
			if len(h) != want {
				t.Fatalf("history of %s (shard %d) after restart: %d messages, want %d", cid, catalog.HomeOf(cid).Shard, len(h), want)
			}
		}
	})

	t.Run("the region grows to six shards: old conversations stay, new ones use the new shards", func(t *testing.T) {
		// The previous subtest's process stopped with it (its cleanup).
		grown := append([]string{}, unlimited...)
		grown[1] = "6"
		p3 := startDev(t, data, addr, grown...)
		c := dial(t, ctx, p3.URL, app, "alice")
		if _, err := c.Send(ctx, cids[0], client.TextMessage("after growing"), client.SendOptions{}); err != nil {
			t.Fatalf("send into an old conversation: %v", err)
		}
		seen := map[uint16]bool{}
		for i := range 12 {
			cid, err := c.CreateConversation(ctx, []string{"bob"}, fmt.Sprintf("new%d", i), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			seen[catalog.HomeOf(cid).Shard] = true
		}
		if !seen[4] || !seen[5] {
			t.Fatalf("new conversations on shards %v; want the new shards 4 and 5 used", seen)
		}
		// alice's: the 12 groups, her unique conversation with bob, the 12 new.
		rows, err := c.QueryConversations(ctx, map[string]any{"m": "alice"}, "name", 100, 0)
		if err != nil || len(rows) != groups+1+12 {
			t.Fatalf("query after growing: %d rows, %v; want %d", len(rows), err, groups+1+12)
		}
	})
}

// TestShardsRegion runs three cores hosting three shards each, with the
// leaders of shards 1 and 2 moved to the two cores that do not lead shard
// 0, so that the router (shard 0's leader) reaches them over the mesh. Go
// SDK clients chat in conversations of every shard; then the core leading
// shard 1 is stopped while clients send there, and every acked message is
// in history once.
func TestShardsRegion(t *testing.T) {
	const shards = 3
	// The edge holds its presence frames 500 ms: a session is known at
	// once only where the router told it (core/router.go).
	r := startRegionShards(t, shards, 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	router := r.waitLeader()
	var others []int
	for i := range r.cores {
		if i != router {
			others = append(others, i)
		}
	}
	// Shard n's leadership to others[n-1].
	for n := 1; n < shards; n++ {
		to := r.cores[others[n-1]]
		waitFor(t, 20*time.Second, func() bool {
			for _, c := range r.cores {
				if c.Replicas[n].IsLeader() {
					if c == to {
						return true
					}
					c.Replicas[n].Raft().LeadershipTransferToServer(raft.ServerID(r.cfgs[others[n-1]].NodeID), raft.ServerAddress(to.Node.Addr()))
				}
			}
			return false
		})
	}
	if !r.cores[router].Replicas[0].IsLeader() {
		t.Fatal("the router lost shard 0 while shards moved")
	}

	const app = "shards-region-app"
	alice := dial(t, ctx, r.edge.URL, app, "alice")
	bob := dial(t, ctx, r.edge.URL, app, "bob")
	var cids []string
	for i := range 6 {
		cid, err := alice.CreateConversation(ctx, []string{"bob", "carol"}, fmt.Sprintf("g%d", i), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		cids = append(cids, cid)
	}
	homes := map[uint16]string{}
	for i, cid := range cids {
		homes[catalog.HomeOf(cid).Shard] = cid
		if _, err := alice.Send(ctx, cid, client.TextMessage(fmt.Sprintf("m%d", i)), client.SendOptions{}); err != nil {
			t.Fatalf("send to %s: %v", cid, err)
		}
		nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == cid })
	}
	if len(homes) != shards {
		t.Fatalf("conversations on shards %v, want all %d", homes, shards)
	}
	if got := r.cores[router].Router.Stats().Forwarded.Load(); got == 0 {
		t.Fatal("no request was forwarded to another core's shard leader")
	}
	carol := dial(t, ctx, r.edge.URL, app, "carol")
	u := nextEvent(t, carol, func(client.Unread) bool { return true })
	if len(u.Convs) != len(cids) {
		t.Fatalf("carol's login: unread in %d conversations, want %d (every shard, two of them on other cores)", len(u.Convs), len(cids))
	}
	rows, err := bob.QueryConversations(ctx, map[string]any{"m": "bob"}, "name", 100, 0)
	if err != nil || len(rows) != len(cids) {
		t.Fatalf("query over three cores: %d rows, %v; want %d", len(rows), err, len(cids))
	}
	// The catalog (three voters, one per core) vouches for every shard
	// once their leaders, on other cores, sent their members: a client
	// without conversations is asked of the system shard alone.
	rt := r.cores[router].Router
	waitFor(t, 20*time.Second, func() bool { return rt.IndexVouches(1) && rt.IndexVouches(2) })
	skipped := rt.Stats().LoginSkipped.Load()
	nobody := dial(t, ctx, r.edge.URL, app, "nobody")
	nextEvent(t, nobody, func(client.Unread) bool { return true })
	nobody.Close()
	if got := rt.Stats().LoginSkipped.Load() - skipped; got != shards-1 {
		t.Fatalf("a login without conversations skipped %d shards, want %d", got, shards-1)
	}

	// A client that just logged in gets, live, a message sent the moment
	// its login returns into conversations whose shard another core leads
	// (the router tells the other cores of the session first).
	for n := 1; n < shards; n++ {
		id := fmt.Sprintf("fresh-%d", n)
		cid, err := alice.CreateConversation(ctx, []string{id}, "fresh", nil, false)
		for err == nil && int(catalog.HomeOf(cid).Shard) != n {
			cid, err = alice.CreateConversation(ctx, []string{id}, "fresh", nil, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		for k := range 5 {
			c := dial(t, ctx, r.edge.URL, app, id)
			sent, err := alice.Send(ctx, cid, client.TextMessage(fmt.Sprintf("at once %d", k)), client.SendOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m := nextEvent(t, c, func(m client.Message) bool { return m.ConvID == cid && !m.Offline }); m.ID != sent.ID {
				t.Fatalf("%s (shard %d, led by another core) got %s live, want %s", id, n, m.ID, sent.ID)
			}
			c.Close()
		}
	}

	// Shard 2's leadership moves from core to core every 300 ms while
	// clients send into its conversation: every acked message is in
	// history once.
	{
		cid := homes[2]
		var mu sync.Mutex
		acked := map[string]bool{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range []*client.Client{alice, bob} {
			wg.Go(func() {
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
					sent, err := c.Send(sctx, cid, client.TextMessage(fmt.Sprintf("move-%s-%d", c.ID(), k)), client.SendOptions{})
					scancel()
					if err == nil {
						mu.Lock()
						acked[sent.ID] = true
						mu.Unlock()
					}
				}
			})
		}
		moves := 0
		for range 10 {
			time.Sleep(300 * time.Millisecond)
			for _, c := range r.cores {
				if c.Replicas[2].IsLeader() {
					if c.Replicas[2].Raft().LeadershipTransfer().Error() == nil {
						moves++
					}
					break
				}
			}
		}
		close(stop)
		wg.Wait()
		if moves < 5 {
			t.Fatalf("only %d of 10 leadership transfers of shard 2 went through", moves)
		}
		seen := map[string]bool{}
		for _, m := range historyAll(t, ctx, alice, cid) {
			if seen[m.ID] {
				t.Fatalf("message %s twice in history", m.ID)
			}
			seen[m.ID] = true
		}
		for id := range acked {
			if !seen[id] {
				t.Fatalf("acked message %s missing after %d leadership moves (%d acked)", id, moves, len(acked))
			}
		}
		t.Logf("%d messages acked in shard 2 while its leadership moved %d times; none lost or doubled", len(acked), moves)
	}

	// Stop the core leading shard 1 while clients send in its conversation.
	cid := homes[1]
	victim := others[0]
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range []*client.Client{alice, bob} {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
				sent, err := c.Send(sctx, cid, client.TextMessage(fmt.Sprintf("%s-%d", c.ID(), k)), client.SendOptions{})
				scancel()
				if err == nil {
					mu.Lock()
					acked[sent.ID] = true
					mu.Unlock()
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, 30*time.Second, func() bool { return count() >= 50 })
	before := count()
	r.cores[victim].Close()
	r.cores[victim] = nil
	waitFor(t, 30*time.Second, func() bool { return count() >= before+50 })
	close(stop)
	wg.Wait()
	seen := map[string]bool{}
	for _, m := range historyAll(t, ctx, alice, cid) {
		if seen[m.ID] {
			t.Fatalf("message %s twice in history", m.ID)
		}
		seen[m.ID] = true
	}
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acked message %s missing after shard 1's leader stopped (%d acked)", id, len(acked))
		}
	}
	t.Logf("%d acked in shard 1 across its leader's stop; forwarded %d requests", len(acked), r.cores[router].Router.Stats().Forwarded.Load())
}
