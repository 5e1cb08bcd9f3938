// Package relay is the region-local relay: it knows which edge of its
// region holds which session and which chatroom member, and delivers each
// push once per edge, never once per recipient. It runs on every core of a
// region, beside the shard replicas; the core (package core) tells it who
// logs in and out and hands it the pushes of what it commits.
//
// State, all in memory and region-local, never in raft:
//
//   - sessions by (app, clientId): a Session names its edge and connection.
//     The shard leader registers one when it handles the OPEN (Open: tag
//     kick and the chatroom rebinding are decided here); every core also
//     learns every edge's sessions from the edges' Presence frames
//     (SyncPresence), so a new leader, or a restarted core, fans out to
//     clients that never logged in again;
//   - chatroom membership (rooms.go): who is in which chatroom, keyed by
//     (app, clientId, tag) so a reconnect within RoomGrace is back in;
//   - the attached edges (AttachEdge): one bounded queue of deliveries per
//     edge and one goroutine that hands them to the edge's delivery
//     stream;
//   - the clientIds seen with a session this UTC day (today.go).
//
// Flow of a push:
//
//	core commits → Fanout(app, peers, skip, cmd)
//	  group the peers' sessions by edge (skipping the sender's connection)
//	  one meshpb.Delivery per edge, cmd encoded once per edge
//	  queue it in the edge's queue as class HIGH      → Wait (fan-out tracking)
//	edge's sender goroutine: pop HIGH, then NORMAL, then LOW → send
//
// Relay queue (the shard → edge hop; relay/pq with the DropNew policy):
// each attached edge has one queue of EdgeQueueLen deliveries with three
// classes, FIFO within a class. A chatroom delivery takes its message's
// priority (FanoutRoom: 1 HIGH, 3 LOW, 0, 2 or anything else NORMAL);
// every other delivery — conversation pushes, directs of normal
// conversations, receipts, session/closed kicks, the link's leader
// announcements — is HIGH here, so chatroom traffic never sheds it (its
// Delivery.priority stays 0, NORMAL at the edge's per-connection queue).
// When the queue is full: a new LOW is dropped; a new NORMAL evicts the
// oldest LOW, else is dropped; a new HIGH evicts the oldest LOW, then the
// oldest NORMAL; when only HIGH is queued it waits for room, up to
// HighWait (its fan-out runs on the request that committed the message, so
// the sender's ack waits too: backpressure, counted in Stats.HighWaits,
// relaymesh_core_relay_high_waits_total), and is dropped only when the
// edge took nothing for that long. Every drop counts
// in Stats.Dropped and, by the class of the delivery dropped, in
// Stats.DroppedByPriority (relaymesh_core_relay_dropped_total); persisted
// messages stay in history and unread counts, so clients resync.
//
// Fan-out tracking: HIGH is FIFO and never evicted, so a HIGH delivery's
// place among every HIGH delivery its queue ever took (pq's Outcome.Seq)
// against the count of HIGH deliveries the edge's goroutine handed to send
// says when it has left the relay (Wait.Left). The core names a message's
// fan-out done in the shard once every Wait of it has left (core/fanout.go).
//
// Locks: Relay.mu guards sessions and edges; rooms has its own lock.
// Lock order: Relay.mu, then rooms.mu. No callback runs under either.
package relay
