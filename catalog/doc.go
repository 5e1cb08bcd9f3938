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
// # What is built (issue 9 step 3)
//
//   - ids.go: conversation ids that name their region and shard
//     (NewConvID, ParseConvID; docs/MESH.md, "Identifiers");
//   - the replicated state machine (FSM, a raftstore.StateMachine; cmd.go
//     for the commands and their versions, keys.go for the Pebble layout,
//     topology.go and index.go for the ops, read.go for the reads): the
//     topology, the member index, the unique index, imported ids and app
//     settings, every input bounded (types.go) and refused with an *Error
//     callers map to LeanCloud codes. Version2 adds MemberSet: absolute
//     member counts a shard's leader reads from its state, and the shard's
//     mark (MemberMark), the raft index up to which the shard vouches
//     that every membership change is in the index;
//   - Store: reads from a replica's local state, writes through a
//     Proposer, and Bootstrap, which applies a deployment's declared
//     Topology idempotently.
//
// cluster/ runs the group (cluster/catalog.go): a replica in every core
// (DATA/catalog, raft group "catalog" on the mesh, servers named by mesh
// address); at most five voters: the region's cores with one region, two
// cores of each of two regions, one core in each of the first five
// regions with more (the others non-voters the leader adds); writes
// from a core that does not lead go to the leader over the mesh
// (meshpb.MethodCatalog). Every core bootstraps the topology its
// configuration declares. What uses it:
//
//   - the member index: each shard's leader keeps its shard's entries and
//     mark up to date (core/members.go, over shard.FSM.ObserveMembers), and
//     the router asks a login's share only of the shards the index holds
//     the client in, every shard it cannot vouch for (core/router.go,
//     loginShards);
//   - the unique index: a shard that creates a unique conversation claims
//     its member set (ClaimUnique); a loser deletes its new conversation
//     and answers the winner's (core/unique.go); the router sends later
//     starts of the set to the winner's shard.
//
// Still elsewhere: placement (placement.go: DefaultShard; the router
// places new conversations round-robin over its region's shards, not by
// the catalog's Open flags), the apps and their settings (package apps
// and the TOML config), the topology each process acts on (the TOML
// config: [core] peers, [[core.remote_regions]]; the catalog records it
// but nothing reads it back yet), imported ids (nothing registers them
// yet: `relaymesh import`, issue 12).
//
// The catalog imports no role (edge, core, relay): they import it.
package catalog
