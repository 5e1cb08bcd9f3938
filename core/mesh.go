package core

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
)

// The core's mesh handlers (core → mesh, DESIGN.md "the house"): the
// client rpc (meshpb.MethodClient) that edges, admin tooling and other
// cores call, the delivery streams (meshpb.MethodDeliveries) every edge of
// the region opens, and the leader watcher, which tells the edges who
// leads the shard and starts the fan-out replay on a new leader
// (fanout.go). The edge's side is edge/corelink.

// MeshServer serves a Core on a mesh node over its raft replica.
type MeshServer struct {
	core *Core
	rep  *raftstore.Node
	log  *slog.Logger

	ctx      context.Context // ends when Stop starts: stops the watcher and a replay
	stop     context.CancelFunc
	wg       sync.WaitGroup // the leader watcher
	barriers sync.WaitGroup // raft barrier waits; raft answers them by the replica's Close at the latest
}

// ServeMesh registers c's mesh handlers on node and starts the leader
// watcher. rep is the replica c proposes to. Stop ends the watcher; Wait
// follows the replica's Close.
func ServeMesh(c *Core, node *mesh.Node, rep *raftstore.Node, log *slog.Logger) *MeshServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &MeshServer{core: c, rep: rep, log: log}
	s.ctx, s.stop = context.WithCancel(context.Background())
	// Who may call (mesh/role.go): client requests come from edges (and
	// admin tooling, and cores); only edges open delivery streams.
	node.HandleRPC(meshpb.MethodClient, s.handleClient, mesh.RoleEdge, mesh.RoleAdmin, mesh.RoleCore)
	node.HandleStream(meshpb.MethodDeliveries, s.handleDeliveries, mesh.RoleEdge)
	s.watchLeader()
	return s
}

// Stop ends the leader watcher (and a fan-out replay it runs) and returns
// once it has exited. A raft barrier it waited for may still be pending:
// Wait for it after closing the replica.
func (s *MeshServer) Stop() {
	s.stop()
	s.wg.Wait()
}

// Wait returns once every raft barrier the watcher asked for is answered;
// call it after the replica's Close (which answers them all).
func (s *MeshServer) Wait() { s.barriers.Wait() }

// leaderRecheck is how often watchLeader looks at the leader even when
// raft announced nothing (observations can be dropped).
const leaderRecheck = time.Second

// watchLeader announces every leader change this replica sees to the
// attached edges (Core.AnnounceLeader) and runs the fan-out replay when
// this replica leads a new term, until Stop.
func (s *MeshServer) watchLeader() {
	ch := make(chan raft.Observation, 4)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r := s.rep.Raft()
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
			addr, term := s.leaderHint()
			if addr != "" && (addr != last || term != lastTerm) {
				last, lastTerm = addr, term
				s.core.AnnounceLeader(addr, term)
			}
			if s.rep.IsLeader() && term != replayed && s.replayFanout() {
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
func (s *MeshServer) replayFanout() bool {
	f := s.rep.Raft().Barrier(replayTimeout)
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
	n, err := s.core.ReplayFanout(ctx)
	if n > 0 {
		s.log.Info("fan-out replay: pushed messages the previous leader may not have", "messages", n)
	}
	if err != nil {
		s.log.Warn("fan-out replay", "err", err)
		return false
	}
	return true
}

// leaderHint is the leader this replica knows and its raft term.
func (s *MeshServer) leaderHint() (string, uint64) {
	addr, _ := s.rep.Leader()
	return addr, s.rep.Raft().CurrentTerm()
}

// handleClient serves the client rpc: a replica that does not lead
// answers not_leader with the leader it knows, doing nothing; PING is
// answered at once; the rest is Core.HandleClient.
func (s *MeshServer) handleClient(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("core: bad client request from %s: %w", peer, err)
	}
	if !s.rep.IsLeader() {
		addr, _ := s.rep.Leader()
		return proto.Marshal(&meshpb.ClientReply{NotLeader: true, Leader: addr})
	}
	if req.Kind == meshpb.ClientRequest_PING {
		return proto.Marshal(&meshpb.ClientReply{})
	}
	rep, err := s.core.HandleClient(ctx, req)
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
	if addr, term := s.leaderHint(); addr != "" {
		b, _ := proto.Marshal(&meshpb.Delivery{Leader: &meshpb.LinkLeader{Addr: addr, Term: term}})
		if err := st.Send(b); err != nil {
			return
		}
	}
	detach := s.core.AttachEdge(hello.EdgeId, func(d *meshpb.Delivery) error {
		b, err := proto.Marshal(d)
		if err != nil {
			return err
		}
		return st.Send(b)
	})
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
