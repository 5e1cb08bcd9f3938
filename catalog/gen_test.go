package catalog_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/relaymesh/relaymesh/catalog"
)

// gen makes a seeded random sequence of catalog commands over a small
// universe (4 regions, 10 nodes, up to 4 shards per region, 3 apps, 8
// clients, a pool of ids: ours, LeanCloud's), so that commands meet each
// other's state: most apply, a good share is refused (unknown shards,
// voters elsewhere, conflicts, in use, malformed input).
type gen struct {
	rng   *rand.Rand
	index map[catalog.ShardRef]uint64 // the last raft index each shard sent
	cids  []string
}

func newGen(seed uint64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 1)), index: map[catalog.ShardRef]uint64{}}
	for i := range 12 {
		var b [12]byte
		for j := range b {
			b[j] = byte(g.rng.IntN(256))
		}
		switch i % 3 {
		case 0: // ours, naming one of the shards
			b[0], b[1], b[2], b[3] = 0xf1, byte(1+g.rng.IntN(4)), 0, byte(g.rng.IntN(4))
			g.cids = append(g.cids, catalog.EncodeConvIDForTest(b[:]))
		case 1: // a LeanCloud ObjectId: seconds of 2020
			b[0], b[1] = 0x5f, 0x6d
			g.cids = append(g.cids, fmt.Sprintf("%x", b))
		default:
			g.cids = append(g.cids, fmt.Sprintf("%x", b))
		}
	}
	return g
}

var (
	genRegions    = []string{"eu", "us", "ap", "sa"}
	genTmpRegions = []string{"tmp1", "tmp2"} // regions that come and go
	genApps       = []string{"app-a", "app-b", "app-c"}
)

func (g *gen) pick(list []string) string { return list[g.rng.IntN(len(list))] }
func (g *gen) one(n int) bool            { return g.rng.IntN(n) == 0 }

// Nodes n0..n9 belong, mostly, to region 1 + i%4.
func (g *gen) node() string { return fmt.Sprintf("n%d", g.rng.IntN(10)) }

func homeRegion(node int) uint8 { return uint8(1 + node%4) }

// setup returns the commands that build the usual topology: regions eu,
// us, ap, sa numbered 1..4, nodes n0..n9 (cores, in their home regions),
// and two shards per region.
func (g *gen) setup() []catalog.Command {
	var out []catalog.Command
	for _, r := range genRegions {
		out = append(out, &catalog.AddRegion{Name: r})
	}
	for i := range 10 {
		out = append(out, &catalog.PutNode{Node: catalog.Node{ID: fmt.Sprintf("n%d", i), Region: homeRegion(i),
			Role: catalog.RoleCore, Mesh: fmt.Sprintf("10.0.0.%d:7000", i)}})
	}
	for r := range 4 {
		for k := range 2 {
			voters := []string{fmt.Sprintf("n%d", r), fmt.Sprintf("n%d", r+4)}[:1+k]
			out = append(out, &catalog.AddShard{Region: uint8(r + 1), Voters: voters, Open: true})
		}
	}
	return out
}

// voters returns 1..3 nodes of the region, now and then a stranger.
func (g *gen) voters(region uint8) []string {
	var out []string
	for range 1 + g.rng.IntN(3) {
		i := int(region-1) + 4*g.rng.IntN(2) // n(r-1) or n(r+3), both homed in r
		out = append(out, fmt.Sprintf("n%d", i))
	}
	switch {
	case g.one(20):
		out = append(out, g.node())
	case g.one(30):
		out = append(out, "bad node")
	}
	return out
}

func (g *gen) ref() catalog.ShardRef {
	r := catalog.ShardRef{Region: uint8(1 + g.rng.IntN(4)), Shard: uint16(g.rng.IntN(3))}
	if g.one(20) {
		r.Region = 5
	}
	if g.one(10) {
		r.Shard = uint16(3 + g.rng.IntN(5))
	}
	return r
}

func (g *gen) clients() []string {
	out := make([]string, g.rng.IntN(4))
	for i := range out {
		out[i] = fmt.Sprintf("c%d", g.rng.IntN(8))
	}
	if g.one(30) {
		out = append(out, "")
	}
	return out
}

func (g *gen) cid() string {
	if g.one(25) {
		return "NOT-AN-ID"
	}
	return g.pick(g.cids)
}

