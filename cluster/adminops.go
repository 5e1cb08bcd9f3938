package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
)

// The core's side of `relaymesh admin` (issue 12, Day-2): the
// meshpb.MethodAdminOps rpc, callable with an admin certificate only
// (mesh.RoleAdmin; edges and cores are refused by the mesh before the
// handler runs). The core answers for its own replicas; a change, or a
// conversation read, is done where the group's leader is: elsewhere the
// core answers not_leader with the leader it knows and the caller
// (OpsClient, opsclient.go) asks that one.

// opsTimeout bounds one raft change (a transfer, a membership change).
const opsTimeout = 10 * time.Second

// MaxOpsRequest bounds an admin request's size (JSON).
const MaxOpsRequest = 64 << 10

// opsServer serves MethodAdminOps on a core.
type opsServer struct {
	c      *Core
	id     string // [core] node_id
	self   string // mesh address
	region int
	cores  []string // this region's cores, itself included, sorted
	remote []meshpb.RemoteCores

	cmdVer int // shard command version (backup.go)

	mu     sync.RWMutex // held (read) by every handler; stop takes it to end them
	closed bool         // guarded by mu
}

// serveOps registers the admin rpc on the core's mesh node; the core's
// replicas are open.
func (c *Core) serveOps(cfg CoreConfig) {
	s := &opsServer{c: c, id: cfg.NodeID, self: c.Node.Addr(), region: int(max(cfg.Region, 1))}
	if a := cfg.Peers[cfg.NodeID]; a != "" {
		s.self = a
	}
	s.cores = []string{s.self}
	for _, a := range cfg.Peers {
		s.cores = append(s.cores, a)
	}
	slices.Sort(s.cores)
	s.cores = slices.Compact(s.cores)
	for _, r := range cfg.Remote {
		s.remote = append(s.remote, meshpb.RemoteCores{Region: int(r.Number), Cores: slices.Clone(r.Cores)})
	}
	c.ops = s
	c.Node.HandleRPC(meshpb.MethodAdminOps, s.handle, mesh.RoleAdmin)
	s.serveBackup(cfg.CommandVersion) // backup.go
}

// stop waits for the handlers running and refuses the next ones: the
// replicas they read are about to close.
func (s *opsServer) stop() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// handle serves one admin request. Refusals and failures are replies
// (OpsReply.Err), not rpc errors: the caller prints them as they are.
func (s *opsServer) handle(ctx context.Context, peer string, b []byte) ([]byte, error) {
	var rep *meshpb.OpsReply
	if len(b) > MaxOpsRequest {
		rep = opsErr("request of %d bytes, at most %d", len(b), MaxOpsRequest)
	} else {
		var req meshpb.OpsRequest
		if err := json.Unmarshal(b, &req); err != nil {
			rep = opsErr("bad request: %v", err)
		} else {
			rep = s.serve(ctx, &req)
		}
	}
	return json.Marshal(rep)
}

func opsErr(format string, args ...any) *meshpb.OpsReply {
	return &meshpb.OpsReply{Err: fmt.Sprintf(format, args...)}
}

func (s *opsServer) serve(ctx context.Context, req *meshpb.OpsRequest) *meshpb.OpsReply {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return opsErr("core %s is stopping", s.id)
	}
	switch req.Op {
	case meshpb.OpStatus:
		return &meshpb.OpsReply{Status: s.status()}
	case meshpb.OpTransferLeader:
		return s.transfer(ctx, req)
	case meshpb.OpAddReplica:
		return s.addReplica(req)
	case meshpb.OpRemoveReplica:
		return s.removeReplica(ctx, req)
	case meshpb.OpConversation:
		return s.conversation(req)
	case meshpb.OpAppList, meshpb.OpAppSet, meshpb.OpAppRotate, meshpb.OpAppDelete:
		return s.app(ctx, req) // adminapp.go
	}
	return opsErr("unknown op %q", req.Op)
}

// status is this core's view of itself and its replicas.
func (s *opsServer) status() *meshpb.NodeStatus {
	st := &meshpb.NodeStatus{Node: s.id, Addr: s.self, Region: s.region, Cores: s.cores, Remote: s.remote}
	for n, rep := range s.c.Replicas {
		st.Groups = append(st.Groups, groupStatus(rep, meshpb.GroupShard, n, s.region))
	}
	if s.c.catalog != nil {
		st.Groups = append(st.Groups, groupStatus(s.c.catalog.rep, meshpb.GroupCatalog, 0, 0))
	}
	return st
}

