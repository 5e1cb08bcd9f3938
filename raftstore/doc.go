// Package raftstore runs a hashicorp/raft group whose log, stable store and
// state machine all live in Pebble.
//
// # Layout
//
// A replica's Config.Dir holds three things:
//
//	raft/       Pebble DB: the raft log ('l' + big-endian index) and the
//	            stable store ('s' + key: current term, last vote). Every
//	            write is synced; StoreLogs writes a whole AppendEntries batch
//	            in one batch and one fsync; compaction is one DeleteRange.
//	state/      Pebble DB: the state machine's keys, plus the applied index
//	            under ReservedPrefix. Writes are never synced, and by
//	            default the DB has no WAL (Config.StateWAL turns one on).
//	snapshots/  snapshots (snapstore.go, raft.FileSnapshotStore's layout):
//	            a snapshot taken here is a Pebble checkpoint of state/
//	            (hard links to its tables); one received from the leader
//	            or restored from a backup is a stream.
//
// Two DBs rather than one with prefixes, so the synced log traffic and the
// unsynced state traffic do not share a WAL: a state commit never waits for,
// or is forced into, a log fsync.
//
// # Applying
//
// The FSM adapter implements raft.BatchingFSM. Raft's leader loop groups
// concurrent Propose calls waiting on its apply channel into one log batch
// (up to MaxAppendEntries; BatchApplyCh stays off, see raftConfig),
// which is one fsync on each replica. ApplyBatch then runs every command of
// the batch through StateMachine.Apply on ONE indexed Pebble batch, so later
// commands read earlier ones' writes, stores the batch's last index as the
// applied index in the same batch, and commits it with pebble.NoSync. Each
// command's result goes back through raft's ApplyFuture to Propose.
//
// A StateMachine that caches anything derived from the state implements
// Resetter: raftstore calls Reset when it opens the state DB and around
// every snapshot restore. Everything else reaches the state through the
// batches raftstore commits, so a cache updated by Apply stays exact.
//
// # Durability
//
// Propose returns only after the command is committed (synced in the raft
// log of a majority) and applied on the leader, so an acknowledged command
// survives the loss of any minority. The state DB is not synced (and has no
// WAL by default), yet nothing is lost: state and applied index are written
// in one atomic batch, and batches reach disk in order (memtable flushes),
// so after a crash the state DB is exactly the state as of some applied
// index A. raft replays the log after its last snapshot; ApplyBatch skips
// entries at or below A and re-applies the rest: the raft log is the state's
// write-ahead log, and replaying it is idempotent. raft runs with
// NoSnapshotRestoreOnStart so a restart keeps the newer persistent state
// rather than rolling back to the snapshot. Before a snapshot is written (and
// raft then compacts the log behind it) its Persist flushes the state DB, so
// the state at the snapshot index is on disk before the snapshot is, and
// before the log entries that built it go; the flush runs on raft's snapshot
// goroutine, so the group's applies go on meanwhile.
//
// # Fatal apply errors
//
// Apply's result goes back to the proposer, and replicas must agree on it:
// a refusal computed from the entry and the state is an ordinary result,
// the same everywhere. An error that only this replica meets (a read or
// write of its state failing, stored data that does not decode, an entry
// of a format newer than its code) is not: answering it would make this
// replica refuse what its peers accept. The state machine returns such an
// error as a FatalApplyError, and raftstore stops the replica: the batch is
// thrown away, the applied index stays before the entry, raft is shut
// down (Snapshot and Restore refuse from then on, since raft counts the
// failed entries as applied), Err reports why and Failed is closed;
// `relaymesh core` exits non-zero. A failed commit of the state batch is
// handled the same way (Pebble v1.1 itself panics on a failed WAL write,
// which the default WAL-less state DB never does). Nothing is lost: the
// entries are in the raft log of a majority, so once the disk is fixed (or
// the binary upgraded) a restart replays them.
//
// # Snapshots
//
// A snapshot of the local state is a Pebble checkpoint of the state DB,
// taken after the flush (snapshot.go, snapstore.go): hard links, whatever
// the state's size, where a stream of every key cost a full copy every few
// minutes under load. Its state is as of the flush, at or past the
// snapshot's index. What a follower is sent, and what Restore reads, is a
// stream of length-prefixed key/value records (snapshot.go); the store
// makes it from the checkpoint the first time the snapshot is opened.
// Restore wipes the state keyspace and loads the stream, the applied index
// included, so the entries up to that index are skipped when raft replays
// them; a restore marker written in the wiping batch and cleared after the
// load lets Open finish a restore a crash cut short, from the newest
// snapshot on disk.
//
// # Backups
//
// Node.Backup writes a group's state as a backup file (backup.go: a header,
// the same records, a SHA-256), and Node.RestoreBackup, on the leader,
// checks a whole file before it hands its records to raft's user restore
// ((*raft.Raft).Restore), which installs them as a snapshot at a new index
// here and on every follower. The restored applied index is the file's,
// below that new index, so every later entry is applied (`relaymesh admin
// snapshot` and `restore`, cluster/backup.go).
//
// # Transport
//
// Any raft.Transport works; tests use raft.NewTCPTransport on 127.0.0.1 and
// production raft.NewNetworkTransport over the mesh's QUIC StreamLayer. The
// package raftstoretest has an in-process N-replica harness.
package raftstore
