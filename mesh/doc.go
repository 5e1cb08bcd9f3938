// Package mesh is the QUIC fabric between relaymesh nodes.
//
// Every node owns one UDP socket and one quic.Transport that both accepts and
// dials, so a node has a single address. Nodes authenticate each other with
// mutual TLS 1.3 against a cluster CA (see EnsureDevPKI, LoadIdentity): the
// server requires and verifies a client certificate, the client verifies the
// server's chain against the same CA. Any holder of a CA-signed certificate is
// a cluster member; host names are not checked, because nodes dial each other
// by address. A peer's identity is its certificate's CommonName (or first DNS
// SAN), handed to handlers as peer.
//
// A node keeps one QUIC connection per dialled address, shared by all callers
// and re-dialled when it fails. Two nodes that dial each other hold two
// connections; both sides accept streams on every connection. Keepalives keep
// idle connections open.
//
// # Wire format
//
// ALPN is "relaymesh/1". Every stream is bidirectional and starts with a
// header naming its kind and method:
//
//	header  = kind:uint8 method-len:uint8 method:bytes
//	frame   = length:uint32 (big endian, <= MaxFrameSize) payload:bytes
//	status  = uint8: 0 ok, 1 handler error, 2 unknown method, 3 frame too large,
//	          4 forbidden (the caller's role may not use the method)
//
// The kinds are:
//
//	1 rpc     client: header frame(request) FIN
//	          server: status frame(reply, or error text) FIN
//	2 stream  client: header; server: status (with frame(method) FIN if not 0)
//	          then both sides send frames until FIN (Stream.Close)
//	3 raft    client: header with an empty method, then raw hashicorp/raft
//	          NetworkTransport bytes both ways (Node.RaftLayer)
//	4 mux     client: header with an empty method; server: status 0
//	          then, both ways until either side resets, frames of many calls:
//	          client: frame(0 id:uvarint method-len:uint8 method request)
//	                  frame(1 id:uvarint)   cancel the call id
//	          server: frame(id:uvarint status:uint8 payload)   in any order
//
// Call sends a request of up to 64 KiB on a mux stream: a caller keeps up
// to 4 per connection, opened as calls need them and kept for the
// connection's life. The server checks each call's method and role as for
// kind 1 (statuses 1 to 4 answer that call alone), runs its handler on
// its own goroutine and writes each reply when it is ready, one at a time.
// Ids are the caller's; one stream has at most 1,024 calls in flight (from
// the call frame to its reply) and never the same id twice; a caller frame
// over 64 KiB + 267 bytes, a malformed one, a duplicate id or a call beyond
// the limit resets the stream with code 2, ending its handlers. A cancel
// ends that handler's context; a cancel of an id not in flight is ignored.
// Every call is answered, cancelled or not: the caller counts a call in
// flight until its reply and drops a reply it no longer waits for. A
// larger request, or any when every mux stream is full, takes a kind 1
// stream of its own. A reply payload is up to MaxFrameSize (its frame,
// with id and status, up to 11 bytes more). A node that does not know
// kind 4 resets the stream with code 2 instead of status 0: its caller
// then uses kind 1 on that connection (relaymesh before issue 11).
//
// Deadlines: a dial gives up after 3 s (shared by every caller waiting for
// it); a connection whose peer is silent for 10 s (keepalives every 2 s)
// is dropped with every stream on it; Stream.Send fails after its send
// timeout (DefaultSendTimeout, 10 s) and resets the stream; an RPC reply
// the caller does not read within 10 s is reset, and so is a mux stream
// whose writes (either side) are held up for 10 s, failing its calls.
// Call is bounded by its context. A Call that failed before its request
// was written (on a mux stream: completely handed to the stream) wraps
// ErrNotSent, so a caller knows when a retry cannot duplicate it.
//
// An oversize frame is refused by the sender (ErrFrameTooLarge) and, if one
// arrives anyway, answered with status 3 and the stream is reset. A length
// prefix is the peer's word, not bytes: a reader commits memory as the
// payload arrives (at most max(64 KiB, twice what arrived)), so prefixes
// declaring 16 MiB that are never followed by their bytes cost little.
// An rpc whose caller's role may not call the method is answered with
// status 4 before its request is read, and the server stops the stream's
// sending side (STOP_SENDING); the caller then reads the answer. A caller
// whose context ends resets both directions of its stream (on a mux
// stream: sends a cancel); the server's handler context ends when the
// caller stops reading (or cancels).
//
// # In process
//
// Two nodes of one process that both listen with InProcess reach each other
// in memory, not over QUIC (local.go): Call runs the target's handler on a
// goroutine of its own (a pooled one, internal/gopool, as for a call over
// QUIC), OpenStream gives each side one end of a pipe. Nothing goes on the
// wire, so the format above does not apply, but its rules do: the target's
// method and role checks with the same errors, the caller's name and role as
// peer, request, reply and frames copied, a handler context ending with the
// caller's context or the target's Close, a stream direction bounded to
// 8 MiB queued (Send waits, then fails after its send timeout and resets the
// pipe), Close ending the peer's Recv with io.EOF after what was sent.
// relaymesh dev's core and edge use it.
//
// History: relaymesh/1 is the first version of this protocol. Kind 4 (mux)
// was added to it later (issue 11) without a new ALPN: a caller falls back
// to kind 1 on a node that refuses it.
package mesh
