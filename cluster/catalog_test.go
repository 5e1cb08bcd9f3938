package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
)

// TestPlanCatalog: the voters and the declared topology a core works out
// from its configuration.
func TestPlanCatalog(t *testing.T) {
	one := planCatalog(1, 2, []string{"10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"}, nil)
	if !slices.Equal(one.voters, []string{"10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"}) || len(one.all) != 3 {
		t.Fatalf("one region: voters %v, all %v; want its three cores", one.voters, one.all)
	}
	if r := one.topo.Regions; len(r) != 1 || r[0].Name != "region-1" || len(r[0].Nodes) != 3 || len(r[0].Shards) != 2 ||
		!slices.Equal(r[0].Shards[1].Voters, []string{"core-10.0.0.1_7100", "core-10.0.0.2_7100", "core-10.0.0.3_7100"}) {
		t.Fatalf("one region: topology %+v", r)
	}
	// Two regions of three: two voters each, the lowest addresses.
	two := planCatalog(2, 1, []string{"10.2.0.3:1", "10.2.0.1:1", "10.2.0.2:1"}, []remoteCores{{number: 1, cores: []string{"10.1.0.9:1", "10.1.0.8:1", "10.1.0.7:1"}}})
	if !slices.Equal(two.voters, []string{"10.1.0.7:1", "10.1.0.8:1", "10.2.0.1:1", "10.2.0.2:1"}) || len(two.all) != 6 {
		t.Fatalf("two regions: voters %v, all %v", two.voters, two.all)
	}
	// Seven regions: one voter in each of the first five.
	var seven []remoteCores
	for n := uint8(2); n <= 7; n++ {
		seven = append(seven, remoteCores{number: n, cores: []string{fmt.Sprintf("10.%d.0.1:1", n)}})
	}
	if p := planCatalog(1, 1, []string{"10.1.0.1:1"}, seven); len(p.voters) != 5 || slices.Contains(p.voters, "10.6.0.1:1") || len(p.all) != 7 {
		t.Fatalf("seven regions: voters %v, all %v", p.voters, p.all)
	}
	// Region 1 with regions 3 and 2 remote (listed out of order): one
	// voter each, the lowest address; regions declared 1..3 in order, each
	// with its cores, shards only for the declaring region.
	three := planCatalog(1, 1, []string{"10.0.0.2:7100", "10.0.0.9:7100"}, []remoteCores{
		{number: 3, cores: []string{"10.3.0.9:7100", "10.3.0.1:7100"}},
		{number: 2, cores: []string{"10.2.0.1:7100"}},
	})
	if !slices.Equal(three.voters, []string{"10.0.0.2:7100", "10.2.0.1:7100", "10.3.0.1:7100"}) || len(three.all) != 5 {
		t.Fatalf("three regions: voters %v, all %v", three.voters, three.all)
	}
	var names []string
	for _, r := range three.topo.Regions {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"region-1", "region-2", "region-3"}) || len(three.topo.Regions[0].Shards) != 1 ||
		len(three.topo.Regions[1].Shards) != 0 || len(three.topo.Regions[2].Nodes) != 2 {
		t.Fatalf("three regions: topology %+v", three.topo.Regions)
	}
	// A region number nobody declares is a region without nodes.
	gap := planCatalog(1, 1, []string{"127.0.0.1:1"}, []remoteCores{{number: 3, cores: []string{"127.0.0.1:3"}}})
	if len(gap.topo.Regions) != 3 || len(gap.topo.Regions[1].Nodes) != 0 {
		t.Fatalf("regions 1 and 3: %+v", gap.topo.Regions)
	}
	// Node ids are valid catalog names whatever the address.
	for _, addr := range []string{"[::1]:7100", "host.example:7100", strings.Repeat("a", 100) + ":1"} {
		if id := catalogNodeID(addr); len(id) > catalog.MaxNameLen || strings.ContainsAny(id, ":[]") {
			t.Fatalf("catalogNodeID(%q) = %q", addr, id)
		}
	}
}

