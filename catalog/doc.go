// Package catalog is what every node of the mesh must agree on and read
// locally: the topology (regions, the nodes of each region — edges and
// cores —, the shards and where their replicas live), the apps and their
// settings (keys, whether signatures are required, sensitive words, push
// templates, hook URLs, limits), the placement of conversations (which
// shard, in which home region, owns a conversation; a new conversation's
// id names its shard so any node finds the owner without a lookup, and
// ids imported from LeanCloud resolve through a catalog entry) and the
// member index (clientId → conversations, in every shard and region) that
// a login needs.
//
// By the design (DESIGN.md) the catalog is one small Raft group with one
// voter per region (at most five), read locally everywhere; with one
// region, catalog and shard may share a process but their code stays
// apart. Shards update the member index idempotently after they commit a
// membership change.
//
// # What is built (issue 9 step 3, not yet wired into cluster/)
//
//   - ids.go: conversation ids that name their region and shard
//     (NewConvID, ParseConvID; docs/MESH.md, "Identifiers");
//   - the replicated state machine (FSM, a raftstore.StateMachine; cmd.go
//     for the commands and their versions, keys.go for the Pebble layout,
//     topology.go and index.go for the ops, read.go for the reads): the
//     topology, the member index, the unique index, imported ids and app
//     settings, every input bounded (types.go) and refused with an *Error
//     callers map to LeanCloud codes;
//   - Store: reads from a replica's local state, writes through a
//     Proposer (*raftstore.Node), and Bootstrap, which applies a
//     deployment's declared Topology idempotently.
//
// Nothing runs the catalog's raft group yet, so relaymesh still runs one
// region with one shard, and most of the above lives elsewhere:
//
//   - placement: this package (placement.go) — one shard per region,
//     DefaultShard, which owns every conversation;
//   - apps: package apps (apps.Registry: ids, keys, signature switches),
//     imported by the edge, the REST API and the core; moving it here
//     would only rename an import in twenty files, so it waits for the
//     catalog's group to replace it;
//   - the other app settings and the topology: the TOML config file
//     (cluster/config.go: [[apps]], [core] peers, [edge] cores), read by
//     each process at start;
//   - the member index: each shard's own state (core/shard, MemberConvs),
//     enough while there is one shard.
//
// The catalog imports no role (edge, core, relay): they import it.
package catalog
