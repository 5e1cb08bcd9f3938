package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// OpsClient is `relaymesh admin`'s side of MethodAdminOps: a mesh node
// with an admin certificate that asks the cores it is given, and the
// cores they name.
type OpsClient struct {
	node  *mesh.Node
	id    *mesh.Identity
	seeds []string
}

// ErrOps marks a refusal or failure a core answered (OpsReply.Err).
var ErrOps = errors.New("cluster: admin")

// maxLeaderHops bounds how many not_leader answers one operation follows.
const maxLeaderHops = 8

// DialOps starts an admin mesh node at meshAddr (":0" is fine) with the
// admin certificate id, to ask cores (mesh addresses, at least one). The
// cores refuse any other role (an error wrapping ErrForbidden).
func DialOps(id *mesh.Identity, meshAddr string, cores []string, log *slog.Logger) (*OpsClient, error) {
	if len(cores) == 0 {
		return nil, fmt.Errorf("%w: no core to ask", ErrOps)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := mesh.Listen(meshAddr, id, log)
	if err != nil {
		return nil, fmt.Errorf("%w: mesh: %w", ErrOps, err)
	}
	return &OpsClient{node: n, id: id, seeds: slices.Clone(cores)}, nil
}

// Seeds are the cores the client asks first.
func (c *OpsClient) Seeds() []string { return slices.Clone(c.seeds) }

// Close stops the client's mesh node.
func (c *OpsClient) Close() error { return c.node.Close() }

// call asks the core at addr.
func (c *OpsClient) call(ctx context.Context, addr string, req *meshpb.OpsRequest) (*meshpb.OpsReply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := c.node.Call(ctx, addr, meshpb.MethodAdminOps, b)
	if errors.Is(err, mesh.ErrForbidden) {
		return nil, fmt.Errorf("%s refused certificate %q of role %s (admin commands take a certificate of role admin: relaymesh pki issue --role admin): %w",
			addr, c.id.Name, c.id.Role, mesh.ErrForbidden)
	}
	if err != nil {
		return nil, err
	}
	rep := new(meshpb.OpsReply)
	if err := json.Unmarshal(out, rep); err != nil {
		return nil, fmt.Errorf("bad reply from %s: %w", addr, err)
	}
	return rep, nil
}

// NodeResult is one core's answer to status, or why there is none.
type NodeResult struct {
	Addr   string             `json:"addr"`
	Status *meshpb.NodeStatus `json:"status,omitempty"`
	Err    string             `json:"error,omitempty"` // unreachable, refused
	// Refused: the core refused the client's certificate (ErrForbidden).
	Refused bool `json:"refused,omitempty"`
}

// Status asks every core it knows for its status: the seeds, then every
// core their answers name, at once, each within perCore. A core that does
// not answer is a NodeResult with Err, not an error.
func (c *OpsClient) Status(ctx context.Context, perCore time.Duration) []NodeResult {
	seen := map[string]bool{}
	var out []NodeResult
	next := c.seeds
	for len(next) > 0 {
		var ask []string
		for _, a := range next {
			if !seen[a] {
				seen[a] = true
				ask = append(ask, a)
			}
		}
		res := make([]NodeResult, len(ask))
		var wg sync.WaitGroup
		for i, a := range ask {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, perCore)
				defer cancel()
				res[i].Addr = a
				rep, err := c.call(cctx, a, &meshpb.OpsRequest{Op: meshpb.OpStatus})
				switch {
				case err != nil:
					res[i].Err, res[i].Refused = err.Error(), errors.Is(err, mesh.ErrForbidden)
				case rep.Err != "":
					res[i].Err = rep.Err
				case rep.Status == nil:
					res[i].Err = "empty status"
				default:
					res[i].Status = rep.Status
				}
			})
		}
		wg.Wait()
		next = nil
		for _, r := range res {
			if r.Status == nil {
				continue
			}
			next = append(next, r.Status.Cores...)
			for _, rr := range r.Status.Remote {
				next = append(next, rr.Cores...)
			}
		}
		out = append(out, res...)
	}
	slices.SortFunc(out, func(a, b NodeResult) int { return cmp.Compare(a.Addr, b.Addr) })
	return out
}

