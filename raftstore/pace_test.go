package raftstore

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// openPaced opens a DB on a pacer of the given share whose clock moves a
// millisecond at every look, as if each write were a millisecond of work,
// and whose sleeps move the clock and are added up.
func openPaced(t *testing.T, share float64, backlogL0 int) (*pebble.DB, *compactionPacer, *time.Duration, *int) {
	t.Helper()
	p := newCompactionPacer(vfs.NewMem(), share, backlogL0)
	var slept time.Duration
	var mu sync.Mutex
	var looks int
	clock := time.Now()
	p.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		looks++
		clock = clock.Add(time.Millisecond)
		return clock
	}
	p.sleepFor = func(d time.Duration) { mu.Lock(); defer mu.Unlock(); slept += d; clock = clock.Add(d) }
	o := &pebble.Options{DisableAutomaticCompactions: true}
	p.install(o)
	db, err := pebble.Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	p.db.Store(db)
	t.Cleanup(func() { db.Close() })
	return db, p, &slept, &looks
}

func writeFlush(t *testing.T, db *pebble.DB, rounds, keys int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 1000)
	for r := 0; r < rounds; r++ {
		for i := 0; i < keys; i++ {
			for j := range val {
				val[j] = byte(rng.Uint32())
			}
			if err := db.Set(fmt.Appendf(nil, "k%05d", i), val, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompactionPacer: a compaction's tables are written at the pacer's
// share of the time (it sleeps 3 ms for each 1 ms of work at a quarter);
// a flush's are never paced.
func TestCompactionPacer(t *testing.T) {
	db, p, slept, looks := openPaced(t, 0.25, 100)
	writeFlush(t, db, 3, 10000) // ~10 MB a flush
	if p.paced.Load() != 0 || *slept != 0 {
		t.Fatalf("flushes were paced: %d bytes, slept %v", p.paced.Load(), *slept)
	}
	if err := db.Compact([]byte("k"), []byte("l"), true); err != nil {
		t.Fatal(err)
	}
	paced := p.paced.Load()
	if paced < 9<<20 {
		t.Fatalf("a compaction of ~10 MB paced %d bytes", paced)
	}
	// A write looks at the clock before it and again after its sleep, so
	// each write after a table's first is charged 1 ms of work, and at a
	// quarter sleeps 3 ms.
	writes := *looks / 2
	want := time.Duration(writes) * 3 * time.Millisecond
	if *slept < want*97/100 || *slept > want {
		t.Fatalf("paced %d bytes in ~%d writes at a quarter: slept %v, want about %v", paced, writes, *slept, want)
	}
	if p.waited.Load() != int64(*slept) {
		t.Fatalf("waited %v, slept %v", time.Duration(p.waited.Load()), *slept)
	}
	if n := len(p.created); n != 0 {
		t.Fatalf("%d tables left in the pacer's map", n)
	}
}

// TestCompactionPacerBacklog: with L0 at the backlog count, compactions
// run flat out.
func TestCompactionPacerBacklog(t *testing.T) {
	db, p, slept, _ := openPaced(t, 0.25, 2)
	writeFlush(t, db, 3, 3000)
	if err := db.Compact([]byte("k"), []byte("l"), true); err != nil {
		t.Fatal(err)
	}
	if p.paced.Load() != 0 || *slept != 0 || p.unpaced.Load() < 2<<20 {
		t.Fatalf("L0 behind: paced %d, unpaced %d bytes, slept %v", p.paced.Load(), p.unpaced.Load(), *slept)
	}
}

// TestCompactionPacerClosing: once the DB is closing, a compaction runs
// flat out (Pebble's Close waits for it).
func TestCompactionPacerClosing(t *testing.T) {
	db, p, slept, _ := openPaced(t, 0.25, 100)
	writeFlush(t, db, 3, 3000)
	p.closing.Store(true)
	if err := db.Compact([]byte("k"), []byte("l"), true); err != nil {
		t.Fatal(err)
	}
	if p.paced.Load() != 0 || *slept != 0 || p.unpaced.Load() < 2<<20 {
		t.Fatalf("closing: paced %d, unpaced %d bytes, slept %v", p.paced.Load(), p.unpaced.Load(), *slept)
	}
}
