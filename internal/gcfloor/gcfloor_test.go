package gcfloor

import (
	"runtime"
	"runtime/debug"
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

// ballast keeps the runtime tests' live heap above the runtime's 4-MiB
// minimum heap: under it the goal a floor sets is far above live + floor
// (percentFor), and a test binary's live heap is ~100 KiB.
var ballast []byte

// startTuner starts a tuner of lo to hi bytes, stopped when the test ends.
func startTuner(t *testing.T, lo, hi uint64) *Tuner {
	t.Helper()
	ballast = make([]byte, 16<<20)
	t.Cleanup(func() { ballast = nil })
	t.Setenv("GOGC", "")
	tu := Start(lo, hi)
	if tu == nil {
		t.Fatal("Start returned nil with GOGC unset")
	}
	t.Cleanup(tu.Stop)
	return tu
}

func liveHeap() uint64 {
	live, _ := read(newSample())
	return live
}

const (
	mib = 1 << 20
	sec = time.Second
)

// TestObserve: the floor each collection sets, over a made-up run.
func TestObserve(t *testing.T) {
	tu := &Tuner{min: 64 * mib, max: 256 * mib}
	t0 := time.Unix(1e9, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, c := range []struct {
		what        string
		live, alloc uint64 // MiB: the live heap, and allocated since start
		at          time.Time
		want        uint64 // MiB
	}{
		{"the first collection: no rate yet", 20, 1000, at(0), 64},
		{"100 MiB a second, live flat", 21, 1150, at(1500 * time.Millisecond), 200},
		{"a burst: 400 MiB in a second", 20, 1550, at(2500 * time.Millisecond), 256},
		{"a login storm: live +8 MiB in a second", 28, 1750, at(3500 * time.Millisecond), 64},
		{"the storm goes on", 36, 1950, at(4500 * time.Millisecond), 64},
		{"the storm's live heap +1 MiB in half a second", 37, 2010, at(5 * time.Second), 64},
		{"and +50 MiB in 1.6 s", 87, 2200, at(6600 * time.Millisecond), 64},
		{"live flat, the growth 1 s behind", 87, 2300, at(7600 * time.Millisecond), 64},
		{"live flat, the growth 2 s behind", 87, 2400, at(8600 * time.Millisecond), 200},
		{"live +3 MiB in a second: a steady load's memtable", 90, 2500, at(9600 * time.Millisecond), 200},
		{"live down", 80, 2600, at(10600 * time.Millisecond), 200},
		{"a forced collection 2 minutes on, quiet", 80, 2720, at(10600*time.Millisecond + 2*time.Minute), 64},
		{"another right after it, next to nothing allocated", 80, 2720, at(10600*time.Millisecond + 2*time.Minute + time.Millisecond), 64},
	} {
		if got := tu.observe(c.live*mib, c.alloc*mib, c.at); got != c.want*mib {
			t.Errorf("%s: floor %d MiB, want %d MiB", c.what, got/mib, c.want)
		}
	}
}

// TestWatcherTick: the watcher's floor is the rate since its tick before.
func TestWatcherTick(t *testing.T) {
	var w watcher
	t0 := time.Unix(1e9, 0)
	if _, ok := w.tick(500*mib, t0, 64*mib, 256*mib); ok {
		t.Fatal("the first tick gave a floor, with no rate to read")
	}
	for i, c := range []struct{ alloc, want uint64 }{
		{800, 256}, // 300 MiB in the second
		{900, 200}, // 100
		{910, 64},  // 10
		{910, 64},  // none
	} {
		f, ok := w.tick(c.alloc*mib, t0.Add(time.Duration(i+1)*sec), 64*mib, 256*mib)
		if !ok || f != c.want*mib {
			t.Errorf("tick %d: floor %d MiB (%v), want %d MiB", i+1, f/mib, ok, c.want)
		}
	}
}

// TestSetLowerOnly: the watcher only lowers the floor, and only by a
// quarter or more; a collection sets it either way.
func TestSetLowerOnly(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(basePercent) })
	tu := &Tuner{min: 64 * mib, max: 256 * mib}
	tu.set(256*mib, 16*mib, false)
	for _, c := range []struct {
		floor     uint64
		lowerOnly bool
		want      uint64
	}{
		{200, true, 256}, // less than a quarter lower
		{192, true, 192}, // a quarter lower
		{256, true, 192}, // higher
		{64, true, 64},
		{256, false, 256}, // a collection raises it
		{64, false, 64},
	} {
		tu.set(c.floor*mib, 16*mib, c.lowerOnly)
		if got := tu.Floor(); got != c.want*mib {
			t.Errorf("set(%d MiB, lowerOnly %v): floor %d MiB, want %d", c.floor, c.lowerOnly, got/mib, c.want)
		}
		if p, want := gogc(), uint64(percentFor(16*mib, tu.Floor())); p != want {
			t.Errorf("set(%d MiB, lowerOnly %v): GOGC %d%%, want %d%%", c.floor, c.lowerOnly, p, want)
		}
	}
}

