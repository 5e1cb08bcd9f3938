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
	tu := Start(floor)
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
	if tu := Start(64 << 20); tu != nil {
		tu.Stop()
		t.Fatal("Start tuned with GOGC set in the environment")
	}
	t.Setenv("GOGC", "")
	if tu := Start(0); tu != nil {
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
