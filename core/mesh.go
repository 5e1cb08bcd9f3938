package core

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
)

// The core's mesh handlers (core → mesh, DESIGN.md "the house"): the
// client rpc (meshpb.MethodClient) that edges, admin tooling and other
// cores call, the delivery streams (meshpb.MethodDeliveries) every edge of
// the region opens, and the leader watcher, which tells the edges who
// leads the shard and starts the fan-out replay on a new leader
// (fanout.go). The edge's side is edge/corelink.

// MeshServer serves a node's shard cores on its mesh node: edges' client
// requests through the Router (router.go), other cores' shard requests,
// the edges' delivery streams, and one leader watcher per shard replica.
type MeshServer struct {
	router *Router
	core   *Core             // the system shard's core: the edges' side (relay, leader announcements)
	reps   []*raftstore.Node // by shard number
	self   string            // this node's mesh address
	log    *slog.Logger

	ctx      context.Context // ends when Stop starts: stops the watchers and a replay
	stop     context.CancelFunc
	wg       sync.WaitGroup // the leader watchers
	barriers sync.WaitGroup // raft barrier waits; raft answers them by the replica's Close, but for one stranded (Wait)
	waitMax  time.Duration  // Wait's bound (barrierWaitMax)
}

// ServeMesh registers c's mesh handlers on node and starts the leader
// watcher: a node with one shard, whose replica is rep.
func ServeMesh(c *Core, node *mesh.Node, rep *raftstore.Node, log *slog.Logger) *MeshServer {
	rt, _ := NewRouter(RouterConfig{Shards: []RouterShard{{Core: c, Leader: func() string { a, _ := rep.Leader(); return a }}},
		Self: node.Addr(), Logger: log})
	return ServeShards(rt, node, []*raftstore.Node{rep}, log)
}

// ServeShards registers the mesh handlers of a node hosting the shards of
// rt, whose replicas are reps (by shard number), and starts a leader
// watcher per replica. Stop ends the watchers; Wait follows the replicas'
// Close.
func ServeShards(rt *Router, node *mesh.Node, reps []*raftstore.Node, log *slog.Logger) *MeshServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &MeshServer{router: rt, core: rt.System(), reps: reps, self: node.Addr(), log: log}
	s.ctx, s.stop = context.WithCancel(context.Background())
	// Who may call (mesh/role.go): client requests come from edges (and
	// admin tooling, and cores); only edges open delivery streams; only
	// cores hand each other shard requests.
	node.HandleRPC(meshpb.MethodClient, s.handleClient, mesh.RoleEdge, mesh.RoleAdmin, mesh.RoleCore)
	node.HandleRPC(meshpb.MethodShard, s.handleShard, mesh.RoleCore)
	node.HandleRPC(meshpb.MethodRegion, s.handleRegion, mesh.RoleCore)
	node.HandleRPC(meshpb.MethodPresenceAdd, s.handlePresenceAdd, mesh.RoleCore)
	node.HandleRPC(meshpb.MethodTokenGeneration, s.handleTokenGeneration, mesh.RoleCore)
	node.HandleRPC(meshpb.MethodDeviceOp, s.handleDeviceOp, mesh.RoleCore) // devicesync.go
	if rt.remote != nil {
		rt.remote.Serve() // other regions' pushes in (regions.go)
	}
	node.HandleStream(meshpb.MethodDeliveries, s.handleDeliveries, mesh.RoleEdge)
	for n := range reps {
		s.watchLeader(n)
	}
	return s
}

// Forward is RouterConfig.Forward over node: the shard rpc to another
// core.
func Forward(node *mesh.Node) func(ctx context.Context, addr string, req *meshpb.ShardRequest) (*meshpb.ClientReply, error) {
	return func(ctx context.Context, addr string, req *meshpb.ShardRequest) (*meshpb.ClientReply, error) {
		b, err := proto.Marshal(req)
		if err != nil {
			return nil, err
		}
		out, err := node.Call(ctx, addr, meshpb.MethodShard, b)
		if err != nil {
			return nil, err
		}
		rep := new(meshpb.ClientReply)
		if err := proto.Unmarshal(out, rep); err != nil {
			return nil, fmt.Errorf("core: bad shard reply from %s: %w", addr, err)
		}
		return rep, nil
	}
}

