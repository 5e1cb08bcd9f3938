// Package gcfloor gives the Go collector a heap floor: while what survives
// a collection is small, the next one waits until floor bytes more have
// been allocated, instead of the live heap's size more (GOGC=100).
//
// Why: a relaymesh process under load keeps a small live heap (~25 MiB for
// `relaymesh dev` at 5,000 sends a second) and allocates ~100 MiB a
// second, so at GOGC=100 it collected five times a second, and each
// collection's mark phase took a share of the CPU the sends were waiting
// for (docs/BENCHMARKS.md, stop 31). A floor of 64 MiB makes those
// collections rarer for at most 64 MiB of extra heap; once the live heap is
// larger than the floor (15,000 idle sessions hold ~130 MiB) the collector
// runs at GOGC=100 as before, so memory per session does not change.
//
// The floor follows the allocation rate (Start's hi above lo): after each
// collection it is what the process allocated in the last Window at the
// rate since the collection before, kept between the two, and a watcher
// lowers it within a second or two once the rate falls. A quiet process
// keeps the minimum; one under load collects about once a Window for at
// most the maximum of extra heap. At 5,000 sends a second, 64 to 256 MiB
// gave an ack p99 of 0.64-0.81x a fixed 64 MiB's for 1.5-1.7x the peak RSS
// (docs/BENCHMARKS.md, stop 40). While the live heap grows fast (new
// state arriving: a login storm, which allocates fast too) the floor
// stays at the minimum, and for a Window after, or the storm's peak RSS
// would rise with it (~12 KiB per idle session at 15,000 against ~9.5;
// up to 21 when one collection in a storm misread it, stop 41).
//
// How: after every collection (a finalizer on an object made unreachable
// at each one) it sets the GOGC percentage to max(100, floor/live × 100),
// so the heap goal is at least live + max(live, floor) (percentFor says
// by how much more for a small live heap). An operator's own GOGC (the
// environment variable) wins: Start then does nothing.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultFloor and DefaultMaxFloor bound the floor the relaymesh commands
// keep unless told otherwise; Window is how long the floor lets the
// allocation rate run between collections.
const (
	DefaultFloor    = 64 << 20
	DefaultMaxFloor = 256 << 20
	Window          = 2 * time.Second
)

const minInterval = 10 * time.Millisecond

// basePercent is Go's default GOGC, the setting above the floor.
const basePercent = 100

// Tuner keeps the floor until Stop.
type Tuner struct {
	min, max uint64
	stopped  atomic.Bool
	runs     atomic.Uint64 // collections seen, for tests
	rated    atomic.Uint64 // of them, those that set the floor from the rate, for tests
	cur      atomic.Uint64 // the floor in force (Floor)
	sample   []metrics.Sample

	// the collection before, on the finalizer goroutine only
	lastAllocs, lastLive uint64
	lastAt               time.Time
	grewAt               time.Time // the last collection that found the live heap growing fast

	mu   sync.Mutex    // orders setting the floor and GOGC
	done chan struct{} // ends watch; nil for a fixed floor
}

// Start keeps a heap floor from the next collection on: at least lo
// bytes, and up to hi while the process allocates faster than lo a
// Window (hi below lo: lo). It returns nil (no tuning) when lo is 0 or
// GOGC is set in the environment.
func Start(lo, hi uint64) *Tuner {
	if lo == 0 || os.Getenv("GOGC") != "" {
		return nil
	}
	t := &Tuner{min: lo, max: max(lo, hi), sample: newSample()}
	t.cur.Store(lo)
	t.arm()
	if t.max > t.min { // a fixed floor has nothing to watch
		t.done = make(chan struct{})
		go t.watch()
	}
	return t
}

// Bounds are the floor's minimum and maximum.
func (t *Tuner) Bounds() (lo, hi uint64) { return t.min, t.max }

// Floor is the floor in force: the minimum until a collection has shown
// the allocation rate. A nil Tuner's is 0.
func (t *Tuner) Floor() uint64 {
	if t == nil {
		return 0
	}
	return t.cur.Load()
}

// Stop ends the tuning and puts GOGC back to 100. A nil Tuner does
// nothing.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	if t.done != nil {
		close(t.done)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	debug.SetGCPercent(basePercent)
}

// sentinel is the object whose finalizer runs once a collection found it
// unreachable. It is larger than 16 bytes so that it is not packed into a
// tiny block with other objects, whose finalizer could wait for them.
type sentinel struct{ _ [32]byte }

