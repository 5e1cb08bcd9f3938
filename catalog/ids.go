package catalog

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// Conversation ids say where a conversation lives (docs/MESH.md
// "Identifiers"): 24 lowercase hex characters, like LeanCloud's ObjectIds,
// of 12 bytes:
//
//	byte  0      0xF1, the marker and id version
//	byte  1      region number, 1..255
//	bytes 2-3    shard number within the region, big-endian
//	bytes 4-9    random
//	bytes 10-11  the first 2 bytes of SHA-256("relaymesh-cid" || bytes 0-9)
//
// A temporary conversation's id is TempPrefix and such an id.

// TempPrefix starts the id of a temporary conversation.
const TempPrefix = "_tmp:"

const (
	idMarker = 0xF1
	idLen    = 12
)

// ConvID is where a conversation id says the conversation lives.
type ConvID struct {
	Region uint8
	Shard  uint16
}

// LegacyShard is the home of every conversation whose id is not ours and
// that the catalog does not know: region 1's shard 0, where every
// conversation created before the mesh lives.
var LegacyShard = ConvID{Region: 1, Shard: 0}

// NewConvID returns a new conversation id homed in region's shard.
func NewConvID(region uint8, shard uint16) (string, error) {
	if region == 0 {
		return "", errors.New("catalog: region number 0")
	}
	var b [idLen]byte
	b[0], b[1], b[2], b[3] = idMarker, region, byte(shard>>8), byte(shard)
	if _, err := rand.Read(b[4:10]); err != nil {
		return "", err
	}
	sum := idCheck(b[:10])
	b[10], b[11] = sum[0], sum[1]
	return hex.EncodeToString(b[:]), nil
}

// ParseConvID decodes id (with or without TempPrefix); ok is false for an
// id that is not ours: not 24 lowercase hex characters, another marker,
// region 0, or a check that does not match.
func ParseConvID(id string) (where ConvID, ok bool) {
	id = strings.TrimPrefix(id, TempPrefix)
	if len(id) != 2*idLen {
		return ConvID{}, false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ConvID{}, false
		}
	}
	var b [idLen]byte
	if _, err := hex.Decode(b[:], []byte(id)); err != nil {
		return ConvID{}, false
	}
	if b[0] != idMarker || b[1] == 0 {
		return ConvID{}, false
	}
	sum := idCheck(b[:10])
	if b[10] != sum[0] || b[11] != sum[1] {
		return ConvID{}, false
	}
	return ConvID{Region: b[1], Shard: uint16(b[2])<<8 | uint16(b[3])}, true
}

// HomeOf is where conversation id lives without a catalog: what its id
// says, else LegacyShard. (With the catalog, imported ids are looked up
// first.)
func HomeOf(id string) ConvID {
	if w, ok := ParseConvID(id); ok {
		return w
	}
	return LegacyShard
}

func idCheck(b []byte) [sha256.Size]byte {
	return sha256.Sum256(append([]byte("relaymesh-cid"), b...))
}
