package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

var (
	replicasSeed = flag.Uint64("catalog.seed", 0, "seed of the random replica tests (0: a new one, logged)")
	replicasCmds = flag.Int("catalog.commands", 600, "commands per random replica test run")
)

func seed(t *testing.T) uint64 {
	s := *replicasSeed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d: reproduce with go test -run '%s$' ./catalog -catalog.seed=%d -catalog.commands=%d",
		s, t.Name(), s, *replicasCmds)
	return s
}

// recorder keeps one replica's answer to every raft index it applied,
// across restarts: a replayed entry must get the answer it got first.
type recorder struct {
	mu        sync.Mutex
	out       map[uint64]string // guarded by mu
	conflicts []string          // guarded by mu
}

func newRecorder() *recorder { return &recorder{out: map[uint64]string{}} }

func (r *recorder) put(idx uint64, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.out[idx]; ok && old != s {
		r.conflicts = append(r.conflicts, fmt.Sprintf("index %d: applied as %s, replayed as %s", idx, old, s))
	}
	r.out[idx] = s
}

func (r *recorder) snapshot() (map[uint64]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.out), slices.Clone(r.conflicts)
}

// recSM is the catalog FSM recording each answer.
type recSM struct {
	fsm *catalog.FSM
	rec *recorder
}

func (s *recSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	v := s.fsm.Apply(b, index, cmd)
	s.rec.put(index, outcome(v))
	return v
}

// compare checks that every recorder holds the same answer for every
// index and that none was fatal; it returns how many entries were applied
// and how many of them were refused.
func compare(t *testing.T, recs []*recorder) (applied, refused int) {
	t.Helper()
	var first map[uint64]string
	for i, r := range recs {
		out, conflicts := r.snapshot()
		for _, c := range conflicts {
			t.Errorf("replica %d: %s", i, c)
		}
		if i == 0 {
			first = out
			continue
		}
		for idx, o := range first {
			if other, ok := out[idx]; !ok {
				t.Errorf("index %d: applied by replica 0, not by replica %d", idx, i)
			} else if other != o {
				t.Errorf("index %d: replica 0 answered %s, replica %d %s", idx, o, i, other)
			}
		}
		if len(out) != len(first) {
			t.Errorf("replica %d applied %d entries, replica 0 %d", i, len(out), len(first))
		}
	}
	for _, o := range first {
		switch {
		case strings.HasPrefix(o, "FATAL"):
			t.Errorf("fatal answer on a healthy replica: %s", o)
		case strings.HasPrefix(o, "refused"):
			refused++
		}
	}
	return len(first), refused
}

func newCatalogCluster(t *testing.T, n int, recs []*recorder, opts ...raftstoretest.Option) *raftstoretest.Cluster {
	return raftstoretest.NewCluster(t, n, func(i int) raftstore.StateMachine {
		return &recSM{fsm: catalog.New(), rec: recs[i]}
	}, opts...)
}

