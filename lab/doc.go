// Package lab starts a multi-region relaymesh on one machine, as separate
// processes, with a wide-area network between its regions emulated in
// userspace (package netem): `relaymesh lab` and the end-to-end tests run
// it.
//
// # Layout
//
// A lab of N regions gets a random block 127.B.0.0/16 of the loopback
// network (all of 127.0.0.0/8 is local on Linux, so every address is
// reachable from the host's root namespace, no namespaces or privileges
// needed). Region i (from 1) owns 127.B.i.0/24: its cores listen on
// 127.B.i.11, .12, …, its edges on 127.B.i.101, .102, …, and the lab's
// own probe node on 127.B.i.250. Ports are picked free. Each node has its
// own address, so the region of a datagram is the third octet of its
// source and destination, and a client that binds a source address in
// 127.B.i.0/24 is a client "in" region i for /v1/route.
//
// Every node is a `relaymesh core` or `relaymesh edge` process configured
// as docs/OPERATIONS.md runs them: certificates from one cluster CA
// (DIR/pki: one CA for every region, because regions will dial each
// other), one TOML file per node (DIR/<node>.toml), data under DIR/data,
// output in DIR/logs/<node>.log. A region is Cores cores (one 3-voter
// shard with 3) and Edges edges. Every edge lists every region in
// [[regions]] (its CIDR and its edges' URLs, the other regions nearest
// first by configured latency), so each edge's /v1/route answers the
// caller's region; edges trust 127.0.0.0/8 as proxies, so a test can name
// a caller with X-Forwarded-For.
//
// # The network
//
// Every process runs its mesh socket through a netem.Conn that reads the
// rules file DIR/netem.json (the hidden --test-netem flag): a group per
// region, a link per ordered pair of regions. The lab changes the file
// (SetLink, Partition, Heal) and waits until every running process has
// acknowledged the new generation, so a change is in force everywhere
// when the call returns. Latency is one way: a round trip between regions
// costs twice --latency. Inside a region nothing is shaped.
//
// Regions do not talk to each other yet (every region is its own cluster
// with its own shard); Probe measures the emulated network through real
// processes (a PING over QUIC from the lab's probe node in one region to a
// core of another). When cores learn of other regions' cores, pass them
// in Config.CoreExtra: it gets the whole layout and returns TOML for each
// core's file.
//
// # Lifetime
//
// Start returns once every edge answers /healthz (its region has a shard
// leader) and writes DIR/topology.json:
//
//	{"regions":[{"name":"r1","edges":["ws://127.B.1.101:P/",…],"router":"http://127.B.1.101:P"}]}
//
// and DIR/lab.json (every node with its addresses and pid, the control
// URL). Children run in their own process group (a terminal's Ctrl-C goes
// to the lab only) with a parent-death signal of SIGKILL (a lab killed
// with -9 takes them along). Close stops edges (SIGTERM: they drain), then
// cores, each waited for, SIGKILL after a grace period, every child
// reaped. Stop, Kill and Start act on one node; Serve exposes all of it
// over HTTP on loopback for tests in other processes.
package lab
