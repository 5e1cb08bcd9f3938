package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/mesh"
)

// region is three cores (one 3-voter shard) and one edge, in this process,
// talking QUIC on loopback.
type region struct {
	t     testing.TB
	cores []*cluster.Core
	cfgs  []cluster.CoreConfig
	edge  *cluster.Edge
}

func startRegion(t *testing.T) *region { return startRegionShards(t, 1, 0) }

// startRegionShards is startRegion with shards raft groups on the three
// cores, the edge holding each presence frame presenceDelay (a test hook).
func startRegionShards(t testing.TB, shards int, presenceDelay time.Duration) *region {
	return startRegionWith(t, shards, presenceDelay, nil)
}

// startRegionWith is startRegionShards with each core's configuration
// adjusted by adjust (nil: as is).
func startRegionWith(t testing.TB, shards int, presenceDelay time.Duration, adjust func(*cluster.CoreConfig)) *region {
	t.Helper()
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "core-2", "core-3", "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	// Raft logs every failed heartbeat to the stopped leader; keep them out.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := apps.NewDev()
	r := &region{t: t}
	peers := map[string]string{}
	var addrs []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("core-%d", i)
		addr := freeUDPAddr(t)
		peers[name] = addr
		addrs = append(addrs, addr)
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("core-%d", i)
		cfg := cluster.CoreConfig{NodeID: name, MeshAddr: peers[name], DataDir: filepath.Join(dir, name),
			Identity: ids[name], Peers: peers, Apps: reg, Logger: log, Shards: shards}
		if adjust != nil {
			adjust(&cfg)
		}
		c, err := cluster.StartCore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r.cores = append(r.cores, c)
		r.cfgs = append(r.cfgs, cfg)
	}
	e, err := cluster.StartEdge(cluster.EdgeConfig{EdgeID: "edge-1", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0",
		Identity: ids["edge-1"], Cores: addrs, TokenKey: make([]byte, 32), Apps: reg, Logger: log,
		// The tests measure failover and routing, not LeanCloud's per-client rates.
		Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}, PresenceDelay: presenceDelay})
	if err != nil {
		t.Fatal(err)
	}
	r.edge = e
	t.Cleanup(func() {
		e.Close()
		for _, c := range r.cores {
			if c != nil {
				c.Close()
			}
		}
	})
	r.waitLeader()
	return r
}

func (r *region) waitLeader() int {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, c := range r.cores {
			if c != nil && c.Replica.IsLeader() {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatal("no leader")
	return -1
}

// TestLeaderKilledWhileSending: clients send through the edge while the
// shard leader is stopped. Every message that got an ack is in history
// afterwards exactly once, in timestamp order.
func TestLeaderKilledWhileSending(t *testing.T) {
	r := startRegion(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const senders = 4
	owner := dial(t, ctx, r.edge.URL, "ha-app", "owner")
	// watcher stays online throughout and must still get live pushes from
	// the new leader after the failover.
	watcher := dial(t, ctx, r.edge.URL, "ha-app", "watcher")
	members := []string{"watcher"}
	for s := range senders {
		members = append(members, fmt.Sprintf("s%d", s))
	}
	cid, err := owner.CreateConversation(ctx, members, "ha", nil, false)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	acked := map[string]client.Sent{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for s := range senders {
		c := dial(t, ctx, r.edge.URL, "ha-app", members[s+1])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
				sent, err := c.Send(sctx, cid, client.TextMessage(fmt.Sprintf("%s-%d", members[s+1], k)), client.SendOptions{})
				scancel()
				if err == nil {
					mu.Lock()
					acked[sent.ID] = sent
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, 30*time.Second, func() bool { return count() >= 100 })
	leader := r.waitLeader()
	before := count()
	r.cores[leader].Close()
	r.cores[leader] = nil
	waitFor(t, 30*time.Second, func() bool { return count() >= before+100 })
	close(stop)
	wg.Wait()

	final, err := owner.Send(ctx, cid, client.TextMessage("after the failover"), client.SendOptions{})
	if err != nil {
		t.Fatalf("send after failover: %v", err)
	}
	acked[final.ID] = final
	live := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-watcher.Events():
			if m, ok := ev.(client.Message); ok && m.ID == final.ID {
				got = true
			}
		case <-live:
			t.Fatalf("watcher, online through the failover, did not get a live push from the new leader")
		}
	}

	hist := historyAll(t, ctx, owner, cid)
	seen := map[string]bool{}
	for k, m := range hist {
		if seen[m.ID] {
			t.Fatalf("message %s appears twice in history", m.ID)
		}
		seen[m.ID] = true
		if k > 0 && m.Timestamp <= hist[k-1].Timestamp {
			t.Fatalf("history not strictly ascending at %d: %d after %d", k, m.Timestamp, hist[k-1].Timestamp)
		}
	}
	var missing []string
	for id := range acked {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("%d acked messages missing from history after failover (of %d acked): %v", len(missing), len(acked), missing)
	}
	t.Logf("acked %d messages across a leader failover; history has %d, none lost or duplicated", len(acked), len(hist))
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChatroomSurvivesLeaderChange: chatroom membership travels with
// presence, so after the shard leader is stopped the new leader still fans
// out a member's message to the other members, who never joined again.
func TestChatroomSurvivesLeaderChange(t *testing.T) {
	r := startRegion(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice := dial(t, ctx, r.edge.URL, "room-app", "alice")
	bob := dial(t, ctx, r.edge.URL, "room-app", "bob")
	cid, err := alice.CreateChatRoom(ctx, "lobby", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Join(ctx, cid); err != nil {
		t.Fatal(err)
	}
	// receive waits for a live push of text to c.
	receive := func(c *client.Client, text string) {
		t.Helper()
		live := time.After(10 * time.Second)
		for {
			select {
			case ev := <-c.Events():
				if m, ok := ev.(client.Message); ok && m.ConvID == cid && m.Text == client.TextMessage(text) {
					return
				}
			case <-live:
				t.Fatalf("no live chatroom push of %q", text)
			}
		}
	}
	if _, err := alice.Send(ctx, cid, client.TextMessage("before"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	receive(bob, "before")
	// Wait until every core mirrors both members from the presence frames.
	waitFor(t, 10*time.Second, func() bool {
		for _, c := range r.cores {
			if c.Service.ChatroomOnline("room-app", cid) != 2 {
				return false
			}
		}
		return true
	})

	leader := r.waitLeader()
	r.cores[leader].Close()
	r.cores[leader] = nil
	r.waitLeader()

	// The first sends may still meet the election; retry until one is acked.
	var sendErr error
	for range 20 {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		_, sendErr = bob.Send(sctx, cid, client.TextMessage("after"), client.SendOptions{})
		scancel()
		if sendErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sendErr != nil {
		t.Fatalf("send after failover: %v", sendErr)
	}
	receive(alice, "after")
}
