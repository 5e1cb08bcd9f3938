package raftstore

import (
	"log/slog"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
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
	o := &pebble.Options{
		Logger:       pebbleLogger{l.With("db", "state")},
		MemTableSize: 16 << 20,
		DisableWAL:   !wal,
		Cache:        pebble.NewCache(StateCacheSize), // the caller unrefs it once the DB is open
	}
	TuneStateDB(o)
	return o
}

// StateCacheSize is the state DB's block cache (Pebble's default is
// 8 MiB): the hot lookups of the state machine read index and data blocks
// of recent tables, and with the default they were evicted and read and
// decompressed again (snappy ~17 % of the pairs benchmark's apply CPU).
// Memory is only taken as blocks are read; each state DB (one per shard
// replica) has its own.
const StateCacheSize = 64 << 20

// stateBloomBits is the bloom filter's bits per key in the state DB's
// tables (about 1 % false positives).
const stateBloomBits = 10

// TuneStateDB sets what the state DB's access pattern needs on o (Open
// does it; exported for benchmarks that open a state DB of their own).
//
// A bloom filter in every table of every level: the state machine's hot
// commands are point lookups of keys that are mostly absent (a send's
// dedup token, a first cursor), and without a filter such a Get seeks
// into every L0 table and level whose key range covers the key, reading
// and decompressing a block from each (readBlock/snappy were ~10 % of a
// server's CPU under the pairs load). Filters only change how tables are
// written; tables written without them read as before.
func TuneStateDB(o *pebble.Options) {
	if len(o.Levels) == 0 {
		o.Levels = make([]pebble.LevelOptions, 7)
	}
	for i := range o.Levels {
		if o.Levels[i].FilterPolicy == nil {
			o.Levels[i].FilterPolicy = bloom.FilterPolicy(stateBloomBits)
			o.Levels[i].FilterType = pebble.TableFilter
		}
	}
}
