package catalog

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Conversation ids that say where a conversation lives (docs/MESH.md,
// "Identifiers"). They keep LeanCloud's shape, 24 lowercase hex characters
// (12 bytes), which the official SDKs treat as opaque:
//
//	byte  0      0xF1            marker and id version
//	byte  1      region number   1..255
//	bytes 2-3    shard number    big-endian, within the region
//	bytes 4-9    random          48 bits
//	bytes 10-11  check           first 2 bytes of SHA-256("relaymesh-cid" || bytes 0-9)
//
// A LeanCloud ObjectId starts with 4 bytes of seconds since 1970 (0x4?–0x6?
// until 2038), so it never carries the marker; a pre-mesh random id has it
// and a good check with probability 2^-24, and the catalog registers such
// ids as imported (ImportIDs) so they keep their home.

// TempPrefix starts the id of a temporary conversation; our ids follow it.
const TempPrefix = "_tmp:"

// ConvIDLen is the length of a conversation id (without TempPrefix).
const ConvIDLen = 24

const (
	cidMarker = 0xF1
	cidSalt   = "relaymesh-cid"
)

// ConvID is where a conversation lives, as its id says.
type ConvID struct {
	Region uint8
	Shard  uint16
}

// Ref returns the shard the id names.
func (c ConvID) Ref() ShardRef { return ShardRef(c) }

// ErrBadRegion: region number 0 names no region.
var ErrBadRegion = errors.New("catalog: region number must be 1..255")

// NewConvID returns a new conversation id homed on (region, shard).
func NewConvID(region uint8, shard uint16) (string, error) {
	if region == 0 {
		return "", ErrBadRegion
	}
	var b [10]byte
	b[0] = cidMarker
	b[1] = region
	b[2], b[3] = byte(shard>>8), byte(shard)
	if _, err := rand.Read(b[4:10]); err != nil {
		return "", fmt.Errorf("catalog: new conversation id: %w", err)
	}
	return encodeConvID(b), nil
}

// encodeConvID appends the check to the first 10 bytes of an id and
// returns its hex form.
func encodeConvID(b [10]byte) string {
	var full [12]byte
	copy(full[:], b[:])
	c := cidCheck(b)
	full[10], full[11] = c[0], c[1]
	return hex.EncodeToString(full[:])
}

func cidCheck(b [10]byte) [2]byte {
	h := sha256.New()
	h.Write([]byte(cidSalt))
	h.Write(b[:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return [2]byte{sum[0], sum[1]}
}

// ParseConvID decodes an id made by NewConvID, with or without TempPrefix.
// It reports false for anything else: not 24 lowercase hex characters, no
// marker, region 0, or a bad check (a LeanCloud or pre-mesh id, which the
// catalog resolves with Lookup).
func ParseConvID(s string) (ConvID, bool) {
	s = strings.TrimPrefix(s, TempPrefix)
	b, ok := decodeHex24(s)
	if !ok || b[0] != cidMarker || b[1] == 0 {
		return ConvID{}, false
	}
	var head [10]byte
	copy(head[:], b[:10])
	if c := cidCheck(head); c[0] != b[10] || c[1] != b[11] {
		return ConvID{}, false
	}
	return ConvID{Region: b[1], Shard: uint16(b[2])<<8 | uint16(b[3])}, true
}

// IsHexID reports whether s is 24 lowercase hex characters: the shape of
// every conversation id the catalog registers (LeanCloud's, pre-mesh and
// ours).
func IsHexID(s string) bool {
	_, ok := decodeHex24(s)
	return ok
}

func decodeHex24(s string) (b [12]byte, ok bool) {
	if len(s) != ConvIDLen {
		return b, false
	}
	for i := 0; i < ConvIDLen; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return b, false
		}
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return b, false
	}
	return b, true
}

// HomeOf is where conversation id lives without a catalog read: what its
// id says, else LegacyShard. (With the catalog, imported ids are looked
// up first: Store.Lookup.)
func HomeOf(id string) ConvID {
	if w, ok := ParseConvID(id); ok {
		return w
	}
	return ConvID(LegacyShard)
}
