package loadtest

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errNoSessions ends a scenario none of whose sessions logged in.
var errNoSessions = errors.New("loadtest: no session logged in")

// messageLimit is the worker's share of the message cap.
func (w *worker) messageLimit() int {
	return max(1, int(float64(w.cfg.MaxMessages)*w.share+0.5))
}

// connectScenario: log in and stay idle.
type connectScenario struct {
	w  *worker
	ss []*session
}

func (c *connectScenario) setup(ctx context.Context) error {
	c.ss = c.w.loginAll(ctx, c.w.newSessions("c", c.w.first, c.w.n, ""))
	if len(c.ss) == 0 {
		return errNoSessions
	}
	return nil
}

func (c *connectScenario) steady(ctx context.Context) { c.w.idle(ctx, c.w.cfg.Duration) }
func (c *connectScenario) teardown()                  { c.w.closeAll(c.ss) }

// createConvs has the first member of each group create its conversation
// (conv/start with every member) and registers it with every member.
func (w *worker) createConvs(ctx context.Context, groups [][]*session, kind string) []*conv {
	out := make([]*conv, len(groups))
	w.parallel(ctx, len(groups), func(i int) {
		g := groups[i]
		ids := make([]string, 0, len(g)-1)
		for _, m := range g[1:] {
			ids = append(ids, m.id)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cid, err := g[0].cl.CreateConversation(cctx, ids, fmt.Sprintf("lt %s %d", kind, i), nil, false)
		if err != nil {
			w.noteErr("create %s conversation of %s: %v", kind, g[0].id, err)
			return
		}
		c := newConv(cid, g)
		for _, m := range g {
			m.addConv(c)
		}
		out[i] = c
	})
	var ok []*conv
	for _, c := range out {
		if c != nil {
			ok = append(ok, c)
		}
	}
	return ok
}

// pairsScenario: one-to-one conversations, both sides sending.
type pairsScenario struct {
	w       *worker
	ss      []*session
	senders []sender
}

func (p *pairsScenario) setup(ctx context.Context) error {
	p.ss = p.w.loginAll(ctx, p.w.newSessions("p", p.w.first, p.w.n, ""))
	if len(p.ss) < 2 {
		return errNoSessions
	}
	p.w.setPhase("setup")
	var groups [][]*session
	for i := 0; i+1 < len(p.ss); i += 2 {
		groups = append(groups, []*session{p.ss[i], p.ss[i+1]})
	}
	for _, c := range p.w.createConvs(ctx, groups, "pair") {
		p.senders = append(p.senders, sender{c.members[0], c, 0, ""}, sender{c.members[1], c, 1, ""})
	}
	if len(p.senders) == 0 {
		return errors.New("loadtest: no conversation could be created")
	}
	return nil
}

func (p *pairsScenario) steady(ctx context.Context) {
	p.w.sendAt(ctx, p.senders, p.w.cfg.Rate*p.w.share, p.w.cfg.Duration, p.w.messageLimit())
}

func (p *pairsScenario) teardown() { p.w.closeAll(p.ss) }

// groupScenario: conversations of up to GroupSize members, the first
// Senders members of each sending.
type groupScenario struct {
	w       *worker
	ss      []*session
	senders []sender
}

func (g *groupScenario) setup(ctx context.Context) error {
	g.ss = g.w.loginAll(ctx, g.w.newSessions("g", g.w.first, g.w.n, ""))
	if len(g.ss) < 2 {
		return errNoSessions
	}
	g.w.setPhase("setup")
	var groups [][]*session
	for i := 0; i < len(g.ss); i += g.w.cfg.GroupSize {
		m := g.ss[i:min(i+g.w.cfg.GroupSize, len(g.ss))]
		if len(m) >= 2 {
			groups = append(groups, m)
		}
	}
	for _, c := range g.w.createConvs(ctx, groups, "group") {
		for p := range min(g.w.cfg.Senders, len(c.members)) {
			g.senders = append(g.senders, sender{c.members[p], c, p, ""})
		}
	}
	if len(g.senders) == 0 {
		return errors.New("loadtest: no conversation could be created")
	}
	return nil
}

func (g *groupScenario) steady(ctx context.Context) {
	g.w.sendAt(ctx, g.senders, g.w.cfg.Rate*g.w.share, g.w.cfg.Duration, g.w.messageLimit())
}

func (g *groupScenario) teardown() { g.w.closeAll(g.ss) }

// reconnectScenario: every session ("dropper") shares a conversation with
// one of a few feeders. After a warm-up message, the droppers' network
// drops at once; the feeders send while they are away; then the network
// comes back and each dropper's SDK reconnects on its own. A dropper has
// recovered when an unread push after the drop shows, for its
// conversation, the last message sent to it; it then fetches the missed
// messages from history (late copies in the ledger).
type reconnectScenario struct {
	w        *worker
	droppers []*session
	feeders  []*session
	convs    []*conv
}

const (
	dropGroup        = "drop"
	outageMessages   = 2 // per conversation while the droppers are away
	reconnectTimeout = 60 * time.Second
)

func (r *reconnectScenario) setup(ctx context.Context) error {
	nf := max(1, r.w.n/10)
	r.feeders = r.w.loginAll(ctx, r.w.newSessions(fmt.Sprintf("f%d-", r.w.index), 0, nf, ""))
	r.droppers = r.w.loginAll(ctx, r.w.newSessions("r", r.w.first, r.w.n, dropGroup))
	if len(r.feeders) == 0 || len(r.droppers) == 0 {
		return errNoSessions
	}
	r.w.setPhase("setup")
	groups := make([][]*session, len(r.droppers))
	for i, d := range r.droppers {
		groups[i] = []*session{r.feeders[i%len(r.feeders)], d}
	}
	r.convs = r.w.createConvs(ctx, groups, "reconnect")
	if len(r.convs) == 0 {
		return errors.New("loadtest: no conversation could be created")
	}
	return nil
}

// sendRound sends one message from the feeder into every conversation,
// waiting for the acks.
func (r *reconnectScenario) sendRound(ctx context.Context) {
	r.w.parallel(ctx, len(r.convs), func(i int) {
		c := r.convs[i]
		r.w.sendOne(sender{c.members[0], c, 0, ""})
	})
}

func (r *reconnectScenario) steady(ctx context.Context) {
	w := r.w
	r.sendRound(ctx) // warm-up, delivered live
	w.drain(ctx)
	for _, d := range r.droppers {
		d.resetUnread()
	}
	dropped := w.dialer.drop(dropGroup)
	t0 := time.Now()
	w.noteErrIf(dropped < len(r.droppers), "reconnect: dropped %d connections for %d sessions", dropped, len(r.droppers))
	for range outageMessages {
		r.sendRound(ctx)
	}
	// Stay away for the rest of a short outage (at most 2 s, bounded by
	// --duration) so the server surely saw the drop, then come back.
	w.idle(ctx, min(w.cfg.Duration, 2*time.Second)-time.Since(t0))
	w.setPhase("recovering")
	back := time.Now()
	w.dialer.up(dropGroup)

	rctx, cancel := context.WithTimeout(ctx, reconnectTimeout)
	defer cancel()
	w.parallel(rctx, len(r.convs), func(i int) {
		c := r.convs[i]
		d := c.members[1]
		if err := r.recoverOne(rctx, d, c); err != nil {
			w.unrecovered.Add(1)
			w.noteErr("reconnect %s: %v", d.id, err)
			return
		}
		w.recoverH.Record(time.Since(back))
	})
}

// recoverOne waits for d's unread push after the drop, checks that it
// names the last message of c, and fetches the unread messages.
func (r *reconnectScenario) recoverOne(ctx context.Context, d *session, c *conv) error {
	u, err := d.waitUnread(ctx)
	if err != nil {
		return fmt.Errorf("no unread push after reconnect: %w", err)
	}
	want := r.w.ledger.LastAcked(c.cid)
	for _, uc := range u.Convs {
		if uc.ConvID != c.cid {
			continue
		}
		if want != "" && uc.LastID != want {
			return fmt.Errorf("unread of %s names %s, want last message %s", c.cid, uc.LastID, want)
		}
		hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return d.syncFrom(hctx, c.cid, uc.Count)
	}
	return fmt.Errorf("unread push without conversation %s (%d conversations)", c.cid, len(u.Convs))
}

func (r *reconnectScenario) teardown() {
	r.w.dialer.up(dropGroup)
	r.w.closeAll(r.droppers)
	r.w.closeAll(r.feeders)
}

func (w *worker) noteErrIf(cond bool, format string, a ...any) {
	if cond {
		w.noteErr(format, a...)
	}
}
