package raftstore

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// compactionPacer spreads the state DB's compactions over time. A
// compaction of L0 into Lbase merges, compresses and writes tens of MB; run
// flat out it took a core for 0.5–1.8 s, and on a machine with few cores
// the request path waits behind it: those seconds were the one-to-one
// acks' worst (docs/BENCHMARKS.md, stops 32 and 35). Paced, a compaction
// works at most a share of the time: after each stretch of work it sleeps
// in proportion, so it takes 1/share as long and leaves the cores to the
// requests in between. It measures wall time, so on a busy machine, where
// its work stretches out waiting for a core, it sleeps more.
//
// Flushes are never paced: a slow flush holds a full memtable and stalls
// the writes behind it. Nor is a compaction once L0 has fallen behind
// (backlogL0 tables or more): then compactions run flat out until L0 is
// back under it, so writes never stop for the pacing. Nor once the DB is
// closing: Pebble's Close waits for the compaction running.
//
// It is the state DB's vfs.FS, and tells a compaction's tables from a
// flush's by Pebble's TableCreated event, which Pebble sends right after it
// creates a table and before it writes to it. A compaction writes its
// tables through a 4 KiB buffer, so the pacer sees its work in small
// steps.
type compactionPacer struct {
	vfs.FS
	share     float64 // of the time a compaction may work, (0, 1)
	backlogL0 int64

	db      atomic.Pointer[pebble.DB] // set once open; nil: nothing is paced
	closing atomic.Bool               // the DB is closing: nothing is paced

	mu      sync.Mutex
	created map[string]*pacedFile // tables created, not yet told apart

	// checkMu guards the look at L0. It is not mu: Metrics takes the DB's
	// mutex, and Pebble may create a file (Create takes mu) holding that.
	checkMu sync.Mutex
	checked time.Time // last look at L0
	backlog bool

	paced   atomic.Int64 // bytes written paced
	waited  atomic.Int64 // nanoseconds slept
	unpaced atomic.Int64 // compaction bytes written flat out (L0 behind)

	now      func() time.Time // time.Now; tests give a clock their sleepFor moves
	sleepFor func(time.Duration)
}

const (
	// paceMinSleep is the shortest sleep: shorter debts add up until they
	// are worth a timer.
	paceMinSleep = 2 * time.Millisecond
	// paceMaxStep caps the work one write is charged for: a compaction
	// that waited long between two writes (for a lock, a read) pays for
	// at most this.
	paceMaxStep = 100 * time.Millisecond
	// paceL0Check is how often the pacer looks at L0.
	paceL0Check = 100 * time.Millisecond
)

func newCompactionPacer(fs vfs.FS, share float64, backlogL0 int) *compactionPacer {
	return &compactionPacer{FS: fs, share: share, backlogL0: int64(backlogL0),
		created: map[string]*pacedFile{}, now: time.Now, sleepFor: time.Sleep}
}

// install makes p the FS of o and adds its event listener.
func (p *compactionPacer) install(o *pebble.Options) {
	o.FS = p
	l := pebble.EventListener{TableCreated: p.tableCreated}
	if o.EventListener != nil {
		l = pebble.TeeEventListener(*o.EventListener, l)
	}
	o.EventListener = &l
}

func (p *compactionPacer) Create(name string) (vfs.File, error) {
	f, err := p.FS.Create(name)
	if err != nil || !strings.HasSuffix(name, ".sst") {
		return f, err
	}
	pf := &pacedFile{File: f, p: p, name: name}
	p.mu.Lock()
	p.created[name] = pf
	p.mu.Unlock()
	return pf, nil
}

func (p *compactionPacer) tableCreated(info pebble.TableCreateInfo) {
	p.mu.Lock()
	f := p.created[info.Path]
	delete(p.created, info.Path)
	p.mu.Unlock()
	if f != nil && info.Reason == "compacting" {
		f.paced.Store(true)
	}
}

// behind reports whether L0 holds backlogL0 tables or more, looking at
// most every paceL0Check.
func (p *compactionPacer) behind(db *pebble.DB, now time.Time) bool {
	p.checkMu.Lock()
	defer p.checkMu.Unlock()
	if now.Sub(p.checked) >= paceL0Check {
		p.checked = now
		p.backlog = db.Metrics().Levels[0].NumFiles >= p.backlogL0
	}
	return p.backlog
}

// pace charges f's compaction for the work since its last write and
// sleeps off what it owes once that is worth a timer.
func (f *pacedFile) pace(n int) {
	p := f.p
	db := p.db.Load()
	if db == nil {
		return
	}
	now := p.now()
	if p.closing.Load() || p.behind(db, now) {
		f.last = time.Time{}
		p.unpaced.Add(int64(n))
		return
	}
	p.paced.Add(int64(n))
	if !f.last.IsZero() {
		work := min(now.Sub(f.last), paceMaxStep)
		f.owed += time.Duration(float64(work) * (1/p.share - 1))
	}
	f.last = now
	if f.owed < paceMinSleep {
		return
	}
	w := f.owed
	f.owed = 0
	p.waited.Add(int64(w))
	p.sleepFor(w)
	f.last = p.now()
}

// pacedFile is a table the pacer created: paced once Pebble said a
// compaction writes it. One goroutine writes a table, so last and owed
// need no lock.
type pacedFile struct {
	vfs.File
	p     *compactionPacer
	name  string
	paced atomic.Bool
	last  time.Time     // end of the last write (zero: none yet)
	owed  time.Duration // sleep not yet taken
}

func (f *pacedFile) Write(b []byte) (int, error) {
	if f.paced.Load() {
		f.pace(len(b))
	}
	return f.File.Write(b)
}

func (f *pacedFile) Close() error {
	f.p.mu.Lock()
	if f.p.created[f.name] == f {
		delete(f.p.created, f.name)
	}
	f.p.mu.Unlock()
	return f.File.Close()
}