// groupStatus is rep as raft sees it now.
func groupStatus(rep *raftstore.Node, group string, n, region int) *meshpb.GroupStatus {
	r := rep.Raft()
	addr, id := rep.Leader()
	g := &meshpb.GroupStatus{Group: group, Shard: n, Region: region, State: r.State().String(), Leader: addr, LeaderID: id,
		Term: r.CurrentTerm(), CommitIndex: r.CommitIndex(), AppliedIndex: max(r.AppliedIndex(), rep.AppliedIndex()), LastIndex: r.LastIndex()}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, sv := range f.Configuration().Servers {
			g.Servers = append(g.Servers, meshpb.ServerStatus{ID: string(sv.ID), Addr: string(sv.Address), Voter: sv.Suffrage == raft.Voter})
		}
	}
	if err := rep.Err(); err != nil {
		g.Err = err.Error()
	}
	return g
}

// replica is the replica of the group req names, and the group's name
// for messages.
func (s *opsServer) replica(req *meshpb.OpsRequest) (*raftstore.Node, string, *meshpb.OpsReply) {
	switch req.Group {
	case meshpb.GroupCatalog:
		if s.c.catalog == nil {
			return nil, "", opsErr("this core runs no catalog")
		}
		return s.c.catalog.rep, "the catalog", nil
	case "", meshpb.GroupShard:
		if req.Shard < 0 || req.Shard >= len(s.c.Replicas) {
			return nil, "", opsErr("unknown shard %d: region %d has shards 0 to %d", req.Shard, s.region, len(s.c.Replicas)-1)
		}
		return s.c.Replicas[req.Shard], fmt.Sprintf("shard %d", req.Shard), nil
	}
	return nil, "", opsErr("unknown group %q (want shard or catalog)", req.Group)
}

// notLeader is the reply of a replica that does not lead.
func notLeader(rep *raftstore.Node) *meshpb.OpsReply {
	addr, _ := rep.Leader()
	return &meshpb.OpsReply{NotLeader: true, Leader: addr}
}

