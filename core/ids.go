package core

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"time"
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

// isoDate formats ms since the epoch as LeanCloud's date string,
// "2006-01-02T15:04:05.000Z" (Java parses exactly this).
func isoDate(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}