// TestCatalogReplicasAgree runs a seeded random sequence of catalog
// commands through the leader of a 3-replica group (real hashicorp/raft,
// Pebble and TCP on loopback), with a leadership transfer and a follower
// killed and restarted in the middle, then checks that the replicas
// answered every entry alike and hold the same state byte for byte,
// raftstore's applied index included.
func TestCatalogReplicasAgree(t *testing.T) {
	g := newGen(seed(t))
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	c := newCatalogCluster(t, 3, recs)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	for _, cmd := range g.setup() {
		b, _ := catalog.Encode(cmd)
		if _, err := c.Propose(ctx, b); err != nil {
			t.Fatalf("setup %s: %v", cmd.Op(), err)
		}
	}
	n := *replicasCmds
	killed := -1
	tally := map[catalog.Op][2]int{} // op → {applied, refused}, as the leader answered
	for k := range n {
		switch k {
		case n / 3:
			l := c.WaitLeader()
			if err := c.Node(l).Raft().LeadershipTransfer().Error(); err != nil {
				t.Logf("leadership transfer from %d: %v", l, err)
			}
			t.Logf("command %d: leader %d handed over to %d", k, l, c.WaitLeader())
		case n / 2:
			killed = (c.WaitLeader() + 1) % 3
			c.Kill(killed)
			t.Logf("command %d: follower %d killed", k, killed)
		case 2 * n / 3:
			c.Restart(killed)
			t.Logf("command %d: replica %d restarted", k, killed)
		}
		cmd := g.next()
		b, err := catalog.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Propose(ctx, b)
		var ce *catalog.Error
		v := tally[cmd.Op()]
		switch {
		case err == nil:
			v[0]++
		case errors.As(err, &ce):
			v[1]++
		default:
			t.Fatalf("command %d (%s): %v", k, cmd.Op(), err)
		}
		tally[cmd.Op()] = v
	}
	state := c.WaitConverged(30 * time.Second)
	var line []string
	for _, op := range slices.Sorted(maps.Keys(tally)) {
		line = append(line, fmt.Sprintf("%s %d/%d", op, tally[op][0], tally[op][1]))
	}
	t.Logf("applied/refused by op: %s", strings.Join(line, ", "))
	if n >= 600 {
		for op := range catalog.OpsForTest() {
			// Generated at all, or the generator lost it; applied at
			// least once is chance for the ops whose preconditions the
			// random state rarely meets (a role change by a manager, a
			// node removal): a note, not a failure.
			switch {
			case tally[op][0]+tally[op][1] == 0:
				t.Errorf("no %s generated: the generator no longer covers it", op)
			case tally[op][0] == 0:
				t.Logf("note: every %s was refused in this run (%d tries)", op, tally[op][1])
			}
		}
	}
	applied, refused := compare(t, recs)
	t.Logf("%d entries answered alike on 3 replicas, %d of them refused; %d state keys identical",
		applied, refused, len(state))
	if applied < n || refused < n/10 || applied-refused < n/2 {
		t.Errorf("%d applied, %d refused: the generator no longer covers both sides", applied, refused)
	}
	// The readers see the same catalog on every replica.
	var views []string
	for i := range 3 {
		views = append(views, view(t, c.Node(i).State()))
	}
	if views[0] != views[1] || views[0] != views[2] {
		t.Errorf("replicas read different catalogs:\n%s\n%s\n%s", views[0], views[1], views[2])
	}
}

// view renders what the readers return, for comparing replicas.
func view(t *testing.T, r pebble.Reader) string {
	t.Helper()
	var sb strings.Builder
	regions, err1 := catalog.Regions(r)
	nodes, err2 := catalog.Nodes(r)
	shards, err3 := catalog.Shards(r, 0)
	apps, err4 := catalog.ListApps(r)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&sb, "%v\n%v\n%v\n%v\n", regions, nodes, shards, apps)
	for _, app := range genApps {
		for c := range 8 {
			es, err := catalog.MemberEntries(r, app, fmt.Sprintf("c%d", c))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&sb, "%s/c%d %v\n", app, c, es)
		}
	}
	return sb.String()
}

