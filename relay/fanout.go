package relay

import (
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// Fanout queues cmd for every session of peers except the connection skip:
// one Delivery per edge with all its target sessions, class HIGH. A direct
// push names its message (Delivery.msg_id: the edge's replay filter);
// replay marks the deliveries as a new leader's replay (Delivery.replay).
// It returns a Wait for each delivery queued. cmd is stamped by the caller
// (service, serverTs); its peerId is set per delivery.
func (r *Relay) Fanout(app string, peers []string, skip ConnKey, cmd *lcpb.GenericCommand, replay bool) []Wait {
	byEdge := map[string][]*meshpb.Target{}
	r.mu.Lock()
	for _, p := range peers {
		for _, s := range r.sessions[peerKey{app, p}] {
			if s.Edge == skip.Edge && s.Conn == skip.Conn {
				continue
			}
			byEdge[s.Edge] = append(byEdge[s.Edge], &meshpb.Target{PeerId: s.Peer, ConnId: s.Conn})
		}
	}
	r.mu.Unlock()
	var waits []Wait
	msgID := ""
	if cmd.GetCmd() == lcpb.CommandType_direct {
		msgID = cmd.GetDirectMessage().GetId()
	}
	for edge, targets := range byEdge {
		if w, ok := r.Deliver(edge, &meshpb.Delivery{AppId: app, Targets: targets, MsgId: msgID, Replay: replay}, pq.High, cmd); ok {
			waits = append(waits, w)
		}
	}
	return waits
}

// FanoutRoom queues cmd for the sessions joined to chatroom cid, except
// every session of skipPeer (the sender) and of the clientIds skip reports
// (nil: none), with the message's LeanCloud priority on the delivery and
// as its class (pq.ClassOf), so the relay queue and the edges shed LOW
// first under pressure.
func (r *Relay) FanoutRoom(app, cid, skipPeer string, skip func(peer string) bool, priority int32, cmd *lcpb.GenericCommand) {
	for edge, targets := range r.rooms.targets(app, cid, skipPeer, skip) {
		r.Deliver(edge, &meshpb.Delivery{AppId: app, Targets: targets, Priority: priority}, pq.ClassOf(priority), cmd)
	}
}

// Deliver encodes cmd into d (peerId set when all of d's targets share
// one) and queues d for edge as class c without blocking. For a HIGH
// delivery queued, w says when it has left the relay (ok). A delivery for
// an edge not attached is dropped and counted.
func (r *Relay) Deliver(edge string, d *meshpb.Delivery, c pq.Class, cmd *lcpb.GenericCommand) (w Wait, ok bool) {
	one := d.Targets[0].PeerId
	for _, t := range d.Targets[1:] {
		if t.PeerId != one {
			one = ""
			break
		}
	}
	cmd.PeerId = nil
	if one != "" {
		cmd.PeerId = proto.String(one)
	}
	b, err := proto.Marshal(cmd)
	if err != nil {
		r.log.Error("encode push", "err", err)
		return
	}
	d.Command = b
	r.mu.Lock()
	l := r.edges[edge]
	r.mu.Unlock()
	if l == nil {
		r.stats.Dropped.Add(1)
		return Wait{}, false
	}
	return r.queue(l, d, c)
}

// SendToEdges queues the control frame d (a Delivery without targets: the
// link's LinkLeader) for every attached edge as HIGH.
func (r *Relay) SendToEdges(d *meshpb.Delivery) {
	r.mu.Lock()
	links := make([]*edgeLink, 0, len(r.edges))
	for _, l := range r.edges {
		links = append(links, l)
	}
	r.mu.Unlock()
	for _, l := range links {
		r.queue(l, d, pq.High)
	}
}

// queue pushes d into l's queue as class c and counts what was dropped.
func (r *Relay) queue(l *edgeLink, d *meshpb.Delivery, c pq.Class) (Wait, bool) {
	o, waited := l.q.PushWait(d, c, HighWait)
	if waited {
		r.stats.HighWaits.Add(1)
	}
	if o.Dropped() {
		r.stats.Dropped.Add(1)
		r.stats.DroppedByPriority[o.Victim].Add(1)
	}
	if o.Seq == 0 {
		return Wait{}, false
	}
	return Wait{l, o.Seq}, true
}
