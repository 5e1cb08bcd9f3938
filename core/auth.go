package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Session-token revocation (shard/auth.go has the state). A session token
// carries the client's token generation of its session's OPEN; a kick
// (tag conflict, REST kick) or a logout (session/close) proposes
// OpRevokeTokens, and an OPEN that reopens with an older generation is
// refused with 4112 SESSION_TOKEN_EXPIRED, on which every SDK signs in
// again (NATIVE-SDKS.md §2). The generation is per (app, clientId): a
// logout on one device also retires the tokens of the client's other
// devices, which then sign in afresh on their next reconnect (they stay
// online meanwhile; a token only matters on a reopen).

// errTokenRevoked: the session token was issued before a kick or logout.
var errTokenRevoked = errors.New("core: session token revoked by a kick or logout")

// A token generation, as session tokens carry it, names the region whose
// system shard issued it: the region number in its top 8 bits, the
// client's generation in that region below. A token is checked where it
// was issued, so a kick or logout in one region voids its tokens in every
// region (Router.checkForeignToken). Tokens issued before regions tagged
// them carry region 0 and are checked where they are used, as they were.
const tokenGenShift = 56

// tokenGen is the generation a token of region carries.
func tokenGen(region uint8, gen uint64) uint64 {
	return uint64(region)<<tokenGenShift | gen&(1<<tokenGenShift-1)
}

// tokenGenRegion is the region that issued a token of generation g (0:
// untagged).
func tokenGenRegion(g uint64) uint8 { return uint8(g >> tokenGenShift) }

// checkTokenGeneration refuses an OPEN that reopens with a session token
// of a retired generation. It reads the leader's applied state, which
// includes every revocation this leader proposed. A token another region
// issued is the router's to check (checkForeignToken), which clears
// st_reopen once it has: one that still asks here is refused.
func (c *Core) checkTokenGeneration(req *meshpb.ClientRequest) error {
	if !req.GetStReopen() {
		return nil
	}
	g := req.GetStGeneration()
	if r := tokenGenRegion(g); r != 0 && r != c.home.Region {
		return fmt.Errorf("%w: issued in region %d", errTokenRevoked, r)
	}
	gen, err := shard.TokenGeneration(c.state(), req.GetAppId(), req.GetPeerId())
	if err != nil {
		return fmt.Errorf("%w: %v", errInternal, err)
	}
	if tokenGen(0, g) != gen {
		return errTokenRevoked
	}
	return nil
}

// tokenGeneration is the client's current generation, for the tokens of a
// session that just opened: tagged with this region.
func (c *Core) tokenGeneration(app, peer string) uint64 {
	g, err := c.taggedGeneration(app, peer)
	if err != nil {
		c.log.Error("token generation", "app", app, "peer", peer, "err", err)
	}
	return g
}

// taggedGeneration is the client's generation as this region's tokens
// carry it.
func (c *Core) taggedGeneration(app, peer string) (uint64, error) {
	gen, err := shard.TokenGeneration(c.state(), app, peer)
	return tokenGen(c.home.Region, gen), err
}

// checkForeignToken checks a reopen's session token that another region
// issued with that region's system shard (MethodTokenGeneration): the
// token is void once a kick or logout there retired its generation. A
// token of a region that cannot be asked is void too: every SDK signs in
// again on 4112, and a fresh login needs no other region. Once checked,
// the request no longer asks the local check (st_reopen cleared).
func (r *Router) checkForeignToken(ctx context.Context, req *meshpb.ClientRequest) error {
	g := req.GetStGeneration()
	n := tokenGenRegion(g)
	if !req.GetStReopen() || n == 0 || n == r.region {
		return nil
	}
	r.stats.TokenChecks.Add(1)
	if !r.remote.Remote(n) {
		r.stats.TokenRefused.Add(1)
		return fmt.Errorf("%w: issued in region %d, which this region does not know", errTokenRevoked, n)
	}
	rep, err := r.remote.call(ctx, n, meshpb.MethodTokenGeneration, &meshpb.ClientRequest{AppId: req.GetAppId(), PeerId: req.GetPeerId()})
	switch {
	case err != nil:
		err = fmt.Errorf("%w: region %d, which issued it, did not answer: %v", errTokenRevoked, n, err)
	case rep.GetErrorCode() != 0:
		err = fmt.Errorf("%w: region %d, which issued it, answered %d %s", errTokenRevoked, n, rep.GetErrorCode(), rep.GetErrorReason())
	case rep.GetSessionGeneration() != g:
		err = errTokenRevoked
	}
	if err != nil {
		r.stats.TokenRefused.Add(1)
		r.log.Info("session token of another region refused", "app", req.GetAppId(), "peer", req.GetPeerId(), "region", n, "err", err)
		return err
	}
	req.StReopen, req.StGeneration = false, 0
	return nil
}

// tokenGenerationReply answers MethodTokenGeneration on the system
// shard's leader: the client's current generation, as its tokens carry
// it.
func (c *Core) tokenGenerationReply(app, peer string) *meshpb.ClientReply {
	g, err := c.taggedGeneration(app, peer)
	if err != nil {
		return &meshpb.ClientReply{ErrorCode: codeFor(errInternal), ErrorReason: err.Error()}
	}
	return &meshpb.ClientReply{SessionGeneration: g}
}

// revokeTokens retires every outstanding session token of peer. A failure
// is logged: the kick or logout itself has happened.
func (c *Core) revokeTokens(ctx context.Context, app, peer string) {
	if c.replica == nil || !c.replica.IsLeader() {
		return
	}
	if _, err := c.propose(ctx, &shard.Command{Op: shard.OpRevokeTokens, App: app, From: peer, Now: c.nowMS()}); err != nil {
		c.log.Warn("revoke session tokens", "app", app, "peer", peer, "err", err)
	}
}
