package cluster

import (
	"strconv"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/raftstore"
)

// Pebble, per database of the node: each raft group's state DB (db="state",
// shard="n" or "catalog") and the raft log DB (db="raft"; the groups of a
// node share one, shard="shared", else the group's). Block cache hits and
// misses are per cache: the state DBs of a core share one
// (db="state",shard="shared").
var (
	descPebbleDisk        = metric.Gauge("relaymesh_pebble_disk_bytes", "Disk space the Pebble database uses (tables, WAL, manifest).", "db", "shard")
	descPebbleMemtable    = metric.Gauge("relaymesh_pebble_memtable_bytes", "Bytes in the Pebble database's memtables.", "db", "shard")
	descPebbleWAL         = metric.Gauge("relaymesh_pebble_wal_bytes", "Bytes in the Pebble database's live WAL files.", "db", "shard")
	descPebbleL0Files     = metric.Gauge("relaymesh_pebble_l0_files", "Tables in L0 (a growing count: compactions fall behind writes).", "db", "shard")
	descPebbleReadAmp     = metric.Gauge("relaymesh_pebble_read_amplification", "L0 sublevels plus non-empty lower levels: tables a read may look at.", "db", "shard")
	descPebbleCompactions = metric.Counter("relaymesh_pebble_compactions_total", "Compactions since the database opened.", "db", "shard")
	descPebbleFlushes     = metric.Counter("relaymesh_pebble_flushes_total", "Memtable flushes since the database opened.", "db", "shard")
	descPebbleFlushed     = metric.Counter("relaymesh_pebble_flushed_bytes_total", "Bytes of tables memtable flushes wrote since the database opened.", "db", "shard")
	descPebbleCompacted   = metric.Counter("relaymesh_pebble_compacted_bytes_total", "Bytes of tables compactions wrote since the database opened (with the flushed bytes, the database's write amplification).", "db", "shard")
	descPebblePaced       = metric.Counter("relaymesh_pebble_compaction_paced_bytes_total", "Bytes state DB compactions wrote at the compaction pace (raftstore.Config.CompactionShare, [core] compaction_share).", "db", "shard")
	descPebblePaceWait    = metric.Counter("relaymesh_pebble_compaction_pace_wait_seconds_total", "Time state DB compactions waited for the compaction pace.", "db", "shard")
	descPebbleUnpaced     = metric.Counter("relaymesh_pebble_compaction_unpaced_bytes_total", "Bytes state DB compactions wrote at full speed because L0 was behind (a rising count: writes outrun the pace).", "db", "shard")
	descPebbleCacheHits   = metric.Counter("relaymesh_pebble_block_cache_hits_total", "Block cache hits since the cache was made (the state DBs of a core share one: shard=\"shared\").", "db", "shard")
	descPebbleCacheMisses = metric.Counter("relaymesh_pebble_block_cache_misses_total", "Block cache misses since the cache was made (the state DBs of a core share one: shard=\"shared\").", "db", "shard")
)

// pebbleCollector returns the collector of the Pebble figures of every
// database of the node's raft groups, read at scrape time.
func (c *Core) pebbleCollector() prometheus.Collector {
	descs := []metric.Desc{descPebbleDisk, descPebbleMemtable, descPebbleWAL, descPebbleL0Files, descPebbleReadAmp,
		descPebbleCompactions, descPebbleFlushes, descPebbleFlushed, descPebbleCompacted, descPebblePaced, descPebblePaceWait, descPebbleUnpaced, descPebbleCacheHits, descPebbleCacheMisses}
	return metric.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		s := metric.Chan(ch)
		type group struct {
			name string
			rep  *raftstore.Node
		}
		var groups []group
		for n, rep := range c.Replicas {
			groups = append(groups, group{strconv.Itoa(n), rep})
		}
		if c.catalog != nil {
			groups = append(groups, group{"catalog", c.catalog.rep})
		}
		type shared struct {
			name  string
			stats raftstore.DBStats
		}
		logs := map[*pebble.DB]*shared{}
		caches := map[*pebble.Cache]*shared{}
		var logOrder []*pebble.DB
		var cacheOrder []*pebble.Cache
		for _, g := range groups {
			st, cache := g.rep.StateStats()
			addDBStats(s, st, "state", g.name)
			s.Add(descPebblePaced, float64(st.PacedBytes), "state", g.name)
			s.Add(descPebblePaceWait, st.PaceWait.Seconds(), "state", g.name)
			s.Add(descPebbleUnpaced, float64(st.UnpacedBytes), "state", g.name)
			if c := caches[cache]; c != nil {
				c.name = "shared"
			} else {
				caches[cache] = &shared{g.name, st}
				cacheOrder = append(cacheOrder, cache)
			}
			lst, db := g.rep.LogStats()
			if l := logs[db]; l != nil {
				l.name = "shared"
				continue
			}
			logs[db] = &shared{g.name, lst}
			logOrder = append(logOrder, db)
		}
		for _, db := range logOrder {
			addDBStats(s, logs[db].stats, "raft", logs[db].name)
			addCacheStats(s, logs[db].stats, "raft", logs[db].name)
		}
		for _, c := range cacheOrder {
			addCacheStats(s, caches[c].stats, "state", caches[c].name)
		}
	})
}

// addCacheStats adds a block cache's hits and misses, once per cache.
func addCacheStats(s metric.Sink, st raftstore.DBStats, db, shard string) {
	s.Add(descPebbleCacheHits, float64(st.CacheHits), db, shard)
	s.Add(descPebbleCacheMisses, float64(st.CacheMisses), db, shard)
}

func addDBStats(s metric.Sink, st raftstore.DBStats, db, shard string) {
	s.Add(descPebbleDisk, float64(st.DiskBytes), db, shard)
	s.Add(descPebbleMemtable, float64(st.MemtableBytes), db, shard)
	s.Add(descPebbleWAL, float64(st.WALBytes), db, shard)
	s.Add(descPebbleL0Files, float64(st.L0Files), db, shard)
	s.Add(descPebbleReadAmp, float64(st.ReadAmp), db, shard)
	s.Add(descPebbleCompactions, float64(st.Compactions), db, shard)
	s.Add(descPebbleFlushes, float64(st.Flushes), db, shard)
	s.Add(descPebbleFlushed, float64(st.FlushedBytes), db, shard)
	s.Add(descPebbleCompacted, float64(st.CompactedBytes), db, shard)
}
