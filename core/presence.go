package core

import (
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// EdgeQueueLen bounds each edge's relay queue (relayqueue.go). When it is
// full, deliveries are shed by class, LOW first, and counted
// (Stats.Dropped, Stats.DroppedByPriority); persisted messages stay in
// history and unread counts, so the client resyncs.
const EdgeQueueLen = 4096

// session is one logged-in connection.
type session struct {
	app, peer, tag, edge string
	conn                 uint64
	version              int32
	ip                   string // the client's address at OPEN; "" for sessions learnt from presence
}

type peerKey struct{ app, peer string }

// connKey names the connection a request came from.
type connKey struct {
	edge string
	conn uint64
}

// edgeLink is one attached edge and its sending goroutine.
type edgeLink struct {
	id   string
	send func(*meshpb.Delivery) error
	q    *relayQueue
	done chan struct{}
	// highOut counts the HIGH deliveries the goroutine handed to send
	// (written or failed); with relayQueue.pushSeq it tells when a
	// fan-out has left the core (fanout.go).
	highOut atomic.Uint64
}

// Stats are counters of the relay.
type Stats struct {
	Delivered  atomic.Uint64 // deliveries handed to an edge's send
	Dropped    atomic.Uint64 // deliveries dropped: queue full or edge gone
	SendErrors atomic.Uint64 // send returned an error
	// Replayed counts messages a new leader pushed again because the
	// fan-out tail said they might not have been (fanout.go).
	Replayed atomic.Uint64
	// Halted counts messages held by the test hook
	// Config.HaltBeforeFanout (failover.go).
	Halted atomic.Uint64
	// DroppedByPriority counts the deliveries shed by a full relay queue,
	// by the class of the one dropped (index with RelayHigh, RelayNormal,
	// RelayLow); [RelayHigh] only grows when the queue holds nothing but
	// HIGH. Their sum is the part of Dropped not due to a missing edge.
	DroppedByPriority [NumRelayClasses]atomic.Uint64
}

// loop hands queued deliveries to send, HIGH first, until done is closed.
func (l *edgeLink) loop(st *Stats) {
	for {
		select {
		case <-l.done:
			return
		default:
		}
		d, class := l.q.popClass()
		if d == nil {
			select {
			case <-l.done:
				return
			case <-l.q.notify:
			}
			continue
		}
		err := l.send(d)
		if class == RelayHigh {
			l.highOut.Add(1)
		}
		if err != nil {
			st.SendErrors.Add(1)
			continue
		}
		st.Delivered.Add(1)
	}
}

// AttachEdge routes deliveries for edgeID through send, from a goroutine
// owned by the core. A second attach of the same edge replaces the first and
// keeps its sessions. detach stops the goroutine and forgets every session
// of the edge.
func (c *Core) AttachEdge(edgeID string, send func(*meshpb.Delivery) error) (detach func()) {
	qlen := c.relayQueueLen
	if qlen <= 0 {
		qlen = EdgeQueueLen
	}
	l := &edgeLink{id: edgeID, send: send, q: newRelayQueue(qlen), done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return func() {}
	}
	if old := c.edges[edgeID]; old != nil {
		close(old.done)
	}
	c.edges[edgeID] = l
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		l.loop(&c.stats)
	}()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.edges[edgeID] != l {
			return // replaced or closed
		}
		delete(c.edges, edgeID)
		close(l.done)
		c.rooms.dropEdge(edgeID, c.now())
		for k, ss := range c.sessions {
			kept := ss[:0]
			for _, s := range ss {
				if s.edge != edgeID {
					kept = append(kept, s)
				}
			}
			c.setSessionsLocked(k, kept)
		}
	}
}

func (c *Core) setSessionsLocked(k peerKey, ss []*session) {
	if len(ss) == 0 {
		delete(c.sessions, k)
		return
	}
	c.sessions[k] = ss
}

// removeSessionLocked forgets the session on (edge, conn) of k and
// returns it, nil when there was none.
func (c *Core) removeSessionLocked(k peerKey, from connKey) (removed *session) {
	ss := c.sessions[k]
	kept := ss[:0]
	for _, s := range ss {
		if s.edge != from.edge || s.conn != from.conn {
			kept = append(kept, s)
		} else {
			removed = s
		}
	}
	c.setSessionsLocked(k, kept)
	return removed
}

// online reports whether the clientId has a session.
func (c *Core) online(app, peer string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions[peerKey{app, peer}]) > 0
}

// pushEnvelope stamps a push: service=2 and serverTs (NATIVE-SDKS.md §4).
func (c *Core) pushEnvelope(cmd *lcpb.GenericCommand) {
	cmd.I = nil
	cmd.Service = proto.Int32(lcpb.ServiceIM)
	cmd.ServerTs = proto.Int64(c.nowMS())
}

// fanout pushes cmd to every session of peers except the connection skip:
// one Delivery per edge with all its target sessions.
func (c *Core) fanout(app string, peers []string, skip connKey, cmd *lcpb.GenericCommand) {
	c.fanoutTo(app, peers, skip, cmd, false)
}

