package catalog

import (
	"encoding/binary"
	"slices"
)

// Topology ops: regions, nodes, shards.

func checkRegionAddrs(c *AddRegion) *Error {
	if serr := checkList("seeds", c.Seeds, MaxAddrs, checkHostPort); serr != nil {
		return serr
	}
	if serr := checkList("cidrs", c.CIDRs, MaxCIDRs, checkCIDR); serr != nil {
		return serr
	}
	return checkList("edges", c.EdgeURLs, MaxAddrs, checkURL)
}

func (a *applier) addRegion(c *AddRegion) (*Result, *Error) {
	if serr := checkName("region", c.Name); serr != nil {
		return nil, serr
	}
	if serr := checkRegionAddrs(c); serr != nil {
		return nil, serr
	}
	if v, ok := a.get(regionNameKey(c.Name)); ok {
		if len(v) != 1 {
			a.err = errCorrupt("region name", regionNameKey(c.Name))
			return nil, nil
		}
		n := v[0]
		if c.Update {
			a.set(regionKey(n), Region{Name: c.Name, Number: n, Seeds: c.Seeds, CIDRs: c.CIDRs, EdgeURLs: c.EdgeURLs})
		}
		return &Result{Region: n, Existing: true}, nil
	}
	last := a.counter(counterKey(ctrRegions))
	if last >= 255 {
		return nil, fail(ErrTooMany, "regions: all 255 numbers given")
	}
	n := uint8(last + 1)
	a.setCounter(counterKey(ctrRegions), uint64(n))
	a.set(regionNameKey(c.Name), []byte{n})
	a.set(regionKey(n), Region{Name: c.Name, Number: n, Seeds: c.Seeds, CIDRs: c.CIDRs, EdgeURLs: c.EdgeURLs})
	return &Result{Region: n}, nil
}

func (a *applier) removeRegion(c *RemoveRegion) (*Result, *Error) {
	if serr := checkName("region", c.Name); serr != nil {
		return nil, serr
	}
	v, ok := a.get(regionNameKey(c.Name))
	if !ok {
		return &Result{}, nil
	}
	if len(v) != 1 {
		a.err = errCorrupt("region name", regionNameKey(c.Name))
		return nil, nil
	}
	n := v[0]
	shards := 0
	a.scan(regionShardsPrefix(n), func(_, _ []byte) bool { shards++; return false })
	if shards > 0 {
		return nil, fail(ErrInUse, "region %s has shards", c.Name)
	}
	var node string
	a.scanNodes(func(nd *Node) bool {
		if nd.Region == n {
			node = nd.ID
			return false
		}
		return true
	})
	if node != "" {
		return nil, fail(ErrInUse, "region %s has node %s", c.Name, node)
	}
	a.del(regionNameKey(c.Name))
	a.del(regionKey(n))
	a.del(shardCounterKey(n))
	return &Result{Region: n, Changed: true}, nil
}

// scanNodes calls fn for every node, in key order.
func (a *applier) scanNodes(fn func(*Node) bool) {
	a.scan([]byte{tagNode}, func(k, v []byte) bool {
		var nd Node
		if err := jsonUnmarshal(v, &nd); err != nil {
			a.err = errCorrupt("node", k)
			return false
		}
		return fn(&nd)
	})
}

// scanShards calls fn for every shard with prefix, in key order.
func (a *applier) scanShards(prefix []byte, fn func(*Shard) bool) {
	a.scan(prefix, func(k, v []byte) bool {
		var s Shard
		if err := jsonUnmarshal(v, &s); err != nil {
			a.err = errCorrupt("shard", k)
			return false
		}
		return fn(&s)
	})
}

// voterOf returns a shard that node id votes in, if any.
func (a *applier) voterOf(id string) (ShardRef, bool) {
	var ref ShardRef
	found := false
	a.scanShards([]byte{tagShard}, func(s *Shard) bool {
		if slices.Contains(s.Voters, id) {
			ref, found = s.Ref, true
			return false
		}
		return true
	})
	return ref, found
}

func (a *applier) putNode(c *PutNode) (*Result, *Error) {
	n := c.Node
	if serr := checkName("node", n.ID); serr != nil {
		return nil, serr
	}
	if n.Role != RoleCore && n.Role != RoleEdge {
		return nil, fail(ErrInvalid, "node %s: role %.64q", n.ID, n.Role)
	}
	if serr := checkHostPort("mesh", n.Mesh); serr != nil {
		return nil, serr
	}
	if n.Region == 0 || !a.has(regionKey(n.Region)) {
		return nil, fail(ErrNotFound, "node %s: region %d", n.ID, n.Region)
	}
	var old Node
	if a.getJSON(nodeKey(n.ID), "node", &old) {
		if c.IfAbsent {
			return &Result{Existing: true}, nil
		}
		if old.Region != n.Region || n.Role != RoleCore {
			if ref, ok := a.voterOf(n.ID); ok {
				return nil, fail(ErrInUse, "node %s votes in shard %s", n.ID, ref)
			}
		}
		a.set(nodeKey(n.ID), n)
		return &Result{Existing: true, Changed: old != n}, nil
	}
	if a.err != nil {
		return nil, nil
	}
	count := a.counter(counterKey(ctrNodes))
	if count >= MaxNodes {
		return nil, fail(ErrTooMany, "nodes: at most %d", MaxNodes)
	}
	a.setCounter(counterKey(ctrNodes), count+1)
	a.set(nodeKey(n.ID), n)
	return &Result{Changed: true}, nil
}

