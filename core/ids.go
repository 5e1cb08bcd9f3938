package core

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// newConvID returns a LeanCloud-style objectId: 24 hex characters.
func newConvID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newMessageID returns 20 URL-safe characters.
func newMessageID() string {
	var b [15]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// isoDate formats ms since the epoch as LeanCloud's date string
// (lcpb.DateLayout).
func isoDate(ms int64) string { return lcpb.FormatDate(ms) }
