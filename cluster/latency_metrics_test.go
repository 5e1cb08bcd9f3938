package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/mesh"
)

// TestLatencyMetricsEdgeCore: a core and an edge as production runs
// them (each its own /metrics: the core's admin listener, the edge's),
// two clients exchanging messages through them. The edge times the
// copies it wrote (relaymesh_delivery_seconds), the core the shard's
// proposals (relaymesh_raft_apply_seconds) and its state-machine
// batches; each side exports its mesh RTT to the other. When the edge
// shuts down, the core's RTT series for it ends.
func TestLatencyMetricsEdgeCore(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-lat", "edge-lat")
	if err != nil {
		t.Fatal(err)
	}
	reg := apps.NewDev()
	c, err := StartCore(CoreConfig{NodeID: "core-lat", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core"),
		Identity: ids["core-lat"], Apps: reg, MetricsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); !(c.Ready() && c.CatalogReady()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("core not ready: %v", c.NotReady())
		}
	}
	e, err := StartEdge(EdgeConfig{EdgeID: "edge-lat", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0", Identity: ids["edge-lat"],
		Cores: []string{c.Node.Addr()}, TokenKey: make([]byte, 32), Apps: reg, AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	edgeClosed := false
	defer func() {
		if !edgeClosed {
			e.Close()
		}
	}()
	scrape := func(url string) string {
		t.Helper()
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	coreURL, edgeURL := c.MetricsURL, e.AdminURL
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(edgeURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge is not ready: %v", e.link.NotReady())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(id string) *client.Client {
		cl, err := client.Dial(ctx, e.URL, client.Options{AppID: "lat-app", ClientID: id})
		if err != nil {
			t.Fatalf("dial %s: %v", id, err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	alice, bob := dial("alice"), dial("bob")
	cid, err := alice.CreateConversation(ctx, []string{"alice", "bob"}, "lat", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	for i := range n {
		if _, err := alice.Send(ctx, cid, fmt.Sprint("hi ", i), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for got := 0; got < n; {
		select {
		case ev := <-bob.Events():
			if _, ok := ev.(client.Message); ok {
				got++
			}
		case <-ctx.Done():
			ed, co := scrape(edgeURL), scrape(coreURL)
			for _, name := range []string{"relaymesh_edge_deliveries_total", "relaymesh_edge_delivery_misses_total", "relaymesh_core_deliveries_total", "relaymesh_core_deliveries_dropped_total", "relaymesh_core_delivery_send_errors_total"} {
				t.Logf("%s: edge %v core %v", name, sumSeries(ed, name), sumSeries(co, name))
			}
			t.Fatalf("bob got %d of %d messages", got, n)
		}
	}

	poll := func(what string, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := cond()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	atLeast := func(url, name string, min float64) func() error {
		return func() error {
			if v := sumSeries(scrape(url), name); v < min {
				return fmt.Errorf("%s: %v, want at least %v", name, v, min)
			}
			return nil
		}
	}
	poll("the edge times bob's copies", atLeast(edgeURL, "relaymesh_delivery_seconds_count", n))
	poll("the core times the sends' proposals", atLeast(coreURL, `relaymesh_raft_apply_seconds_count{shard="0"}`, n))
	poll("the core times its batches", atLeast(coreURL, `relaymesh_raft_fsm_batch_seconds_count{shard="0"}`, 1))
	rtt := func(url, node, peer string, want bool) func() error {
		return func() error {
			text := scrape(url)
			has := false
			for _, l := range strings.Split(text, "\n") {
				if strings.HasPrefix(l, "relaymesh_mesh_rtt_seconds{") && strings.Contains(l, fmt.Sprintf(`node=%q,peer=%q`, node, peer)) {
					has = true
				}
			}
			if has != want {
				return fmt.Errorf("a relaymesh_mesh_rtt_seconds series %s → %s: %v, want %v", node, peer, has, want)
			}
			return nil
		}
	}
	poll("the edge's RTT to the core", rtt(edgeURL, "edge-lat", "core-lat", true))
	poll("the core's RTT to the edge", rtt(coreURL, "core-lat", "edge-lat", true))

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	edgeClosed = true
	poll("the core's RTT series for the closed edge to end", rtt(coreURL, "core-lat", "edge-lat", false))
}

// sumSeries adds up the samples in a scrape whose name (and, when
// prefix has a '{', labels) start as prefix.
func sumSeries(text, prefix string) float64 {
	name, _, labelled := strings.Cut(prefix, "{")
	var sum float64
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		if rest := l[len(name):]; !labelled && rest != "" && rest[0] != '{' && rest[0] != ' ' {
			continue // a longer name
		}
		f := strings.Fields(l)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum
}
