package core

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// A login's shares from other regions (docs/ARCHITECTURE.md, "Login
// anywhere").
//
// Every other region is asked, as before: its share request also marks the
// client online there (its cores push to this region from then on) and
// kicks a session of the same tag there. But the login waits only for the
// regions the catalog's member index names for the client (a shard of the
// region holds one of its conversations, a system-conversation
// subscription or a server message for it, or a global broadcast of the
// app): the others are expected to have nothing due, and a login that
// waited for them paid the slowest region's round trip for nothing. What
// such a region answers before the awaited ones is merged as before; what
// it answers later, if it holds anything after all (the index lags a
// membership change of that region by the catalog's replication delay), is
// pushed to the session as it arrives: the same unread counts, offline
// messages and patches, a little after session/opened instead of with it.
// Nothing is lost for not being waited for; it is late.

// lateShareWait bounds how long a login keeps listening for the shares it
// did not wait for (each call is bounded by regionPartWait as well).
const lateShareWait = 10 * time.Second

// lateShareAfter is how long after the login's answer left the router a
// late share is pushed at the earliest: the edge binds the session to its
// connection only once that answer reaches it, and a push that gets there
// first finds no session.
const lateShareAfter = 100 * time.Millisecond

// loginRegions returns the other regions a login of (app, peer) waits for:
// those holding one of the client's or the app's global entries in the
// member index. all is true when the index cannot say (no catalog, or a
// read failed): then the login waits for every region, as before the
// index.
func (r *Router) loginRegions(app, peer string) (wait map[uint8]bool, all bool) {
	if r.members == nil {
		return nil, true
	}
	refs, err := r.members.MemberShards(app, peer)
	every, aerr := r.members.MemberShards(app, shard.AllClients)
	if err != nil || aerr != nil {
		return nil, true
	}
	wait = map[uint8]bool{}
	for _, ref := range append(refs, every...) {
		if ref.Region != r.region {
			wait[ref.Region] = true
		}
	}
	return wait, false
}

// loginShares asks every other region for its share of the login req and
// returns the answers of those loginRegions names, with any other that
// came before them; the rest are pushed to the session when they come
// (pushLateShares). A request that is itself a region's part goes no
// further.
func (r *Router) loginShares(ctx context.Context, req *meshpb.ClientRequest) []*meshpb.ClientReply {
	if req.GetRegionPart() || r.remote == nil {
		return nil
	}
	ns := r.remote.Numbers()
	if len(ns) == 0 {
		return nil
	}
	wait, all := r.loginRegions(req.GetAppId(), req.GetPeerId())
	p := r.regionPart(req)

	answers := make(chan regionAnswer, len(ns)) // never blocks a caller
	// The calls outlive the login when it does not wait for them.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lateShareWait)
	pending := 0
	for _, n := range ns {
		if all || wait[n] {
			pending++
		}
		go func() {
			rep, err := r.remote.call(lctx, n, meshpb.MethodRegion, p)
			if err != nil {
				r.log.Warn("a region's share", "region", n, "err", err, "kind", req.GetKind())
				rep = nil
			}
			answers <- regionAnswer{n, rep}
		}()
	}
	r.stats.LoginRegionsAwaited.Add(uint64(pending))
	var out []*meshpb.ClientReply
	got := 0
	take := func(a regionAnswer) {
		got++
		if a.rep != nil {
			out = append(out, a.rep)
		}
	}
	for pending > 0 {
		select {
		case a := <-answers:
			if all || wait[a.n] {
				pending--
			}
			take(a)
		case <-ctx.Done():
			pending = 0 // the login is over; what comes later is late
		}
	}
drain:
	for got < len(ns) {
		select {
		case a := <-answers:
			take(a)
		default:
			break drain
		}
	}
	if left := len(ns) - got; left > 0 {
		r.stats.LoginRegionsNotAwaited.Add(uint64(left))
		go r.pushLateShares(lctx, cancel, req, answers, left)
	} else {
		cancel()
	}
	return out
}

// regionAnswer is a region's answer to a login's share request (nil when
// it failed).
type regionAnswer struct {
	n   uint8
	rep *meshpb.ClientReply
}

// pushLateShares takes the last left answers of a login's region shares
// and pushes what they hold to the login's session (its edge and
// connection), no sooner than lateShareAfter from now.
func (r *Router) pushLateShares(ctx context.Context, cancel context.CancelFunc, req *meshpb.ClientRequest, answers <-chan regionAnswer, left int) {
	defer cancel()
	earliest := time.Now().Add(lateShareAfter)
	lim := r.System().limits
	for ; left > 0; left-- {
		var a regionAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			return
		}
		if a.rep == nil {
			continue
		}
		cmds := lateCommands(mergeLogin([]*meshpb.ClientReply{a.rep}, req.GetProtocolVersion(), lim.MaxUnreadConvs))
		if len(cmds) == 0 {
			continue
		}
		if d := time.Until(earliest); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		r.stats.LoginLatePushes.Add(uint64(len(cmds)))
		r.log.Info("login: a region not waited for had something due; pushed late", "app", req.GetAppId(), "peer", req.GetPeerId(), "region", a.n, "commands", len(cmds))
		sys := r.System()
		for _, cmd := range cmds { // stamped by the shares (loginReply)
			sys.deliver(req.GetEdgeId(), &meshpb.Delivery{AppId: req.GetAppId(),
				Targets: []*meshpb.Target{{PeerId: req.GetPeerId(), ConnId: req.GetConnId()}}}, cmd)
		}
	}
}

// lateCommands decodes a merged share for pushing, leaving out an unread
// notice that counts no conversation (every share carries one).
func lateCommands(bs [][]byte) []*lcpb.GenericCommand {
	var out []*lcpb.GenericCommand
	for _, b := range bs {
		g := new(lcpb.GenericCommand)
		if proto.Unmarshal(b, g) != nil {
			continue
		}
		if g.GetCmd() == lcpb.CommandType_unread && len(g.GetUnreadMessage().GetConvs()) == 0 {
			continue
		}
		out = append(out, g)
	}
	return out
}
