// Package gcfloor gives the Go collector a heap floor: while what survives
// a collection is small, the next one waits until floor bytes more have
// been allocated, instead of the live heap's size more (GOGC=100).
//
// Why: a relaymesh process under load keeps a small live heap (~25 MiB for
// `relaymesh dev` at 5,000 sends a second) and allocates ~100 MiB a
// second, so at GOGC=100 it collected five times a second, and each
// collection's mark phase took a share of the CPU the sends were waiting
// for (docs/BENCHMARKS.md, stop 31). A floor of 64 MiB makes those
// collections rare for at most 64 MiB of extra heap; once the live heap is
// larger than the floor (15,000 idle sessions hold ~130 MiB) the collector
// runs at GOGC=100 as before, so memory per session does not change.
//
// How: after every collection (a finalizer on an object made unreachable
// at each one) it sets the GOGC percentage to max(100, floor/live × 100),
// so the heap goal is live + max(live, floor). An operator's own GOGC
// (the environment variable) wins: Start then does nothing.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// DefaultFloor is the floor the relaymesh commands start with.
const DefaultFloor = 64 << 20

// basePercent is Go's default GOGC, the setting above the floor.
const basePercent = 100

// Tuner keeps the floor until Stop.
type Tuner struct {
	floor   uint64
	stopped atomic.Bool
	runs    atomic.Uint64 // collections seen, for tests
	sample  []metrics.Sample
}

// Start keeps a heap floor of floor bytes from the next collection on. It
// returns nil (no tuning) when floor is 0 or GOGC is set in the
// environment.
func Start(floor uint64) *Tuner {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return nil
	}
	t := &Tuner{floor: floor, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.arm()
	return t
}

// Stop ends the tuning and puts GOGC back to 100. A nil Tuner does
// nothing.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
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
	metrics.Read(t.sample)
	live := t.sample[0].Value.Uint64()
	debug.SetGCPercent(percentFor(live, t.floor))
	t.runs.Add(1)
}

// percentFor is the GOGC that makes the heap goal live + max(live, floor).
// Below the floor that is floor/live × 100, which is then above 100.
func percentFor(live, floor uint64) int {
	if live == 0 || live >= floor {
		return basePercent
	}
	return int(min(floor*100/live, 1<<20))
}
