package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// metric reads one unlabelled series from a /metrics URL; -1 if absent.
func coreMetric(url, name string) int64 {
	resp, err := (&http.Client{Timeout: time.Second}).Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, _ := strconv.ParseFloat(v, 64) // client_golang writes 1e6 and up as 1e+06
			return int64(n)
		}
	}
	return -1
}

// TestLeaderKilledBeforeFanout: the shard leader commits a message and is
// killed -9 before it acks or fans it out (a test hook holds it there).
// The new leader pushes it from the fan-out tail to the recipient, who
// stayed online, exactly once; the sender's send, retried by the edge on
// the new leader, is acked with the same message id.
func TestLeaderKilledBeforeFanout(t *testing.T) {
	const marker = "HALT-BEFORE-FANOUT"
	c := startProcCluster(t, procOptions{Edges: 1, CoreArgs: []string{"--test-halt-before-fanout", marker}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	url := c.edges[0].URL
	alice := dial(t, ctx, url, "failover-app", "alice")
	bob := dial(t, ctx, url, "failover-app", "bob")
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "fanout", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	// copies counts bob's live copies of each message id until want
	// arrived.
	copies := map[string]int{}
	recv := func(want string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for copies[want] == 0 {
			select {
			case ev := <-bob.Events():
				if m, ok := ev.(client.Message); ok && m.ConvID == cid {
					copies[m.ID]++
				}
			case <-deadline:
				t.Fatalf("bob did not receive %s within 20 s; got %v", want, copies)
			}
		}
	}
	before, err := alice.Send(ctx, cid, client.TextMessage("before"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	recv(before.ID)
	leader := c.waitLeader()
	// The leader names a message done in the shard's fan-out tail on a
	// later proposal (or its 200-ms flush); until then a new leader would
	// push it again (the edge drops that copy for bob). Let "before" settle
	// so that the held message is the one a new leader has to replay.
	waitFor(t, 10*time.Second, func() bool {
		return coreMetric(c.metrics[leader]+"/metrics", "relaymesh_core_fanout_unsettled") == 0
	})

	sent := make(chan error, 1)
	var held client.Sent
	go func() {
		var err error
		held, err = alice.Send(ctx, cid, client.TextMessage(marker), client.SendOptions{})
		sent <- err
	}()
	waitFor(t, 30*time.Second, func() bool {
		return coreMetric(c.metrics[leader]+"/metrics", "relaymesh_core_fanout_halted_total") == 1
	})
	c.cores[leader].Kill9()
	t.Logf("killed core-%d holding a committed message before its fan-out", leader+1)

	if err := <-sent; err != nil {
		t.Fatalf("the held send, retried on the new leader: %v", err)
	}
	recv(held.ID)
	// Positive control for "exactly once": a later message arrives after
	// any second copy would have.
	after, err := alice.Send(ctx, cid, client.TextMessage("after"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	recv(after.ID)
	for _, id := range []string{before.ID, held.ID, after.ID} {
		if copies[id] != 1 {
			t.Errorf("bob got %s %d times, want once", id, copies[id])
		}
	}
	hist := historyAll(t, ctx, bob, cid)
	var ids []string
	for _, m := range hist {
		ids = append(ids, m.ID)
	}
	if want := []string{before.ID, held.ID, after.ID}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("history %v, want %v", ids, want)
	}
	newLeader := c.waitLeader()
	if n := coreMetric(c.metrics[newLeader]+"/metrics", "relaymesh_core_fanout_replayed_total"); n != 1 {
		t.Errorf("the new leader replayed %d messages, want 1", n)
	}
}
