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

// checkTokenGeneration refuses an OPEN that reopens with a session token
// of a retired generation. It reads the leader's applied state, which
// includes every revocation this leader proposed.
func (c *Core) checkTokenGeneration(req *meshpb.ClientRequest) error {
	if !req.GetStReopen() {
		return nil
	}
	gen, err := shard.TokenGeneration(c.state(), req.GetAppId(), req.GetPeerId())
	if err != nil {
		return fmt.Errorf("%w: %v", errInternal, err)
	}
	if req.GetStGeneration() != gen {
		return errTokenRevoked
	}
	return nil
}

// tokenGeneration is the client's current generation, for the tokens of a
// session that just opened.
func (c *Core) tokenGeneration(app, peer string) uint64 {
	gen, err := shard.TokenGeneration(c.state(), app, peer)
	if err != nil {
		c.log.Error("token generation", "app", app, "peer", peer, "err", err)
	}
	return gen
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