func (a *applier) removeNode(c *RemoveNode) (*Result, *Error) {
	if serr := checkName("node", c.ID); serr != nil {
		return nil, serr
	}
	if !a.has(nodeKey(c.ID)) {
		return &Result{}, nil
	}
	if ref, ok := a.voterOf(c.ID); ok {
		return nil, fail(ErrInUse, "node %s votes in shard %s", c.ID, ref)
	}
	count := a.counter(counterKey(ctrNodes))
	if count == 0 {
		a.err = errCorrupt("node counter", counterKey(ctrNodes))
		return nil, nil
	}
	a.setCounter(counterKey(ctrNodes), count-1)
	a.del(nodeKey(c.ID))
	return &Result{Changed: true}, nil
}

// checkVoters returns the voters sorted and deduplicated, once each is a
// core node of the region.
func (a *applier) checkVoters(region uint8, voters []string) ([]string, *Error) {
	if len(voters) > MaxVoters {
		return nil, fail(ErrTooMany, "voters: %d, at most %d", len(voters), MaxVoters)
	}
	for _, id := range voters {
		if serr := checkName("voter", id); serr != nil {
			return nil, serr
		}
	}
	vs := normalize(voters)
	if len(vs) == 0 {
		return nil, fail(ErrInvalid, "voters: none")
	}
	for _, id := range vs {
		var n Node
		if !a.getJSON(nodeKey(id), "node", &n) {
			if a.err != nil {
				return nil, nil
			}
			return nil, fail(ErrNotFound, "voter %s", id)
		}
		if n.Region != region || n.Role != RoleCore {
			return nil, fail(ErrInvalid, "voter %s: a %s of region %d, not a core of region %d", id, n.Role, n.Region, region)
		}
	}
	return vs, nil
}

func (a *applier) addShard(c *AddShard) (*Result, *Error) {
	if c.Region == 0 || !a.has(regionKey(c.Region)) {
		return nil, fail(ErrNotFound, "region %d", c.Region)
	}
	if c.Number != nil {
		ref := ShardRef{Region: c.Region, Shard: *c.Number}
		if a.has(shardKey(ref)) {
			return &Result{Shard: ref, Existing: true}, nil
		}
	}
	vs, serr := a.checkVoters(c.Region, c.Voters)
	if serr != nil || a.err != nil {
		return nil, serr
	}
	next := a.counter(shardCounterKey(c.Region))
	if c.Number != nil && uint64(*c.Number) != next {
		return nil, fail(ErrConflict, "shard %d/%d: the next number is %d", c.Region, *c.Number, next)
	}
	if next >= MaxShards {
		return nil, fail(ErrTooMany, "shards of region %d: at most %d", c.Region, MaxShards)
	}
	ref := ShardRef{Region: c.Region, Shard: uint16(next)}
	a.setCounter(shardCounterKey(c.Region), next+1)
	a.set(shardKey(ref), Shard{Ref: ref, Voters: vs, Open: c.Open})
	return &Result{Shard: ref}, nil
}

// shard loads a shard, or refuses with ErrNotFound.
func (a *applier) shard(ref ShardRef) (*Shard, *Error) {
	var s Shard
	if !a.getJSON(shardKey(ref), "shard", &s) {
		if a.err != nil {
			return nil, nil
		}
		return nil, fail(ErrNotFound, "shard %s", ref)
	}
	return &s, nil
}

func (a *applier) setShardVoters(c *SetShardVoters) (*Result, *Error) {
	s, serr := a.shard(c.Shard)
	if s == nil {
		return nil, serr
	}
	vs, serr := a.checkVoters(c.Shard.Region, c.Voters)
	if serr != nil || a.err != nil {
		return nil, serr
	}
	changed := !slices.Equal(vs, s.Voters)
	s.Voters = vs
	a.set(shardKey(c.Shard), s)
	return &Result{Shard: c.Shard, Changed: changed}, nil
}

func (a *applier) setShardOpen(c *SetShardOpen) (*Result, *Error) {
	s, serr := a.shard(c.Shard)
	if s == nil {
		return nil, serr
	}
	changed := s.Open != c.Open
	s.Open = c.Open
	a.set(shardKey(c.Shard), s)
	return &Result{Shard: c.Shard, Changed: changed}, nil
}

// u64 helpers for values.
func putU64s(a, b uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, a), b)
}
