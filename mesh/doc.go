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
// ALPN is "relaymesh/1". Every use opens its own bidirectional stream, which
// starts with a header naming its kind and method:
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
//
// Deadlines: a dial gives up after 3 s (shared by every caller waiting for
// it); a connection whose peer is silent for 10 s (keepalives every 2 s)
// is dropped with every stream on it; Stream.Send fails after its send
// timeout (DefaultSendTimeout, 10 s) and resets the stream; an RPC reply
// the caller does not read within 10 s is reset. Call is bounded by its
// context. A Call that failed before its request was written wraps
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
// whose context ends resets both directions of its stream; the server's
// handler context ends when the caller stops reading.
//
// History: relaymesh/1 is the first version of this protocol.
package mesh
