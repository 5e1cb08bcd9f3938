package core

import (
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// The core's side of the region-local relay (package relay): who is online
// on which edge, chatroom membership and the fan-out to edges live there;
// the core tells it who logs in and out (session.go), stamps and records
// what it pushes (pushEnvelope, notif.go) and tracks when a message's
// fan-out has left (fanout.go).

// connKey names the connection a request came from (relay.ConnKey).
type connKey = relay.ConnKey

// Relay returns the core's relay (for the mesh handlers, operators and
// tests).
func (c *Core) Relay() *relay.Relay { return c.relay }

// AttachEdge routes deliveries for edgeID through send (relay.AttachEdge):
// a second attach of the same edge replaces the first and keeps its
// sessions; detach forgets every session of the edge.
func (c *Core) AttachEdge(edgeID string, send func(*meshpb.Delivery) error) (detach func()) {
	return c.relay.AttachEdge(edgeID, send)
}

// AttachEdgeAs is AttachEdge for an edge whose mesh certificate is owner
// (relay.AttachEdgeAs): while another certificate holds edgeID attached,
// it is refused with relay.ErrEdgeOwned.
func (c *Core) AttachEdgeAs(edgeID, owner string, send func(*meshpb.Delivery) error) (detach func(), err error) {
	return c.relay.AttachEdgeAs(edgeID, owner, send)
}

// SyncPresence applies an edge's presence frame (relay.SyncPresence). The
// core that leads the shard keeps its own chatroom memberships; the others
// mirror what the edge reports.
func (c *Core) SyncPresence(edgeID string, p *meshpb.Presence) {
	c.relay.SyncPresence(edgeID, p, c.replica != nil && c.replica.IsLeader())
}

// ChatroomOnline is the number of sessions this core counts as joined to
// the chatroom cid: on the leader the authoritative figure, on a follower
// its mirror of the edges' presence reports. For operators and tests.
func (c *Core) ChatroomOnline(app, cid string) int { return c.relay.RoomCount(app, cid) }

// online reports whether the clientId has a session.
func (c *Core) online(app, peer string) bool { return c.onlineBut(app, peer, 0) }

// onlineBut is online leaving region but (0: none) out of the other
// regions' summaries.
func (c *Core) onlineBut(app, peer string, but uint8) bool {
	return c.relay.Online(app, peer) || c.remote.OnlineElsewhereBut(app, peer, but)
}

// splitOnline splits peers into those with a session in this region or,
// as the presence summaries say, in another (regions.go), and the rest.
func (c *Core) splitOnline(app string, peers []string) (online, offline []string) {
	online, offline = c.relay.SplitOnline(app, peers)
	if c.remote == nil || len(offline) == 0 {
		return online, offline
	}
	still := offline[:0:0]
	for _, p := range offline {
		if c.remote.OnlineElsewhere(app, p) {
			online = append(online, p)
		} else {
			still = append(still, p)
		}
	}
	return online, still
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
func (c *Core) fanoutTo(app string, peers []string, skip connKey, cmd *lcpb.GenericCommand, replay bool) []relay.Wait {
	c.pushEnvelope(cmd)
	c.recordNotif(app, peers, cmd) // notif.go: conversation events and receipts are stored
	waits := c.relay.Fanout(app, peers, skip, cmd, replay)
	c.remote.Fanout(app, peers, skip, cmd, replay) // regions.go: once to every other region
	c.noteMissed(app, peers, cmd)                  // missed.go: for a login under way in another region
	return waits
}

// deliver queues a delivery that is not chatroom traffic (conversation
// pushes, session/closed kicks): relay class HIGH, never shed for chatroom
// traffic (relay's package doc, "Relay queue").
func (c *Core) deliver(edge string, d *meshpb.Delivery, cmd *lcpb.GenericCommand) {
	c.relay.Deliver(edge, d, pq.High, cmd)
}
