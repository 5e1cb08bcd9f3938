package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestOpsMisuse: the admin rpc on a one-core region with two shards. Only
// an admin certificate may call it (an edge's and a core's are refused by
// the mesh); bad requests, unknown shards and groups, refused changes
// (the last voter, the catalog's members, a transfer with no other voter)
// come back as one-line errors and change nothing; a conversation's home
// and metadata are read from its shard.
func TestOpsMisuse(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "core-2", "edge-1", "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"),
		Identity: ids["core-1"], Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, c.Ready)
	waitUntil(t, c.Replicas[1].IsLeader)
	waitUntil(t, c.CatalogReady)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	log := slog.New(slog.DiscardHandler)
	for _, name := range []string{"edge-1", "core-2"} {
		n, err := mesh.Listen("127.0.0.1:0", ids[name], log)
		if err != nil {
			t.Fatal(err)
		}
		_, err = n.Call(ctx, c.Node.Addr(), meshpb.MethodAdminOps, []byte(`{"op":"status"}`))
		if !errors.Is(err, mesh.ErrForbidden) {
			t.Errorf("%s calling admin-ops: got %v, want ErrForbidden", name, err)
		}
		n.Close()
	}
	// Through OpsClient: refused too, saying why.
	ecl, err := DialOps(ids["edge-1"], "127.0.0.1:0", []string{c.Node.Addr()}, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpTransferLeader}); !errors.Is(err, ErrOps) || !errors.Is(err, mesh.ErrForbidden) || !strings.Contains(err.Error(), "role edge") {
		t.Errorf("an edge's transfer: got %v, want ErrOps and ErrForbidden naming the role", err)
	}
	if res := ecl.Status(ctx, 5*time.Second); len(res) != 1 || !res[0].Refused || res[0].Status != nil {
		t.Errorf("an edge's status: got %+v, want refused", res)
	}
	ecl.Close()

	cl, err := DialOps(ids["admin-1"], "127.0.0.1:0", []string{c.Node.Addr()}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	raw := func(b []byte) *meshpb.OpsReply {
		t.Helper()
		out, err := cl.node.Call(ctx, c.Node.Addr(), meshpb.MethodAdminOps, b)
		if err != nil {
			t.Fatal(err)
		}
		var r meshpb.OpsReply
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	for _, tc := range []struct {
		name string
		req  []byte
		want string
	}{
		{"not JSON", []byte("\x00garbage"), "bad request"},
		{"empty", nil, "bad request"},
		{"unknown op", []byte(`{"op":"format-disk"}`), "unknown op"},
		{"huge", append([]byte(`{"op":"status","app":"`), make([]byte, MaxOpsRequest)...), "at most"},
	} {
		if r := raw(tc.req); !strings.Contains(r.Err, tc.want) {
			t.Errorf("%s: got %+v, want an error with %q", tc.name, r, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		req  meshpb.OpsRequest
		want string
	}{
		{"unknown shard", meshpb.OpsRequest{Op: meshpb.OpTransferLeader, Shard: 2}, "unknown shard 2"},
		{"negative shard", meshpb.OpsRequest{Op: meshpb.OpRemoveReplica, Shard: -1, Node: "core-1"}, "unknown shard -1"},
		{"unknown group", meshpb.OpsRequest{Op: meshpb.OpTransferLeader, Group: "galaxy"}, "unknown group"},
		{"no other voter", meshpb.OpsRequest{Op: meshpb.OpTransferLeader, Shard: 1}, "no other voter"},
		{"to itself", meshpb.OpsRequest{Op: meshpb.OpTransferLeader, Node: "core-1"}, "leads it already"},
		{"to a stranger", meshpb.OpsRequest{Op: meshpb.OpTransferLeader, Node: "core-9"}, "has no replica"},
		{"last voter", meshpb.OpsRequest{Op: meshpb.OpRemoveReplica, Node: "core-1", Force: true}, "last voter"},
		{"remove a stranger", meshpb.OpsRequest{Op: meshpb.OpRemoveReplica, Node: "core-9"}, "has no replica"},
		{"remove nobody", meshpb.OpsRequest{Op: meshpb.OpRemoveReplica}, "which node"},
		{"add without address", meshpb.OpsRequest{Op: meshpb.OpAddReplica, Node: "core-2"}, "not a mesh address"},
		{"add at port 0", meshpb.OpsRequest{Op: meshpb.OpAddReplica, Node: "core-2", Addr: "127.0.0.1:0"}, "not a mesh address"},
		{"add a long id", meshpb.OpsRequest{Op: meshpb.OpAddReplica, Node: strings.Repeat("x", 200), Addr: "127.0.0.1:9"}, "1 to 128"},
		{"add itself again", meshpb.OpsRequest{Op: meshpb.OpAddReplica, Node: "core-1", Addr: c.Node.Addr()}, "a replica already"},
		{"add at a used address", meshpb.OpsRequest{Op: meshpb.OpAddReplica, Node: "core-2", Addr: c.Node.Addr()}, "the address of replica core-1"},
		{"catalog member", meshpb.OpsRequest{Op: meshpb.OpAddReplica, Group: meshpb.GroupCatalog, Node: "x", Addr: "127.0.0.1:9"}, "follow the cores' configuration"},
		{"catalog removal", meshpb.OpsRequest{Op: meshpb.OpRemoveReplica, Group: meshpb.GroupCatalog, Node: "x"}, "follow the cores' configuration"},
		{"conversation without app", meshpb.OpsRequest{Op: meshpb.OpConversation, CID: "x"}, "needed"},
		{"conversation of an unknown region", meshpb.OpsRequest{Op: meshpb.OpConversation, App: "a", CID: newCID(t, 7, 0)}, "region 7"},
		{"conversation of an unknown shard", meshpb.OpsRequest{Op: meshpb.OpConversation, App: "a", CID: newCID(t, 1, 5)}, "shard 5"},
	} {
		_, err := cl.Do(ctx, &tc.req)
		if !errors.Is(err, ErrOps) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrOps with %q", tc.name, err, tc.want)
		}
	}
	// A flood of status calls and garbage at once: every status answers,
	// every piece of garbage is refused, the core keeps serving.
	var wg sync.WaitGroup
	bad := make(chan string, 64)
	for i := range 64 {
		wg.Go(func() {
			req := []byte(`{"op":"status"}`)
			if i%2 == 1 {
				req = []byte(fmt.Sprintf(`{"op":%d}`, i))
			}
			out, err := cl.node.Call(ctx, c.Node.Addr(), meshpb.MethodAdminOps, req)
			var r meshpb.OpsReply
			if err == nil {
				err = json.Unmarshal(out, &r)
			}
			if err != nil || (i%2 == 0) != (r.Status != nil) || (i%2 == 1) != (r.Err != "") {
				bad <- fmt.Sprintf("call %d: %+v, %v", i, r, err)
			}
		})
	}
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Error(b)
	}

	// Nothing changed: one voter per shard, still leading.
	view := MergeStatus(cl.Status(ctx, 5*time.Second))
	if len(view.Nodes) != 1 || view.Nodes[0].Status == nil {
		t.Fatalf("status nodes: %+v", view.Nodes)
	}
	if len(view.Groups) != 3 {
		t.Fatalf("status groups: got %d, want shards 0, 1 and the catalog", len(view.Groups))
	}
	for _, g := range view.Groups {
		if g.Leader != "core-1" || len(g.Servers) != 1 || len(g.Replicas) != 1 || g.Replicas[0].Applied == 0 || g.Replicas[0].Lag != 0 {
			t.Errorf("%s %d: %+v", g.Group, g.Shard, g)
		}
	}
	if view.Groups[2].Group != meshpb.GroupCatalog {
		t.Errorf("groups out of order: %+v", view.Groups)
	}

	// A conversation on shard 1.
	cid := newCID(t, 1, 1)
	b, err := (&shard.Command{Op: shard.OpStart, App: "app", CID: cid, From: "alice", Members: []string{"alice", "bob", "carol"}, Now: 1000}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Replicas[1].Propose(ctx, b); err != nil {
		t.Fatal(err)
	}
	r, err := cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpConversation, App: "app", CID: cid})
	if err != nil {
		t.Fatal(err)
	}
	if ci := r.Conversation; ci == nil || !ci.Found || ci.Shard != 1 || ci.Region != 1 || ci.LeaderID != "core-1" || ci.Creator != "alice" || ci.Members != 3 || ci.Kind != "normal" {
		t.Fatalf("conversation: %+v", r.Conversation)
	}
	r, err = cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpConversation, App: "other-app", CID: cid})
	if err != nil || r.Conversation == nil || r.Conversation.Found {
		t.Fatalf("a conversation of another app: %+v, %v; want not found", r, err)
	}
}

