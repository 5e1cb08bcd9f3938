// Package loadtest drives a relaymesh deployment with real clients — the Go
// SDK (package client) over WebSocket lc.protobuf2.3, nothing that reaches
// into the server — and checks that no acknowledged message was lost.
// cmd/relaymesh-loadtest is its command line.
//
// # Scenarios
//
// connect (log in and idle), pairs (one-to-one conversations), group
// (conversations of up to Config.GroupSize members), reconnect (every
// session's network drops at once and comes back), chatroom (sessions
// join Config.Rooms chatrooms and a few send with priorities drawn from
// Config.PriorityMix) and cross-region (one-to-one conversations whose
// members are in two regions of Config.Regions, settled and timed per
// region pair: crossregion.go). Except in chatroom, each worker owns whole
// conversations, so a message is sent and received within one worker and
// its ledger settles locally; workers ship settled counts and HDR
// histograms to the coordinator, which merges them.
//
// # Chatroom ledger
//
// A room's members are spread over every worker, so its ledger settles in
// the coordinator (chatroom.go): the coordinator creates the rooms (one
// owner session, CreateChatRoom), hands their ids to the workers (hidden
// --chatroom-ids) and, once every worker has logged in and joined its
// sessions, releases them all at once (Config.Gate, the workers' stdin), so
// every room is full before anyone sends. The text carries
// "lt:<worker>:<seq> p=<h|n|l> t=<send unix ns>"; every worker reports
// what it sent (room, class, acked) and, per message, how many of its
// sessions got a first copy, with per-class latency histograms computed from
// the send time in the text (so all workers must share one clock). An acked
// message is expected at every joined member of its room but the sender.
// Delivery is transient: NORMAL and LOW copies may be shed by the edge under
// pressure and are reported per class (delivered / expected, missing) next
// to the growth of relaymesh_edge_dropped_frames_total{priority} on each
// target's /metrics over the run; a missing HIGH copy is lost and fails the
// run. The drain ends when no copy arrived for 2 s or after Config.Drain.
//
// # WebTransport
//
// Config.Transport (--transport webtransport) makes every session of every
// scenario a WebTransport session (client.Options.Transport; the edge's
// certificate hash is fetched once per target from /v1/webtransport).
// Config.Loss (--loss F) gives each session its own UDP socket that drops
// F of the datagrams it writes (a netem.Conn) and reads. In the reconnect
// scenario the droppers' sockets go down with their group and client.Drop
// ends their connections. --source-ips and the slow readers' small TCP
// buffers do not apply to WebTransport. docs/BENCHMARKS.md explains why
// WebSocket has no --loss.
//
// # Slow readers
//
// With Config.SlowReaders (--slow-readers F), that share of the chatroom
// members (spread evenly over workers and rooms; never senders) read their
// WebSocket slowly: the SDK pauses Config.SlowReadDelay after each push
// (client.Options.ReadDelay), and their sockets get a 4 KiB receive buffer
// and, on Linux, a 536-byte MSS, which keeps the edge's kernel send buffer
// for them small (netdial.go). Their TCP window fills, the edge's writer
// blocks, and the backlog builds in the edge's per-connection queue
// (edge.Limits.QueueLen, relaymesh dev --queue-len), which sheds LOW, then
// NORMAL, and closes the connection when a HIGH does not fit.
// Config.PayloadBytes pads the messages so fewer frames fill the buffers.
// The ledger splits every class's delivered / expected between slow and
// normal readers (ChatroomSummary.SlowReaders), next to the edges' dropped
// frames by class and overflow closes. A slow reader whose connection the
// server closed during the run (it reconnected or ended) is counted in
// Disconnected and nothing is expected at it; a HIGH copy missing at a
// slow reader still connected is lost and fails the run like any other. A
// slow reader reads its backlog (queue plus socket buffers) at its slow
// rate after sending stops, so Config.Drain must cover it.
//
// # Ledger rules
//
// Every message carries a ledger id in its text, "lt:<worker>:<seq>", in
// the SDKs' text message JSON {"_lctype":-1,"_lctext":"lt:0:17"}. The
// ledger registers the message before sending it, with the conversation's
// members other than the sender as its expected recipients (a member whose
// login failed is not in any conversation). Then:
//
//   - A message is acked when Send returned the server's ack (uid, t); a
//     message whose Send failed is not expected anywhere (counted in
//     failed; copies of it that still arrive are not errors).
//   - For each acked message and each expected recipient the ledger keeps
//     which copies arrived: live (pushed while the session was online) or
//     by sync (fetched after a reconnect: an offline push, or history read
//     after the unread push). The first live copy is delivered and gives the
//     delivery latency (send start to arrival). A recipient with no live
//     copy but a sync copy is late, not lost; a sync copy of a message
//     already received live is resynced, not a duplicate.
//   - Lost counts (acked message, expected recipient) pairs with no copy at
//     all after the drain (sending stops, then up to Config.Drain until every
//     expected copy arrived or none arrived for a second). Any lost copy
//     fails the run (exit status 1).
//   - With Config.FinalSync, after the drain every open session reads its
//     conversations' history and records what it finds as sync copies
//     (finalsync.go): a push lost on the way is then late, and lost means
//     the server acked a message it does not have.
//   - Before dedup: duplicates counts live copies beyond the first per
//     (message, recipient), whatever their server id. After dedup by message
//     id — what an SDK that drops repeated message ids shows the user —
//     duplicates_after_dedup counts only copies with a second, different
//     server id (the server stored the message twice), and lost_after_dedup
//     also counts pairs whose copies all carry another server id than the
//     one acked.
//   - Copies that name a ledger id this worker never issued, or reach a
//     member that was not expected, are counted in unexpected.
//
// # Bounds
//
// Every run stops by itself: sending stops after Config.Duration or
// Config.MaxMessages (default 1.1·rate·duration), the drain is capped, and a
// worker's whole run has a deadline derived from its sessions, connect rate,
// duration and drain.
//
// # Faults
//
// Config.Fault (relaymesh-loadtest --kill-pid PID --kill-after D: kill -9
// of a server process) runs once, Config.FaultAfter into the sending, in a
// run of one worker process. The summary then settles the sends around the
// instant it returned (Summary.Fault): the first ack of a send started
// after it (when sends succeed again), the sends started after it that
// failed, and those started FaultGrace (2 s) or more after it. Every run
// also reports failed sends without a LeanCloud code by kind (timeout,
// connection lost) and the sessions that lost their connection: how long
// each was down (client.Reconnected.Down) and how many never came back.
// Sessions are given the other targets (client.Options.Servers) and
// resync after a reconnect (client.Options.Resync): copies that arrive
// that way are late, not lost. With Config.ViaRouter (cross-region) a
// session knows only its own region's edges and its region's router
// (client.Options.Router), so it reaches another region only through
// the router's secondary.
//
// # A peer server: Centrifugo
//
// Config.Peer = "centrifugo" (relaymesh-loadtest --peer centrifugo) runs the
// connect and chatroom scenarios against Centrifugo with the same sessions,
// pacing, ledger, payload and send timestamps (centrifugo.go): a session
// speaks Centrifugo's JSON client protocol over WebSocket (connect with an
// HS256 token the load tester signs, subscribe to the room's channel,
// answer pings), and a chatroom message is published through the server
// HTTP API, its text tagged with the sending member so that member ignores
// its own copy. The ack of a Centrifugo publish is the API's answer, not a
// commit. scripts/bench-peers.sh (make bench-peers) runs both servers side
// by side (docs/BENCHMARKS.md, issue 11).
//
// # Network
//
// Every session dials through its worker's http.Client
// (client.Options.HTTPClient, netdial.go), which binds source addresses
// (Config.SourceIPs) and can cut a group of sessions' connections at once
// (reconnect). Past ~14,000 connections from one source address to one
// target, Linux's connect() spends ~1 ms of kernel CPU choosing each local
// port (PortWarning; the command warns): spread big runs over addresses.
// Its plain ws:// handshakes skip net/http's Transport (upgrade.go): the
// load tester shares the cores with the server it measures, and a
// reconnect storm is thousands of dials at once.
package loadtest
