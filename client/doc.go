// Package client is relaymesh's Go SDK: an IM client that speaks the
// LeanCloud realtime (RTM) protocol, so it works against relaymesh and, the
// wire being the same, against anything that serves the official SDKs.
//
// # Wire
//
// One WebSocket per Client, subprotocol lc.protobuf2.3 by default
// (lc.protobuf2.1 to get offline messages pushed as direct{offline:true}
// instead of an unread summary; lc.proto2base64.* for base64 text frames).
// Every frame carries one lcpb.GenericCommand. The client mirrors what the
// official JS SDK 4.3.1 sends (src/connection.js, im-client.js,
// conversations/*.js):
//
//   - Dial opens the socket and sends session/open{appId, peerId,
//     sessionMessage{ua, configBitmap=59, tag, deviceId, lastUnreadNotifTime,
//     lastPatchTime, s/t/n}} and waits for session/opened, keeping st/stTtl
//     and using serverTs as lastPatchTime.
//   - Requests carry i, a per-connection counter from 1; the reply with the
//     same i completes the request, cmd=error fails it with *Error. Requests
//     time out after Options.RequestTimeout (20 s, as JS).
//   - Frames without i are pushes, turned into Events. ack and read are
//     sent without i. Received non-transient directs from others are acked
//     automatically with ack{cid, fromts, tots}, throttled as JS throttles
//     them (1 s, Options.AckInterval): the first at once, then at most one
//     batch per interval, one ack per conversation for everything received
//     meanwhile. Close sends the acks still held back before session/close;
//     a connection lost first leaves them unsent, as JS does, and the
//     server holds those messages as not delivered.
//   - Keepalive: an echo request every Options.KeepAlive (180 s); the
//     connection is dropped when nothing arrived for Options.IdleTimeout
//     (380 s), as JS does. WebSocket pings are answered by the library.
//
// # Goroutines
//
// Each connection has exactly one reader and one writer goroutine; a
// supervisor goroutine per Client owns the connection lifecycle. Close
// returns after all of them exited, and then the Events channel is closed.
//
// # Events and overflow
//
// Pushes become Events on a bounded channel (Options.EventBuffer, default
// 65536). When it is full the reader blocks for up to
// Options.EventOverflowWait (1 s) and then drops the event and counts it in
// Dropped. Nothing is dropped silently; a consumer that keeps up never loses
// events. While the reader blocks, replies on that connection wait too.
//
// # Reconnect rules
//
//   - When the connection is lost (read/write error, idle timeout),
//     requests in flight fail with ErrConnectionLost (retryable; a retried
//     Send should reuse SendOptions.DT so the server can dedup).
//   - A goaway push (an edge being drained) retires the connection: new
//     requests wait for the next one, which opens at once, while the old
//     one stays until the replies to its requests in flight arrived (then
//     the client closes it normally) or 5 s passed (then what still waits
//     fails with ErrGoaway, a ErrConnectionLost).
//   - The client emits Disconnected, then the supervisor redials after
//     min(ReconnectMin·2^n, ReconnectMax) with jitter (uniform in [d/2,
//     d]), n counting the failed rounds through its servers from 0; each
//     attempt goes to the next server of its list (Dial's url,
//     Options.Servers, and with Options.Router the router's server and
//     secondary: see servers.go), so a client whose edge died reopens on
//     another edge at the first attempt. With Options.Nearest the list is
//     ordered by measured round-trip time, nearest first (probe.go).
//     goaway (an edge being drained) reconnects at once; its
//     Disconnected carries ErrGoaway.
//     The reopen sends r=true and the cached st;
//     with no valid st, or when the server rejects st with 4112, it opens
//     with the full credentials (tag, deviceId, signature), still r=true.
//     Success emits Reconnected (attempts, time down, server); requests
//     made meanwhile wait for it (up to their deadline). With
//     Options.Resync the client then reads what it missed from history
//     (resync.go).
//   - No reconnect after session/closed (e.g. 4111, kicked by a login with
//     the same tag), after a reopen refused with a session error (4100–4199
//     other than 4112), or after a WebSocket close code 4100/4103/4110
//     (fatal in JS): Closed is emitted, later requests fail with
//     ErrSessionClosed, and the Events channel is closed.
//   - Options.NoReconnect turns reconnecting off: a lost connection emits
//     Closed{Code: 0} and ends the client.
package client
