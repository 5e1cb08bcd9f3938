package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// The catalog's members follow the configuration (docs/MESH.md
// "Catalog"). On the leader, once a second:
//
//  1. every core the configuration names that the group lacks joins as a
//     non-voter (AddNonvoter);
//  2. the voters move towards the plan (planCatalog), one change a tick
//     (nextVoterStep): first a planned voter that is a non-voter, settled,
//     is promoted; once every planned voter votes and is settled, a voter
//     the configuration knows but the plan does not name is demoted, never
//     below the plan's count. The leader never demotes itself: it hands
//     the leadership to a planned voter and leaves the demotion to it.
//
// Servers the configuration does not know (a core of a newer
// configuration during a rolling restart, or one removed from every
// configuration) are never changed. More: while such a server votes, the
// leader changes no voters at all. A leader with an older configuration
// therefore does not undo what a newer one did (it would promote the old
// voters again, the newer one demote them: flapping while the two lead in
// turns); when the newer configuration adds cores (a region, say), the
// newer leader's first change is a promotion of one the older does not
// know (demotions wait for every planned voter to vote), after which the
// older holds. The price: a voting
// core removed from every configuration holds the voters where they are
// (logged; nothing removes a catalog server yet).
//
// Settled: the leader has seen the server in the group's configuration
// for catalogSettle (a new leader waits that long before its first
// change), and the core answers, when asked at the change, that its
// replica's log ends at most catalogMaxLag entries before the leader's
// commit index (meshpb.MethodCatalogProgress: hashicorp/raft does not tell
// a leader how far a follower is). A core that does not answer (down, cut
// off, or a binary from before the method) is not settled: it is not
// promoted, and no voter is demoted while it is a planned voter.

// Settling (above): how long a server must have been in the catalog's
// configuration as the leader has seen it, how long the leader waits for
// a core's progress, and how far behind the leader's commit index its log
// may end.
const (
	catalogSettle    = 3 * time.Second
	catalogProbeWait = time.Second
	catalogMaxLag    = 256
)

// voterOp is what nextVoterStep asks of the leader.
type voterOp int

const (
	voterNone     voterOp = iota // nothing (reason says why, "" when the voters are the plan's)
	voterPromote                 // AddVoter of an existing non-voter
	voterDemote                  // DemoteVoter
	voterTransfer                // leadership to id, before the leader's own demotion
)

func (o voterOp) String() string {
	return [...]string{"none", "promote", "demote", "transfer"}[o]
}

// voterStep is one change of the catalog's voters and its reason.
type voterStep struct {
	op     voterOp
	id     string
	reason string
}

// nextVoterStep is the next change that moves the catalog's voters
// (servers, the group's configuration now) towards the plan's (voters),
// decided by the leader self whose configuration knows the cores known;
// unsettled says why a planned voter is not settled (above; "" when it
// is). Pure: the leader's loop (manageMembers) makes the change.
func nextVoterStep(servers []raft.Server, voters, known []string, self string, unsettled func(id string) string) voterStep {
	suffrage := map[string]raft.ServerSuffrage{}
	var voting []string
	for _, s := range servers {
		id := string(s.ID)
		suffrage[id] = s.Suffrage
		if s.Suffrage == raft.Voter {
			voting = append(voting, id)
		}
	}
	slices.Sort(voting)
	// A voter outside this configuration: a newer configuration's work,
	// or a core removed from every one. Either way, not this leader's to
	// undo (the header says why it holds everything).
	for _, id := range voting {
		if !slices.Contains(known, id) {
			return voterStep{reason: fmt.Sprintf("voter %s is not in this core's configuration: voters left as they are", id)}
		}
	}
	planned := slices.Sorted(slices.Values(voters))
	if len(planned) == 0 { // planCatalog always names one; a plan of none demotes nobody
		return voterStep{reason: "no planned voters"}
	}
	// Promote first.
	waiting := ""
	for _, id := range planned {
		s, in := suffrage[id]
		switch {
		case in && s == raft.Voter:
		case !in:
			waiting = firstReason(waiting, fmt.Sprintf("planned voter %s is not in the group yet", id))
		case unsettled(id) != "":
			waiting = firstReason(waiting, fmt.Sprintf("planned voter %s is not settled yet: %s", id, unsettled(id)))
		default:
			return voterStep{op: voterPromote, id: id, reason: fmt.Sprintf("planned voter, a settled non-voter (voters %v, plan %v)", voting, planned)}
		}
	}
	if waiting != "" {
		return voterStep{reason: waiting}
	}
	// Every planned voter votes; demote the extras the plan knows, once
	// the planned voters are settled (a demotion spends the margin the
	// plan's voters then have to hold). Only extras are demoted, so the
	// voters never fall below the plan's count.
	var extra []string
	for _, id := range voting {
		if !slices.Contains(planned, id) {
			extra = append(extra, id)
		}
	}
	if len(extra) == 0 {
		return voterStep{}
	}
	for _, id := range planned {
		if w := unsettled(id); id != self && w != "" {
			return voterStep{reason: fmt.Sprintf("planned voter %s is not settled: no demotion (%s)", id, w)}
		}
	}
	for _, id := range extra {
		if id != self {
			return voterStep{op: voterDemote, id: id, reason: fmt.Sprintf("not a planned voter (voters %v, plan %v)", voting, planned)}
		}
	}
	// Only the leader itself is left to demote: hand over to a planned
	// voter, which demotes it.
	for _, id := range planned {
		if id != self {
			return voterStep{op: voterTransfer, id: id, reason: fmt.Sprintf("this core is not a planned voter (plan %v): the next leader demotes it", planned)}
		}
	}
	return voterStep{reason: "no planned voter to hand the leadership to"} // planned is empty: ruled out above
}

