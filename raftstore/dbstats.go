package raftstore

import (
	"time"

	"github.com/cockroachdb/pebble"
)

// DBStats are one Pebble database's figures for /metrics: what an
// operator watches to see a store fill its disk, fall behind on
// compactions (read amplification, files in L0) or miss its cache.
type DBStats struct {
	DiskBytes      uint64 // live and obsolete tables, WAL, manifest
	MemtableBytes  uint64
	WALBytes       uint64 // live WAL files
	L0Files        int64
	ReadAmp        int    // sublevels of L0 plus non-empty levels below
	Compactions    int64  // since open
	Flushes        int64  // since open
	FlushedBytes   uint64 // tables written by flushes since open
	CompactedBytes uint64 // tables written by compactions since open
	// The compaction pacer's figures (state DBs only, since open): bytes
	// written at its pace, the time it held them for it, and bytes written
	// at full speed because L0 was behind.
	PacedBytes   int64
	PaceWait     time.Duration
	UnpacedBytes int64
	CacheHits    int64 // block cache, since it was made (a cache several DBs share counts for all of them)
	CacheMisses  int64
}

func dbStats(db *pebble.DB) DBStats {
	m := db.Metrics()
	var flushed, compacted uint64
	for _, l := range m.Levels {
		flushed += l.BytesFlushed
		compacted += l.BytesCompacted
	}
	return DBStats{
		DiskBytes:      m.DiskSpaceUsage(),
		MemtableBytes:  m.MemTable.Size,
		WALBytes:       m.WAL.Size,
		L0Files:        m.Levels[0].NumFiles,
		ReadAmp:        m.ReadAmp(),
		Compactions:    m.Compact.Count,
		Flushes:        m.Flush.Count,
		FlushedBytes:   flushed,
		CompactedBytes: compacted,
		CacheHits:      m.BlockCache.Hits,
		CacheMisses:    m.BlockCache.Misses,
	}
}

// StateStats are the figures of the replica's state DB, and its block
// cache: the groups of a node share one (Config.StateCache), so a caller
// adding up replicas counts each cache's hits and misses once.
func (n *Node) StateStats() (DBStats, *pebble.Cache) {
	st := dbStats(n.state)
	if p := n.pacer; p != nil {
		st.PacedBytes, st.PaceWait, st.UnpacedBytes = p.paced.Load(), time.Duration(p.waited.Load()), p.unpaced.Load()
	}
	return st, n.cache
}

// LogStats are the figures of the replica's raft log DB, and that DB: the
// groups of one node share it (LogStore.Group), so a caller adding up
// replicas counts each DB once.
func (n *Node) LogStats() (DBStats, *pebble.DB) { return dbStats(n.logs.db), n.logs.db }
