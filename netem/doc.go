// Package netem emulates a wide-area network in userspace: one-way
// latency, jitter, loss and partitions between groups of addresses, for
// the lab (`relaymesh lab`) and for tests. `tc netem` needs a kernel
// qdisc and privileges the test machines do not have; this package needs
// neither.
//
// # Model
//
// Addresses belong to named groups (a region of the lab is a group: the
// addresses in its CIDRs). A Link says what happens to a datagram sent
// from one group to another: it leaves after Latency ± Jitter (uniform,
// never before 0), it is dropped with probability Loss, and nothing
// passes while Down (a partition). Links are directional; Rules.SetPair
// sets both directions. A sender with no link to a destination sends at
// once. Rules are immutable snapshots held by a Table, whose Set swaps
// them at run time (a partition switch) for every Conn that reads it.
//
// # Where it applies
//
// Conn wraps the net.PacketConn a quic.Transport runs on and shapes what
// is written (WriteTo): the sender applies the link towards the
// destination, so a round trip between two shaped endpoints costs the
// latency of both directions. What is read is passed through untouched.
// A Conn offers quic-go no optional abilities (no ReadMsgUDP/WriteMsgUDP,
// no SyscallConn), so quic-go runs it as a plain PacketConn: no ECN, no
// GSO, no batched reads, no DF bit (so no path-MTU discovery) — every
// feature the mesh uses works without them. SetReadBuffer and
// SetWriteBuffer are passed on to the socket so quic-go can size its
// buffers and does not log a warning.
//
// Datagrams to one destination leave in the order they were written
// (jitter delays them, never reorders them), like a single path; the
// delay line of a Conn holds at most Config.MaxQueuedBytes (8 MiB),
// beyond which a datagram is dropped and counted as an overflow, like a
// router's buffer.
//
// Watcher loads Rules from a JSON file and reloads it when it changes, so
// separate processes (the lab's cores and edges) share one switch: the
// lab rewrites the file, every process applies it within a poll interval
// and writes an acknowledgement file naming the generation it applied.
//
// TCPProxy delays a TCP byte stream both ways (and stalls it while Down),
// for putting one HTTP or WebSocket server "far away" from a client on
// one machine; loss does not apply to TCP (the kernel would retransmit).
package netem