// firstReason keeps the first of two reasons.
func firstReason(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// voterChanges counts the leader's voter changes by op (metrics).
type voterChanges [voterTransfer + 1]atomic.Uint64

// manageMembers is the leader's loop of the header: non-voters added,
// voters reconciled, once a second.
func (g *catalogGroup) manageMembers() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seen := map[string]time.Time{} // when this leader first saw each server in the configuration
	hold := ""                     // the last reason logged for holding
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
		if !g.rep.IsLeader() {
			clear(seen) // a new term starts the wait again
			hold = ""
			continue
		}
		f := g.rep.Raft().GetConfiguration()
		if f.Error() != nil {
			continue
		}
		servers := f.Configuration().Servers
		if g.addNonvoters(servers) {
			continue // the next tick reads the new configuration
		}
		now := time.Now()
		for id := range seen {
			if !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == id }) {
				delete(seen, id)
			}
		}
		for _, s := range servers {
			if _, ok := seen[string(s.ID)]; !ok {
				seen[string(s.ID)] = now
			}
		}
		// Ask the planned voters' progress only when a change is due.
		step := nextVoterStep(servers, g.voters, g.all, g.self, func(string) string { return "" })
		if step.op != voterNone {
			why := g.settle(servers, seen, now)
			step = nextVoterStep(servers, g.voters, g.all, g.self, func(id string) string { return why[id] })
		}
		if step.op == voterNone {
			if step.reason != hold && step.reason != "" {
				g.log.Info("catalog voters: holding", "reason", step.reason)
			}
			hold = step.reason
			continue
		}
		hold = ""
		g.changeVoters(step, f.Index())
	}
}

// settle says, for each planned voter but this core, why it is not
// settled ("" when it is): seen in the configuration for less than
// catalogSettle, or its replica's progress (MethodCatalogProgress, asked
// now, all at once) not in, or its log more than catalogMaxLag entries
// behind this leader's commit index.
func (g *catalogGroup) settle(servers []raft.Server, seen map[string]time.Time, now time.Time) map[string]string {
	why := map[string]string{}
	var mu sync.Mutex // guards why while the probes run
	var wg sync.WaitGroup
	commit := g.rep.Raft().CommitIndex()
	for _, id := range g.voters {
		if id == g.self || !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == id }) {
			continue
		}
		if d := now.Sub(seen[id]); d < catalogSettle {
			why[id] = fmt.Sprintf("in the group for less than %v", catalogSettle)
			continue
		}
		wg.Go(func() {
			w := g.behind(id, commit)
			mu.Lock()
			why[id] = w
			mu.Unlock()
		})
	}
	wg.Wait()
	return why
}

// behind asks the core at addr how far its catalog replica is and says
// why it is not caught up with commit ("" when it is).
func (g *catalogGroup) behind(addr string, commit uint64) string {
	ctx, cancel := context.WithTimeout(g.ctx, catalogProbeWait)
	defer cancel()
	out, err := g.node.Call(ctx, addr, meshpb.MethodCatalogProgress, nil)
	if err != nil {
		return fmt.Sprintf("its progress is not in: %v", err)
	}
	var p CatalogProgress
	if err := json.Unmarshal(out, &p); err != nil {
		return fmt.Sprintf("its progress does not decode: %v", err)
	}
	if p.Last+catalogMaxLag < commit {
		g.log.Debug("catalog voters: behind", "server", addr, "last", p.Last, "commit", commit)
		return fmt.Sprintf("its log ends more than %d entries before the commit index", catalogMaxLag)
	}
	return ""
}

// CatalogProgress is the answer to meshpb.MethodCatalogProgress (JSON):
// how far a core's catalog replica is.
type CatalogProgress struct {
	Last    uint64 `json:"last"`    // its raft log's last index
	Applied uint64 `json:"applied"` // the last index it applied
}

// handleProgress serves meshpb.MethodCatalogProgress.
func (g *catalogGroup) handleProgress(ctx context.Context, peer string, req []byte) ([]byte, error) {
	return json.Marshal(CatalogProgress{Last: g.rep.Raft().LastIndex(), Applied: g.rep.AppliedIndex()})
}

// addNonvoters adds every core the configuration names that servers
// lack, as a non-voter; it reports whether it added any.
func (g *catalogGroup) addNonvoters(servers []raft.Server) bool {
	have := map[string]bool{}
	for _, s := range servers {
		have[string(s.ID)] = true
	}
	added := false
	for _, addr := range g.all {
		if have[addr] {
			continue
		}
		if err := g.rep.Raft().AddNonvoter(raft.ServerID(addr), raft.ServerAddress(addr), 0, 5*time.Second).Error(); err != nil {
			g.log.Debug("catalog: add non-voter", "addr", addr, "err", err)
			continue
		}
		added = true
	}
	return added
}

// changeVoters makes step, against the configuration at index prev (a
// change made since fails it; the next tick decides again).
func (g *catalogGroup) changeVoters(step voterStep, prev uint64) {
	r := g.rep.Raft()
	id := raft.ServerID(step.id)
	var err error
	switch step.op {
	case voterPromote:
		err = r.AddVoter(id, raft.ServerAddress(step.id), prev, 5*time.Second).Error()
	case voterDemote:
		err = r.DemoteVoter(id, prev, 5*time.Second).Error()
	case voterTransfer:
		err = r.LeadershipTransferToServer(id, raft.ServerAddress(step.id)).Error()
	}
	if err != nil {
		g.log.Warn("catalog voters: change failed", "change", step.op.String(), "server", step.id, "reason", step.reason, "err", err)
		return
	}
	g.changes[step.op].Add(1)
	g.log.Info("catalog voters: changed", "change", step.op.String(), "server", step.id, "reason", step.reason)
}