// TestCatalogSnapshotCatchUp: a replica added after the log was compacted
// behind a snapshot gets the catalog through raftstore's snapshot (the
// Pebble state streamed) and then holds exactly the others' state.
func TestCatalogSnapshotCatchUp(t *testing.T) {
	g := newGen(seed(t))
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder(), newRecorder()}
	c := newCatalogCluster(t, 3, recs, raftstoretest.WithConfig(func(i int, cfg *raftstore.Config) {
		cfg.TrailingLogs = 5
		cfg.SnapshotThreshold = 1 << 20 // only the snapshots the test asks for
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	propose := func(k int) {
		b, _ := catalog.Encode(g.next())
		if _, err := c.Propose(ctx, b); err != nil {
			var ce *catalog.Error
			if !errors.As(err, &ce) {
				t.Fatalf("command %d: %v", k, err)
			}
		}
	}
	for _, cmd := range g.setup() {
		b, _ := catalog.Encode(cmd)
		if _, err := c.Propose(ctx, b); err != nil {
			t.Fatalf("setup %s: %v", cmd.Op(), err)
		}
	}
	for k := range 200 {
		propose(k)
	}
	for i := range 3 {
		if err := c.Node(i).Raft().Snapshot().Error(); err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
	}
	added := c.Add()
	for k := 200; k < 250; k++ {
		propose(k)
	}
	state := c.WaitConverged(30 * time.Second)
	stats := c.Node(added).Raft().Stats()
	if stats["last_snapshot_index"] == "0" {
		t.Fatalf("replica %d caught up without a snapshot: %v", added, stats)
	}
	if view(t, c.Node(added).State()) != view(t, c.Node(0).State()) {
		t.Fatal("the new replica reads a different catalog")
	}
	t.Logf("replica %d restored from the snapshot at %s, then applied the log: %d state keys identical",
		added, stats["last_snapshot_index"], len(state))
}

// TestCatalogStoreBootstrap runs Bootstrap through a Store over a real
// 3-replica group, from three callers at once (as every process does at
// start), then again: the first runs build the topology once, the rerun
// changes nothing, and every replica's Store reads it.
func TestCatalogStoreBootstrap(t *testing.T) {
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	c := newCatalogCluster(t, 3, recs)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	topo := catalog.Topology{
		Regions: []catalog.RegionSpec{
			{Name: "eu", Seeds: []string{"eu-1.example:7000"}, CIDRs: []string{"10.1.0.0/16"}, EdgeURLs: []string{"wss://eu.example"},
				Nodes: []catalog.NodeSpec{
					{ID: "eu-1", Role: catalog.RoleCore, Mesh: "eu-1.example:7000"},
					{ID: "eu-2", Role: catalog.RoleCore, Mesh: "eu-2.example:7000"},
					{ID: "eu-e", Role: catalog.RoleEdge, Mesh: "eu-e.example:7000"},
				},
				Shards: []catalog.ShardSpec{{Voters: []string{"eu-1", "eu-2"}, Open: true}, {Voters: []string{"eu-2"}}},
			},
			{Name: "us", Nodes: []catalog.NodeSpec{{ID: "us-1", Role: catalog.RoleCore, Mesh: "us-1.example:7000"}},
				Shards: []catalog.ShardSpec{{Voters: []string{"us-1"}, Open: true}}},
		},
		Apps: []catalog.AppSpec{{ID: "app-1", Settings: json.RawMessage(`{"key": "k"}`)}, {ID: "app-2"}},
	}
	// c.Propose follows the leader: the Store's Proposer for a test.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { errs[i] = catalog.NewStore(c.Node(i).State(), c).Bootstrap(ctx, topo) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	first := c.WaitConverged(10 * time.Second)
	if err := catalog.NewStore(c.Node(0).State(), c).Bootstrap(ctx, topo); err != nil {
		t.Fatal(err)
	}
	again := c.WaitConverged(10 * time.Second)
	delete(first, raftstore.ReservedPrefix+"applied")
	delete(again, raftstore.ReservedPrefix+"applied")
	if !maps.Equal(first, again) {
		t.Fatal("a second Bootstrap changed the catalog")
	}
	for i := range 3 {
		s := catalog.NewStore(c.Node(i).State(), c)
		regions, err := s.Regions()
		if err != nil || len(regions) != 2 || regions[0].Name != "eu" || regions[0].Number != 1 || regions[1].Number != 2 {
			t.Fatalf("replica %d: regions %+v, %v", i, regions, err)
		}
		shards, err := s.Shards(0)
		want := []catalog.ShardRef{{Region: 1, Shard: 0}, {Region: 1, Shard: 1}, {Region: 2, Shard: 0}}
		var got []catalog.ShardRef
		for _, sh := range shards {
			got = append(got, sh.Ref)
		}
		if err != nil || !slices.Equal(got, want) || !shards[0].Open || shards[1].Open {
			t.Fatalf("replica %d: shards %+v, %v", i, shards, err)
		}
		nodes, _ := s.Nodes()
		apps, _ := s.ListApps()
		settings, _, _ := s.GetApp("app-2")
		if len(nodes) != 4 || !slices.Equal(apps, []string{"app-1", "app-2"}) || string(settings) != "{}" {
			t.Fatalf("replica %d: nodes %v, apps %v, app-2 %s", i, nodes, apps, settings)
		}
	}
	// Writes through the Store: the unique race, the member index, lookups.
	s := catalog.NewStore(c.Node(0).State(), c)
	hash := catalog.UniqueHash([]string{"a", "b"})
	cid1, _ := catalog.NewConvID(1, 0)
	cid2, _ := catalog.NewConvID(2, 0)
	if w, err := s.ClaimUnique(ctx, "app-1", hash, cid1); err != nil || w != cid1 {
		t.Fatalf("claim: %q %v", w, err)
	}
	if w, err := s.ClaimUnique(ctx, "app-1", hash, cid2); err != nil || w != cid1 {
		t.Fatalf("losing claim: %q %v, want %s", w, err, cid1)
	}
	if _, err := s.Apply(ctx, &catalog.MemberDelta{App: "app-1", Shard: catalog.ShardRef{Region: 2}, Index: 4, Adds: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, &catalog.MemberDelta{App: "app-1", Shard: catalog.ShardRef{Region: 9}, Index: 4, Adds: []string{"a"}}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("delta of an unknown shard: %v, want ErrNotFound", err)
	}
	c.WaitConverged(10 * time.Second)
	for i := range 3 {
		s := catalog.NewStore(c.Node(i).State(), c)
		if got, err := s.MemberShards("app-1", "a"); err != nil || !slices.Equal(got, []catalog.ShardRef{{Region: 2}}) {
			t.Fatalf("replica %d: MemberShards %v %v", i, got, err)
		}
		if got, known, err := s.Lookup("app-1", cid2); err != nil || !known || got != (catalog.ShardRef{Region: 2}) {
			t.Fatalf("replica %d: Lookup %v %v %v", i, got, known, err)
		}
		if w, ok, _ := s.UniqueCid("app-1", hash); !ok || w != cid1 {
			t.Fatalf("replica %d: unique %q %v", i, w, ok)
		}
	}
	// A bad topology is refused with the catalog's error.
	bad := catalog.Topology{Regions: []catalog.RegionSpec{{Name: "eu", Nodes: []catalog.NodeSpec{{ID: "x", Role: "boss", Mesh: "h:1"}}}}}
	if err := s.Bootstrap(ctx, bad); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("bootstrap with a bad node: %v, want ErrInvalid", err)
	}
}

// TestCatalogReadsDuringWrites: Stores on every replica read (topology,
// member index, lookups, apps) while commands are committed and applied;
// no read fails, and a client's member shards are always sorted.
func TestCatalogReadsDuringWrites(t *testing.T) {
	g := newGen(seed(t))
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	c := newCatalogCluster(t, 3, recs)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads [3]int
	for i := range 3 {
		s := catalog.NewStore(c.Node(i).State(), c)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, app := range genApps {
					for k := range 8 {
						refs, err := s.MemberShards(app, fmt.Sprintf("c%d", k))
						if err != nil {
							t.Errorf("replica %d: MemberShards: %v", i, err)
							return
						}
						if !slices.IsSortedFunc(refs, catalog.ShardRef.Compare) {
							t.Errorf("replica %d: MemberShards not sorted: %v", i, refs)
						}
					}
					for _, cid := range g.cids[:3] { // g.cids is fixed once made
						if _, _, err := s.Lookup(app, cid); err != nil {
							t.Errorf("replica %d: Lookup: %v", i, err)
							return
						}
					}
				}
				_, err1 := s.Regions()
				_, err2 := s.Shards(0)
				_, err3 := s.ListApps()
				if err := errors.Join(err1, err2, err3); err != nil {
					t.Errorf("replica %d: %v", i, err)
					return
				}
				reads[i]++
				time.Sleep(200 * time.Microsecond) // leave the CPU to raft: the machine is shared
			}
		})
	}
	cmds := append(g.setup(), make([]catalog.Command, 300)...)
	for k := range cmds {
		if cmds[k] == nil {
			cmds[k] = g.next()
		}
	}
	for k, cmd := range cmds {
		b, _ := catalog.Encode(cmd)
		if _, err := c.Propose(ctx, b); err != nil {
			var ce *catalog.Error
			if !errors.As(err, &ce) {
				t.Fatalf("command %d: %v", k, err)
			}
		}
	}
	close(stop)
	wg.Wait()
	c.WaitConverged(30 * time.Second)
	compare(t, recs)
	t.Logf("reads per replica while %d commands applied: %v", len(cmds), reads)
	for i, n := range reads {
		if n == 0 {
			t.Errorf("replica %d read nothing", i)
		}
	}
}
