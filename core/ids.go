package core

import (
	"fmt"

	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"github.com/relaymesh/relaymesh/catalog"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// newConvID returns a new conversation id homed in this core's shard
// (catalog.NewConvID: 24 hex characters, like LeanCloud's objectIds, that
// name the region and shard).
func (c *Core) newConvID() string {
	id, err := catalog.NewConvID(c.home.Region, c.home.Shard)
	if err != nil { // crypto/rand failed, or a zero region slipped through New
		panic(fmt.Sprintf("core: conversation id: %v", err))
	}
	return id
}

// newRandomID returns 24 random hex characters (device ids).
func newRandomID() string {
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