// freeUDP returns n loopback UDP addresses free now.
func freeUDP(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var conns []net.PacketConn
	for range n {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, pc)
		out = append(out, pc.LocalAddr().String())
	}
	for _, pc := range conns {
		pc.Close()
	}
	return out
}

// TestOpsThreeCores: a region of three in-process cores. Status merges
// them (one leader per group, every replica caught up); a transfer to a
// named core moves the leadership there; a follower is removed and added
// back; the leader is removed only with force, after handing off; a core
// that is down shows as unreachable.
func TestOpsThreeCores(t *testing.T) {
	dir := t.TempDir()
	names := []string{"core-1", "core-2", "core-3"}
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), append(names, "admin-1")...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeUDP(t, 3)
	peers := map[string]string{}
	for i, n := range names {
		peers[n] = addrs[i]
	}
	cores := make([]*Core, 3)
	for i, n := range names {
		// Raft timeouts above `relaymesh core`'s: no election on a loaded
		// machine moves a leader the test counts on.
		cores[i], err = StartCore(CoreConfig{NodeID: n, MeshAddr: addrs[i], DataDir: filepath.Join(dir, n), Identity: ids[n], Peers: peers,
			RaftHeartbeatTimeout: 2 * time.Second, RaftElectionTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if cores[i] != nil {
				cores[i].Close()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl, err := DialOps(ids["admin-1"], "127.0.0.1:0", addrs[:1], slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	view := func() *ClusterView { return MergeStatus(cl.Status(ctx, 3*time.Second)) }
	shard0 := func(v *ClusterView) *GroupView {
		for _, g := range v.Groups {
			if g.Group == meshpb.GroupShard && g.Shard == 0 {
				return g
			}
		}
		t.Fatalf("no shard 0 in %+v", v)
		return nil
	}
	var leader string
	waitUntil(t, func() bool {
		v := view()
		g := shard0(v)
		leader = g.Leader
		caught := len(g.Replicas) == 3
		for _, r := range g.Replicas {
			caught = caught && r.Lag == 0 && r.Applied > 0
		}
		return len(v.Nodes) == 3 && strings.HasPrefix(leader, "core-") && caught
	})
	to := "core-1"
	if leader == to {
		to = "core-2"
	}
	// (An election may have moved the leadership there since.)
	if _, err := cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpTransferLeader, Node: to}); err != nil && !strings.Contains(err.Error(), to+" leads it already") {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return shard0(view()).Leader == to })

	// Before an add, the new replica must answer as the node named,
	// hosting the shard.
	if err := cl.CheckAdd(ctx, "core-1", addrs[1], 0); !errors.Is(err, ErrOps) || !strings.Contains(err.Error(), "is core-2, not core-1") {
		t.Errorf("CheckAdd of the wrong node: %v", err)
	}
	if err := cl.CheckAdd(ctx, "core-2", addrs[1], 3); !errors.Is(err, ErrOps) || !strings.Contains(err.Error(), "no replica of shard 3") {
		t.Errorf("CheckAdd of a shard it lacks: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	if err := cl.CheckAdd(short, "core-9", freeUDP(t, 1)[0], 0); !errors.Is(err, ErrOps) || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("CheckAdd of nobody: %v", err)
	}
	cancelShort()
	if err := cl.CheckAdd(ctx, "core-2", addrs[1], 0); err != nil {
		t.Errorf("CheckAdd of core-2: %v", err)
	}

	// Remove a follower, then add it back.
	follower := "core-3"
	if to == "core-3" {
		follower = "core-1"
	}
	if _, err := cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpRemoveReplica, Node: follower}); err != nil {
		t.Fatal(err)
	}
	if g := shard0(view()); len(g.Servers) != 2 {
		t.Fatalf("after removing %s: servers %+v", follower, g.Servers)
	}
	if _, err := cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpAddReplica, Node: follower, Addr: peers[follower]}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		g := shard0(view())
		for _, r := range g.Replicas {
			if r.Lag != 0 {
				return false
			}
		}
		return len(g.Servers) == 3
	})
	// The leader (as status names it now: an election may have moved it):
	// refused without force; with it, handed off and removed.
	lead := shard0(view()).Leader
	_, err = cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpRemoveReplica, Node: lead})
	if !errors.Is(err, ErrOps) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("removing the leader %s: got %v, want a refusal naming --force", lead, err)
	}
	if _, err := cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpRemoveReplica, Node: lead, Force: true}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		g := shard0(view())
		return len(g.Servers) == 2 && g.Leader != lead && strings.HasPrefix(g.Leader, "core-")
	})
	// A core down, one of shard 0's two voters left (not core-1, the
	// client's only seed): unreachable, the others still answer.
	follower = "core-2"
	if lead == follower {
		follower = "core-3"
	}
	i := map[string]int{"core-1": 0, "core-2": 1, "core-3": 2}[follower]
	cores[i].Close()
	cores[i] = nil
	v := view()
	down := 0
	for _, n := range v.Nodes {
		if n.Status == nil {
			down++
			if n.Addr != peers[follower] {
				t.Errorf("unreachable: %s, want %s", n.Addr, peers[follower])
			}
		}
	}
	if len(v.Nodes) != 3 || down != 1 {
		t.Errorf("with %s down: %d nodes, %d unreachable; want 3 and 1: %s", follower, len(v.Nodes), down, fmt.Sprint(v.Nodes))
	}
	// A change asked through the dead core first goes to the next seed,
	// and on to the leader: the catalog's (shard 0 has lost its quorum:
	// of its two voters left, one is down).
	live := addrs[(i+1)%3]
	cl2, err := DialOps(ids["admin-1"], "127.0.0.1:0", []string{peers[follower], live}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if _, err := cl2.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpTransferLeader, Group: meshpb.GroupCatalog}); err != nil {
		t.Errorf("a transfer asked through a dead seed: %v", err)
	}
	// Shard 0 has no leader: the change waits for one until its context
	// ends, and fails then.
	short, cancelShort = context.WithTimeout(ctx, 4*time.Second)
	defer cancelShort()
	if _, err := cl2.Do(short, &meshpb.OpsRequest{Op: meshpb.OpTransferLeader}); !errors.Is(err, ErrOps) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a transfer in a group without a quorum: %v, want ErrOps and the deadline", err)
	}
}

