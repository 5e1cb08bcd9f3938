package catalog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// ShardRef names a shard: its home region's number and its number there.
type ShardRef struct {
	Region uint8  `json:"r"`
	Shard  uint16 `json:"s"`
}

// LegacyShard is where every conversation created before the mesh lives,
// and every id the catalog does not know (docs/MESH.md, "Identifiers").
var LegacyShard = ShardRef{Region: 1, Shard: 0}

// String returns "region/shard", the shard's key in the member index.
func (s ShardRef) String() string { return fmt.Sprintf("%d/%d", s.Region, s.Shard) }

// Compare orders shards by region, then number.
func (s ShardRef) Compare(o ShardRef) int {
	if s.Region != o.Region {
		return int(s.Region) - int(o.Region)
	}
	return int(s.Shard) - int(o.Shard)
}

// Region is one region of the mesh.
type Region struct {
	Name     string   `json:"name"`
	Number   uint8    `json:"number"`
	Seeds    []string `json:"seeds,omitempty"`
	CIDRs    []string `json:"cidrs,omitempty"`
	EdgeURLs []string `json:"edges,omitempty"`
}

// Role is a node's role.
type Role string

// Roles.
const (
	RoleCore Role = "core"
	RoleEdge Role = "edge"
)

// Node is one process of the mesh.
type Node struct {
	ID     string `json:"id"`
	Region uint8  `json:"region"`
	Role   Role   `json:"role"`
	Mesh   string `json:"mesh"` // mesh address, host:port
}

// Shard is one shard: a raft group homed in a region.
type Shard struct {
	Ref    ShardRef `json:"ref"`
	Voters []string `json:"voters"` // node ids, sorted
	Open   bool     `json:"open,omitempty"`
}

// Bounds on every input. A command over one is refused (ErrTooLong,
// ErrTooMany) before it writes anything.
const (
	MaxNameLen       = 64       // region names, node ids, app ids
	MaxClientIDLen   = 256      // bytes: 64 characters of UTF-8 (core's bound is 64 runes)
	MaxAddrLen       = 256      // a mesh address, seed, CIDR or edge URL
	MaxAddrs         = 32       // seeds, edge URLs per region
	MaxCIDRs         = 1024     // CIDRs per region
	MaxVoters        = 7        // voters per shard
	MaxShards        = 1024     // shards per region, over its life (numbers are not reused)
	MaxNodes         = 4096     // nodes in the mesh
	MaxApps          = 10000    // apps in the catalog
	MaxDeltaClients  = 10000    // Adds plus Removes of one MemberDelta
	MaxImportIDs     = 10000    // ids per ImportIDs
	MaxSettingsBytes = 64 << 10 // an app's settings
	UniqueHashLen    = 64       // hex SHA-256
	// MaxCommandBytes bounds a whole raft entry, checked before it is
	// decoded. Every command within the other bounds fits, but for a
	// MemberDelta of MaxDeltaClients long clientIds full of characters
	// JSON escapes: a shard splits such a change into several deltas of the
	// same Index, each client's adds and removes in one of them (the
	// index is checked per client, so the parts do not mask each other).
	MaxCommandBytes = 4 << 20
)

// UniqueHash names a member set in the unique index: the SHA-256, in hex,
// of the sorted, deduplicated, non-empty members, each prefixed with its
// length (so ["a:b"] and ["a", "b"] differ, whatever the separator).
func UniqueHash(members []string) string {
	ms := make([]string, 0, len(members))
	for _, m := range members {
		if m != "" {
			ms = append(ms, m)
		}
	}
	slices.Sort(ms)
	ms = slices.Compact(ms)
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, m := range ms {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(m)))])
		h.Write([]byte(m))
	}
	return hex.EncodeToString(h.Sum(nil))
}
