package catalog_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, raftstoretest.LeakOptions()...)
}

func TestCatalogRegions(t *testing.T) {
	h := newHarness(t)
	if r := h.ok(&catalog.AddRegion{Name: "eu", Seeds: []string{"a.example:1"}}); r.Region != 1 || r.Existing {
		t.Fatalf("first region: got %+v, want number 1", r)
	}
	if r := h.ok(&catalog.AddRegion{Name: "us"}); r.Region != 2 || r.Existing {
		t.Fatalf("second region: got %+v, want number 2", r)
	}
	// Adding again keeps the number and the addresses; Update replaces them.
	if r := h.ok(&catalog.AddRegion{Name: "eu", Seeds: []string{"b.example:2"}}); r.Region != 1 || !r.Existing {
		t.Fatalf("eu again: got %+v, want existing 1", r)
	}
	g, ok, err := catalog.RegionByName(h.db, "eu")
	if err != nil || !ok || !slices.Equal(g.Seeds, []string{"a.example:1"}) {
		t.Fatalf("eu after a plain re-add: %+v %v %v; want the first seeds", g, ok, err)
	}
	h.ok(&catalog.AddRegion{Name: "eu", Seeds: []string{"b.example:2"}, CIDRs: []string{"::1/128"}, Update: true})
	g, _, _ = catalog.GetRegion(h.db, 1)
	if g.Name != "eu" || g.Number != 1 || !slices.Equal(g.Seeds, []string{"b.example:2"}) || !slices.Equal(g.CIDRs, []string{"::1/128"}) {
		t.Fatalf("eu after update: %+v", g)
	}
	// Removed numbers are never given again.
	if r := h.ok(&catalog.RemoveRegion{Name: "us"}); !r.Changed || r.Region != 2 {
		t.Fatalf("remove us: %+v", r)
	}
	if r := h.ok(&catalog.RemoveRegion{Name: "us"}); r.Changed {
		t.Fatalf("remove us twice: %+v, want no change", r)
	}
	if r := h.ok(&catalog.AddRegion{Name: "us"}); r.Region != 3 {
		t.Fatalf("us re-added: number %d, want 3 (2 is not reused)", r.Region)
	}
	regions, err := catalog.Regions(h.db)
	if err != nil || len(regions) != 2 || regions[0].Name != "eu" || regions[1].Name != "us" || regions[1].Number != 3 {
		t.Fatalf("Regions = %+v, %v", regions, err)
	}
	// In use: a node, then a shard.
	h.ok(&catalog.PutNode{Node: catalog.Node{ID: "n1", Region: 3, Role: catalog.RoleCore, Mesh: "h:1"}})
	h.refused(&catalog.RemoveRegion{Name: "us"}, catalog.ErrInUse)
	h.ok(&catalog.AddShard{Region: 3, Voters: []string{"n1"}})
	h.refused(&catalog.RemoveRegion{Name: "us"}, catalog.ErrInUse)
}

func TestCatalogRegionNumbersRunOut(t *testing.T) {
	h := newHarness(t)
	for i := 1; i <= 255; i++ {
		name := fmt.Sprintf("r%d", i)
		if r := h.ok(&catalog.AddRegion{Name: name}); int(r.Region) != i {
			t.Fatalf("region %s: number %d, want %d", name, r.Region, i)
		}
		if i%2 == 0 {
			h.ok(&catalog.RemoveRegion{Name: name})
		}
	}
	h.refused(&catalog.AddRegion{Name: "one-more"}, catalog.ErrTooMany)
	// An existing name still answers.
	if r := h.ok(&catalog.AddRegion{Name: "r255"}); r.Region != 255 || !r.Existing {
		t.Fatalf("r255: %+v", r)
	}
}