// Stop ends the leader watchers (and a fan-out replay one runs) and
// returns once they have exited. A raft barrier one waited for may still
// be pending: Wait for it after closing the replicas.
func (s *MeshServer) Stop() {
	s.stop()
	s.wg.Wait()
}

// Wait returns once every raft barrier the watchers asked for is
// answered, or after barrierWaitMax; call it after the replicas' Close.
//
// raft's shutdown answers a barrier it still holds, except one it had
// committed and queued for the FSM when it stopped (a replica that failed
// on an entry, say): such a future is never answered, and its waiter stays
// blocked, as raftstore's Close lets a stranded proposal's waiter be. A
// core closing waited for it forever (a CI run hung 19 minutes in
// cluster's TestCoreStopsOnNewerCommand, the failed replica restarted).
func (s *MeshServer) Wait() {
	max := s.waitMax
	if max <= 0 {
		max = barrierWaitMax
	}
	if !raftstore.WaitAtMost(&s.barriers, max) {
		s.log.Warn("mesh: a raft barrier was not answered by the replica's close; going on", "waited", max)
	}
}

// barrierWaitMax bounds Wait.
const barrierWaitMax = 2 * time.Second

// leaderRecheck is how often watchLeader looks at the leader even when
// raft announced nothing (observations can be dropped).
const leaderRecheck = time.Second

// watchLeader watches shard n's replica until Stop: it runs the shard's
// fan-out replay when the replica leads a new term, and for the system
// shard announces every leader change it sees to the attached edges
// (Core.AnnounceLeader): that leader is the edges' router.
func (s *MeshServer) watchLeader(n int) {
	rep, c := s.reps[n], s.router.Shard(n)
	ch := make(chan raft.Observation, 4)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r := rep.Raft()
	r.RegisterObserver(obs)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer r.DeregisterObserver(obs)
		tick := time.NewTicker(leaderRecheck)
		defer tick.Stop()
		var last string
		var lastTerm, replayed uint64
		for {
			addr, term := leaderHint(rep)
			if n == 0 && addr != "" && (addr != last || term != lastTerm) {
				last, lastTerm = addr, term
				s.core.AnnounceLeader(addr, term)
			}
			if rep.IsLeader() && term != replayed && s.replayFanout(rep, c) {
				replayed = term
			}
			select {
			case <-s.ctx.Done():
				return
			case <-ch:
			case <-tick.C:
			}
		}
	}()
}

// replayTimeout bounds the barrier and the replay of a new leader.
const replayTimeout = 30 * time.Second

// replayFanout runs when this replica became leader: once every earlier
// entry is applied (raft's barrier), it pushes the messages a previous
// leader may have stored without fanning out (Core.ReplayFanout). It
// reports whether it got through; the watcher tries again otherwise.
func (s *MeshServer) replayFanout(rep *raftstore.Node, c *Core) bool {
	f := rep.Raft().Barrier(replayTimeout)
	done := make(chan error, 1)
	s.barriers.Go(func() { done <- f.Error() })
	select {
	case err := <-done:
		if err != nil {
			s.log.Warn("fan-out replay: barrier", "err", err)
			return false
		}
	case <-s.ctx.Done():
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, replayTimeout)
	defer cancel()
	n, err := c.ReplayFanout(ctx)
	if n > 0 {
		s.log.Info("fan-out replay: pushed messages the previous leader may not have", "messages", n)
	}
	if err != nil {
		s.log.Warn("fan-out replay", "err", err)
		return false
	}
	return true
}

// leaderHint is the leader replica rep knows and its raft term.
func leaderHint(rep *raftstore.Node) (string, uint64) {
	addr, _ := rep.Leader()
	return addr, rep.Raft().CurrentTerm()
}

