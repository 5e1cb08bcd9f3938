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
// A nil cache is a new one of StateCacheSize, which the caller unrefs once
// the DB is open; a shared one is used as is.
func stateDBOptions(l *slog.Logger, wal bool, cache *pebble.Cache) *pebble.Options {
	if cache == nil {
		cache = pebble.NewCache(StateCacheSize)
	}
	o := &pebble.Options{
		Logger:       pebbleLogger{l.With("db", "state")},
		MemTableSize: 16 << 20,
		DisableWAL:   !wal,
		Cache:        cache,
	}
	TuneStateDB(o)
	return o
}

// StateCacheSize is the state DB's block cache (Pebble's default is
// 8 MiB): the hot lookups of the state machine read index and data blocks
// of recent tables, and with the default they were evicted and read and
// decompressed again (snappy ~17 % of the pairs benchmark's apply CPU).
// Memory is only taken as blocks are read. A state DB opened without
// Config.StateCache has its own; a core's groups share one of
// NodeStateCacheSize.
const StateCacheSize = 64 << 20

// NodeStateCacheSize is the block cache a node's groups share
// (NewStateCache): a core with many shards holds one cache, not one per
// shard.
const NodeStateCacheSize = 128 << 20

// NewStateCache returns a block cache for the state DBs of a node's raft
// groups (Config.StateCache). The caller unrefs it after they closed.
func NewStateCache() *pebble.Cache { return pebble.NewCache(NodeStateCacheSize) }

// The state DB's L0 thresholds (TuneStateDB).
const (
	stateL0CompactionThreshold = 16
	stateL0StopWritesThreshold = 64
)

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
//
// L0 is compacted 16 files at a time (Pebble's default is 4), and writes
// stop at 64 sublevels (12). A flush's keys span every conversation, so
// each L0 table overlaps all of Lbase and every L0→Lbase compaction
// rewrote Lbase: at 5,000 one-to-one sends a second, 500 MB of
// compaction output in 110 s, in runs of 300–600 ms on one of two cores,
// each a spike in the acks' latency. Four times fewer, larger steps wrote
// 0.32× the bytes in 0.32× the time, for the same server CPU (the reads
// of a deeper L0 cost the rest; bloom filters keep point lookups to a
// filter probe per table) and p90 0.74–0.76× (docs/BENCHMARKS.md, stop 32).
func TuneStateDB(o *pebble.Options) {
	if o.L0CompactionThreshold == 0 {
		o.L0CompactionThreshold = stateL0CompactionThreshold
	}
	if o.L0StopWritesThreshold == 0 {
		o.L0StopWritesThreshold = stateL0StopWritesThreshold
	}
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
