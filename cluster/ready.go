package cluster

import (
	"fmt"
	"sync"

	"github.com/relaymesh/relaymesh/raftstore"
)

// A core is ready (/readyz on its admin listener) when:
//
//   - its mesh node serves the core's methods (edges and the other cores
//     can reach it), and the core is not closing;
//   - every shard it hosts has a leader it knows (itself or another core);
//   - every shard's replica has caught up: it has applied the raft log up
//     to what it held when the node started, and up to the commit index
//     the shard had when this replica first saw its leader, so a
//     restarted core is not called ready while it still replays;
//   - no replica stopped on a fatal apply error.
//
//   - the catalog's replica knows the catalog's leader, has caught up the
//     same way, and holds the topology the node's config declares.
//
// Readiness only looks at the node's own region and the catalog: another
// region being down makes requests homed there fail, not this core
// unready.
// /healthz keeps its meaning (200 on the region's router only).

// catchUp is one replica's catch-up gate: the raft index it must have
// applied before it counts as caught up. It only ever opens (a lagging
// replica later shows in the raft metrics, not as unready).
type catchUp struct {
	mu      sync.Mutex
	start   uint64 // the raft log's last index when the node started
	target  uint64 // guarded by mu; set when the leader is first known, 0 before
	reached bool   // guarded by mu
}

// check reports whether the replica has caught up, given whether a leader
// is known and its commit and applied indexes now; when it has not, why.
func (p *catchUp) check(leaderKnown bool, commit, applied uint64) (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reached {
		return true, ""
	}
	if p.target == 0 {
		if !leaderKnown {
			return false, "catching up (no leader yet)"
		}
		p.target = max(p.start, commit)
	}
	if applied < p.target {
		return false, fmt.Sprintf("catching up (applied %d of %d)", applied, p.target)
	}
	p.reached = true
	return true, ""
}

// shardChecks lists the failing checks of shard n's replica.
func shardChecks(n int, rep *raftstore.Node, p *catchUp) []string {
	return groupChecks(fmt.Sprintf("shard %d", n), rep, p)
}

// groupChecks lists the failing checks of a raft group's replica, each
// line starting with name.
func groupChecks(name string, rep *raftstore.Node, p *catchUp) []string {
	if err := rep.Err(); err != nil {
		return []string{fmt.Sprintf("%s: stopped: %v", name, err)}
	}
	var out []string
	addr, _ := rep.Leader()
	known := addr != "" || rep.IsLeader()
	if !known {
		out = append(out, name+": no leader")
	}
	// raft's applied index, not the state machine's (raftstore's counts
	// commands only, and stays behind configuration and no-op entries).
	if ok, why := p.check(known, rep.Raft().CommitIndex(), rep.Raft().AppliedIndex()); !ok {
		out = append(out, name+": "+why)
	}
	return out
}

// NotReady lists the core node's failing readiness checks (none: ready),
// one line each, such as "shard 2: no leader".
func (c *Core) NotReady() []string {
	select {
	case <-c.quit:
		return []string{"core: closing"}
	default:
	}
	var out []string
	if !c.meshUp.Load() {
		out = append(out, "mesh: not serving yet")
	}
	for n, rep := range c.Replicas {
		out = append(out, shardChecks(n, rep, c.progress[n])...)
	}
	if c.catalog != nil {
		cat := groupChecks("catalog", c.catalog.rep, c.catalogProgress)
		if len(cat) == 0 && !c.catalog.booted.Load() {
			cat = append(cat, "catalog: the declared topology is not in yet")
		}
		out = append(out, cat...)
	}
	return out
}