// handleClient serves the client rpc: a node whose replica does not lead
// the system shard answers not_leader with the leader it knows, doing
// nothing (that leader is the region's router); PING is answered at once;
// the rest is Router.HandleClient.
func (s *MeshServer) handleClient(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("core: bad client request from %s: %w", peer, err)
	}
	if b, ok := s.notSystemLeader(); ok {
		return b, nil
	}
	if req.Kind == meshpb.ClientRequest_PING {
		return proto.Marshal(s.pingReply())
	}
	if mesh.CallerRole(ctx) != mesh.RoleCore {
		req.SessionRoom = nil // another region's router says it, never an edge
	}
	if req.Kind == meshpb.ClientRequest_OPEN && !s.mayOpen(peer, req.GetEdgeId()) {
		return proto.Marshal(&meshpb.ClientReply{ErrorCode: lcpb.ErrInternal,
			ErrorReason: fmt.Sprintf("edge id %q is attached by another edge certificate", req.GetEdgeId())})
	}
	rep, err := s.router.HandleClient(ctx, req)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(rep)
}

// mayOpen reports whether peer may log a session in on edge edgeID: not
// while another mesh identity holds edgeID's delivery stream attached
// (relay.AttachEdgeAs), whose deliveries the session's would join.
func (s *MeshServer) mayOpen(peer, edgeID string) bool {
	owner, ok := s.core.relay.EdgeOwner(edgeID)
	if !ok || owner == "" || owner == peer {
		return true
	}
	s.log.Warn("login refused: another edge certificate holds this edge id attached; check the edges' edge_id (unique per edge)",
		"edge", edgeID, "peer", peer, "owner", owner)
	return false
}

// PingNotReady is the error_code of a PING reply from the region's router
// while some shard of the region has no leader it knows; error_reason
// then names them ("shard 2: no leader; shard 5: no leader"). The edge's
// /readyz shows them (corelink.Link.NotReady); everything else reads a
// PING reply that is not not_leader as "this is the router".
const PingNotReady = 503

// pingReply is the router's answer to PING: empty, or PingNotReady with
// the shards without a known leader.
func (s *MeshServer) pingReply() *meshpb.ClientReply {
	var why []string
	for n, rep := range s.reps {
		if addr, _ := rep.Leader(); addr == "" && !rep.IsLeader() {
			why = append(why, fmt.Sprintf("shard %d: no leader", n))
		}
	}
	if len(why) == 0 {
		return &meshpb.ClientReply{}
	}
	return &meshpb.ClientReply{ErrorCode: PingNotReady, ErrorReason: strings.Join(why, "; ")}
}

// handleRegion serves the region rpc: another region's router asks for
// this region's share of a request (Router.HandleRegion); a core that does
// not lead the system shard answers not_leader with the leader it knows.
func (s *MeshServer) handleRegion(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("core: bad region request from %s: %w", peer, err)
	}
	// The region's router serves its share: it leads the system shard,
	// whose presence, tokens and hooks a share may touch (tag kick).
	if b, ok := s.notSystemLeader(); ok {
		return b, nil
	}
	rep, err := s.router.HandleRegion(ctx, req)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(rep)
}

// notSystemLeader is the not_leader answer (with the leader this
// replica knows) of a core that does not lead the region's system
// shard, whose leader serves the client, region, token and device rpcs;
// ok is false on the leader.
func (s *MeshServer) notSystemLeader() (b []byte, ok bool) {
	rep := s.reps[0]
	if rep.IsLeader() {
		return nil, false
	}
	addr, _ := rep.Leader()
	b, err := proto.Marshal(&meshpb.ClientReply{NotLeader: true, Leader: addr})
	return b, err == nil
}

// handleTokenGeneration serves MethodTokenGeneration: the system shard's
// leader answers with the client's token generation (auth.go).
func (s *MeshServer) handleTokenGeneration(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil || req.GetAppId() == "" || req.GetPeerId() == "" {
		return nil, fmt.Errorf("core: bad token generation request from %s: %v", peer, err)
	}
	if b, ok := s.notSystemLeader(); ok {
		return b, nil
	}
	return proto.Marshal(s.router.System().tokenGenerationReply(req.GetAppId(), req.GetPeerId()))
}