func TestCatalogNodes(t *testing.T) {
	h := newHarness(t)
	h.topo()
	n := catalog.Node{ID: "x", Region: 9, Role: catalog.RoleCore, Mesh: "h:1"}
	h.refused(&catalog.PutNode{Node: n}, catalog.ErrNotFound) // no region 9
	n.Region = 0
	h.refused(&catalog.PutNode{Node: n}, catalog.ErrNotFound)
	n.Region = 1
	n.Role = "leader"
	h.refused(&catalog.PutNode{Node: n}, catalog.ErrInvalid)
	n.Role = catalog.RoleEdge
	if r := h.ok(&catalog.PutNode{Node: n}); r.Existing {
		t.Fatalf("new node: %+v", r)
	}
	// IfAbsent leaves it; a plain put replaces it.
	n2 := n
	n2.Mesh = "h:2"
	if r := h.ok(&catalog.PutNode{Node: n2, IfAbsent: true}); !r.Existing {
		t.Fatalf("IfAbsent on an existing node: %+v", r)
	}
	if got, _, _ := catalog.GetNode(h.db, "x"); got != n {
		t.Fatalf("after IfAbsent: %+v, want %+v", got, n)
	}
	h.ok(&catalog.PutNode{Node: n2})
	if got, _, _ := catalog.GetNode(h.db, "x"); got != n2 {
		t.Fatalf("after put: %+v, want %+v", got, n2)
	}
	// A voter may not leave its region or stop being a core, nor go.
	eu1 := catalog.Node{ID: "eu-1", Region: 2, Role: catalog.RoleCore, Mesh: "h:3"}
	h.refused(&catalog.PutNode{Node: eu1}, catalog.ErrInUse)
	eu1.Region, eu1.Role = 1, catalog.RoleEdge
	h.refused(&catalog.PutNode{Node: eu1}, catalog.ErrInUse)
	eu1.Role = catalog.RoleCore
	h.ok(&catalog.PutNode{Node: eu1}) // a new mesh address is fine
	h.refused(&catalog.RemoveNode{ID: "eu-1"}, catalog.ErrInUse)
	if r := h.ok(&catalog.RemoveNode{ID: "x"}); !r.Changed {
		t.Fatalf("remove x: %+v", r)
	}
	if r := h.ok(&catalog.RemoveNode{ID: "x"}); r.Changed {
		t.Fatalf("remove x twice: %+v", r)
	}
	nodes, err := catalog.Nodes(h.db)
	if err != nil || len(nodes) != 7 || !slices.IsSortedFunc(nodes, func(a, b catalog.Node) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatalf("Nodes = %v, %v; want 7 sorted", nodes, err)
	}
}

func TestCatalogMaxNodes(t *testing.T) {
	h := newHarness(t)
	h.ok(&catalog.AddRegion{Name: "eu"})
	for i := range catalog.MaxNodes {
		h.ok(&catalog.PutNode{Node: catalog.Node{ID: fmt.Sprintf("n%d", i), Region: 1, Role: catalog.RoleEdge, Mesh: "h:1"}})
	}
	h.refused(&catalog.PutNode{Node: catalog.Node{ID: "last", Region: 1, Role: catalog.RoleEdge, Mesh: "h:1"}}, catalog.ErrTooMany)
	h.ok(&catalog.PutNode{Node: catalog.Node{ID: "n0", Region: 1, Role: catalog.RoleCore, Mesh: "h:2"}}) // replacing is fine
	h.ok(&catalog.RemoveNode{ID: "n1"})
	h.ok(&catalog.PutNode{Node: catalog.Node{ID: "last", Region: 1, Role: catalog.RoleEdge, Mesh: "h:1"}})
}