func (t *Tuner) arm() {
	runtime.SetFinalizer(new(sentinel), func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

// adjust runs on the finalizer goroutine after a collection.
func (t *Tuner) adjust() {
	live, allocs := read(t.sample)
	t.set(t.observe(live, allocs, time.Now()), live, false)
	t.runs.Add(1)
}

// observe is the floor after a collection at now that left live bytes
// live with allocs bytes allocated since the process started: the
// minimum at the first collection, while the live heap grows fast and for
// a Window after, else a Window's worth at the rate since the collection
// before.
func (t *Tuner) observe(live, allocs uint64, now time.Time) uint64 {
	floor := t.min
	if d := now.Sub(t.lastAt); !t.lastAt.IsZero() {
		switch {
		case growing(t.lastLive, live, d, t.min):
			t.grewAt = now
		case now.Sub(t.grewAt) < Window:
			// A storm's growth is uneven: its collections come close
			// together, and one of them may find the live heap grown by
			// only a MiB or two (15,000 logins: 32 to 34 MB in 0.45 s,
			// then 34 to 84 MB in 1.6 s). The floor rises only once the
			// live heap has stopped growing fast for a Window.
		default:
			floor = floorFor(allocs-t.lastAllocs, d, t.min, t.max)
			t.rated.Add(1)
		}
	}
	t.lastAllocs, t.lastLive, t.lastAt = allocs, live, now
	return floor
}

// watch lowers the floor between collections once the allocation rate
// falls: a burst (a reconnect storm's logins) must not leave the heap
// goal high for the quiet that follows it, which could last until Go's
// forced collection two minutes later.
func (t *Tuner) watch() {
	tick := time.NewTicker(Window / 2)
	defer tick.Stop()
	s := newSample()
	var w watcher
	for {
		var now time.Time
		select {
		case <-t.done:
			return
		case now = <-tick.C:
		}
		live, allocs := read(s)
		if floor, ok := w.tick(allocs, now, t.min, t.max); ok {
			t.set(floor, live, true)
		}
	}
}

// watcher is the watch goroutine's reading before.
type watcher struct {
	allocs uint64
	at     time.Time
}

// tick is the floor for the allocation rate since the tick before, and
// false at the first tick.
func (w *watcher) tick(allocs uint64, now time.Time, lo, hi uint64) (uint64, bool) {
	last, at := w.allocs, w.at
	w.allocs, w.at = allocs, now
	if at.IsZero() {
		return 0, false
	}
	return floorFor(allocs-last, now.Sub(at), lo, hi), true
}

// set puts floor in force for a live heap of live bytes.
// With lowerOnly it only lowers the floor, and only by a quarter or more,
// so that a second's dip in a steady load does not bring the next
// collection forward.
func (t *Tuner) set(floor, live uint64, lowerOnly bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() || lowerOnly && floor > t.cur.Load()/4*3 {
		return
	}
	t.cur.Store(floor)
	debug.SetGCPercent(percentFor(live, floor))
}

// growing reports whether the live heap grew from was to is, in d, by
// more than a sixteenth of the minimum floor and faster than that a second
// (4 MiB, and 4 MiB/s, at 64 MiB): new state arriving, as in a login
// storm, whose allocations would otherwise raise the floor and with it the
// storm's peak RSS. A steady load's live heap moves by a few MiB between
// collections, and two collections close together can read a MiB of
// jitter as a fast rate: the growth must be a sixteenth of the floor too.
func growing(was, is uint64, d time.Duration, lo uint64) bool {
	if is <= was || is-was <= lo/16 {
		return false
	}
	d = max(d, minInterval)
	return float64(is-was)*float64(time.Second)/float64(d) > float64(lo/16)
}

// floorFor is the floor for a process that allocated n bytes in d: a
// Window's worth at that rate, between lo and hi. d is taken as at least
// minInterval, so that two collections in a row (debug.FreeOSMemory) do
// not read a rate off a few bytes.
func floorFor(n uint64, d time.Duration, lo, hi uint64) uint64 {
	d = max(d, minInterval)
	f := float64(n) * float64(Window) / float64(d)
	switch {
	case f <= float64(lo):
		return lo
	case f >= float64(hi):
		return hi
	}
	return uint64(f)
}

// percentFor is the GOGC that makes the heap goal at least live +
// floor: floor/live × 100 while the live heap is under the floor, else
// 100.
//
// The runtime's goal is live + (live + stacks + globals) × GOGC/100, and
// never under its 4-MiB minimum heap × GOGC/100, so for a small live heap
// the goal is above live + floor: ~2 × the floor for a live heap of 2
// MiB (an idle relaymesh dev), live + floor × (1 + roots/live) above 4
// MiB. Taking the percentage of live + stacks + globals, and of at least 4
// MiB, makes the goal exactly live + floor, and was tried (stop 41): the
// reconnect storm's last session came back in 2.6-3.8 s against 2.5-2.7
// with this. Likely its cores, whose live heaps are small while they
// allocate fast, collected more often (not profiled). Kept as it was
// measured.
func percentFor(live, floor uint64) int {
	if live == 0 || live >= floor {
		return basePercent
	}
	return int(min(floor*100/live, 1<<20))
}

// newSample is what read reads.
func newSample() []metrics.Sample {
	return []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
}

// read reads s (newSample): the live heap after the last collection and
// the bytes allocated since the process started.
func read(s []metrics.Sample) (live, allocs uint64) {
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}
