package catalog

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble"
)

// Reads of the catalog state, over any pebble.Reader: a replica's state
// DB (raftstore.Node.State), a snapshot of it, or a batch in Apply. On a
// follower they may lag the leader a little. Errors wrap ErrStorage.

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Regions returns every region, by number.
func Regions(r pebble.Reader) ([]Region, error) {
	var out []Region
	err := scanJSON(r, []byte{tagRegion}, "region", func(g *Region) { out = append(out, *g) })
	return out, err
}

// GetRegion returns region number n.
func GetRegion(r pebble.Reader, n uint8) (Region, bool, error) {
	var g Region
	ok, err := getJSON(r, regionKey(n), "region", &g)
	return g, ok, err
}

// RegionByName returns the region called name.
func RegionByName(r pebble.Reader, name string) (Region, bool, error) {
	v, ok, err := getRaw(r, regionNameKey(name))
	if err != nil || !ok {
		return Region{}, false, err
	}
	if len(v) != 1 {
		return Region{}, false, errCorrupt("region name", regionNameKey(name))
	}
	return GetRegion(r, v[0])
}

// Nodes returns every node, sorted by id.
func Nodes(r pebble.Reader) ([]Node, error) {
	var out []Node
	err := scanJSON(r, []byte{tagNode}, "node", func(n *Node) { out = append(out, *n) })
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

// GetNode returns node id.
func GetNode(r pebble.Reader, id string) (Node, bool, error) {
	var n Node
	ok, err := getJSON(r, nodeKey(id), "node", &n)
	return n, ok, err
}

// Shards returns every shard of a region (region 0: of every region),
// sorted.
func Shards(r pebble.Reader, region uint8) ([]Shard, error) {
	prefix := []byte{tagShard}
	if region != 0 {
		prefix = regionShardsPrefix(region)
	}
	var out []Shard
	err := scanJSON(r, prefix, "shard", func(s *Shard) { out = append(out, *s) })
	return out, err
}

// GetShard returns a shard.
func GetShard(r pebble.Reader, ref ShardRef) (Shard, bool, error) {
	var s Shard
	ok, err := getJSON(r, shardKey(ref), "shard", &s)
	return s, ok, err
}

// MemberEntry is one shard of a client's member index entry.
type MemberEntry struct {
	Shard ShardRef
	Count uint64 // conversations of the client in the shard
	Index uint64 // the shard's raft index of the last change applied
}

// MemberEntries returns the shards holding conversations of (app,
// client), sorted, with their counts.
func MemberEntries(r pebble.Reader, app, client string) ([]MemberEntry, error) {
	prefix := memberPrefix(app, client)
	var out []MemberEntry
	var bad []byte
	err := scanPrefix(r, prefix, func(k, v []byte) bool {
		ref, ok := decodeRef(k[len(prefix):])
		if !ok || len(v) != 16 {
			bad = append([]byte(nil), k...)
			return false
		}
		out = append(out, MemberEntry{Shard: ref, Count: binary.BigEndian.Uint64(v), Index: binary.BigEndian.Uint64(v[8:])})
		return true
	})
	if err == nil && bad != nil {
		err = errCorrupt("member entry", bad)
	}
	return out, err
}

// MemberShards returns the shards holding conversations of (app, client),
// sorted by region and number.
func MemberShards(r pebble.Reader, app, client string) ([]ShardRef, error) {
	es, err := MemberEntries(r, app, client)
	if err != nil {
		return nil, err
	}
	out := make([]ShardRef, len(es))
	for i, e := range es {
		out[i] = e.Shard
	}
	return out, nil
}

// UniqueCid returns the conversation a member set maps to in app.
func UniqueCid(r pebble.Reader, app, hash string) (string, bool, error) {
	v, ok, err := getRaw(r, uniqueKey(app, hash))
	return string(v), ok, err
}

// Imported returns the shard an imported id is registered on.
func Imported(r pebble.Reader, app, cid string) (ShardRef, bool, error) {
	v, ok, err := getRaw(r, importedKey(app, cid))
	if err != nil || !ok {
		return ShardRef{}, false, err
	}
	ref, valid := decodeRef(v)
	if !valid {
		return ShardRef{}, false, errCorrupt("imported id", importedKey(app, cid))
	}
	return ref, true, nil
}

// Lookup returns the shard that owns conversation cid of app (with or
// without TempPrefix): the shard it was imported to, else the one its id
// names, else LegacyShard. known is false for the legacy fallback.
func Lookup(r pebble.Reader, app, cid string) (ref ShardRef, known bool, err error) {
	id := strings.TrimPrefix(cid, TempPrefix)
	if IsHexID(id) {
		ref, ok, err := Imported(r, app, id)
		if err != nil {
			return LegacyShard, false, err
		}
		if ok {
			return ref, true, nil
		}
	}
	if c, ok := ParseConvID(id); ok {
		return c.Ref(), true, nil
	}
	return LegacyShard, false, nil
}

// GetApp returns an app's settings (compact JSON).
func GetApp(r pebble.Reader, id string) (json.RawMessage, bool, error) {
	v, ok, err := getRaw(r, appKey(id))
	return v, ok, err
}

// ListApps returns the ids of every app, sorted.
func ListApps(r pebble.Reader) ([]string, error) {
	var out []string
	var bad []byte
	err := scanPrefix(r, []byte{tagApp}, func(k, _ []byte) bool {
		id, rest, ok := readStr(k[1:])
		if !ok || len(rest) != 0 {
			bad = append([]byte(nil), k...)
			return false
		}
		out = append(out, id)
		return true
	})
	if err == nil && bad != nil {
		err = errCorrupt("app key", bad)
	}
	slices.Sort(out)
	return out, err
}

// App is an app's id and settings as the catalog holds them.
type App struct {
	ID       string
	Settings json.RawMessage
}

// Apps returns every app with its settings, sorted by id, in one scan.
func Apps(r pebble.Reader) ([]App, error) {
	var out []App
	var bad []byte
	err := scanPrefix(r, []byte{tagApp}, func(k, v []byte) bool {
		id, rest, ok := readStr(k[1:])
		if !ok || len(rest) != 0 {
			bad = append([]byte(nil), k...)
			return false
		}
		out = append(out, App{ID: id, Settings: append(json.RawMessage(nil), v...)})
		return true
	})
	if err == nil && bad != nil {
		err = errCorrupt("app key", bad)
	}
	slices.SortFunc(out, func(a, b App) int { return strings.Compare(a.ID, b.ID) })
	return out, err
}

func getJSON(r pebble.Reader, key []byte, what string, v any) (bool, error) {
	raw, ok, err := getRaw(r, key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, errCorrupt(what, key)
	}
	return true, nil
}

func scanJSON[T any](r pebble.Reader, prefix []byte, what string, fn func(*T)) error {
	var bad []byte
	err := scanPrefix(r, prefix, func(k, v []byte) bool {
		var x T
		if json.Unmarshal(v, &x) != nil {
			bad = append([]byte(nil), k...)
			return false
		}
		fn(&x)
		return true
	})
	if err == nil && bad != nil {
		err = errCorrupt(what, bad)
	}
	return err
}

// MemberMark returns a shard's mark: the raft index of the shard up to
// which every membership change it committed is in the member index
// (MemberSet with Complete); 0 if none was ever vouched for.
func MemberMark(r pebble.Reader, ref ShardRef) (uint64, error) {
	v, ok, err := getRaw(r, markKey(ref))
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, errCorrupt("member mark", markKey(ref))
	}
	return binary.BigEndian.Uint64(v), nil
}

// MemberCounts calls fn with every (app, client, count) entry of shard
// ref in the member index (a full scan: for tests and repairs).
func MemberCounts(r pebble.Reader, ref ShardRef, fn func(app, client string, count uint64)) error {
	var bad []byte
	err := scanPrefix(r, []byte{tagMember}, func(k, v []byte) bool {
		app, rest, ok := readStr(k[1:])
		var client string
		if ok {
			client, rest, ok = readStr(rest)
		}
		got, valid := decodeRef(rest)
		if !ok || !valid || len(v) != 16 {
			bad = append([]byte(nil), k...)
			return false
		}
		if got == ref {
			fn(app, client, binary.BigEndian.Uint64(v))
		}
		return true
	})
	if err == nil && bad != nil {
		err = errCorrupt("member entry", bad)
	}
	return err
}
