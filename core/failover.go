package core

import (
	"strings"
	"time"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// appendTimeout bounds a message's proposal, which outlives the request
// that asked for it (message.go).
const appendTimeout = 10 * time.Second

// AnnounceLeader tells every attached edge that the core at addr leads the
// shard in raft term term (meshpb.LinkLeader on the delivery streams), so
// the edges move their requests to it without waiting for the old leader
// to time out. Every core announces what it sees; an edge ignores a term
// older than one it followed. The frame goes through each edge's relay
// queue as HIGH.
func (c *Core) AnnounceLeader(addr string, term uint64) {
	if addr == "" {
		return
	}
	c.relay.SendToEdges(&meshpb.Delivery{Leader: &meshpb.LinkLeader{Addr: addr, Term: term}})
}

// dedupToken is what a send is deduplicated on (shard.Command.DT): the
// client's dt, else the edge's idempotency key for the request
// (meshpb.ClientRequest.idempotency_key), so that a send the edge retries
// on a new leader is stored once. The key space is apart from the
// clients' dt values: a NUL byte, then 128 random bits.
func dedupToken(dt, idemKey string) string {
	if dt != "" || idemKey == "" {
		return dt
	}
	return idemKeyPrefix + idemKey
}

// idemKeyPrefix starts a dedup token made from the edge's key: a client's
// dt never holds a NUL (checkDT refuses it before the send is proposed).
const idemKeyPrefix = "\x00k"

// haltBeforeFanout is the test hook Config.HaltBeforeFanout: it holds a
// committed message whose content has the marker, before its ack and its
// fan-out, until the core closes (with the conversation's send lock: later
// sends to it wait too). Tests kill -9 the leader while it holds. It
// reports whether it held (the core is closed then).
func (c *Core) haltBeforeFanout(app string, m *shard.Message) bool {
	if c.haltMarker == "" || !strings.Contains(m.Data, c.haltMarker) {
		return false
	}
	c.stats.Halted.Add(1)
	c.log.Warn("TEST HOOK: holding a committed message before its fan-out", "app", app, "cid", m.CID, "mid", m.ID)
	<-c.quit
	return true
}
