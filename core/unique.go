package core

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
)

// Unique conversations across shards and regions (docs/MESH.md
// "Catalog"). A shard finds the unique conversation of a member set in
// its own state; two shards, or two regions, that create one at the same
// moment would make two. So a shard that has just created a unique
// conversation claims its member set in the catalog's unique index
// (compare-and-set, catalog.ClaimUnique). The first claim wins; a shard
// that loses deletes the conversation it just created (before anyone was
// told of it: its hooks and joined pushes wait for the claim) and answers
// the start with the winner's, existing. The router sends later starts of
// the set straight to the winner's shard (router.go).
//
// A claim the catalog does not answer (no leader, cut off) leaves the new
// conversation as the shard made it: correctness of what was asked (a
// conversation) over uniqueness; uniqueStats.unreached counts them.
//
// The claim outlives the set: a member change or a delete unlinks the
// conversation from its set in the shard; the shard then releases the
// claim (best effort), and a claim found pointing at a conversation of
// the claiming shard that the shard itself did not find is stale, so it
// is released and claimed again.

// uniqueStats are the shard core's unique-index counters.
type uniqueStats struct {
	won, lost, unreached atomic.Uint64
}

// uniqueWait bounds one claim.
const uniqueWait = 5 * time.Second

// catalogHash is the catalog's name of a member set.
func catalogHash(members []string) string { return catalog.UniqueHash(members) }

// claimUnique claims conv's member set for it. It returns the winner
// when another conversation holds the set ("" when conv won, or when
// the catalog could not be asked).
func (c *Core) claimUnique(ctx context.Context, app string, conv *shard.Conv) string {
	if c.catalog == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, uniqueWait)
	defer cancel()
	h := catalogHash(conv.Members)
	for range 3 {
		w, err := c.catalog.ClaimUnique(ctx, app, h, conv.ID)
		if err != nil {
			c.uniq.unreached.Add(1)
			c.log.Warn("unique conversation: catalog claim", "app", app, "cid", conv.ID, "err", err)
			return ""
		}
		if w == conv.ID {
			c.uniq.won.Add(1)
			return ""
		}
		if home := catalog.HomeOf(w); home.Region == c.home.Region && home.Shard == c.home.Shard {
			// This shard did not find the set's conversation, yet the
			// claim names one of its own: stale (its members changed, or
			// it was deleted). Release it and claim again.
			if _, err := c.catalog.Apply(ctx, &catalog.ReleaseUnique{App: app, Hash: h, Cid: w}); err != nil {
				c.uniq.unreached.Add(1)
				return ""
			}
			continue
		}
		c.uniq.lost.Add(1)
		return w
	}
	c.uniq.unreached.Add(1)
	return ""
}

// releaseUnique releases the claim of a conversation that no longer is
// the unique one of members, in the background.
func (c *Core) releaseUnique(app, cid string, members []string) {
	if c.catalog == nil {
		return
	}
	h := catalogHash(members)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.wg.Go(func() { // Close waits, and ends the wait
		ctx, cancel := c.quitCtx(uniqueWait)
		defer cancel()
		if _, err := c.catalog.Apply(ctx, &catalog.ReleaseUnique{App: app, Hash: h, Cid: cid}); err != nil {
			c.log.Debug("unique conversation: release", "app", app, "cid", cid, "err", err)
		}
	})
}
