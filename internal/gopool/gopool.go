// Package gopool runs functions each on a goroutine of its own, as the go
// statement does, but on goroutines it keeps parked for a while after their
// function returns, so that the next function takes a stack already grown.
//
// Why: a goroutine starts with a small stack (the runtime's average, which
// thousands of idle connections keep at a few KiB) and a request handled
// on it (protobuf, the core's command, Pebble) grows it two or three times
// over, each time copying it and walking its frames. At 5,000 one-to-one
// sends a second on `relaymesh dev`, the goroutines started per request
// (mesh's in-process call, the edge's reader passes) spent 8 % of the
// server's CPU growing stacks (docs/BENCHMARKS.md, stop 36). A parked
// worker's stack is shrunk by the collector only while it uses under a
// quarter of it, so a busy worker keeps its size from one function to the
// next.
//
// A function never waits for a worker: Go hands it to a parked one if there
// is one, and starts a new goroutine if not. The worker parked last is the
// one Go takes, so a steady load keeps as few workers busy as it needs and
// the rest, left without work for Idle, exit: a burst's workers do not stay.
package gopool

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Idle is how long a worker waits parked for a function before it exits.
const Idle = 2 * time.Second

var (
	idleFor atomic.Int64 // 0 is Idle; tests shorten it

	mu     sync.Mutex
	parked []*worker // guarded by mu; in the order they parked (Go takes the last)
)

type worker struct {
	next chan func() // capacity 1: Go hands a function over without waiting
}

// Go runs f on a parked worker, or on a new goroutine if none is parked.
// Like the go statement it never blocks, and f runs concurrently with the
// caller and with every other function given to Go.
func Go(f func()) {
	mu.Lock()
	if n := len(parked); n > 0 {
		w := parked[n-1]
		parked[n-1] = nil
		parked = parked[:n-1]
		mu.Unlock()
		w.next <- f
		return
	}
	mu.Unlock()
	go work(f)
}

// work runs f, then whatever Go hands it, until it has been parked for
// Idle.
func work(f func()) {
	w := &worker{next: make(chan func(), 1)}
	t := time.NewTimer(idle())
	for {
		f()
		f = nil // a parked worker keeps nothing its function held alive
		mu.Lock()
		parked = append(parked, w)
		mu.Unlock()
		t.Reset(idle())
		select {
		case f = <-w.next:
			continue
		case <-t.C:
		}
		mu.Lock()
		i := index(w)
		if i >= 0 {
			// Still parked: no Go can hand it anything now.
			parked = slices.Delete(parked, i, i+1)
			mu.Unlock()
			return
		}
		mu.Unlock()
		// A Go took it just as its time ran out: its function is on the way.
		f = <-w.next
	}
}

func idle() time.Duration {
	if d := idleFor.Load(); d > 0 {
		return time.Duration(d)
	}
	return Idle
}

// index is w's place in parked, -1 if it is not there (mu held). The
// workers that time out are the ones parked longest, near the front.
func index(w *worker) int {
	for i, p := range parked {
		if p == w {
			return i
		}
	}
	return -1
}

// Parked is how many workers are waiting for a function.
func Parked() int {
	mu.Lock()
	defer mu.Unlock()
	return len(parked)
}