// Do runs an operation where it must run: on a seed first, then on the
// leader each not_leader answer names. While the group has no leader (an
// election), or no core could be reached, it tries again, every seed in
// turn, until ctx ends. A request that may have reached a core is never
// sent twice (a change could be applied twice): its failure is returned.
// A refusal comes back as an error wrapping ErrOps.
func (c *OpsClient) Do(ctx context.Context, req *meshpb.OpsRequest) (*meshpb.OpsReply, error) {
	var lastErr error
	for round := 0; ; round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w (%v)", ErrOps, ctx.Err(), lastErr)
			case <-time.After(200 * time.Millisecond):
			}
		}
		// The seeds, then the cores their answers name (a core whose
		// replica was removed from the group knows no leader to send to).
		cores := slices.Clone(c.seeds)
		for k := 0; k < len(cores); k++ {
			addr := cores[k]
			for hop := 0; hop < maxLeaderHops && ctx.Err() == nil; hop++ {
				// A core that cannot be reached would hold the call until
				// ctx ends: look first, briefly (the mesh keeps the
				// connection for the call).
				st, err := c.reach(ctx, addr)
				if errors.Is(err, mesh.ErrForbidden) {
					return nil, fmt.Errorf("%w: %w", ErrOps, err)
				}
				if err != nil {
					lastErr = fmt.Errorf("%s: %w", addr, err)
					break
				}
				for _, a := range st.GetCores() {
					if !slices.Contains(cores, a) {
						cores = append(cores, a)
					}
				}
				rep, err := c.call(ctx, addr, req)
				if err != nil {
					switch {
					case errors.Is(err, mesh.ErrForbidden):
						return nil, fmt.Errorf("%w: %w", ErrOps, err)
					case !errors.Is(err, mesh.ErrNotSent) && req.Op != meshpb.OpStatus && req.Op != meshpb.OpConversation:
						return nil, fmt.Errorf("%w: %s: %w (it may have been done: see admin status)", ErrOps, addr, err)
					}
					lastErr = fmt.Errorf("%s: %w", addr, err)
					break // the next seed
				}
				if rep.Err != "" {
					return nil, fmt.Errorf("%w: %s", ErrOps, rep.Err)
				}
				if !rep.NotLeader {
					return rep, nil
				}
				if rep.Leader == "" || rep.Leader == addr {
					lastErr = fmt.Errorf("%s knows no leader", addr)
					break // an election: the next seed, or the next round
				}
				addr = rep.Leader
			}
		}
	}
}

// reachTimeout bounds the look at a core before an operation is sent.
const reachTimeout = 3 * time.Second

// reach checks that the core at addr answers (a status call) within
// reachTimeout, and returns its status (nil if it sent none).
func (c *OpsClient) reach(ctx context.Context, addr string) (*meshpb.NodeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	rep, err := c.call(ctx, addr, &meshpb.OpsRequest{Op: meshpb.OpStatus})
	if err != nil {
		return nil, err
	}
	return rep.Status, nil
}

// ReplicaView is one replica in a merged status.
type ReplicaView struct {
	Node    string `json:"node"` // [core] node_id of the core holding it
	Addr    string `json:"addr"`
	State   string `json:"state"`
	Term    uint64 `json:"term"`
	Commit  uint64 `json:"commit_index"`
	Applied uint64 `json:"applied_index"`
	Last    uint64 `json:"last_index"`
	// Lag is how many entries the group's leader has committed that this
	// replica has not applied (0 when no leader answered).
	Lag uint64 `json:"lag"`
	Err string `json:"error,omitempty"`
}

// GroupView is one raft group across the cores that answered.
type GroupView struct {
	Group      string                `json:"group"` // shard, catalog
	Region     int                   `json:"region,omitempty"`
	Shard      int                   `json:"shard"`
	Leader     string                `json:"leader,omitempty"` // node name when a core that answered is it, else its address
	LeaderAddr string                `json:"leader_addr,omitempty"`
	Term       uint64                `json:"term"`
	Servers    []meshpb.ServerStatus `json:"servers,omitempty"` // the configuration as the leader (else a replica) has it
	Replicas   []ReplicaView         `json:"replicas"`
}

// ClusterView is the merge of every core's status.
type ClusterView struct {
	Nodes  []NodeResult `json:"nodes"`
	Groups []*GroupView `json:"groups"`
}

