package raftstore

import (
	"log/slog"

	"github.com/cockroachdb/pebble"
)

// logDBOptions tunes the raft DB: small values written and synced in
// batches, read back mostly from raft's LogCache, deleted by range. A modest
// memtable rotates the WAL often, and Pebble then recycles old WAL files,
// whose in-place overwrites fdatasync faster than a growing file does.
func logDBOptions(l *slog.Logger) *pebble.Options {
	return &pebble.Options{
		Logger:       pebbleLogger{l.With("db", "raft")},
		MemTableSize: 8 << 20,
	}
}

// stateDBOptions tunes the state DB. Its writes are never synced, and by
// default it has no WAL at all: the raft log is the write-ahead log of the
// state (see the package doc), so a restart replays the entries applied
// since the last memtable flush.
func stateDBOptions(l *slog.Logger, wal bool) *pebble.Options {
	return &pebble.Options{
		Logger:       pebbleLogger{l.With("db", "state")},
		MemTableSize: 16 << 20,
		DisableWAL:   !wal,
	}
}