// fanoutTo is fanout that returns where each delivery waits in its edge's
// relay queue (fanout.go tracks when a message has left the core), and
// marks the deliveries as a replay when replay is set.
func (c *Core) fanoutTo(app string, peers []string, skip connKey, cmd *lcpb.GenericCommand, replay bool) []edgeWait {
	c.pushEnvelope(cmd)
	c.recordNotif(app, peers, cmd) // notif.go: conversation events and receipts are stored
	byEdge := map[string][]*meshpb.Target{}
	c.mu.Lock()
	for _, p := range peers {
		for _, s := range c.sessions[peerKey{app, p}] {
			if s.edge == skip.edge && s.conn == skip.conn {
				continue
			}
			byEdge[s.edge] = append(byEdge[s.edge], &meshpb.Target{PeerId: s.peer, ConnId: s.conn})
		}
	}
	c.mu.Unlock()
	var waits []edgeWait
	msgID := ""
	if cmd.GetCmd() == lcpb.CommandType_direct {
		msgID = cmd.GetDirectMessage().GetId()
	}
	for edge, targets := range byEdge {
		if w, ok := c.deliverAs(edge, &meshpb.Delivery{AppId: app, Targets: targets, MsgId: msgID, Replay: replay}, RelayHigh, cmd); ok {
			waits = append(waits, w)
		}
	}
	return waits
}

// deliver queues a delivery that is not chatroom traffic (conversation
// pushes, session/closed kicks): relay class HIGH, never shed for chatroom
// traffic (core/doc.go, "Relay queue").
func (c *Core) deliver(edge string, d *meshpb.Delivery, cmd *lcpb.GenericCommand) {
	c.deliverAs(edge, d, RelayHigh, cmd)
}

// deliverAs encodes cmd for d (peerId set when all targets share one) and
// queues it for edge as class p without blocking. For a HIGH delivery
// queued, w says when it has left (ok).
func (c *Core) deliverAs(edge string, d *meshpb.Delivery, p RelayClass, cmd *lcpb.GenericCommand) (w edgeWait, ok bool) {
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
		c.log.Error("encode push", "err", err)
		return
	}
	d.Command = b
	c.mu.Lock()
	l := c.edges[edge]
	c.mu.Unlock()
	if l == nil {
		c.stats.Dropped.Add(1)
		return edgeWait{}, false
	}
	seq, victim, dropped := l.q.pushSeq(d, p)
	if dropped {
		c.stats.Dropped.Add(1)
		c.stats.DroppedByPriority[victim].Add(1)
	}
	if seq == 0 {
		return edgeWait{}, false
	}
	return edgeWait{l, seq}, true
}

// SyncPresence applies an edge's presence frame (meshpb.Presence): every
// core of a region learns the sessions of every edge, so a core that becomes
// shard leader, or restarts, can fan out without anyone logging in again.
// It only records sessions: no tag kick and no login notifications, which
// the leader did when it handled the OPEN. Applying a frame twice is
// harmless.
//
// It also mirrors chatroom membership (PresenceSession.room, chatroom.go),
// pushing nothing: a follower takes what the leader told the edge; the
// leader keeps its own state and only restores sessions it has in no
// chatroom (after a restart).
func (c *Core) SyncPresence(edgeID string, p *meshpb.Presence) {
	leader := c.replica != nil && c.replica.IsLeader()
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if p.GetReplaceAll() && !leader {
		c.rooms.dropEdge(edgeID, now) // rebound below from the list
	}
	if p.GetReplaceAll() {
		for k, ss := range c.sessions {
			kept := ss[:0]
			for _, s := range ss {
				if s.edge != edgeID {
					kept = append(kept, s)
				}
			}
			c.setSessionsLocked(k, kept)
		}
	}
	for _, r := range p.GetRemove() {
		from := connKey{edgeID, r.GetConnId()}
		c.removeSessionLocked(peerKey{r.GetAppId(), r.GetPeerId()}, from)
		c.rooms.closeSession(r.GetAppId(), r.GetPeerId(), from, now) // detached for RoomGrace
	}
	for _, a := range p.GetAdd() {
		k := peerKey{a.GetAppId(), a.GetPeerId()}
		from := connKey{edgeID, a.GetConnId()}
		var ip string // the leader's record of its own OPEN keeps the address (notifyhooks.go)
		if old := c.removeSessionLocked(k, from); old != nil {
			ip = old.ip
		}
		c.sessions[k] = append(c.sessions[k], &session{app: a.GetAppId(), peer: a.GetPeerId(), tag: a.GetTag(),
			edge: edgeID, conn: a.GetConnId(), version: a.GetProtocolVersion(), ip: ip})
		c.today.note(k, now) // stats.go
		c.rooms.mirror(roomID{a.GetAppId(), a.GetPeerId(), a.GetTag()}, from, a.GetRoom(), leader, now)
	}
}
