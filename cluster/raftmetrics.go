package cluster

import (
	"fmt"
	"io"
)

// writeRaftMetrics writes the Raft state of every shard replica the node
// hosts, labelled shard="n", and the node's readiness (/readyz) as a
// gauge: what a dashboard needs to see leaders, terms and replication
// lag per shard (commit index minus applied index; the leader's commit
// minus a follower's shows a replica behind).
func (c *Core) writeRaftMetrics(w io.Writer) error {
	type row struct {
		name, help, typ string
		v               func(n int) uint64
	}
	rows := []row{
		{"relaymesh_raft_leader", "1 when this core's replica leads the shard.", "gauge", func(n int) uint64 { return b2u(c.Replicas[n].IsLeader()) }},
		{"relaymesh_raft_has_leader", "1 when this core's replica knows the shard's leader (itself or another core).", "gauge", func(n int) uint64 {
			addr, _ := c.Replicas[n].Leader()
			return b2u(addr != "" || c.Replicas[n].IsLeader())
		}},
		{"relaymesh_raft_term", "The shard's raft term as this replica knows it.", "gauge", func(n int) uint64 { return c.Replicas[n].Raft().CurrentTerm() }},
		{"relaymesh_raft_last_log_index", "The last index of this replica's raft log.", "gauge", func(n int) uint64 { return c.Replicas[n].Raft().LastIndex() }},
		{"relaymesh_raft_commit_index", "The shard's commit index as this replica knows it.", "gauge", func(n int) uint64 { return c.Replicas[n].Raft().CommitIndex() }},
		{"relaymesh_raft_applied_index", "The last raft index this replica applied.", "gauge", func(n int) uint64 { return c.Replicas[n].Raft().AppliedIndex() }},
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", r.name, r.help, r.name, r.typ); err != nil {
			return err
		}
		for n := range c.Replicas {
			if _, err := fmt.Fprintf(w, "%s{shard=\"%d\"} %d\n", r.name, n, r.v(n)); err != nil {
				return err
			}
		}
	}
	_, err := fmt.Fprintf(w, "# HELP relaymesh_core_ready 1 when the core's /readyz checks pass (every shard's leader known, replicas caught up).\n# TYPE relaymesh_core_ready gauge\nrelaymesh_core_ready %d\n",
		b2u(len(c.NotReady()) == 0))
	return err
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
