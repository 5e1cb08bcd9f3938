package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/edge"
)

// The catalog's raft group as cluster/ runs it (docs/MESH.md "Catalog",
// "Logins"): the member index that narrows a login's fan-in, its fallback
// when it cannot be trusted, and the unique index across regions.

// startCatalogDev starts a dev region of shards shards in this process on
// dir and addr, and waits until it serves and its catalog is in.
func startCatalogDev(t *testing.T, dir, addr string, shards int) *cluster.Dev {
	t.Helper()
	d, err := cluster.StartDev(cluster.DevConfig{DataDir: dir, Addr: addr, Shards: shards, NoWebTransport: true,
		Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool { return d.Core.Ready() && d.Core.CatalogReady() })
	return d
}

// loginCounters are the router's login series on an edge's /metrics.
type loginCounters struct{ parts, skipped, fallback float64 }

func readLoginCounters(t *testing.T, edgeAddr string) loginCounters {
	return loginCounters{
		parts:    edgeMetric(t, edgeAddr, "relaymesh_router_login_parts_total"),
		skipped:  edgeMetric(t, edgeAddr, "relaymesh_router_login_skipped_total"),
		fallback: edgeMetric(t, edgeAddr, "relaymesh_router_login_fallback_total"),
	}
}

func (a loginCounters) minus(b loginCounters) loginCounters {
	return loginCounters{a.parts - b.parts, a.skipped - b.skipped, a.fallback - b.fallback}
}

// unreadOf waits for c's unread push and returns its counts by conversation.
func unreadOf(t *testing.T, c *client.Client) map[string]int {
	t.Helper()
	u := nextEvent(t, c, func(client.Unread) bool { return true })
	m := map[string]int{}
	for _, uc := range u.Convs {
		m[uc.ConvID] = uc.Count
	}
	return m
}

// TestCatalogLoginFanIn: in a dev region of four shards, dave is a member
// of conversations on shards 0 and 2 only. Once the member index vouches
// for every shard, his login asks shard 2 alone of the three shards but
// the system shard (the router's counters on /metrics say so) and gets
// every unread count. The catalog survives a restart; wiped (its
// directory removed), it is rebuilt by the shards' leaders, and the
// logins in between ask every shard and miss nothing.
func TestCatalogLoginFanIn(t *testing.T) {
	const app = "catalog-fanin-app"
	const shards = 4
	dir := t.TempDir()
	addr := freeAddr(t)
	d := startCatalogDev(t, dir, addr, shards)
	defer func() { d.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	alice := dial(t, ctx, d.Edge.URL, app, "alice")
	// One conversation of dave on shard 0 and one on shard 2: alice creates
	// conversations with zed until placement lands on each, then adds dave.
	want := map[uint16]string{0: "", 2: ""}
	for tries := 0; want[0] == "" || want[2] == ""; tries++ {
		if tries > 40 {
			t.Fatalf("placement never reached shards 0 and 2: %v", want)
		}
		cid, err := alice.CreateConversation(ctx, []string{"zed"}, "g", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if s := catalog.HomeOf(cid).Shard; want[s] == "" && (s == 0 || s == 2) {
			if _, err := alice.AddMembers(ctx, cid, []string{"dave"}); err != nil {
				t.Fatal(err)
			}
			want[s] = cid
		}
	}
	sends := map[string]int{want[0]: 2, want[2]: 3}
	for cid, n := range sends {
		for i := range n {
			if _, err := alice.Send(ctx, cid, client.TextMessage(fmt.Sprintf("m%d", i)), client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	alice.Close() // its reconnects would be logins too
	// The shards' leaders send their changes to the catalog within
	// moments; the router then trusts the index for every shard (shard 0
	// too, which a login always asks, for the entry checked below).
	vouched := func() bool {
		for n := 0; n < shards; n++ {
			if !d.Core.Router.IndexVouches(n) {
				return false
			}
		}
		return true
	}
	waitFor(t, 20*time.Second, vouched)
	got, err := d.Core.Catalog.MemberShards(app, "dave")
	if err != nil || !slices.Equal(got, []catalog.ShardRef{{Region: 1, Shard: 0}, {Region: 1, Shard: 2}}) {
		t.Fatalf("dave in the member index: %v, %v; want shards 1/0 and 1/2", got, err)
	}

	login := func(name string, wantParts, wantSkipped, wantFallback float64) {
		t.Helper()
		before := readLoginCounters(t, addr)
		dave := dial(t, ctx, d.Edge.URL, app, "dave")
		unread := unreadOf(t, dave)
		dave.Close()
		delta := readLoginCounters(t, addr).minus(before)
		t.Logf("%s: login asked %v of the %d shards but the system shard (skipped %v, fallback %v); unread %v",
			name, delta.parts, shards-1, delta.skipped, delta.fallback, unread)
		for cid, n := range sends {
			if unread[cid] != n {
				t.Fatalf("%s: dave's unread in %s (shard %d): %d, want %d (all: %v)", name, cid, catalog.HomeOf(cid).Shard, unread[cid], n, unread)
			}
		}
		if wantParts >= 0 && (delta.parts != wantParts || delta.skipped != wantSkipped || delta.fallback != wantFallback) {
			t.Fatalf("%s: login parts %v, skipped %v, fallback %v; want %v, %v, %v", name,
				delta.parts, delta.skipped, delta.fallback, wantParts, wantSkipped, wantFallback)
		}
	}
	login("index vouches", 1, 2, 0)
	if ready, sets := edgeMetric(t, addr, "relaymesh_catalog_ready"), edgeMetric(t, addr, "relaymesh_core_member_sets_total"); ready != 1 || sets == 0 {
		t.Fatalf("/metrics: relaymesh_catalog_ready %v, relaymesh_core_member_sets_total %v; want 1 and some", ready, sets)
	}

	// Restart: the catalog is on disk at once.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = startCatalogDev(t, dir, addr, shards)
	if got, err := d.Core.Catalog.MemberShards(app, "dave"); err != nil || len(got) != 2 {
		t.Fatalf("after a restart, dave in the member index: %v, %v; want two shards", got, err)
	}
	waitFor(t, 20*time.Second, vouched)
	login("after a restart", 1, 2, 0)

	// Wiped: a new, empty catalog. Until the shards' leaders have sent
	// everything again, logins ask every shard the index does not vouch
	// for; afterwards only dave's.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "core-1", "catalog")); err != nil {
		t.Fatal(err)
	}
	d = startCatalogDev(t, dir, addr, shards)
	login("catalog wiped, at once", -1, 0, 0) // whatever the index holds yet: every unread
	waitFor(t, 20*time.Second, vouched)
	login("catalog wiped, rebuilt", 1, 2, 0)
}

// TestCatalogTwoRegions: two regions, one core each, one catalog voter
// each. Twenty concurrent starts of the same unique conversation, half in
// each region, yield one conversation. With region 2 stopped the catalog
// has no quorum: a membership change in region 1 cannot reach the index,
// and a login there asks every shard (fallback) and gets its unread. The
// restarted region's catalog replica holds the unique claim from disk,
// and once the index vouches again logins trust it again.
func TestCatalogTwoRegions(t *testing.T) {
	w := startTwoRegions(t)
	const app = "catalog-regions-app"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for i := range 2 {
		waitFor(t, 30*time.Second, w.cores[i].CatalogReady)
	}
	u1 := dial(t, ctx, w.edges[0].URL, app, "u1") // region 1
	u2 := dial(t, ctx, w.edges[1].URL, app, "u2") // region 2

	const each = 10
	ids := make([]string, 2*each)
	errs := make([]error, 2*each)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 * each {
		c, other := u1, "u2"
		if i%2 == 1 {
			c, other = u2, "u1"
		}
		wg.Go(func() {
			<-start
			ids[i], errs[i] = c.CreateConversation(ctx, []string{other}, "pair", nil, true)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
	}
	slices.Sort(ids)
	if one := slices.Compact(slices.Clone(ids)); len(one) != 1 {
		t.Fatalf("20 concurrent unique starts in two regions made %d conversations: %v", len(one), one)
	}
	pair := ids[0]
	var won, lost float64
	for _, c := range w.cores {
		won += float64(metricOf(t, c, "relaymesh_core_unique_won_total"))
		lost += float64(metricOf(t, c, "relaymesh_core_unique_lost_total"))
	}
	t.Logf("unique: one conversation %s (region %d); claims won %v, lost %v", pair, catalog.HomeOf(pair).Region, won, lost)
	if won != 1 {
		t.Fatalf("claims won: %v, want 1", won)
	}
	// The losers' conversations are gone: u1 is in one conversation with u2.
	rows, err := u1.QueryConversations(ctx, map[string]any{"m": map[string]any{"$all": []string{"u1", "u2"}}}, "", 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0]["objectId"] != pair {
		t.Fatalf("conversations of u1 and u2: %v, want %s alone", rows, pair)
	}
	// A later start, in either region, answers the same one.
	for _, c := range []*client.Client{u1, u2} {
		other := "u2"
		if c == u2 {
			other = "u1"
		}
		if cid, err := c.CreateConversation(ctx, []string{other}, "pair", nil, true); err != nil || cid != pair {
			t.Fatalf("a later unique start: %s, %v; want %s", cid, err, pair)
		}
	}

	// Region 2 stops: the catalog (two voters) has no quorum.
	if err := w.cores[1].Close(); err != nil {
		t.Fatal(err)
	}
	w.cores[1] = nil
	r1 := w.cores[0].Router
	fallback := r1.Stats().LoginFallback.Load()
	erin := "erin"
	// On shard 1 (placement is round-robin): the system shard is always asked.
	var cid string
	for cid == "" || catalog.HomeOf(cid).Shard != 1 {
		var err error
		if cid, err = u1.CreateConversation(ctx, []string{"zed"}, "filler", nil, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := u1.AddMembers(ctx, cid, []string{erin}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := u1.Send(ctx, cid, client.TextMessage(fmt.Sprintf("cut off %d", i)), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if r1.IndexVouches(1) {
		t.Fatal("the index vouches for shard 1 without a catalog quorum")
	}
	e := dial(t, ctx, w.edges[0].URL, app, erin)
	if u := unreadOf(t, e); u[cid] != 2 {
		t.Fatalf("erin's unread with the catalog down: %v, want 2 in %s", u, cid)
	}
	e.Close()
	if r1.Stats().LoginFallback.Load() == fallback {
		t.Fatal("erin's login did not fall back to every shard")
	}

	// Region 2 back: its catalog replica has the claim from disk.
	c2 := restartCore(t, w.cfgs[1])
	w.cores[1] = c2
	// Its replica reads what it had applied before it stopped, at once
	// (the state is flushed on close).
	if got, ok, err := c2.Catalog.UniqueCid(app, catalog.UniqueHash([]string{"u1", "u2"})); err != nil || !ok || got != pair {
		t.Errorf("restarted region's catalog: unique claim %q, %v, %v; want %s", got, ok, err, pair)
		waitFor(t, 30*time.Second, func() bool {
			got, _, _ := c2.Catalog.UniqueCid(app, catalog.UniqueHash([]string{"u1", "u2"}))
			return got == pair
		})
	}
	waitFor(t, 30*time.Second, func() bool { return r1.IndexVouches(1) })
	fallback = r1.Stats().LoginFallback.Load()
	if _, err := u1.Send(ctx, cid, client.TextMessage("healed"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	e = dial(t, ctx, w.edges[0].URL, app, erin)
	if u := unreadOf(t, e); u[cid] != 3 {
		t.Fatalf("erin's unread after the heal: %v, want 3 in %s", u, cid)
	}
	e.Close()
	if got := r1.Stats().LoginFallback.Load() - fallback; got != 0 {
		t.Fatalf("after the heal the login fell back on %d shards", got)
	}
	// And a client with nothing in region 1's shard 1 is not asked there.
	skipped := r1.Stats().LoginSkipped.Load()
	nobody := dial(t, ctx, w.edges[0].URL, app, "nobody")
	unreadOf(t, nobody)
	nobody.Close()
	if r1.Stats().LoginSkipped.Load() != skipped+1 {
		t.Fatalf("a client with no conversations: skipped %d shards, want 1", r1.Stats().LoginSkipped.Load()-skipped)
	}
}

// metricOf reads a series of a core's metrics.
func metricOf(t *testing.T, c *cluster.Core, series string) int64 {
	t.Helper()
	var b strings.Builder
	if err := c.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil { // 1e6 and up come as 1e+06
				return int64(f)
			}
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// TestCatalogLoginChurn attacks the member index's freshness: thirty
// clients are added to random conversations on every shard in bursts, a
// message goes to each conversation, and every client logs in at once,
// concurrently, while the shards' leaders are still sending the changes.
// Each login gets exactly its conversations' unread counts, whether the
// index vouched for a shard by then or the router fell back.
func TestCatalogLoginChurn(t *testing.T) {
	const app = "catalog-churn-app"
	const shards, convs, clients = 4, 12, 30
	addr := freeAddr(t)
	d := startCatalogDev(t, t.TempDir(), addr, shards)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	alice := dial(t, ctx, d.Edge.URL, app, "alice")
	var cids []string
	for i := range convs {
		cid, err := alice.CreateConversation(ctx, []string{"zed"}, fmt.Sprintf("g%d", i), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		cids = append(cids, cid)
	}
	// Client k is in one or two of the conversations i ≡ k (mod shards):
	// placement is round-robin, so mostly on one shard.
	in := func(k, i int) bool { return i%shards == k%shards && (i/shards+k/shards)%3 != 2 }
	want := make([]map[string]bool, clients)
	for k := range clients {
		want[k] = map[string]bool{}
	}
	var wg sync.WaitGroup
	errs := make(chan error, convs)
	for i, cid := range cids {
		var ids []string
		for k := range clients {
			if in(k, i) {
				ids = append(ids, fmt.Sprintf("c%d", k))
				want[k][cid] = true
			}
		}
		wg.Go(func() {
			if _, err := alice.AddMembers(ctx, cid, ids); err != nil {
				errs <- err
				return
			}
			if _, err := alice.Send(ctx, cid, client.TextMessage("after the joins"), client.SendOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	before := readLoginCounters(t, addr)
	got := make([]map[string]int, clients)
	for k := range clients {
		wg.Go(func() {
			c, err := client.Dial(ctx, d.Edge.URL, client.Options{AppID: app, ClientID: fmt.Sprintf("c%d", k)})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			got[k] = unreadOf(t, c)
		})
	}
	wg.Wait()
	for k := range clients {
		for cid := range want[k] {
			if got[k][cid] != 1 {
				t.Errorf("c%d: unread in %s (shard %d): %d, want 1", k, cid, catalog.HomeOf(cid).Shard, got[k][cid])
			}
		}
		for cid, n := range got[k] {
			if !want[k][cid] {
				t.Errorf("c%d: unread %d in %s, which it is not in", k, n, cid)
			}
		}
	}
	delta := readLoginCounters(t, addr).minus(before)
	t.Logf("%d logins right after the churn: %v shard parts asked, %v skipped, %v asked as fallback", clients, delta.parts, delta.skipped, delta.fallback)
	if delta.parts+delta.skipped != clients*(shards-1) {
		t.Fatalf("parts %v + skipped %v, want %d (every other shard accounted for once per login)", delta.parts, delta.skipped, clients*(shards-1))
	}

	// Closer still: each client gets a new conversation and a message in
	// it, and logs in the moment the send is acked, all at once.
	before = readLoginCounters(t, addr)
	for k := range clients {
		wg.Go(func() {
			id := fmt.Sprintf("c%d", k)
			cid, err := alice.CreateConversation(ctx, []string{id}, "fresh", nil, false)
			if err == nil {
				_, err = alice.Send(ctx, cid, client.TextMessage("fresh"), client.SendOptions{})
			}
			if err != nil {
				t.Error(err)
				return
			}
			c, err := client.Dial(ctx, d.Edge.URL, client.Options{AppID: app, ClientID: id})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			u := unreadOf(t, c)
			if u[cid] != 1 || len(u) != len(want[k])+1 {
				t.Errorf("%s right after a new conversation %s (shard %d): unread %v, want its %d and the new one", id, cid, catalog.HomeOf(cid).Shard, u, len(want[k]))
			}
		})
	}
	wg.Wait()
	delta = readLoginCounters(t, addr).minus(before)
	t.Logf("%d logins right after a new conversation each: %v shard parts asked, %v skipped, %v asked as fallback", clients, delta.parts, delta.skipped, delta.fallback)
}

// restartCore starts a stopped core again on its own addresses. Between
// the stop and the start, another socket of the test binary (a client's
// ephemeral port) may hold the core's old UDP port for a moment; bind then
// fails with "address already in use", and the start is tried again for up
// to 10 s. Any other error fails t.
func restartCore(t *testing.T, cfg cluster.CoreConfig) *cluster.Core {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := cluster.StartCore(cfg)
		if err == nil {
			return c
		}
		if !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			t.Fatalf("restart %s: %v", cfg.NodeID, err)
		}
		t.Logf("restart %s: %v; again", cfg.NodeID, err)
		time.Sleep(200 * time.Millisecond)
	}
}