func TestCatalogShards(t *testing.T) {
	h := newHarness(t)
	h.topo()
	shards, err := catalog.Shards(h.db, 0)
	want := []catalog.Shard{
		{Ref: catalog.ShardRef{Region: 1, Shard: 0}, Voters: []string{"eu-1", "eu-2", "eu-3"}, Open: true},
		{Ref: catalog.ShardRef{Region: 1, Shard: 1}, Voters: []string{"eu-1"}, Open: true},
		{Ref: catalog.ShardRef{Region: 2, Shard: 0}, Voters: []string{"us-1", "us-2", "us-3"}},
	}
	if err != nil || !slices.EqualFunc(shards, want, shardEq) {
		t.Fatalf("Shards = %+v, %v; want %+v", shards, err, want)
	}
	if s, _ := catalog.Shards(h.db, 2); len(s) != 1 || s[0].Ref.Region != 2 {
		t.Fatalf("Shards(2) = %+v", s)
	}
	// Numbers continue per region; voters are sorted and deduplicated.
	if r := h.ok(&catalog.AddShard{Region: 1, Voters: []string{"eu-3", "eu-2", "eu-3"}}); r.Shard != (catalog.ShardRef{Region: 1, Shard: 2}) {
		t.Fatalf("third eu shard: %+v", r)
	}
	s, _, _ := catalog.GetShard(h.db, catalog.ShardRef{Region: 1, Shard: 2})
	if !slices.Equal(s.Voters, []string{"eu-2", "eu-3"}) || s.Open {
		t.Fatalf("shard 1/2: %+v", s)
	}
	// Voters: cores of the region, 1..MaxVoters.
	h.refused(&catalog.AddShard{Region: 1, Voters: []string{"us-1"}}, catalog.ErrInvalid)
	h.refused(&catalog.AddShard{Region: 1, Voters: []string{"eu-e1"}}, catalog.ErrInvalid)
	h.refused(&catalog.AddShard{Region: 1, Voters: []string{"nobody"}}, catalog.ErrNotFound)
	h.refused(&catalog.AddShard{Region: 1}, catalog.ErrInvalid)
	h.refused(&catalog.AddShard{Region: 1, Voters: []string{"eu-1", "eu-1", "eu-1", "eu-1", "eu-1", "eu-1", "eu-1", "eu-1"}}, catalog.ErrTooMany)
	h.refused(&catalog.AddShard{Region: 7, Voters: []string{"eu-1"}}, catalog.ErrNotFound)
	// With a number: idempotent, or the next one, or a conflict.
	num := func(n uint16) *uint16 { return &n }
	if r := h.ok(&catalog.AddShard{Region: 1, Voters: []string{"eu-1"}, Number: num(1)}); !r.Existing || r.Shard.Shard != 1 {
		t.Fatalf("add 1/1 again: %+v", r)
	}
	h.refused(&catalog.AddShard{Region: 1, Voters: []string{"eu-1"}, Number: num(5)}, catalog.ErrConflict)
	if r := h.ok(&catalog.AddShard{Region: 1, Voters: []string{"eu-1"}, Number: num(3)}); r.Existing || r.Shard.Shard != 3 {
		t.Fatalf("add 1/3: %+v", r)
	}
	// Voters and open.
	ref := catalog.ShardRef{Region: 1, Shard: 3}
	if r := h.ok(&catalog.SetShardVoters{Shard: ref, Voters: []string{"eu-2", "eu-1"}}); !r.Changed {
		t.Fatalf("set voters: %+v", r)
	}
	h.refused(&catalog.SetShardVoters{Shard: ref, Voters: []string{"us-2"}}, catalog.ErrInvalid)
	h.refused(&catalog.SetShardVoters{Shard: catalog.ShardRef{Region: 1, Shard: 99}, Voters: []string{"eu-1"}}, catalog.ErrNotFound)
	if r := h.ok(&catalog.SetShardOpen{Shard: ref, Open: true}); !r.Changed {
		t.Fatalf("open: %+v", r)
	}
	if r := h.ok(&catalog.SetShardOpen{Shard: ref, Open: true}); r.Changed {
		t.Fatalf("open twice: %+v", r)
	}
	h.refused(&catalog.SetShardOpen{Shard: catalog.ShardRef{Region: 3}}, catalog.ErrNotFound)
	s, _, _ = catalog.GetShard(h.db, ref)
	if !slices.Equal(s.Voters, []string{"eu-1", "eu-2"}) || !s.Open {
		t.Fatalf("shard 1/3: %+v", s)
	}
	// eu-2 now votes: it cannot go; us-3 votes in 2/0.
	h.refused(&catalog.RemoveNode{ID: "us-3"}, catalog.ErrInUse)
}

func TestCatalogMaxShards(t *testing.T) {
	h := newHarness(t)
	h.ok(&catalog.AddRegion{Name: "eu"})
	h.ok(&catalog.PutNode{Node: catalog.Node{ID: "c", Region: 1, Role: catalog.RoleCore, Mesh: "h:1"}})
	for i := range catalog.MaxShards {
		if r := h.ok(&catalog.AddShard{Region: 1, Voters: []string{"c"}}); int(r.Shard.Shard) != i {
			t.Fatalf("shard %d numbered %d", i, r.Shard.Shard)
		}
	}
	h.refused(&catalog.AddShard{Region: 1, Voters: []string{"c"}}, catalog.ErrTooMany)
}

func shardEq(a, b catalog.Shard) bool {
	return a.Ref == b.Ref && a.Open == b.Open && slices.Equal(a.Voters, b.Voters)
}
