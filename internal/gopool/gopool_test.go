package gopool

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// setIdle sets the workers' idle time for one test; when it ends, every
// parked worker is made to exit.
func setIdle(t *testing.T, d time.Duration) {
	old := idleFor.Swap(int64(d))
	t.Cleanup(func() {
		// Each parked worker takes one of the functions (they wait for one
		// another) and parks again, now for a millisecond.
		idleFor.Store(int64(time.Millisecond))
		together(Parked())
		waitParked(t, 0, time.Minute)
		idleFor.Store(old)
	})
}

// waitParked waits until exactly n workers are parked.
func waitParked(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for Parked() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers parked after %v, want %d", Parked(), within, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// together gives Go n functions that each wait until all n have started,
// and returns, once they have ended, how many ran.
func together(n int) int32 {
	var started, ran sync.WaitGroup
	started.Add(n)
	ran.Add(n)
	var count atomic.Int32
	for range n {
		Go(func() {
			started.Done()
			started.Wait() // returns only once all n run at the same time
			count.Add(1)
			ran.Done()
		})
	}
	ran.Wait()
	return count.Load()
}

// TestGo: every function runs once, all at the same time (a function that
// waits for all the others to start does not deadlock the pool); then the
// workers are parked, and later functions run on them, starting no
// goroutine.
func TestGo(t *testing.T) {
	setIdle(t, time.Minute)
	const n = 200
	if c := together(n); c != n {
		t.Fatalf("%d functions ran, want %d", c, n)
	}
	waitParked(t, n, 10*time.Second)
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		Go(wg.Done)
		wg.Wait()
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines %d after 50 functions on parked workers, %d before", after, before)
	}
}

// TestBurstWorkersExit: after a burst of 100 workers, a steady trickle
// (one function every 0.5 ms, each worker's turn every 50 ms if they took
// turns, against an idle time of 300 ms) keeps one or two busy, and the
// rest exit after their idle time.
// Handing functions to the worker parked longest would keep all 100.
func TestBurstWorkersExit(t *testing.T) {
	setIdle(t, 300*time.Millisecond)
	const n = 100
	if c := together(n); c != n {
		t.Fatalf("%d functions ran, want %d", c, n)
	}
	for start := time.Now(); Parked() < n/2; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d of the burst's %d workers parked", Parked(), n)
		}
	}
	var trickle sync.WaitGroup
	deadline := time.Now().Add(10 * time.Second)
	for Parked() > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still parked under a trickle 10 s after a burst of %d", Parked(), n)
		}
		trickle.Add(1)
		Go(trickle.Done)
		time.Sleep(500 * time.Microsecond)
	}
	trickle.Wait()
}

// TestIdleExit: a worker with nothing to do exits after the idle time.
func TestIdleExit(t *testing.T) {
	setIdle(t, 50*time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	Go(wg.Done)
	wg.Wait()
	waitParked(t, 1, 10*time.Second)
	waitParked(t, 0, 10*time.Second)
}

// TestHandOffAtTimeout: functions given just as workers time out (idle
// time 1 ms, gaps of 0 to 2 ms) all run, once each.
func TestHandOffAtTimeout(t *testing.T) {
	setIdle(t, time.Millisecond)
	const n = 5000
	var ran atomic.Int32
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		Go(func() { ran.Add(1); wg.Done() })
		if d := rand.N(2000); d > 1000 {
			time.Sleep(time.Duration(d) * time.Microsecond)
		}
	}
	wg.Wait()
	if r := ran.Load(); r != n {
		t.Fatalf("%d of %d functions ran", r, n)
	}
}

// deep uses about n KiB of stack.
//
//go:noinline
func deep(n int) byte {
	var pad [1000]byte
	pad[n%1000] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[n%1000]
}

var sink atomic.Int32

// BenchmarkGoDeep: a function that needs 32 KiB of stack, on a new
// goroutine each time (go) and through the pool (gopool), one at a time.
func BenchmarkGoDeep(b *testing.B) {
	run := func(b *testing.B, start func(func())) {
		done := make(chan struct{})
		f := func() { sink.Add(int32(deep(32))); done <- struct{}{} }
		for range b.N {
			start(f)
			<-done
		}
	}
	b.Run("go", func(b *testing.B) { run(b, func(f func()) { go f() }) })
	b.Run("gopool", func(b *testing.B) { run(b, Go) })
}
