// Package core owns conversations and messages for the edges of a region.
//
// An edge forwards every command of a logged-in session as a
// meshpb.ClientRequest; HandleClient answers with the LeanCloud reply for that
// connection and fans pushes out to other sessions as meshpb.Delivery frames.
//
// Flow of a message (direct):
//
//	edge --ClientRequest{direct}--> HandleClient
//	  check membership in the applied state (not a member: 4401)
//	  assign id and timestamp, Propose(append) through raft, wait for commit
//	  reply ack{uid,t}      -> the sending connection (ClientReply)
//	  push direct{...}      -> one Delivery per edge holding any member's session
//
// State changes go through the shard state machine (package core/shard) as
// proposals to the Replica; reads (logs, conv/query, unread) read the
// replica's applied Pebble state directly. A core only serves while its
// replica leads the shard; otherwise it answers 4200 so the edge retries.
//
// Presence — which session of which clientId lives on which edge — is
// in-memory and region-local, never in raft: OPEN registers a session, CLOSE
// and detaching its edge remove it.
//
// Beyond plain messages (one file each): receipts.go (r:true -> rcp pushes
// driven by the shard's cursor moves; group receipts need configBitmap bit
// 6), will.go (will messages held in the shard until the sending session
// drops), moderation.go (roles, member mute, blacklist: who may do what is
// decided in core/shard/moderation.go, replies and pushes here),
// chatroom.go (chatrooms, tr:true: who is in one is region-local memory
// like presence, never raft; the shard stores the row and the history),
// tempconv.go (temporary conversations, _tmp: ids: at most 10 members fixed
// at creation, a TTL of one day by default and 30 days at most; fetched
// only by conv/query{tempConvIds}, never by where-queries; add, remove,
// update and mute are refused with 4314; after expiry every operation is
// refused with 4323 — the shard decides expiry from each command's Now).
//
// Limits (limits.go, Config.Limits; zero fields take the defaults):
// MaxMembers, 500 members per normal conversation (4304 past it);
// MaxOfflinePerConv, the newest 100 offline messages per conversation
// pushed on a .1 login (older ones stay in history, hasMore marks the
// gap); MaxUnreadConvs, at most 50 conversations, the most recently
// active, in a login's unread notification (.3) or offline pushes (.1).
//
// The app's say (one file each): filter.go runs the _messageReceived hook
// and the sensitive-word filter before a message is proposed; hooks.go runs
// the conversation hooks before their proposals and owns the after-send
// workers; offline.go queues _messageSent and the offline push after the
// fan-out, off the request goroutine; patchhook.go runs _messageUpdate
// before a patch is proposed; notifyhooks.go queues the hooks LeanCloud
// calls after the fact (_clientOnline, _clientOffline,
// _conversationStarted/Added/Removed) on workers of their own.
//
// Stored notifications (notif.go): every conversation event and receipt
// fanout pushes is also appended, by one batching goroutine, to each
// recipient's log in the shard (core/shard/notif.go), which GET
// /1.1/rtm/notifications reads.
//
// Hot paths read conversations through the shard FSM's decoded cache
// (convView), not by decoding the record with its member list. Client acks
// and reads do not propose one by one: cursors.go queues them and one
// goroutine proposes each round of moves as one shard batch command,
// pushing the receipts it yields.
//
// Relay queue (relayqueue.go, presence.go): each attached edge has one
// bounded queue of deliveries (EdgeQueueLen) with three classes, and one
// goroutine hands them to the edge's send, HIGH, then NORMAL, then LOW,
// FIFO within a class. A chatroom delivery takes its message's priority
// (1 HIGH, 3 LOW, 0, 2 or anything else NORMAL); every other delivery —
// conversation pushes, directs of normal conversations, receipts,
// session/closed kicks — is HIGH here, so chatroom traffic never sheds it
// (its Delivery.priority stays 0, NORMAL at the edge's per-connection
// queue). When the queue is full: a new LOW is dropped; a new NORMAL
// evicts the oldest LOW, else is dropped; a new HIGH evicts the oldest LOW,
// then the oldest NORMAL, and is dropped when only HIGH is queued. Every
// drop counts in Stats.Dropped and, by the class of the delivery dropped,
// in Stats.DroppedByPriority; persisted messages stay in history and
// unread counts, so clients resync.
//
// Locks: Core.mu guards presence and edges; convLocks serialise send and
// fan-out per conversation so every recipient sees a conversation's messages
// in timestamp order. Lock order: a conversation lock, then Core.mu; the
// cursor batcher's lock, then Core.mu; Core.mu, then the chatrooms' lock.
package core
