package raftstore

import "errors"

var (
	// ErrNotLeader is returned by Propose when this replica cannot commit the
	// command because it is not (or stopped being) the leader. The raft cause
	// is wrapped too: errors.Is(err, raft.ErrLeadershipLost) means the command
	// may still commit (outcome unknown); raft.ErrNotLeader means it did not
	// enter the log.
	ErrNotLeader = errors.New("raftstore: not leader")

	// ErrClosed is returned by calls on a Node after Close.
	ErrClosed = errors.New("raftstore: closed")

	// ErrReplicaFailed is the result of every entry this replica could not
	// apply after a fatal apply error (FatalApplyError, or a failed commit
	// of the state): the replica stopped applying and shut raft down. The
	// entry is committed in the raft log, so the other replicas apply it;
	// to a proposer the outcome is unknown. It wraps the cause.
	ErrReplicaFailed = errors.New("raftstore: replica stopped after a fatal apply error")

	// ErrBadSnapshot is returned by Restore when the snapshot stream is malformed.
	ErrBadSnapshot = errors.New("raftstore: bad snapshot stream")

	// ErrBadBackup is returned when a backup file is malformed, truncated
	// or corrupt (backup.go); nothing was restored from it.
	ErrBadBackup = errors.New("raftstore: bad backup file")

	// ErrCorruptLog is returned when a stored raft log entry cannot be decoded.
	ErrCorruptLog = errors.New("raftstore: corrupt log entry")

	// ErrKeyNotFound is returned by the stable store for a missing key. Its
	// text is exactly "not found" without the package prefix, because
	// hashicorp/raft recognises a missing key by comparing err.Error() with
	// that string (api.go, raft.go); the usual prefix would break raft.
	ErrKeyNotFound = errors.New("not found")
)

// FatalApplyError is implemented by an error that StateMachine.Apply
// returns when this replica cannot apply the entry the way every other
// replica does: its storage failed (a read or write error, stored data
// that does not decode), or the entry is of a format it does not know (a
// newer proposer). Answering such an entry with an ordinary error value
// would make this replica's result, and state, differ from its peers', so
// raftstore stops the replica instead (see Node.Err).
//
// An error value that does not implement it is an ordinary result: a
// refusal computed from the entry and the state, the same on every replica.
type FatalApplyError interface {
	error
	// FatalApply marks the error; it does nothing.
	FatalApply()
}
