package catalog

import "encoding/binary"

// State layout: the first byte of a key names its table; strings are
// length-prefixed (uvarint), numbers big-endian, so a table's keys sort by
// their fields.
//
//	G region(1)                                → Region (JSON)
//	g name                                     → region number (1 byte)
//	N id                                       → Node (JSON)
//	S region(1) shard(2)                       → Shard (JSON)
//	M app client region(1) shard(2)            → count(8) index(8)
//	U app hash                                 → cid
//	I app cid                                  → region(1) shard(2)
//	A id                                       → settings (compact JSON)
//	Z name                                     → counter (8)
//	K region(1) shard(2)                       → mark: index(8) (Version2)
const (
	tagRegion     = 'G'
	tagRegionName = 'g'
	tagNode       = 'N'
	tagShard      = 'S'
	tagMember     = 'M'
	tagUnique     = 'U'
	tagImported   = 'I'
	tagApp        = 'A'
	tagCounter    = 'Z'
	tagMark       = 'K'
)

// Counters (tagCounter).
const (
	ctrRegions = "regions" // the last region number given
	ctrNodes   = "nodes"   // nodes stored
	ctrApps    = "apps"    // apps stored
	ctrShards  = "shards/" // + region: the next shard number of the region
)

type keyBuf []byte

func newKey(tag byte) keyBuf { return keyBuf{tag} }

func (k keyBuf) str(s string) keyBuf {
	k = binary.AppendUvarint(k, uint64(len(s)))
	return append(k, s...)
}

func (k keyBuf) ref(r ShardRef) keyBuf {
	return binary.BigEndian.AppendUint16(append(k, r.Region), r.Shard)
}

func regionKey(n uint8) []byte          { return keyBuf{tagRegion, n} }
func regionNameKey(name string) []byte  { return newKey(tagRegionName).str(name) }
func nodeKey(id string) []byte          { return newKey(tagNode).str(id) }
func shardKey(r ShardRef) []byte        { return newKey(tagShard).ref(r) }
func regionShardsPrefix(n uint8) []byte { return keyBuf{tagShard, n} }
func memberPrefix(app, client string) []byte {
	return newKey(tagMember).str(app).str(client)
}
func memberKey(app, client string, r ShardRef) []byte {
	return keyBuf(memberPrefix(app, client)).ref(r)
}
func uniqueKey(app, hash string) []byte  { return newKey(tagUnique).str(app).str(hash) }
func importedKey(app, cid string) []byte { return newKey(tagImported).str(app).str(cid) }
func markKey(r ShardRef) []byte          { return newKey(tagMark).ref(r) }
func appKey(id string) []byte            { return newKey(tagApp).str(id) }
func counterKey(name string) []byte      { return append(keyBuf{tagCounter}, name...) }
func shardCounterKey(region uint8) []byte {
	return append(counterKey(ctrShards), region)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// readStr decodes one length-prefixed component at the front of b.
func readStr(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

func decodeRef(b []byte) (ShardRef, bool) {
	if len(b) != 3 {
		return ShardRef{}, false
	}
	return ShardRef{Region: b[0], Shard: binary.BigEndian.Uint16(b[1:])}, true
}

func encodeRef(r ShardRef) []byte { return keyBuf(nil).ref(r) }
