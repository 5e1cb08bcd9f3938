package core

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/raftstore"
)

// MemberPump keeps the catalog's member index up to date for one shard
// (docs/MESH.md "Logins"). Every replica's state machine tells it which
// clients each applied entry touched (shard.FSM.ObserveMembers); on the
// shard's leader it sends their counts, read from the local state as of
// an applied index R, as one catalog.MemberSet of index R, vouching
// (Complete) that every membership change at or below R is in the index.
// Counts are absolute, so a resend, a reordering or a deposed leader's
// late send does no harm (the catalog keeps the highest index per
// client). A replica that becomes leader first sends the counts of every
// client of the shard, since it cannot know what its predecessor sent.
// While the shard is busy but its memberships do not change, the mark is
// moved up every MarkEvery, so that routers whose replica restarted (and
// so know only its applied index) come back to the index.
type MemberPump struct {
	ref   catalog.ShardRef
	rep   *raftstore.Node
	fsm   *shard.FSM
	cat   *catalog.Store
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	dirty map[shard.MemberTouch]uint64 // client → highest index that touched it
	kick  chan struct{}

	led      bool      // the last round ran as leader and had sent the full set
	sent     uint64    // the index of the last Complete set this leader sent
	sentAt   time.Time // when
	stop     chan struct{}
	done     chan struct{}
	sets     atomic.Uint64 // MemberSet commands committed
	failures atomic.Uint64 // rounds that failed (retried)
}

// MarkEvery is how often a busy shard's leader moves its mark without a
// membership change.
const MarkEvery = 3 * time.Second

// memberSetChunk bounds the counts of one MemberSet (catalog bounds it
// at catalog.MaxDeltaClients and the entry's bytes).
const memberSetChunk = 1000

// NewMemberPump starts the pump of shard ref, whose replica is rep with
// state machine fsm, into the catalog cat. Stop ends it.
func NewMemberPump(ref catalog.ShardRef, rep *raftstore.Node, fsm *shard.FSM, cat *catalog.Store, log *slog.Logger) *MemberPump {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &MemberPump{ref: ref, rep: rep, fsm: fsm, cat: cat, log: log, every: MarkEvery,
		dirty: map[shard.MemberTouch]uint64{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	fsm.ObserveMembers(p.observe)
	go p.run()
	return p
}

// observe runs inside the shard's Apply: it records, and wakes the pump.
func (p *MemberPump) observe(index uint64, touched []shard.MemberTouch) {
	p.mu.Lock()
	for _, t := range touched {
		if p.dirty[t] < index {
			p.dirty[t] = index
		}
	}
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Stop ends the pump and returns once it has.
func (p *MemberPump) Stop() {
	p.fsm.ObserveMembers(nil)
	close(p.stop)
	<-p.done
}

// Sets is how many MemberSet commands the pump had committed.
func (p *MemberPump) Sets() uint64 { return p.sets.Load() }

// Failures is how many of the pump's rounds failed (and were retried).
func (p *MemberPump) Failures() uint64 { return p.failures.Load() }

func (p *MemberPump) run() {
	defer close(p.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		case <-p.kick:
			// Let the entries of one burst gather.
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		p.round()
	}
}

// round sends what is due, if this replica leads the shard.
func (p *MemberPump) round() {
	if !p.rep.IsLeader() {
		if p.led {
			p.led = false
		}
		p.mu.Lock()
		clear(p.dirty) // a new leader sends everything
		p.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { // Stop does not wait out a catalog that does not answer
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	snap := p.rep.State().NewSnapshot()
	defer snap.Close()
	at, err := raftstore.AppliedIndex(snap)
	if err != nil || at == 0 {
		return
	}
	p.mu.Lock()
	n := len(p.dirty)
	var clients []shard.MemberTouch
	if p.led {
		clients = make([]shard.MemberTouch, 0, n)
		for t := range p.dirty {
			clients = append(clients, t)
		}
	}
	p.mu.Unlock()
	full := !p.led
	if !full && len(clients) == 0 && (at <= p.sent || time.Since(p.sentAt) < p.every) {
		return // nothing changed, and the mark is fresh enough
	}
	var counts []catalog.MemberCount
	if full {
		err = shard.ClientCounts(snap, func(app, pid string, n uint64) {
			counts = append(counts, catalog.MemberCount{App: app, Client: pid, Count: n})
		})
	} else {
		for _, t := range clients {
			var c uint64
			if c, err = shard.ClientCount(snap, t.App, t.Client); err != nil {
				break
			}
			counts = append(counts, catalog.MemberCount{App: t.App, Client: t.Client, Count: c})
		}
	}
	if err == nil {
		err = p.send(ctx, at, counts)
	}
	if err != nil {
		p.failures.Add(1)
		p.log.Debug("member index", "shard", p.ref, "full", full, "err", err)
		return
	}
	p.led, p.sent, p.sentAt = true, at, time.Now()
	p.mu.Lock()
	for t, i := range p.dirty {
		if i <= at {
			delete(p.dirty, t)
		}
	}
	p.mu.Unlock()
}

// send commits counts as of index at, in chunks; the last one vouches.
func (p *MemberPump) send(ctx context.Context, at uint64, counts []catalog.MemberCount) error {
	for {
		chunk := counts[:min(len(counts), memberSetChunk)]
		counts = counts[len(chunk):]
		if _, err := p.cat.Apply(ctx, &catalog.MemberSet{Shard: p.ref, Index: at, Counts: chunk, Complete: len(counts) == 0}); err != nil {
			return err
		}
		p.sets.Add(1)
		if len(counts) == 0 {
			return nil
		}
	}
}

// memberReader is what the router reads of the member index.
type memberReader interface {
	MemberMark(ref catalog.ShardRef) (uint64, error)
	MemberShards(app, client string) ([]catalog.ShardRef, error)
}

var _ memberReader = (*catalog.Store)(nil)