func newCID(t *testing.T, region uint8, n uint16) string {
	t.Helper()
	cid, err := catalog.NewConvID(region, n)
	if err != nil {
		t.Fatal(err)
	}
	return cid
}

// TestMergeStatus: the merge of the cores' answers picks, per group, the
// replica leading in the highest term (not a stale leader of an older
// term), else the leader the replicas of the highest term name; lag is
// behind that leader's commit index; two regions' shards of the same
// number stay apart; a core without an answer is kept as it is.
func TestMergeStatus(t *testing.T) {
	g := func(group string, region, n int, state string, term, commit, applied uint64, leader string) *meshpb.GroupStatus {
		return &meshpb.GroupStatus{Group: group, Region: region, Shard: n, State: state, Term: term, CommitIndex: commit, AppliedIndex: applied, Leader: leader}
	}
	nodes := []NodeResult{
		{Addr: "a:1", Status: &meshpb.NodeStatus{Node: "core-1", Addr: "a:1", Region: 1, Groups: []*meshpb.GroupStatus{
			g("shard", 1, 0, "Leader", 3, 100, 100, "a:1"), // stale: b:2 leads in term 4
			g("catalog", 0, 0, "Follower", 7, 50, 40, "c:3"),
		}}},
		{Addr: "b:2", Status: &meshpb.NodeStatus{Node: "core-2", Addr: "b:2", Region: 1, Groups: []*meshpb.GroupStatus{
			g("shard", 1, 0, "Leader", 4, 120, 118, "b:2"),
			g("catalog", 0, 0, "Follower", 7, 50, 50, "c:3"),
		}}},
		{Addr: "c:3", Status: &meshpb.NodeStatus{Node: "core-9", Addr: "c:3", Region: 2, Groups: []*meshpb.GroupStatus{
			g("shard", 2, 0, "Follower", 2, 10, 10, ""),
			g("catalog", 0, 0, "Candidate", 8, 50, 50, ""),
		}}},
		{Addr: "d:4", Err: "timeout"},
	}
	v := MergeStatus(nodes)
	if len(v.Nodes) != 4 || v.Nodes[3].Err != "timeout" {
		t.Fatalf("nodes: %+v", v.Nodes)
	}
	type want struct {
		group         string
		region, shard int
		leader        string
		term          uint64
		lags          map[string]uint64
	}
	wants := []want{
		{"shard", 1, 0, "core-2", 4, map[string]uint64{"core-1": 20, "core-2": 2}},
		{"shard", 2, 0, "", 2, map[string]uint64{"core-9": 0}},
		// The candidate's term is the highest: it knows no leader, and
		// lag is not guessed without one.
		{"catalog", 0, 0, "", 8, map[string]uint64{"core-1": 0, "core-2": 0, "core-9": 0}},
	}
	if len(v.Groups) != len(wants) {
		t.Fatalf("groups: got %d, want %d", len(v.Groups), len(wants))
	}
	for i, w := range wants {
		gv := v.Groups[i]
		if gv.Group != w.group || gv.Region != w.region || gv.Shard != w.shard || gv.Leader != w.leader || gv.Term != w.term {
			t.Errorf("group %d: got %s r%d s%d leader %q term %d, want %+v", i, gv.Group, gv.Region, gv.Shard, gv.Leader, gv.Term, w)
		}
		for _, r := range gv.Replicas {
			if r.Lag != w.lags[r.Node] {
				t.Errorf("%s r%d s%d %s: lag %d, want %d", gv.Group, gv.Region, gv.Shard, r.Node, r.Lag, w.lags[r.Node])
			}
		}
	}
}

