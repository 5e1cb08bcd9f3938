package cluster

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
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
// turns); a newer leader's first change is a promotion of a core the
// older does not know, after which the older holds. The price: a voting
// core removed from every configuration holds the voters where they are
// (logged; nothing removes a catalog server yet).
//
// Settled: the leader has seen the server in the group's configuration
// for catalogSettle and no heartbeat to it has failed for that long
// (hashicorp/raft does not tell a leader how far a follower's log is; a
// non-voter that took heartbeats for a while takes the entries too, and a
// voter added a little behind only catches up before its vote counts).
// A new leader waits catalogSettle before its first change.

// catalogSettle is how long a server must have been in the catalog's
// configuration, with its heartbeats answered, before the leader changes
// the voters with it in mind.
const catalogSettle = 3 * time.Second

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
// settled reports a server the leader has seen long enough (above). Pure:
// the leader's loop (reconcileVoters) makes the change.
func nextVoterStep(servers []raft.Server, voters, known []string, self string, settled func(id string) bool) voterStep {
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
	// Promote first.
	planned := slices.Sorted(slices.Values(voters))
	waiting := ""
	for _, id := range planned {
		s, in := suffrage[id]
		switch {
		case in && s == raft.Voter:
		case !in:
			waiting = firstReason(waiting, fmt.Sprintf("planned voter %s is not in the group yet", id))
		case !settled(id):
			waiting = firstReason(waiting, fmt.Sprintf("planned voter %s is not settled yet", id))
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
		if id != self && !settled(id) {
			return voterStep{reason: fmt.Sprintf("planned voter %s is not settled: no demotion", id)}
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
	return voterStep{reason: "no planned voter to hand the leadership to"} // planned is self alone, and self is not planned: cannot happen
}

// firstReason keeps the first of two reasons.
func firstReason(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// peerWatch is what the catalog's leader knows of its servers for
// nextVoterStep's settled: when it first saw each in the configuration
// and when a heartbeat to it last failed (a raft observer).
type peerWatch struct {
	mu     sync.Mutex
	seen   map[string]time.Time // guarded by mu; reset when leadership is lost
	failed map[string]time.Time // guarded by mu
}

func newPeerWatch() *peerWatch {
	return &peerWatch{seen: map[string]time.Time{}, failed: map[string]time.Time{}}
}

// observe records the failed heartbeats r reports until done is closed.
func (w *peerWatch) observe(r *raft.Raft, done <-chan struct{}) {
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.FailedHeartbeatObservation)
		return ok
	})
	r.RegisterObserver(obs)
	defer r.DeregisterObserver(obs)
	for {
		select {
		case <-done:
			return
		case o := <-ch:
			if f, ok := o.Data.(raft.FailedHeartbeatObservation); ok {
				w.mu.Lock()
				w.failed[string(f.PeerID)] = time.Now()
				w.mu.Unlock()
			}
		}
	}
}

// saw records the servers of the configuration the leader read at now,
// forgetting those it no longer holds.
func (w *peerWatch) saw(servers []raft.Server, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in := map[string]bool{}
	for _, s := range servers {
		id := string(s.ID)
		in[id] = true
		if _, ok := w.seen[id]; !ok {
			w.seen[id] = now
		}
	}
	for id := range w.seen {
		if !in[id] {
			delete(w.seen, id)
		}
	}
}

// reset forgets when servers were first seen (leadership lost: a new
// term starts the wait again).
func (w *peerWatch) reset() {
	w.mu.Lock()
	clear(w.seen)
	w.mu.Unlock()
}

// settled reports whether id was seen for catalogSettle before now and
// no heartbeat to it failed in that time.
func (w *peerWatch) settled(id string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen, ok := w.seen[id]
	if !ok || now.Sub(seen) < catalogSettle {
		return false
	}
	f, ok := w.failed[id]
	return !ok || now.Sub(f) >= catalogSettle
}

// voterChanges counts the leader's voter changes by op (metrics).
type voterChanges [voterTransfer + 1]atomic.Uint64

// manageMembers is the leader's loop of the header: non-voters added,
// voters reconciled, once a second.
func (g *catalogGroup) manageMembers() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	hold := "" // the last reason logged for holding
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-tick.C:
		}
		if !g.rep.IsLeader() {
			g.peers.reset()
			hold = ""
			continue
		}
		f := g.rep.Raft().GetConfiguration()
		if f.Error() != nil {
			continue
		}
		if g.addNonvoters(f.Configuration().Servers) {
			continue // the next tick reads the new configuration
		}
		now := time.Now()
		g.peers.saw(f.Configuration().Servers, now)
		step := nextVoterStep(f.Configuration().Servers, g.voters, g.all, g.self, func(id string) bool { return g.peers.settled(id, now) })
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