// TestFloorFollowsAllocation, with the runtime's own collections: fast
// allocation raises the floor above the minimum, and the watcher alone
// brings it back once the allocation stops. The exact floors are
// TestObserve's and TestWatcherTick's: here collections come when the
// runtime runs them, on a machine that may be busy.
func TestFloorFollowsAllocation(t *testing.T) {
	const lo, hi = 64 * mib, 512 * mib
	tu := startTuner(t, lo, hi)
	if l, h := tu.Bounds(); l != lo || h != hi || tu.Floor() != lo {
		t.Fatalf("bounds %d, %d MiB, floor %d MiB; want %d, %d and the minimum", l>>20, h>>20, tu.Floor()>>20, lo>>20, hi>>20)
	}
	waitRuns(t, tu, 0) // a first collection: the rate is measured from here
	// Garbage at about 200 MiB a second, a busy server's rate, until a
	// collection has raised the floor: a 64-MiB floor lets 64 MiB pass
	// between collections, so each one reads the rate, and anything above
	// 32 MiB a second raises it once the live heap has not grown fast for
	// a Window. (Much faster, the objects allocated during a collection's
	// mark, which it counts as live, make the live heap jump by more than
	// the growth rule's 4 MiB.)
	n, r := tu.runs.Load(), tu.rated.Load()
	top := tu.Floor()
	// It must rise to twice the minimum at least: the watcher lowers a
	// floor only by a quarter or more, so one a little above the minimum
	// (a collection reading a rate just over 32 MiB a second on a busy
	// machine) stays.
	for i := 0; i < 4096 && top < 2*lo; i++ {
		sink = make([]byte, mib)
		top = max(top, tu.Floor())
		if i%16 == 15 {
			time.Sleep(80 * time.Millisecond)
		}
	}
	sink = nil
	if runs, rated := tu.runs.Load()-n, tu.rated.Load()-r; top < 2*lo {
		if rated == 0 {
			// On a machine busy enough that a collection's mark phase
			// runs long, what is allocated meanwhile counts as live, and
			// the live heap seems to jump: growth, which keeps the floor
			// at the minimum for 2 s (TestObserve has the rule itself).
			t.Skipf("none of %d collections read the rate: each came within 2 s of one that read fast growth of the live heap; too busy a machine to tell", runs)
		}
		t.Fatalf("the floor rose to %d MiB at most through 4 GiB of garbage; %d of %d collections read the rate; want twice the minimum", top>>20, rated, runs)
	}
	if p := gogc(); p <= uint64(percentFor(liveHeap(), lo)) && tu.Floor() > lo {
		t.Errorf("GOGC %d%% with a floor of %d MiB in force, want above the minimum's %d%%", p, tu.Floor()>>20, percentFor(liveHeap(), lo))
	}
	// Quiet: the watcher lowers the floor within a tick or two. Nothing
	// else would: no collection comes while the goal is far above the
	// live heap and nothing is allocated.
	for deadline := time.Now().Add(10 * time.Second); tu.Floor() != lo; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("floor %d MiB 10 s after the allocation stopped, want the minimum %d MiB", tu.Floor()>>20, lo>>20)
		}
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
		{50 << 20, 51 << 20, 0, false},                     // 1 MiB in no time: jitter, under 4 MiB
		{50 << 20, 55 << 20, 0, true},                      // 5 MiB in no time: taken as 10 ms
		{32 << 20, 36 << 20, 10 * time.Millisecond, false}, // exactly 4 MiB: not more
		{50 << 20, 55 << 20, 2 * time.Second, false},       // 5 MiB in 2 s: 2.5 MiB/s
	} {
		if got := growing(c.was, c.is, c.d, lo); got != c.want {
			t.Errorf("growing(%d → %d MiB in %v) = %v, want %v", c.was>>20, c.is>>20, c.d, got, c.want)
		}
	}
}

// TestFloorStaysWhileLiveGrows, with the runtime's own collections:
// allocating fast while the live heap grows fast (a login storm) leaves
// the floor at the minimum at every collection during the growth.
func TestFloorStaysWhileLiveGrows(t *testing.T) {
	const lo, hi = 64 * mib, 512 * mib
	tu := startTuner(t, lo, hi)
	waitRuns(t, tu, 0)
	var kept [][]byte
	n := tu.runs.Load()
	top := tu.Floor()
	// 1 MiB more live and three times that of garbage at a time, until the
	// tuner has seen three collections (at most 1 GiB more live).
	for i := 0; i < 1024 && tu.runs.Load()-n < 3; i++ {
		kept = append(kept, make([]byte, mib))
		for range 3 {
			sink = make([]byte, mib)
		}
		top = max(top, tu.Floor())
		if i%16 == 15 {
			time.Sleep(time.Millisecond) // let the finalizer goroutine run
		}
	}
	runs := tu.runs.Load() - n
	runtime.KeepAlive(kept)
	sink = nil
	if runs < 3 {
		t.Fatalf("%d collections while 4 GiB was allocated, want 3", runs)
	}
	if top != lo {
		t.Fatalf("floor up to %d MiB while the live heap grew by %d MiB over %d collections, want the minimum %d MiB", top>>20, len(kept), runs, lo>>20)
	}
}