// TestCheckRemove: a removal is refused when the voters left would not
// have a quorum that answers; non-voters and the removed node do not
// count.
func TestCheckRemove(t *testing.T) {
	servers := []meshpb.ServerStatus{{ID: "c1", Addr: "a1", Voter: true}, {ID: "c2", Addr: "a2", Voter: true}, {ID: "c3", Addr: "a3", Voter: true}, {ID: "c4", Addr: "a4"}}
	rep := func(addr, state string, term uint64) ReplicaView {
		return ReplicaView{Addr: addr, State: state, Term: term}
	}
	for _, tc := range []struct {
		name     string
		replicas []ReplicaView
		remove   string
		ok       bool
	}{
		{"all answer", []ReplicaView{rep("a1", "Leader", 5), rep("a2", "Follower", 5), rep("a3", "Follower", 5)}, "c3", true},
		{"one other down", []ReplicaView{rep("a1", "Leader", 5), rep("a2", "Follower", 5)}, "c2", false},
		{"the down one removed", []ReplicaView{rep("a1", "Leader", 5), rep("a2", "Follower", 5)}, "c3", true},
		{"a follower of an old term", []ReplicaView{rep("a1", "Leader", 5), rep("a2", "Follower", 5), rep("a3", "Follower", 4)}, "c2", false},
		{"a candidate", []ReplicaView{rep("a1", "Leader", 5), rep("a2", "Candidate", 5), rep("a3", "Follower", 5)}, "c3", false},
		{"a non-voter answering does not help", []ReplicaView{rep("a1", "Leader", 5), rep("a4", "Follower", 5)}, "c2", false},
		{"the non-voter removed", []ReplicaView{rep("a1", "Leader", 5), rep("a2", "Follower", 5), rep("a3", "Follower", 5)}, "c4", true},
	} {
		g := &GroupView{Term: 5, Servers: servers, Replicas: tc.replicas}
		err := CheckRemove(&ClusterView{}, g, tc.remove)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrOps)) {
			t.Errorf("%s: got %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestAdminCores: [admin] cores win; without them a core's or an edge's
// file names its peers, mesh address, remote regions' cores and edge
// cores, each once.
func TestAdminCores(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"admin section", "[admin]\ncores = [\"10.0.0.9:7100\"]\n[core]\npeers = { a = \"10.0.0.1:7100\" }\n", []string{"10.0.0.9:7100"}},
		{"core file", "[core]\nnode_id = \"a\"\nmesh_addr = \"10.0.0.1:7100\"\npeers = { a = \"10.0.0.1:7100\", b = \"10.0.0.2:7100\" }\n[[core.remote_regions]]\nnumber = 2\ncores = [\"10.1.0.1:7100\"]\n",
			[]string{"10.0.0.1:7100", "10.0.0.2:7100", "10.1.0.1:7100"}},
		{"edge file", "[edge]\ncores = [\"10.0.0.2:7100\", \"10.0.0.1:7100\"]\n", []string{"10.0.0.1:7100", "10.0.0.2:7100"}},
		{"nothing", "", nil},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".toml")
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := c.AdminCores(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
