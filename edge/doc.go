// Package edge terminates LeanCloud realtime SDK connections: WebSocket with
// the lc.protobuf2.{3,1} / lc.proto2base64.{3,1} subprotocols, WebTransport
// over HTTP/3 for browsers (wt.go: the same frames, varint-delimited on one
// stream, transient directs as datagrams; the same sessions, limits and
// close codes through conn's transport interface), sessions,
// login signatures and session tokens, size and rate limits, keepalive, the
// per-connection priority queue, and the router (/v1/route), health and
// metrics endpoints. It keeps no durable state; everything else goes to the
// core through Backend.
//
// # Connection
//
// The subprotocol is the first one the client offers in
// Sec-WebSocket-Protocol that relaymesh speaks, echoed back exactly; else
// the ?subprotocol= query parameter (WeChat mini programs), echoing nothing.
// A handshake with neither is refused with HTTP 400 before the upgrade (the
// legacy JSON protocol of SDK 2.x is not served). No compression (OC rejects
// RSV bits) and no Origin check. Each message is one GenericCommand:
// binary frames for protobuf2, base64 text frames for proto2base64 (a
// base64 text frame is also accepted on a binary subprotocol, as the SDK's
// decoder does).
//
// Reading: a plain-TCP WebSocket on Linux is framed by the edge itself
// (wsframe.go, behaving as coder/websocket does) and read without a
// goroutine of its own (wsraw.go): its socket sits in an epoll set
// (wsepoll_linux.go, whose descriptor the poller's one goroutine waits on
// in Go's netpoller, never in a blocking epoll_wait that would hold a P)
// and, when readable, a pooled goroutine
// (internal/gopool, its stack already grown by earlier passes) reads what
// is there into a pooled buffer, handles the complete frames in order
// (calling the Backend synchronously, so replies keep request order; a run
// of one session's sends into one conversation goes as one request, and
// acks and reads, which get no reply, go on goroutines of their own:
// batch.go), keeps the bytes of an incomplete frame, and re-arms the socket.
// Other WebSockets (TLS, non-Linux, Config.GoroutineReader) and
// WebTransport sessions have one reader goroutine each, started by the
// handler, which then returns. The writer runs only
// while frames are queued: enqueue kicks it (conn.kick). A raw WebSocket
// gets a turn of the server's writer pool (writers.go: GOMAXPROCS
// goroutines taking connections in turn, each turn writing everything
// queued, up to 64 KiB, with one non-blocking system call; a socket that
// is full hands the rest of its burst to a goroutine of its own with the
// write timeout). Any other connection gets a short-lived burst goroutine
// (conn.writeBurst), its backlog corked into one socket write per 64 KiB.
// Both drain the bounded outbound queue (see outQueue and relay/pq for the
// overflow rule). The idle timeout is a timer and
// the close runs when the connection's context ends. Writers and the
// closer hold conn.wmu, so one at a time touches the socket. An idle raw
// WebSocket keeps no goroutine; any other connection only its reader.
// WebSocket pings are answered at once (by the reader pass, or the
// library while its reader is active); data frames, pings and pongs all
// reset the idle timer.
//
// Close codes sent by the edge: 4107 idle timeout (Limits.IdleTimeout,
// default 400 s), 1013 slow consumer (HIGH frames did not fit; a goaway per
// session precedes it) or backend unavailable during a reconnect, 1001
// shutdown (after goaway), 1009 frame over Limits.MaxFrameBytes, 1002 a protocol error (both as
// coder/websocket sends them).
//
// # Sessions
//
//	session/open  → session/opened{i, peerId, sessionMessage{st, stTtl}, serverTs}
//	                then the OPEN reply's commands (unread, offline messages…)
//	session/close → session/closed{i, peerId, sessionMessage{}} (never a code)
//	session/refresh → session/refreshed{i, peerId, sessionMessage{st, stTtl}}
//	echo          → echo{i} (also before login)
//	login/logout  → ignored (LeanCloud Push; Java sends login on every socket)
//
// A fresh open needs clientId 1–64 characters (else 4103), an appId the
// registry knows (else 4100) and, when the app requires it, a login
// signature (hex HMAC-SHA1 keyed with the Master Key over
// "appid:clientid::t:n", t in ms within ±6 h; else 4102). An open carrying
// st is verified by the token alone (else cmd:error 4112 with the request's
// i, or none — Java reopens without i) and recovers appId, clientId and tag
// from it. The Backend then gets OPEN; a non-zero error_code refuses the
// login: 4111 as session/closed{code:4111} (how natives expect a refused
// reopen), any other code as cmd:error. A Backend transport error answers
// 4200, or closes the socket with 1013 on a reconnect (r=true), because
// Swift/OC give up a session on any other reopen error.
//
// Sessions bind to the connection: later commands without peerId belong to
// the first session; several IMClients may share one socket (JS), then
// commands carry peerId. A command for no bound session gets 4105. The
// session is bound before OPEN so that deliveries the core sends while the
// login is in flight are held and written after session/opened. A session
// that ends while opening (app closed, tag kick) still gets what was held
// up to its session/closed notice, the notice included.
//
// Every other command of a session goes to the Backend as COMMAND with the
// raw GenericCommand bytes, after these checks (each rejection is a
// cmd:error with the request's i; the connection stays up):
//
//   - message content over Limits.MaxMessageBytes (default 5120: direct
//     msg + binaryMsg + pushData, each patch item's data + binaryMsg) → 4109
//     FRAME_TOO_LONG, LeanCloud's code for an over-long message;
//   - per-session token buckets: 60 direct/min, 120 logs/min, 30/min for
//     every other op (conv, patch, blacklist, session/query…), none for
//     ack, read, echo → 4116 MESSAGE_SENT_QUOTA_EXCEEDED (LeanCloud silently
//     dropped such requests; an error lets the SDK fail fast instead of
//     timing out).
//
// A Backend error answers 4200 (nothing when the request had no i); a
// non-zero error_code is answered with that code. Reply commands are
// written in order, with peerId and service=2 filled in when unset.
// An undecodable frame is answered with an i-less cmd:error 4114
// (UNPARSEABLE_RAW_MESSAGE) and never reaches the Backend; a frame without
// cmd gets 4114 with its i.
//
// # Session tokens
//
// st is base64url(version, expiry, appId, clientId, tag, HMAC-SHA256 keyed
// with Config.TokenKey), so any edge sharing the key verifies it without a
// lookup (see auth.go). stTtl defaults to 48 h (Limits.SessionTokenTTL).
// Tokens cannot be revoked before expiry.
//
// # Deliveries and shutdown
//
// Deliver writes a core push to the target sessions (conn_id 0 = every
// session of the peer on this edge), setting peerId to the target and
// service=2 when unset; end_session unbinds the session after queueing the
// frame (tag kick), without a CLOSE to the Backend. When a connection ends,
// each of its sessions gets a Backend CLOSE. Close sends goaway{peerId,
// service=2} to every session, closes every connection after its queue
// drains, and waits for every goroutine and CLOSE call.
package edge
