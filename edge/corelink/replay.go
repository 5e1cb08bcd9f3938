package corelink

import (
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
// pairs, forgetting the oldest messages first; a replay of a forgotten
// message reaches its sessions again (at-least-once; counted in
// relaymesh_edge_link_replay_passed_total). At 300 messages a second to
// two recipients that is several minutes of history, far more than a
// leader change takes.
type replayFilter struct {
	passed, dropped atomic.Uint64

	mu    sync.Mutex
	seen  map[replayKey][]replayTarget // guarded by mu
	order []replayKey                  // guarded by mu; FIFO of the keys in seen
	total int                          // guarded by mu; targets in seen
}

const replayMaxTargets = 1 << 18

type replayKey struct{ app, msgID string }

type replayTarget struct {
	peer string
	conn uint64
}

// filter records d (a first copy) or trims d's targets to the sessions
// that have not had its message (a replay); false means nothing is left
// to deliver.
func (f *replayFilter) filter(d *meshpb.Delivery) bool {
	if d.MsgId == "" {
		return true
	}
	k := replayKey{d.AppId, d.MsgId}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = make(map[replayKey][]replayTarget)
	}
	got, known := f.seen[k]
	if d.Replay {
		kept := d.Targets[:0]
		for _, t := range d.Targets {
			if had(got, t) {
				f.dropped.Add(1)
				continue
			}
			f.passed.Add(1)
			kept = append(kept, t)
		}
		d.Targets = kept
	}
	if !known {
		f.order = append(f.order, k)
	}
	for _, t := range d.Targets {
		got = append(got, replayTarget{t.PeerId, t.ConnId})
	}
	f.total += len(d.Targets)
	f.seen[k] = got
	for f.total > replayMaxTargets && len(f.order) > 1 {
		old := f.order[0]
		f.order = f.order[1:]
		f.total -= len(f.seen[old])
		delete(f.seen, old)
	}
	return len(d.Targets) > 0
}

func had(got []replayTarget, t *meshpb.Target) bool {
	for _, g := range got {
		if g.peer == t.PeerId && (g.conn == t.ConnId || g.conn == 0) {
			return true
		}
	}
	return false
}
