// Package shard is the deterministic state machine of one conversation shard.
//
// The raft layer (raftstore) hands every committed command to Apply together
// with an indexed Pebble batch; Apply reads and writes only through that batch
// and depends on nothing but the command and the state: no clocks, no
// randomness, no I/O. The proposer (the core on the shard leader) puts the
// wall-clock time and every generated id (conversation id, message id) into
// the command before proposing it.
//
// Commands are JSON (see Command); a benchmark (BenchmarkEncode) keeps the
// cost visible. Apply returns a *Result or an error (an *Error carrying one of
// the sentinel errors below), which raft hands back to the proposer.
//
// # Versions and fatal errors
//
// Every command carries a version (Command.V, version.go): what it means
// is fixed per version, so replicas running different binaries during an
// upgrade apply it alike, and a replica given a version or op newer than
// its code stops rather than guess. An error only this replica meets (its
// Pebble reads or writes fail, stored data does not decode) is never
// turned into a refusal: Apply returns a *FatalError (fatal.go) and
// raftstore stops the replica. Refusals (*Error) must be computed from the
// command and the state alone.
//
// Adding an op (in a new file named for the feature, with one case in
// applier.apply or a sub-dispatcher like sysApply):
//
//   - bump Version (once per release) and let the core propose the op only
//     when its CommandVersion has reached it;
//   - read through a.b and record every read or write error in a.err (or
//     return it from a helper that does): never turn one into a *Error;
//   - validate in the handler and refuse with a sentinel *Error before
//     writing anything, or write only after every check passed;
//   - give it a case in the random replica test (replicas_test.go), so
//     the three replicas' states are compared byte for byte with it.
//
// # Key layout
//
// Every key starts with a one-byte table tag and the appId, so all state is
// namespaced by app. Strings are written as uvarint length + bytes, which keeps
// keys prefix-free; timestamps are 8-byte big-endian so that keys sort by time.
//
//	'C' app cid                      -> Conv (JSON)
//	'L' app cid                      -> last message (binary, last.go)
//	'U' app memberSetHash            -> cid of the unique conversation
//	'M' app cid ts(8) mid            -> Message (binary from Version6 on, JSON before; msgcodec.go)
//	'I' app cid mid                  -> ts(8)                message id index
//	'P' app cid patchTs(8) mid       -> ts(8)                patches by patch time
//	'R' app cid clientId             -> Cursor (JSON)        delivered/read cursors
//	'X' app clientId cid             -> ""                   member index
//	'D' app sender cid dt            -> DedupEntry (JSON)    sender dedup before Version7
//	'd'                              -> floor(8) first(8)    send dedup window (dedup.go)
//	'd' bucket(8) digest(16)         -> t(8) mid             sender dedup from Version7
//	'Q' app cid ts(8) mid            -> sender               messages that asked for receipts
//	'W' app sender cid               -> Will (JSON)          will message of a session
//
// The conversation record holds the member list, so it is big in a group;
// appending a message writes only the small 'L' key, and the FSM keeps the
// decoded records of recently used conversations in memory (cache.go): the
// state as of the last applied command, updated on every write of the
// record or its 'L' key, emptied by Reset when raftstore restores a
// snapshot. The core reads it through FSM.Conv.
//
// OpBatch carries several commands in one raft entry, each applied as if
// alone (batch.go); the core uses it to coalesce cursor moves.
//
// Receipts: a message sent with r:true (in a conversation of two, or any
// size when the sender's session asks for group receipts) gets a 'Q' entry.
// When a member's delivered or read cursor moves, the 'Q' entries it passed
// become Result.Receipts for the proposer to push as rcp.
//
// Moderation: Conv.Managers, Conv.Shutup and Conv.Blocked (moderation.go).
// The Owner (Conv.Creator) and Managers may kick, mute and block; a Manager
// may not act on the Owner; Members may not act on anyone else.
//
// Temporary conversations (tempconv.go): Conv.Temp with a TTL; every
// command whose Now reaches CreatedAt + TTL is refused (ErrTempExpired),
// and membership and attribute changes always are (ErrTempConv). The
// member cap of normal conversations comes in the command (MaxMembers,
// set by the proposer from its configuration) so Apply stays deterministic.
//
// Timestamps are strictly increasing per conversation: a message proposed
// with t <= the conversation's last timestamp gets last+1.
package shard
