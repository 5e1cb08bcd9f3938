package meshpb

import (
	"crypto/rand"
	"encoding/binary"
)

// Presence sequence numbers (ClientRequest.presence_seq,
// PresenceSession.seq, Presence.snapshot_seq) count an edge link's OPENs.
// The top presenceEpochBits bits are the link's epoch, random per edge
// process, so that numbers from an edge that restarted under the same id
// are never taken for newer than its new full lists; the low bits count.
const (
	presenceEpochBits  = 24
	presenceCountBits  = 64 - presenceEpochBits
	presenceCountLimit = 1<<presenceCountBits - 1
)

// NewPresenceEpoch returns the first presence sequence number of a new
// edge link: a random, non-zero epoch and a count of 0.
func NewPresenceEpoch() uint64 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if e := uint64(binary.BigEndian.Uint32(b[:])) & (1<<presenceEpochBits - 1); e != 0 {
			return e << presenceCountBits
		}
	}
}

// PresenceAfter reports whether seq was taken after snapshot by the same
// edge link: a session registered from an OPEN numbered seq cannot be on
// a full list numbered snapshot. Numbers of different epochs, and a seq
// of 0 (a session learnt without one), are never after.
func PresenceAfter(seq, snapshot uint64) bool {
	return seq != 0 && seq>>presenceCountBits == snapshot>>presenceCountBits && seq&presenceCountLimit > snapshot&presenceCountLimit
}
