package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// `relaymesh admin shard move`: a replica of a shard moved from one core
// to another in one command, while clients keep sending. The steps are
// the ones an operator would run by hand, in the order that never lowers
// the group's fault tolerance:
//
//  1. add the new core as a non-voter (it replicates, does not vote, so a
//     replica far behind does not count against the quorum);
//  2. wait until it has caught up (its lag behind the leader's commit
//     index at most --max-lag);
//  3. promote it to a voter;
//  4. if the core moved from leads the shard, hand the leadership to the
//     new replica;
//  5. remove the old replica.
//
// Each step is an ordinary ops request; a move interrupted at any step
// can be run again with the same flags and goes on from where it stopped.

// moveStep is the interval at which the catch-up is looked at.
const moveStep = 250 * time.Millisecond

func adminShardMove(args []string, w, progress io.Writer) error {
	af := newAdminCmd("admin shard move")
	fs := af.fs
	shardFlag := fs.String("shard", "", "shard number")
	from := fs.String("from", "", "the replica to move away: its node id")
	to := fs.String("to", "", "the core to move it to: its node id ([core] node_id)")
	addr := fs.String("addr", "", "the mesh address of --to (host:port)")
	maxLag := fs.Uint64("max-lag", 64, "promote --to once it is at most this many entries behind the leader's commit index")
	force := fs.Bool("force", false, "remove --from even if the voters left would not all answer (see remove-replica --force)")
	if err := af.parseNone(args); err != nil {
		return err
	}
	group, n, err := parseGroup(*shardFlag)
	if err != nil {
		return fmt.Errorf("admin shard move: %w", err)
	}
	switch {
	case group == meshpb.GroupCatalog:
		return errors.New("admin shard move: the catalog's replicas follow the cores' configuration; only shards move")
	case *from == "" || *to == "":
		return errors.New("admin shard move: --from and --to are required")
	case *from == *to:
		return fmt.Errorf("admin shard move: --from and --to are both %s", *from)
	case *addr == "":
		return errors.New("admin shard move: --addr (the mesh address of --to) is required")
	}
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()
	name := fmt.Sprintf("shard %d", n)
	req := &meshpb.OpsRequest{Group: meshpb.GroupShard, Shard: n}
	say := func(format string, a ...any) { fmt.Fprintf(progress, "%s: "+format+"\n", append([]any{name}, a...)...) }

	view := func() (*cluster.ClusterView, *cluster.GroupView, error) {
		v := cluster.MergeStatus(cl.Status(ctx, min(5*time.Second, af.timeout)))
		g := findGroup(v, req, seedRegion(v, cl.Seeds()))
		if g == nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("admin shard move: %s: %w", name, ctx.Err())
			}
			return nil, nil, fmt.Errorf("admin shard move: unknown %s (no core that answered hosts it)", name)
		}
		return v, g, nil
	}
	_, g, err := view()
	if err != nil {
		return err
	}
	fromSrv, toSrv := server(g, *from), server(g, *to)
	switch {
	case toSrv != nil && toSrv.Addr != *addr:
		return fmt.Errorf("admin shard move: %s: %s is a replica already, at %s", name, *to, toSrv.Addr)
	case fromSrv == nil && toSrv != nil && toSrv.Voter:
		// Run again after it finished: nothing left to do.
		fmt.Fprintf(w, "%s: %s is not a replica and %s is a voter: moved already; replicas: %s\n", name, *from, *to, serverIDs(g))
		return nil
	case fromSrv == nil:
		return fmt.Errorf("admin shard move: %s has no replica %q (servers: %s)", name, *from, serverIDs(g))
	case !fromSrv.Voter:
		return fmt.Errorf("admin shard move: %s: %s is a non-voter: remove it with remove-replica", name, *from)
	}

	// 1. The new replica, as a non-voter, unless a run before added it.
	if toSrv == nil {
		if err := cl.CheckAdd(ctx, *to, *addr, n); err != nil {
			return fmt.Errorf("admin shard move: %w", err)
		}
		add := *req
		add.Op, add.Node, add.Addr, add.Nonvoter = meshpb.OpAddReplica, *to, *addr, true
		if _, err := cl.Do(ctx, &add); err != nil {
			return fmt.Errorf("admin shard move: add %s as a non-voter: %w", *to, err)
		}
		say("added %s at %s as a non-voter", *to, *addr)
	}

	// 2. Its catch-up, shown as it goes.
	if toSrv == nil || !toSrv.Voter {
		var last time.Time
		for {
			_, g, err = view()
			if err != nil {
				return err
			}
			r := replica(g, *addr)
			if r != nil && r.Err == "" && g.Leader != "" && r.Applied > 0 && r.Lag <= *maxLag {
				say("%s caught up: applied %d, %d behind the leader's commit", *to, r.Applied, r.Lag)
				break
			}
			if time.Since(last) >= time.Second {
				last = time.Now()
				if r == nil {
					say("waiting for %s to answer", *to)
				} else {
					say("%s catching up: applied %d, %d behind", *to, r.Applied, r.Lag)
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("admin shard move: %s is a non-voter of %s and has not caught up (%v); run the move again, or remove-replica --node %s", *to, name, ctx.Err(), *to)
			case <-time.After(moveStep):
			}
		}
		// 3. Promote it.
		add := *req
		add.Op, add.Node, add.Addr = meshpb.OpAddReplica, *to, *addr
		if _, err := cl.Do(ctx, &add); err != nil {
			return fmt.Errorf("admin shard move: promote %s to a voter: %w", *to, err)
		}
		say("%s is a voter", *to)
	}

	// 4. The leadership, if the replica moved away has it.
	v, g, err := view()
	if err != nil {
		return err
	}
	if g.Leader == *from {
		tr := *req
		tr.Op, tr.Node = meshpb.OpTransferLeader, *to
		if _, err := cl.Do(ctx, &tr); err != nil {
			return fmt.Errorf("admin shard move: hand the leadership from %s to %s: %w", *from, *to, err)
		}
		for g.Leader == "" || g.Leader == *from {
			select {
			case <-ctx.Done():
				return fmt.Errorf("admin shard move: %s: the leadership was handed off, but no core names a new leader yet (%v); run the move again", name, ctx.Err())
			case <-time.After(moveStep):
			}
			if v, g, err = view(); err != nil {
				return err
			}
		}
		say("leader %s -> %s", *from, g.Leader)
	}

	// 5. The old replica.
	if !*force {
		if err := cluster.CheckRemove(v, g, *from); err != nil {
			return fmt.Errorf("admin shard move: %s is a voter now, but %s was not removed: %w", *to, *from, err)
		}
	}
	rm := *req
	rm.Op, rm.Node, rm.Force = meshpb.OpRemoveReplica, *from, true
	rep, err := cl.Do(ctx, &rm)
	if err != nil {
		return fmt.Errorf("admin shard move: %s is a voter now; remove %s: %w", *to, *from, err)
	}
	if af.json {
		return writeJSON(w, rep.Group)
	}
	fmt.Fprintf(w, "%s: moved from %s to %s; replicas: %s\n", name, *from, *to, servers(rep.Group))
	return nil
}

// server is the configuration's server with id, or nil.
func server(g *cluster.GroupView, id string) *meshpb.ServerStatus {
	i := slices.IndexFunc(g.Servers, func(s meshpb.ServerStatus) bool { return s.ID == id })
	if i < 0 {
		return nil
	}
	return &g.Servers[i]
}

// replica is the replica at addr as its core reported it, or nil.
func replica(g *cluster.GroupView, addr string) *cluster.ReplicaView {
	i := slices.IndexFunc(g.Replicas, func(r cluster.ReplicaView) bool { return r.Addr == addr })
	if i < 0 {
		return nil
	}
	return &g.Replicas[i]
}

func serverIDs(g *cluster.GroupView) string {
	return servers(&meshpb.GroupStatus{Servers: g.Servers})
}