// handlePresenceAdd takes a session the region's router just logged in
// into this core's relay, as the edge's presence frame will.
func (s *MeshServer) handlePresenceAdd(ctx context.Context, peer string, b []byte) ([]byte, error) {
	a := new(meshpb.PresenceAdd)
	if err := proto.Unmarshal(b, a); err != nil || a.GetSession() == nil || a.GetEdgeId() == "" {
		return nil, fmt.Errorf("core: bad presence add from %s: %v", peer, err)
	}
	s.core.relay.SyncPresence(a.GetEdgeId(), &meshpb.Presence{Add: []*meshpb.PresenceSession{a.GetSession()}}, true)
	return nil, nil
}

// Announce is RouterConfig.Announce over node: the presence-add rpc to
// each of cores, at once, each bounded by timeout.
func Announce(node *mesh.Node, cores []string, timeout time.Duration) func(ctx context.Context, edgeID string, ps *meshpb.PresenceSession) {
	return func(ctx context.Context, edgeID string, ps *meshpb.PresenceSession) {
		b, err := proto.Marshal(&meshpb.PresenceAdd{EdgeId: edgeID, Session: ps})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, addr := range cores {
			wg.Go(func() { _, _ = node.Call(ctx, addr, meshpb.MethodPresenceAdd, b) })
		}
		wg.Wait()
	}
}

// handleShard serves the shard rpc: another core's router hands this node
// a request (or a part of one) for one shard (Router.HandleShard).
func (s *MeshServer) handleShard(ctx context.Context, peer string, b []byte) ([]byte, error) {
	sr := new(meshpb.ShardRequest)
	if err := proto.Unmarshal(b, sr); err != nil || sr.Request == nil {
		return nil, fmt.Errorf("core: bad shard request from %s: %v", peer, err)
	}
	rep, err := s.router.HandleShard(ctx, int(sr.GetShard()), sr.GetRequest())
	if err != nil {
		return nil, err
	}
	return proto.Marshal(rep)
}

// handleDeliveries serves one edge's delivery stream until it ends: after
// the edge's hello, the leader this replica knows (LinkLeader), then the
// relay's deliveries for the edge out (Core.AttachEdge) and the edge's
// presence frames in (Core.SyncPresence).
func (s *MeshServer) handleDeliveries(ctx context.Context, peer string, st *mesh.Stream) {
	defer st.Close()
	b, err := st.Recv()
	if err != nil {
		return
	}
	hello := new(meshpb.EdgeHello)
	if err := proto.Unmarshal(b, hello); err != nil || hello.EdgeId == "" {
		s.log.Warn("bad edge hello", "peer", peer, "err", err)
		return
	}
	// Who leads, first: the edge may not know yet (it just started, or
	// its stream to the old leader died with it).
	if addr, term := leaderHint(s.reps[0]); addr != "" {
		b, _ := proto.Marshal(&meshpb.Delivery{Leader: &meshpb.LinkLeader{Addr: addr, Term: term}})
		if err := st.Send(b); err != nil {
			return
		}
	}
	// The edge id is the hello's, not the certificate's name (edges may
	// share a certificate); but while one certificate holds an edge id
	// attached, another cannot take its deliveries over.
	detach, err := s.core.AttachEdgeAs(hello.EdgeId, peer, func(d *meshpb.Delivery) error {
		b, err := proto.Marshal(d)
		if err != nil {
			return err
		}
		return st.Send(b)
	})
	if err != nil {
		s.log.Warn("edge hello refused: another edge certificate holds this edge id attached; check the edges' edge_id (unique per edge)",
			"edge", hello.EdgeId, "peer", peer, "err", err)
		return
	}
	defer detach()
	// Then the edge sends Presence frames; Recv fails when the stream or
	// the connection ends.
	for {
		b, err := st.Recv()
		if err != nil {
			return
		}
		p := new(meshpb.Presence)
		if err := proto.Unmarshal(b, p); err != nil {
			s.log.Warn("bad presence frame", "edge", hello.EdgeId, "err", err)
			return
		}
		s.core.SyncPresence(hello.EdgeId, p)
	}
}
