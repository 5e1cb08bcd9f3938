package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Cross-region scenario (issue 9). The topology's regions are R[0..n-1].
// Session g belongs to pair k = g/2; its first member logs in at an edge
// of region R[k mod n], its second at one of R[(k+1) mod n], so with two
// or more regions every pair spans two regions and with one region every
// pair lives in it. The first member creates the conversation; both send.
// Each message is labelled with its region pair "from->to": the ledger is
// settled per pair (Summary.RegionPairs) next to send→ack and
// send→delivery latency percentiles per pair. A session's other servers
// are its region's other edges, then the other regions' edges, in
// topology order (where the router's secondary would send it).
//
// A conversation is homed in its creator's region; the member in the
// other region reaches it through its own region's cores (one crossing
// per send or push). On a one-region topology the pairs are "r->r".

// pairLabel names a region pair.
func pairLabel(from, to string) string { return from + "->" + to }

// regionOf returns the region index of global session g.
func (w *worker) regionOf(g int) int {
	k := g / 2
	return (k + g%2) % len(w.cfg.Regions)
}

// newRegionSessions makes sessions first..first+n-1 named prefix-<g>, each
// at an edge of its region.
func (w *worker) newRegionSessions(prefix string, first, n int) []*session {
	out := make([]*session, n)
	for i := range out {
		g := first + i
		ri := w.regionOf(g)
		reg := w.cfg.Regions[ri]
		k := g / 2
		s := &session{id: fmt.Sprintf("lt-%s-%s%d", w.cfg.RunID, prefix, g), region: reg.Name, w: w}
		s.target = reg.Edges[k%len(reg.Edges)]
		for j := 1; j < len(reg.Edges); j++ {
			s.servers = append(s.servers, reg.Edges[(k+j)%len(reg.Edges)])
		}
		if w.cfg.ViaRouter {
			// Other regions only through the router's secondary.
			s.router = reg.Router
		} else {
			for j := 1; j < len(w.cfg.Regions); j++ {
				s.servers = append(s.servers, w.cfg.Regions[(ri+j)%len(w.cfg.Regions)].Edges...)
			}
		}
		out[i] = s
	}
	return out
}

type crossRegionScenario struct {
	w       *worker
	ss      []*session
	senders []sender
}

func (x *crossRegionScenario) setup(ctx context.Context) error {
	all := x.w.newRegionSessions("x", x.w.first, x.w.n)
	x.ss = x.w.loginAll(ctx, all)
	if len(x.ss) < 2 {
		return errNoSessions
	}
	x.w.setPhase("setup")
	var groups [][]*session
	for i := 0; i+1 < len(all); i++ {
		if (x.w.first+i)%2 != 0 { // a pair starts at an even global index
			continue
		}
		a, b := all[i], all[i+1]
		if slices.Contains(x.ss, a) && slices.Contains(x.ss, b) {
			groups = append(groups, []*session{a, b})
		}
	}
	for _, c := range x.w.createConvs(ctx, groups, "cross-region") {
		a, b := c.members[0], c.members[1]
		x.senders = append(x.senders, sender{a, c, 0, pairLabel(a.region, b.region)}, sender{b, c, 1, pairLabel(b.region, a.region)})
	}
	if len(x.senders) == 0 {
		return errors.New("loadtest: no conversation could be created")
	}
	return nil
}

func (x *crossRegionScenario) steady(ctx context.Context) {
	x.w.sendAt(ctx, x.senders, x.w.cfg.Rate*x.w.share, x.w.cfg.Duration, x.w.messageLimit())
}

func (x *crossRegionScenario) teardown() { x.w.closeAll(x.ss) }

// pairHists are the latencies of one region pair.
type pairHists struct {
	Ack, Deliver *Hist
}

// pair returns the histograms of label, creating them.
func (w *worker) pair(label string) *pairHists {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pairs == nil {
		w.pairs = make(map[string]*pairHists)
	}
	p := w.pairs[label]
	if p == nil {
		p = &pairHists{Ack: NewHist(), Deliver: NewHist()}
		w.pairs[label] = p
	}
	return p
}

// PairReport is what one worker measured for one region pair.
type PairReport struct {
	Counts  Counts `json:"counts"`
	Ack     *Hist  `json:"ack"`
	Deliver *Hist  `json:"deliver"`
}

// pairReports settles the ledger per region pair.
func (w *worker) pairReports() map[string]*PairReport {
	labels := w.ledger.SettleLabels()
	if len(labels) == 0 {
		return nil
	}
	out := make(map[string]*PairReport, len(labels))
	for label, c := range labels {
		p := w.pair(label)
		out[label] = &PairReport{Counts: c, Ack: p.Ack, Deliver: p.Deliver}
	}
	return out
}

// RegionPairSummary is one region pair of a cross-region run: its settled
// ledger and latency percentiles.
type RegionPairSummary struct {
	Counts
	LatencyMS         Quantiles `json:"latency_ms"`          // send → ack
	DeliveryLatencyMS Quantiles `json:"delivery_latency_ms"` // send → live copy
}

// mergePairs merges the workers' region pairs into the summary.
func (s *Summary) mergePairs(reports []*Report) {
	acks, dels := map[string]*Hist{}, map[string]*Hist{}
	for _, r := range reports {
		for label, p := range r.Pairs {
			if s.RegionPairs == nil {
				s.RegionPairs = make(map[string]*RegionPairSummary)
			}
			ps := s.RegionPairs[label]
			if ps == nil {
				ps = &RegionPairSummary{}
				s.RegionPairs[label] = ps
				acks[label], dels[label] = NewHist(), NewHist()
			}
			ps.Counts.Add(p.Counts)
			acks[label].Merge(p.Ack)
			dels[label].Merge(p.Deliver)
		}
	}
	for label, ps := range s.RegionPairs {
		ps.LatencyMS, ps.DeliveryLatencyMS = acks[label].Quantiles(), dels[label].Quantiles()
	}
}
