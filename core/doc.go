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
// Presence — which session of which clientId lives on which edge — and
// chatroom membership are the region-local relay's (package relay), in
// memory, never in raft: OPEN registers a session there (relay.Open, tag
// kick), CLOSE and detaching its edge remove it, and the relay fans pushes
// out to the edges through a bounded priority queue per edge (relay.go is
// the core's side of it).
//
// Beyond plain messages (one file each): receipts.go (r:true -> rcp pushes
// driven by the shard's cursor moves; group receipts need configBitmap bit
// 6), will.go (will messages held in the shard until the sending session
// drops), moderation.go (roles, member mute, blacklist: who may do what is
// decided in core/shard/moderation.go, replies and pushes here),
// chatroom.go (chatrooms, tr:true: who is in one is the relay's memory,
// never raft; the shard stores the row and the history),
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
// Map, by job. Issue 9 took out what had a clean seam: presence, chatroom
// membership and the queues to the edges (package relay), the query
// language (package core/query), the mesh handlers out of cluster (here,
// mesh.go). What stays is one package because every job below proposes
// through the core's replica, reads its state and fans out through its
// relay; as packages they would each need most of Core as an interface.
//
//   - requests: core.go (Config, HandleClient, propose), errors.go (the one
//     table of LeanCloud codes), validate.go, limits.go, ids.go.
//   - on the mesh: mesh.go (ServeMesh: the client rpc, the edges' delivery
//     streams, the leader watcher); the edge's side is edge/corelink.
//   - sessions: session.go (OPEN, CLOSE, login notifications,
//     session/query), auth.go (token generations), stats.go (usage); the
//     registry itself is the relay's (relay.go is the core's side).
//   - messages: message.go, sendgroup.go (group commit of a conversation's
//     sends), batch.go (a session's run of sends in one request), receipts.go,
//     cursors.go, will.go, tempconv.go.
//   - fan-out and failover: relay.go, fanout.go (commit before fan-out, the
//     replay), failover.go.
//   - conversations: conv.go, moderation.go, chatroom.go (the protocol;
//     membership is the relay's), query.go (the scan over the shard's
//     indexes; the language is core/query).
//   - system conversations: sysconv.go — stays: each operation is a
//     proposal, a read of the shard and a fan-out of the core's.
//   - devices and offline push: devices.go, offline.go — stay: they bind
//     devices by proposals and feed the core's push queue from its state.
//   - stored notifications: notif.go — stays: its batcher proposes through
//     the core and every fan-out feeds it.
//   - the app's say: filter.go, words.go, hooks.go, patchhook.go,
//     notifyhooks.go — stay: each is the core's call into package hooks or
//     moderation at one point of a request.
//   - server API: admin.go — stays: it dispatches to every job above.
//   - metrics.go: the core's series, the relay's and the query meter's.
//
// Locks: Core.mu guards closed; convLocks serialise send and fan-out per
// conversation so every recipient sees a conversation's messages in
// timestamp order; sends that arrive while a round of their conversation
// runs queue and go together in the next (sendgroup.go). Lock order: a
// conversation lock, then the relay's locks; the cursor batcher's lock,
// then Core.mu. The relay's locks and sendQueues.mu are leaves (relay's
// package doc).
package core
