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

	// ErrBadSnapshot is returned by Restore when the snapshot stream is malformed.
	ErrBadSnapshot = errors.New("raftstore: bad snapshot stream")

	// ErrCorruptLog is returned when a stored raft log entry cannot be decoded.
	ErrCorruptLog = errors.New("raftstore: corrupt log entry")

	// ErrKeyNotFound is returned by the stable store for a missing key. Its
	// text is exactly "not found" without the package prefix, because
	// hashicorp/raft recognises a missing key by comparing err.Error() with
	// that string (api.go, raft.go); the usual prefix would break raft.
	ErrKeyNotFound = errors.New("not found")
)