// configuration is the group's configuration as rep has it.
func configuration(rep *raftstore.Node) ([]raft.Server, error) {
	f := rep.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// wait waits for a raft future until ctx ends.
func wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transfer moves the group's leadership, to req.Node when set.
func (s *opsServer) transfer(ctx context.Context, req *meshpb.OpsRequest) *meshpb.OpsReply {
	rep, name, bad := s.replica(req)
	if bad != nil {
		return bad
	}
	if !rep.IsLeader() {
		return notLeader(rep)
	}
	servers, err := configuration(rep)
	if err != nil {
		return opsErr("%s: configuration: %v", name, err)
	}
	_, selfID := rep.Leader()
	ctx, cancel := context.WithTimeout(ctx, opsTimeout)
	defer cancel()
	if req.Node != "" {
		i := slices.IndexFunc(servers, func(sv raft.Server) bool { return string(sv.ID) == req.Node || string(sv.Address) == req.Node })
		switch {
		case i < 0:
			return opsErr("%s has no replica %q (servers: %s)", name, req.Node, serverList(servers))
		case string(servers[i].ID) == selfID:
			return opsErr("%s: %s leads it already", name, req.Node)
		case servers[i].Suffrage != raft.Voter:
			return opsErr("%s: %s is a non-voter and cannot lead", name, req.Node)
		}
		if err := wait(ctx, rep.Raft().LeadershipTransferToServer(servers[i].ID, servers[i].Address)); err != nil {
			return opsErr("%s: leadership transfer to %s: %v", name, req.Node, err)
		}
		return &meshpb.OpsReply{Group: groupStatus(rep, groupOf(req), req.Shard, s.region)}
	}
	var others []raft.Server
	for _, sv := range servers {
		if sv.Suffrage == raft.Voter && string(sv.ID) != selfID {
			others = append(others, sv)
		}
	}
	if len(others) == 0 {
		return opsErr("%s has no other voter to take over", name)
	}
	// Raft picks the most up-to-date voter, which may be one that just
	// went down: then each other voter in turn, while this one leads.
	err = wait(ctx, rep.Raft().LeadershipTransfer())
	for _, sv := range others {
		if err == nil || !rep.IsLeader() || ctx.Err() != nil {
			break
		}
		err = transferTo(ctx, rep, sv)
	}
	if err != nil && rep.IsLeader() {
		return opsErr("%s: leadership transfer: %v", name, err)
	}
	return &meshpb.OpsReply{Group: groupStatus(rep, groupOf(req), req.Shard, s.region)}
}

// transferTo hands rep's leadership to sv; while an earlier transfer is
// still winding down (raft answers it at its timeout, before its dial to
// a dead target gives up), it asks again.
func transferTo(ctx context.Context, rep *raftstore.Node, sv raft.Server) error {
	for {
		err := wait(ctx, rep.Raft().LeadershipTransferToServer(sv.ID, sv.Address))
		if !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func groupOf(req *meshpb.OpsRequest) string {
	if req.Group == meshpb.GroupCatalog {
		return meshpb.GroupCatalog
	}
	return meshpb.GroupShard
}

func serverList(servers []raft.Server) string {
	var out []string
	for _, sv := range servers {
		v := "voter"
		if sv.Suffrage != raft.Voter {
			v = "non-voter"
		}
		out = append(out, fmt.Sprintf("%s at %s (%s)", sv.ID, sv.Address, v))
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return fmt.Sprint(out)
}

// errCatalogMembers: the catalog's members follow the configuration.
var errCatalogMembers = errors.New("the catalog's replicas follow the cores' configuration (its leader adds every core it names): add or remove cores there")

// maxNodeID bounds a raft server id given to add-replica.
const maxNodeID = 128

// addReplica adds req.Node at req.Addr to a shard's group.
func (s *opsServer) addReplica(req *meshpb.OpsRequest) *meshpb.OpsReply {
	if req.Group == meshpb.GroupCatalog {
		return opsErr("%v", errCatalogMembers)
	}
	rep, name, bad := s.replica(req)
	if bad != nil {
		return bad
	}
	if req.Node == "" || len(req.Node) > maxNodeID {
		return opsErr("add-replica: the node id must be 1 to %d characters", maxNodeID)
	}
	if _, port, err := net.SplitHostPort(req.Addr); err != nil || port == "" || port == "0" {
		return opsErr("add-replica: %q is not a mesh address (host:port)", req.Addr)
	}
	if !rep.IsLeader() {
		return notLeader(rep)
	}
	servers, err := configuration(rep)
	if err != nil {
		return opsErr("%s: configuration: %v", name, err)
	}
	for _, sv := range servers {
		switch {
		case string(sv.ID) == req.Node && string(sv.Address) != req.Addr:
			return opsErr("%s: %s is a replica already, at %s: remove it first", name, req.Node, sv.Address)
		case string(sv.ID) != req.Node && string(sv.Address) == req.Addr:
			return opsErr("%s: %s is the address of replica %s", name, req.Addr, sv.ID)
		case string(sv.ID) == req.Node && (sv.Suffrage == raft.Voter) == !req.Nonvoter:
			return opsErr("%s: %s is a replica already", name, req.Node)
		case string(sv.ID) == req.Node && sv.Suffrage == raft.Voter && req.Nonvoter:
			return opsErr("%s: %s is a voter; remove it first to make it a non-voter", name, req.Node)
		}
	}
	id, addr := raft.ServerID(req.Node), raft.ServerAddress(req.Addr)
	var f raft.IndexFuture
	if req.Nonvoter {
		f = rep.Raft().AddNonvoter(id, addr, 0, opsTimeout)
	} else {
		f = rep.Raft().AddVoter(id, addr, 0, opsTimeout)
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return notLeader(rep)
		}
		return opsErr("%s: add %s: %v", name, req.Node, err)
	}
	return &meshpb.OpsReply{Group: groupStatus(rep, meshpb.GroupShard, req.Shard, s.region)}
}

// removeReplica removes req.Node from a shard's group: never its last
// voter; its leader only with req.Force, and then after handing the
// leadership to another voter, which removes it (the caller follows the
// not_leader reply).
func (s *opsServer) removeReplica(ctx context.Context, req *meshpb.OpsRequest) *meshpb.OpsReply {
	if req.Group == meshpb.GroupCatalog {
		return opsErr("%v", errCatalogMembers)
	}
	rep, name, bad := s.replica(req)
	if bad != nil {
		return bad
	}
	if req.Node == "" {
		return opsErr("remove-replica: which node?")
	}
	if !rep.IsLeader() {
		return notLeader(rep)
	}
	servers, err := configuration(rep)
	if err != nil {
		return opsErr("%s: configuration: %v", name, err)
	}
	i := slices.IndexFunc(servers, func(sv raft.Server) bool { return string(sv.ID) == req.Node })
	if i < 0 {
		return opsErr("%s has no replica %q (servers: %s)", name, req.Node, serverList(servers))
	}
	voters := 0
	for _, sv := range servers {
		if sv.Suffrage == raft.Voter {
			voters++
		}
	}
	if servers[i].Suffrage == raft.Voter && voters == 1 {
		return opsErr("%s: %s is its last voter: removing it would leave the group without a quorum for good (add another voter first)", name, req.Node)
	}
	if _, self := rep.Leader(); self == req.Node {
		if !req.Force {
			return opsErr("%s: %s leads it: transfer its leadership first (admin shard transfer-leader), or pass --force to hand it off and remove it", name, req.Node)
		}
		tctx, cancel := context.WithTimeout(ctx, opsTimeout)
		defer cancel()
		if err := wait(tctx, rep.Raft().LeadershipTransfer()); err != nil {
			return opsErr("%s: hand off before removing %s: %v", name, req.Node, err)
		}
		return notLeader(rep) // the new leader removes it
	}
	if err := rep.Raft().RemoveServer(servers[i].ID, 0, opsTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return notLeader(rep)
		}
		return opsErr("%s: remove %s: %v", name, req.Node, err)
	}
	return &meshpb.OpsReply{Group: groupStatus(rep, meshpb.GroupShard, req.Shard, s.region)}
}

// conversation is where req.CID lives and its metadata, read on the
// leader of its shard.
func (s *opsServer) conversation(req *meshpb.OpsRequest) *meshpb.OpsReply {
	if req.App == "" || req.CID == "" {
		return opsErr("conversation: an app id and a conversation id are needed")
	}
	if len(req.App) > 256 || len(req.CID) > 256 {
		return opsErr("conversation: app or conversation id too long")
	}
	home := catalog.HomeOf(req.CID)
	if int(home.Region) != s.region {
		for _, r := range s.remote {
			if r.Region == int(home.Region) && len(r.Cores) > 0 {
				return &meshpb.OpsReply{NotLeader: true, Leader: r.Cores[0]} // that region's core answers
			}
		}
		return opsErr("conversation %s lives in region %d, which this core (region %d) does not know", req.CID, home.Region, s.region)
	}
	if int(home.Shard) >= len(s.c.Replicas) {
		return opsErr("conversation %s names shard %d: region %d has shards 0 to %d", req.CID, home.Shard, s.region, len(s.c.Replicas)-1)
	}
	rep := s.c.Replicas[home.Shard]
	if !rep.IsLeader() {
		return notLeader(rep)
	}
	addr, id := rep.Leader()
	info := &meshpb.ConvInfo{App: req.App, CID: req.CID, Region: s.region, Shard: int(home.Shard), Leader: addr, LeaderID: id}
	conv, err := shard.GetConv(rep.State(), req.App, req.CID)
	if err != nil {
		return opsErr("conversation %s: %v", req.CID, err)
	}
	if conv != nil {
		info.Found = true
		info.Creator, info.Members, info.Unique = conv.Creator, len(conv.Members), conv.Unique
		info.CreatedAt, info.UpdatedAt, info.LastMsgAt, info.LastFrom = conv.CreatedAt, conv.UpdatedAt, conv.LastT, conv.LastFrom
		switch {
		case conv.System:
			info.Kind = "system"
		case conv.Transient:
			info.Kind = "transient"
		case conv.Temp:
			info.Kind = "temporary"
		default:
			info.Kind = "normal"
		}
	}
	return &meshpb.OpsReply{Conversation: info}
}

// AdminSection configures `relaymesh admin` ([admin]).
type AdminSection struct {
	// Cores are the mesh addresses of the cores to ask first; the others
	// are learnt from their answers.
	Cores []string `toml:"cores"`
	// MeshAddr is the admin node's own UDP address (default ":0").
	MeshAddr string `toml:"mesh_addr"`
}

// AdminCores are the cores `relaymesh admin` asks first: [admin] cores,
// else the file's [core] peers (or mesh_addr) and remote regions' cores,
// else its [edge] cores.
func (c *Config) AdminCores() []string {
	if len(c.Admin.Cores) > 0 {
		return slices.Clone(c.Admin.Cores)
	}
	var out []string
	for _, a := range c.Core.Peers {
		out = append(out, a)
	}
	if c.Core.MeshAddr != "" {
		out = append(out, c.Core.MeshAddr)
	}
	for _, r := range c.Core.RemoteRegions {
		out = append(out, r.Cores...)
	}
	out = append(out, c.Edge.Cores...)
	slices.Sort(out)
	return slices.Compact(out)
}
