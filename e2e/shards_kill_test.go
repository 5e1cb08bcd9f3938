package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/client"
)

// TestLiveAcrossLeaderKill: a receiver that stays online gets live every
// message acked while the core leading every shard (the router) is
// killed.
func TestLiveAcrossLeaderKill(t *testing.T) {
	r := startRegionShards(t, 2, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const app = "livekill"
	alice := dial(t, ctx, r.edge.URL, app, "alice")
	bob := dial(t, ctx, r.edge.URL, app, "bob")
	var cids []string
	for i := range 4 {
		cid, err := alice.CreateConversation(ctx, []string{"bob"}, fmt.Sprint("c", i), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		cids = append(cids, cid)
	}
	// Move every shard's leadership to the router's core.
	router := r.waitLeader()
	for n := 1; n < 2; n++ {
		waitFor(t, 20*time.Second, func() bool {
			for i, c := range r.cores {
				if c.Replicas[n].IsLeader() {
					if i == router {
						return true
					}
					c.Replicas[n].Raft().LeadershipTransferToServer(raft.ServerID(r.cfgs[router].NodeID), raft.ServerAddress(r.cores[router].Node.Addr()))
				}
			}
			return false
		})
	}
	var mu sync.Mutex
	acked := map[string]bool{}
	got := map[string]bool{}
	go func() {
		for ev := range bob.Events() {
			if m, ok := ev.(client.Message); ok && !m.Offline && !m.Resynced {
				mu.Lock()
				got[m.ID] = true
				mu.Unlock()
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := alice.Send(sctx, cids[k%len(cids)], client.TextMessage(fmt.Sprint("m", k)), client.SendOptions{})
			scancel()
			if err == nil {
				mu.Lock()
				acked[s.ID] = true
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	time.Sleep(2 * time.Second)
	r.cores[router].Close()
	r.cores[router] = nil
	time.Sleep(6 * time.Second)
	close(stop)
	wg.Wait()
	time.Sleep(3 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for id := range acked {
		if !got[id] {
			missing++
		}
	}
	t.Logf("acked %d, live %d, missing live %d", len(acked), len(got), missing)
	if missing > 0 {
		t.Errorf("%d acked messages never pushed live to bob, online throughout", missing)
	}
}
