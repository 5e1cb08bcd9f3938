package gcfloor

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitRuns waits until the tuner has seen more than n collections,
// forcing them.
func waitRuns(t *testing.T, tu *Tuner, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tu.runs.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("the tuner saw %d collections in 10 s, want more than %d", tu.runs.Load(), n)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

var keep [][]*int

// TestFloor: with a small live heap the GOGC percentage rises so that the
// heap goal is about live + floor; with a live heap above the floor it is
// 100; Stop puts 100 back and tunes no more.
func TestFloor(t *testing.T) {
	t.Setenv("GOGC", "")
	const floor = 256 << 20
	tu := Start(floor, floor)
	if tu == nil {
		t.Fatal("Start returned nil with GOGC unset")
	}
	waitRuns(t, tu, 1)
	small := gogc()
	if small <= 200 {
		t.Fatalf("GOGC %d%% with a live heap of a few MiB and a 256 MiB floor, want far above 100", small)
	}
	// A live heap above the floor: 300 MiB of pointers kept.
	for range 300 {
		keep = append(keep, make([]*int, (1<<20)/8))
	}
	n := tu.runs.Load()
	waitRuns(t, tu, n+1)
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC %d%% with a live heap above the floor, want 100", p)
	}
	keep = nil
	n = tu.runs.Load()
	waitRuns(t, tu, n+1)
	if p := gogc(); p <= 200 {
		t.Fatalf("GOGC %d%% after the live heap shrank again, want far above 100", p)
	}
	tu.Stop()
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC %d%% after Stop, want 100", p)
	}
	n = tu.runs.Load()
	for range 5 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond)
	if got := tu.runs.Load(); got != n || gogc() != 100 {
		t.Fatalf("after Stop the tuner ran %d more times, GOGC %d%%", got-n, gogc())
	}
}

// TestOperatorGOGC: a GOGC in the environment is the operator's choice.
func TestOperatorGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	if tu := Start(64<<20, 256<<20); tu != nil {
		tu.Stop()
		t.Fatal("Start tuned with GOGC set in the environment")
	}
	t.Setenv("GOGC", "")
	if tu := Start(0, 256<<20); tu != nil {
		t.Fatal("Start tuned with a floor of 0")
	}
}

func TestPercentFor(t *testing.T) {
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 64 << 20, 100},
		{16 << 20, 64 << 20, 400},  // goal 16 + 64 MiB
		{32 << 20, 64 << 20, 200},  // goal 32 + 64
		{48 << 20, 64 << 20, 133},  // goal 48 + 64 (floor*100/live, rounded down)
		{64 << 20, 64 << 20, 100},  // goal 2 × live from here on
		{130 << 20, 64 << 20, 100}, // 15,000 idle sessions
		{1, 64 << 20, 1 << 20},     // capped
	} {
		if got := percentFor(c.live, c.floor); got != c.want {
			t.Errorf("percentFor(%d MiB, %d MiB) = %d, want %d", c.live>>20, c.floor>>20, got, c.want)
		}
	}
}

func TestFloorFor(t *testing.T) {
	const lo, hi = 64 << 20, 256 << 20
	for _, c := range []struct {
		n    uint64
		d    time.Duration
		want uint64
	}{
		{0, time.Second, lo},
		{16 << 20, time.Second, lo},             // 32 MiB a Window: the minimum
		{50 << 20, time.Second, 100 << 20},      // 100 MiB a Window
		{100 << 20, 500 * time.Millisecond, hi}, // 400 MiB a Window: the maximum
		{120 << 20, 2 * time.Minute, lo},        // a quiet process's forced collections
		{1 << 20, 0, 200 << 20},                 // no time between: taken as 10 ms
		{64 << 10, 0, lo},                       // two collections in a row, next to nothing allocated
		{200 << 20, 2 * time.Second, 200 << 20}, // 100 MiB a second, as `relaymesh dev` at 5,000 sends a second
		{uint64(1) << 62, time.Nanosecond, hi},  // no overflow
	} {
		if got := floorFor(c.n, c.d, lo, hi); got != c.want {
			t.Errorf("floorFor(%d MiB, %v) = %d MiB, want %d MiB", c.n>>20, c.d, got>>20, c.want>>20)
		}
	}
}

var sink []byte

