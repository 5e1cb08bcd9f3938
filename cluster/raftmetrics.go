package cluster

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/metric"
)

var (
	descRaftLeader    = metric.Gauge("relaymesh_raft_leader", "1 when this core's replica leads the shard.", "shard")
	descRaftHasLeader = metric.Gauge("relaymesh_raft_has_leader", "1 when this core's replica knows the shard's leader (itself or another core).", "shard")
	descRaftTerm      = metric.Gauge("relaymesh_raft_term", "The shard's raft term as this replica knows it.", "shard")
	descRaftLastIndex = metric.Gauge("relaymesh_raft_last_log_index", "The last index of this replica's raft log.", "shard")
	descRaftCommit    = metric.Gauge("relaymesh_raft_commit_index", "The shard's commit index as this replica knows it.", "shard")
	descRaftApplied   = metric.Gauge("relaymesh_raft_applied_index", "The last raft index this replica applied.", "shard")
	descRaftPropose   = metric.Histogram("relaymesh_raft_apply_seconds", "Time from a proposal on the shard's leader to its applied result (append, replication to a quorum, commit, the state machine's apply): what a write waits for. Proposals that failed (not leader, timeout) are left out.", "shard")
	descRaftFSMBatch  = metric.Histogram("relaymesh_raft_fsm_batch_seconds", "Time this replica's state machine took to apply one batch of committed entries and commit it to Pebble.", "shard")
	descCoreReady     = metric.Gauge("relaymesh_core_ready", "1 when the core's /readyz checks pass (every shard's leader known, replicas caught up).")
)

// raftCollector returns the collector of the Raft state of every shard
// replica the node hosts, labelled shard="n", and of the node's
// readiness (/readyz) as a gauge: what a dashboard needs to see leaders,
// terms and replication lag per shard (commit index minus applied index;
// the leader's commit minus a follower's shows a replica behind), and
// how long proposals and the state machine's batches take.
func (c *Core) raftCollector() prometheus.Collector {
	descs := []metric.Desc{descRaftLeader, descRaftHasLeader, descRaftTerm, descRaftLastIndex, descRaftCommit, descRaftApplied, descRaftPropose, descRaftFSMBatch, descCoreReady}
	return metric.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		s := metric.Chan(ch)
		for n, rep := range c.Replicas {
			shard := strconv.Itoa(n)
			addr, _ := rep.Leader()
			r := rep.Raft()
			s.Add(descRaftLeader, b2f(rep.IsLeader()), shard)
			s.Add(descRaftHasLeader, b2f(addr != "" || rep.IsLeader()), shard)
			s.Add(descRaftTerm, float64(r.CurrentTerm()), shard)
			s.Add(descRaftLastIndex, float64(r.LastIndex()), shard)
			s.Add(descRaftCommit, float64(r.CommitIndex()), shard)
			s.Add(descRaftApplied, float64(r.AppliedIndex()), shard)
			propose, batch := rep.Latency()
			propose.Sample(ch, descRaftPropose, shard)
			batch.Sample(ch, descRaftFSMBatch, shard)
		}
		s.Add(descCoreReady, b2f(len(c.NotReady()) == 0))
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