// MergeStatus merges the cores' answers: per group (each region's shards
// by number, then the catalog), its leader, term and configuration, and
// each replica's indexes and lag behind the leader's commit index.
func MergeStatus(nodes []NodeResult) *ClusterView {
	v := &ClusterView{Nodes: nodes}
	name := map[string]string{} // mesh address -> node id
	for _, n := range nodes {
		if n.Status != nil {
			name[n.Status.Addr] = n.Status.Node
		}
	}
	type key struct {
		group         string
		region, shard int
	}
	groups := map[key]*GroupView{}
	leaderCommit := map[key]uint64{}
	led := map[key]bool{}
	for _, n := range nodes {
		if n.Status == nil {
			continue
		}
		for _, g := range n.Status.Groups {
			k := key{g.Group, g.Region, g.Shard}
			gv := groups[k]
			if gv == nil {
				gv = &GroupView{Group: g.Group, Region: g.Region, Shard: g.Shard}
				groups[k] = gv
			}
			gv.Replicas = append(gv.Replicas, ReplicaView{Node: n.Status.Node, Addr: n.Status.Addr, State: g.State, Term: g.Term,
				Commit: g.CommitIndex, Applied: g.AppliedIndex, Last: g.LastIndex, Err: g.Err})
			// The leader: the replica that leads in the highest term; else
			// the leader the replicas of the highest term know.
			leads := g.State == "Leader"
			switch {
			case leads && g.Term >= gv.Term:
				gv.Term, gv.LeaderAddr, gv.Servers = g.Term, n.Status.Addr, g.Servers
				leaderCommit[k], led[k] = g.CommitIndex, true
			case !led[k] && (g.Term > gv.Term || (g.Term == gv.Term && gv.LeaderAddr == "")):
				gv.Term, gv.LeaderAddr, gv.Servers = g.Term, g.Leader, g.Servers
			}
		}
	}
	for k, gv := range groups {
		gv.Leader = cmp.Or(name[gv.LeaderAddr], gv.LeaderAddr)
		if lc := leaderCommit[k]; led[k] {
			for i := range gv.Replicas {
				if r := &gv.Replicas[i]; r.Applied < lc {
					r.Lag = lc - r.Applied
				}
			}
		}
		slices.SortFunc(gv.Replicas, func(a, b ReplicaView) int { return cmp.Compare(a.Node, b.Node) })
		v.Groups = append(v.Groups, gv)
	}
	slices.SortFunc(v.Groups, func(a, b *GroupView) int {
		// shards before the catalog, by region then number
		return cmp.Or(cmp.Compare(b.Group, a.Group), cmp.Compare(a.Region, b.Region), cmp.Compare(a.Shard, b.Shard))
	})
	return v
}

// CheckAdd checks, before add-replica, that the core to add answers at
// addr as node and hosts shard n: a voter added that never answers
// raises the group's quorum for nothing (a group of one would stop
// committing at once).
func (c *OpsClient) CheckAdd(ctx context.Context, node, addr string, n int) error {
	rep, err := c.call(ctx, addr, &meshpb.OpsRequest{Op: meshpb.OpStatus})
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s at %s does not answer (start it first, hosting shard %d): %v", ErrOps, node, addr, n, err)
	case rep.Status == nil:
		return fmt.Errorf("%w: %s at %s: %s", ErrOps, node, addr, cmp.Or(rep.Err, "empty status"))
	case rep.Status.Node != node:
		return fmt.Errorf("%w: the core at %s is %s, not %s", ErrOps, addr, rep.Status.Node, node)
	}
	for _, g := range rep.Status.Groups {
		if g.Group == meshpb.GroupShard && g.Shard == n {
			return nil
		}
	}
	return fmt.Errorf("%w: %s hosts no replica of shard %d (its [core] shards is lower)", ErrOps, node, n)
}

// CheckRemove checks, before remove-replica, that the voters left after
// node's removal from g would still make a quorum of their own: a
// majority of them answered status (v) in the leader's term. Removing a
// healthy voter while another is down can leave a group that never
// commits again (the removal itself included).
func CheckRemove(v *ClusterView, g *GroupView, node string) error {
	healthy := map[string]bool{}
	for _, r := range g.Replicas {
		if r.Err == "" && r.Term == g.Term && (r.State == "Leader" || r.State == "Follower") {
			healthy[r.Addr] = true
		}
	}
	var left, ok int
	for _, s := range g.Servers {
		if !s.Voter || s.ID == node {
			continue
		}
		left++
		if healthy[s.Addr] {
			ok++
		}
	}
	if left > 0 && ok <= left/2 {
		return fmt.Errorf("%w: without %s, %d voter(s) would be left of which %d answer: a quorum needs %d (bring the others back first, or --force)",
			ErrOps, node, left, ok, left/2+1)
	}
	return nil
}