func (g *gen) hash() string {
	if g.one(25) {
		return "abc"
	}
	return catalog.UniqueHash([]string{fmt.Sprintf("c%d", g.rng.IntN(3)), fmt.Sprintf("c%d", g.rng.IntN(3))})
}

func (g *gen) next() catalog.Command {
	switch k := g.rng.IntN(100); {
	case k < 6:
		name := g.pick(genRegions)
		if g.one(2) {
			name = g.pick(genTmpRegions)
		}
		if g.one(15) {
			name = "bad region"
		}
		return &catalog.AddRegion{Name: name, Seeds: []string{fmt.Sprintf("%s.example:%d", name, 7000+g.rng.IntN(3))},
			CIDRs: []string{fmt.Sprintf("10.%d.0.0/16", g.rng.IntN(256))}, Update: g.one(3)}
	case k < 8:
		if g.one(3) {
			return &catalog.RemoveRegion{Name: g.pick(genRegions)}
		}
		return &catalog.RemoveRegion{Name: g.pick(genTmpRegions)}
	case k < 16:
		role := catalog.RoleCore
		if g.one(6) {
			role = catalog.RoleEdge
		}
		i := g.rng.IntN(10)
		region := homeRegion(i)
		if g.one(8) {
			region = uint8(g.rng.IntN(6))
		}
		return &catalog.PutNode{Node: catalog.Node{ID: fmt.Sprintf("n%d", i), Region: region, Role: role,
			Mesh: fmt.Sprintf("10.0.0.%d:7000", g.rng.IntN(255))}, IfAbsent: g.one(3)}
	case k < 18:
		return &catalog.RemoveNode{ID: g.node()}
	case k < 22:
		region := uint8(1 + g.rng.IntN(4))
		c := &catalog.AddShard{Region: region, Voters: g.voters(region), Open: g.one(2)}
		if g.one(2) {
			n := uint16(g.rng.IntN(5))
			c.Number = &n
		}
		return c
	case k < 30:
		ref := g.ref()
		return &catalog.SetShardVoters{Shard: ref, Voters: g.voters(ref.Region)}
	case k < 33:
		return &catalog.SetShardOpen{Shard: g.ref(), Open: g.one(2)}
	case k < 60:
		ref := g.ref()
		idx := g.index[ref] + uint64(1+g.rng.IntN(5))
		if g.one(6) && g.index[ref] > 3 { // a resent, older delta
			idx = g.index[ref] - uint64(g.rng.IntN(3))
		} else {
			g.index[ref] = idx
		}
		if g.one(3) { // absolute counts, maybe vouching for the shard
			var counts []catalog.MemberCount
			for _, c := range g.clients() {
				counts = append(counts, catalog.MemberCount{App: g.pick(genApps), Client: c, Count: uint64(g.rng.IntN(3))})
			}
			return &catalog.MemberSet{Shard: ref, Index: idx, Counts: counts, Complete: g.one(2)}
		}
		return &catalog.MemberDelta{App: g.pick(genApps), Shard: ref, Index: idx, Adds: g.clients(), Removes: g.clients()}
	case k < 70:
		return &catalog.ClaimUnique{App: g.pick(genApps), Hash: g.hash(), Cid: g.cid()}
	case k < 75:
		return &catalog.ReleaseUnique{App: g.pick(genApps), Hash: g.hash(), Cid: g.cid()}
	case k < 85:
		cids := make([]string, 1+g.rng.IntN(3))
		for i := range cids {
			cids[i] = g.cid()
		}
		return &catalog.ImportIDs{App: g.pick(genApps), Shard: g.ref(), Cids: cids}
	case k < 95:
		settings := json.RawMessage(fmt.Sprintf(`{"key": "k%d", "n": %d}`, g.rng.IntN(5), g.rng.IntN(100)))
		if g.one(15) {
			settings = json.RawMessage(`[1, 2]`)
		}
		return &catalog.PutApp{ID: g.pick(genApps), Settings: settings, IfAbsent: g.one(3)}
	default:
		return &catalog.DeleteApp{ID: g.pick(genApps)}
	}
}

// outcome renders an Apply answer for comparison between replicas.
func outcome(v any) string {
	switch v := v.(type) {
	case *catalog.Result:
		b, _ := json.Marshal(v)
		return "ok " + string(b)
	case *catalog.FatalError:
		return "FATAL " + v.Error()
	case error:
		return "refused " + v.Error()
	}
	return fmt.Sprintf("unexpected %T", v)
}
