package corelink

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// replayFilter is the edge's side of the fan-out replay (core/fanout.go):
// it remembers which sessions recent direct pushes went to, by message id,
// and drops a replayed copy (meshpb.Delivery.replay) for a session that
// already got that message through this edge. Only replays are filtered;
// first copies always pass.
//
// Overflow: it remembers at most replayMaxTargets (message, session)
// pairs, forgetting the oldest first; a replay of a forgotten pair reaches
// its session again (at-least-once; counted in
// relaymesh_edge_link_replay_passed_total). At 300 messages a second to
// two recipients that is several minutes of history, far more than a
// leader change takes.
//
// Memory: a pair is three integers (hashes of the app and message id and
// of the peer id, and the connection), in a map and a ring with no
// pointers, so the garbage collector never scans them and no decoded
// delivery's strings stay alive through the filter. Full, it holds about
// 16 MiB. The hashes are seeded at random per filter; two pairs of
// different sessions or messages are confused only if both 64-bit hashes
// collide, which at 2^18 remembered pairs is about one chance in 2^46 per
// replayed copy, and then that copy is dropped as a duplicate.
type replayFilter struct {
	passed, dropped atomic.Uint64

	mu   sync.Mutex
	seed maphash.Seed            // guarded by mu; set with seen
	seen map[replayPair]struct{} // guarded by mu
	ring []replayPair            // guarded by mu; the pairs in seen, oldest at next once full
	next int                     // guarded by mu; where the next pair goes once ring is full
}

const replayMaxTargets = 1 << 18

// replayPair is one message pushed to one session: conn 0 stands for every
// session of the peer, as in meshpb.Target.
type replayPair struct {
	msg, peer, conn uint64
}

// filter records d (a first copy) or trims d's targets to the sessions
// that have not had its message (a replay); false means nothing is left
// to deliver.
func (f *replayFilter) filter(d *meshpb.Delivery) bool {
	if d.MsgId == "" {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seed = maphash.MakeSeed()
		f.seen = make(map[replayPair]struct{})
	}
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(d.AppId)
	h.WriteByte(0)
	h.WriteString(d.MsgId)
	msg := h.Sum64()
	if d.Replay {
		kept := d.Targets[:0]
		for _, t := range d.Targets {
			peer := maphash.String(f.seed, t.PeerId)
			_, same := f.seen[replayPair{msg, peer, t.ConnId}]
			_, any := f.seen[replayPair{msg, peer, 0}]
			if same || any {
				f.dropped.Add(1)
				continue
			}
			f.passed.Add(1)
			kept = append(kept, t)
		}
		d.Targets = kept
	}
	for _, t := range d.Targets {
		f.remember(replayPair{msg, maphash.String(f.seed, t.PeerId), t.ConnId})
	}
	return len(d.Targets) > 0
}

// remember adds p, forgetting the oldest pair when the filter is full.
func (f *replayFilter) remember(p replayPair) {
	if _, ok := f.seen[p]; ok {
		return // a first copy sent again: one entry, so forgetting it once is enough
	}
	f.seen[p] = struct{}{}
	if len(f.ring) < replayMaxTargets {
		f.ring = append(f.ring, p)
		return
	}
	delete(f.seen, f.ring[f.next])
	f.ring[f.next] = p
	f.next = (f.next + 1) % replayMaxTargets
}