// startTuner starts a tuner of lo to hi bytes, stopped when the test ends.
func startTuner(t *testing.T, lo, hi uint64) *Tuner {
	t.Helper()
	t.Setenv("GOGC", "")
	tu := Start(lo, hi)
	if tu == nil {
		t.Fatal("Start returned nil with GOGC unset")
	}
	t.Cleanup(tu.Stop)
	return tu
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestFloorFollowsAllocation: a collection after fast allocation raises
// the floor to the maximum, and collections in a quiet spell bring it back
// to the minimum; the GOGC set follows the floor in force.
func TestFloorFollowsAllocation(t *testing.T) {
	const lo, hi = 8 << 20, 512 << 20
	tu := startTuner(t, lo, hi)
	if l, h := tu.Bounds(); l != lo || h != hi || tu.Floor() != lo {
		t.Fatalf("bounds %d, %d MiB, floor %d MiB; want %d, %d and the minimum", l>>20, h>>20, tu.Floor()>>20, lo>>20, hi>>20)
	}
	waitRuns(t, tu, 0) // a first collection: the rate is measured from here
	// 1 GiB of garbage as fast as it comes: over 256 MiB a second.
	n := tu.runs.Load()
	start := time.Now()
	for range 1024 {
		sink = make([]byte, 1<<20)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Skipf("allocating 1 GiB took %v on this machine: too slow to tell a fast rate", d)
	}
	waitRuns(t, tu, n)
	if f := tu.Floor(); f != hi {
		t.Fatalf("floor %d MiB after allocating 1 GiB quickly, want the maximum %d MiB", f>>20, hi>>20)
	}
	// Quiet: the watcher lowers the floor within a tick or two. Nothing
	// else would: the heap goal is ~512 MiB over the live heap, so no
	// collection comes until the lower goal brings one.
	sink = nil
	for deadline := time.Now().Add(5 * time.Second); tu.Floor() != lo; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("floor %d MiB 5 s after the allocation stopped, want the minimum %d MiB", tu.Floor()>>20, lo>>20)
		}
	}
	if p := gogc(); p >= uint64(percentFor(liveHeap(), hi)) {
		t.Errorf("GOGC %d%% with the minimum floor in force, want below the maximum's %d%%", p, percentFor(liveHeap(), hi))
	}

	// Again, then collections 300 ms apart with next to nothing allocated (the
	// first still counts what the loop allocated after its last one).
	n = tu.runs.Load()
	for range 1024 {
		sink = make([]byte, 1<<20)
	}
	waitRuns(t, tu, n)
	sink = nil
	for range 2 {
		time.Sleep(300 * time.Millisecond)
		n = tu.runs.Load()
		runtime.GC()
		for deadline := time.Now().Add(5 * time.Second); tu.runs.Load() <= n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the tuner did not run within 5 s of a collection")
			}
		}
	}
	if f := tu.Floor(); f != lo {
		t.Fatalf("floor %d MiB after a quiet spell, want the minimum %d MiB", f>>20, lo>>20)
	}
}

func TestGrowing(t *testing.T) {
	const lo = 64 << 20 // 4 MiB/s is growing
	for _, c := range []struct {
		was, is uint64
		d       time.Duration
		want    bool
	}{
		{21 << 20, 28 << 20, 1100 * time.Millisecond, true},  // a login storm: 7 MiB in 1.1 s
		{45 << 20, 53 << 20, time.Second, true},              // 8 MiB in 1 s
		{50 << 20, 55 << 20, 1700 * time.Millisecond, false}, // a steady load's memtable filling
		{55 << 20, 50 << 20, time.Second, false},             // shrinking
		{50 << 20, 50 << 20, 0, false},
		{50 << 20, 51 << 20, 0, true}, // 1 MiB in no time: taken as 10 ms
	} {
		if got := growing(c.was, c.is, c.d, lo); got != c.want {
			t.Errorf("growing(%d → %d MiB in %v) = %v, want %v", c.was>>20, c.is>>20, c.d, got, c.want)
		}
	}
}

// TestFloorStaysWhileLiveGrows: allocating fast while the live heap grows
// fast (a login storm) leaves the floor at the minimum.
func TestFloorStaysWhileLiveGrows(t *testing.T) {
	const lo, hi = 8 << 20, 512 << 20
	tu := startTuner(t, lo, hi)
	waitRuns(t, tu, 0)
	var kept [][]byte
	n := tu.runs.Load()
	for range 256 {
		kept = append(kept, make([]byte, 1<<20)) // 256 MiB more live
		for range 3 {
			sink = make([]byte, 1<<20) // and three times that of garbage
		}
	}
	waitRuns(t, tu, n)
	if f := tu.Floor(); f != lo {
		t.Fatalf("floor %d MiB while the live heap grew by 256 MiB, want the minimum %d MiB", f>>20, lo>>20)
	}
	runtime.KeepAlive(kept)
	sink = nil
}