// TestCatalogMethodMisuse: the catalog's mesh method (meshpb.MethodCatalog)
// refuses what is not a catalog command of a version this core applies
// before it reaches the log, answers refusals as the catalog's sentinels,
// refuses callers that are not cores, and a replica that does not lead
// answers not_leader; a proposer with no leader in reach gives up when its
// context ends.
func TestCatalogMethodMisuse(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "core-2", "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"), Identity: ids["core-1"]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, c.CatalogReady)
	log := slog.New(slog.DiscardHandler)
	other, err := mesh.Listen("127.0.0.1:0", ids["core-2"], log)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	edgeNode, err := mesh.Listen("127.0.0.1:0", ids["edge-1"], log)
	if err != nil {
		t.Fatal(err)
	}
	defer edgeNode.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(cmd []byte) CatalogReply {
		t.Helper()
		out, err := other.Call(ctx, c.Node.Addr(), meshpb.MethodCatalog, cmd)
		if err != nil {
			t.Fatal(err)
		}
		var r CatalogReply
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("reply %q: %v", out, err)
		}
		return r
	}
	shardCmd, err := (&shard.Command{Op: shard.OpStart, App: "app", CID: "x", From: "alice"}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cmd  []byte
		want string
	}{
		{"empty", nil, "bad_command"},
		{"not JSON", []byte("\x00\xff garbage"), "bad_command"},
		{"unknown op", []byte(`{"v":1,"op":"teleport","a":{}}`), "bad_command"},
		{"a version this core does not apply", []byte(`{"v":99,"op":"add_region","a":{"name":"x"}}`), "bad_command"},
		{"a version-2 op in version 1", []byte(`{"v":1,"op":"member_set","a":{"shard":{"r":1,"s":0},"index":1}}`), "bad_command"},
		{"a shard's command (the wrong group)", shardCmd, "bad_command"},
		{"over the entry bound", append([]byte(`{"v":2,"op":"delete_app","a":{"id":"x"},"pad":"`), make([]byte, catalog.MaxCommandBytes)...), "too_long"},
	} {
		if r := call(tc.cmd); r.Refusal != tc.want || r.Result != nil {
			t.Errorf("%s: %+v, want refusal %s", tc.name, r, tc.want)
		}
	}
	// None reached the log: a version-99 entry there would have stopped
	// the replica (fatal), an add_region would have added region x.
	if err := c.Err(); err != nil {
		t.Fatalf("the catalog replica failed: %v", err)
	}
	if _, ok, err := c.Catalog.RegionByName("x"); ok || err != nil {
		t.Fatalf("region x: %v, %v; a refused command was applied", ok, err)
	}
	// Refused by the state machine, through the log: the sentinel comes back.
	b, _ := catalog.Encode(&catalog.MemberSet{Shard: catalog.ShardRef{Region: 9, Shard: 9}, Index: 1})
	if r := call(b); r.Refusal != "not_found" {
		t.Fatalf("member set of an unknown shard: %+v, want not_found", r)
	}
	b, _ = catalog.Encode(&catalog.ClaimUnique{App: "app", Hash: "zz", Cid: "x"})
	if r := call(b); r.Refusal != "invalid" {
		t.Fatalf("a bad hash: %+v, want invalid", r)
	}
	b, _ = catalog.Encode(&catalog.ClaimUnique{App: "app", Hash: catalog.UniqueHash([]string{"a", "b"}), Cid: "f1010000aaaaaaaaaaaaaaaa"})
	if r := call(b); r.Result == nil || !r.Result.Won {
		t.Fatalf("a claim: %+v, want won", r)
	}
	// An edge may not write the catalog.
	if _, err := edgeNode.Call(ctx, c.Node.Addr(), meshpb.MethodCatalog, b); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("an edge's catalog write: %v, want refused by role", err)
	}
	// catalog-progress: an edge may not ask; a core's request body, junk
	// or large, is ignored (the answer is the replica's progress).
	if _, err := edgeNode.Call(ctx, c.Node.Addr(), meshpb.MethodCatalogProgress, nil); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("an edge's catalog-progress: %v, want refused by role", err)
	}
	before := c.catalog.rep.AppliedIndex()
	for _, body := range [][]byte{nil, []byte("\x00\xff garbage"), make([]byte, 60<<10)} {
		out, err := other.Call(ctx, c.Node.Addr(), meshpb.MethodCatalogProgress, body)
		if err != nil {
			t.Fatalf("catalog-progress with a %d-byte body: %v", len(body), err)
		}
		var p CatalogProgress
		if err := json.Unmarshal(out, &p); err != nil || p.Applied < before || p.Last < p.Applied {
			t.Fatalf("catalog-progress with a %d-byte body: %q (%v)", len(body), out, err)
		}
	}
	if err := c.Err(); err != nil { // the handler only reads the replica
		t.Fatalf("the catalog replica failed after catalog-progress calls: %v", err)
	}

	// A replica that is not in the group (never bootstrapped: its plan
	// names other voters) leads nothing: it answers not_leader, and its
	// proposer, with no leader in reach, gives up with its context.
	g, err := openCatalog(other, filepath.Join(dir, "core-2"), other.Addr(), catalogPlan{voters: []string{"127.0.0.1:1"}}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	out, err := c.Node.Call(ctx, other.Addr(), meshpb.MethodCatalog, b)
	if err != nil {
		t.Fatal(err)
	}
	var r CatalogReply
	if err := json.Unmarshal(out, &r); err != nil || !r.NotLeader {
		t.Fatalf("a replica outside the group: %s, %v; want not_leader", out, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := g.store.ClaimUnique(short, "app", catalog.UniqueHash([]string{"c"}), "f1010000aaaaaaaaaaaaaaab"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a proposal with no leader: %v, want the context's deadline", err)
	}
	// Without a deadline of its own, it gives up once no leader has been
	// in sight for catalogNoLeader.
	t0 := time.Now()
	if _, err := g.store.ClaimUnique(ctx, "app", catalog.UniqueHash([]string{"c"}), "f1010000aaaaaaaaaaaaaaab"); !errors.Is(err, raftstore.ErrNotLeader) {
		t.Fatalf("a proposal with no leader: %v, want ErrNotLeader", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("a proposal with no leader took %v", d)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
