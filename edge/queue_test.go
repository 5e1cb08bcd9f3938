package edge

import (
	"testing"
	"time"
)

func TestPriorityOf(t *testing.T) {
	for lc, want := range map[int32]Priority{0: PriorityNormal, 1: PriorityHigh, 2: PriorityNormal, 3: PriorityLow, 9: PriorityNormal, -1: PriorityNormal} {
		if got := priorityOf(lc); got != want {
			t.Errorf("priorityOf(%d) = %v, want %v", lc, got, want)
		}
	}
}

func TestQueueShedding(t *testing.T) {
	f := func(p Priority, tag byte) outFrame { return outFrame{b: []byte{tag}, p: p} }
	q := newOutQueue(3)
	steps := []struct {
		name   string
		in     outFrame
		res    pushResult
		victim Priority // meaningful when something was dropped
	}{
		{"low fits", f(PriorityLow, 'a'), pushed, 0},
		{"low fits", f(PriorityLow, 'b'), pushed, 0},
		{"normal fits", f(PriorityNormal, 'c'), pushed, 0},
		{"full: new low is dropped", f(PriorityLow, 'x'), droppedNew, PriorityLow},
		{"full: normal evicts oldest low", f(PriorityNormal, 'd'), pushedShedding, PriorityLow},
		{"full: high evicts the last low", f(PriorityHigh, 'e'), pushedShedding, PriorityLow},
		{"full, no low: new normal is dropped", f(PriorityNormal, 'y'), droppedNew, PriorityNormal},
		{"full, no low: high evicts oldest normal", f(PriorityHigh, 'g'), pushedShedding, PriorityNormal},
		{"full: high evicts the last normal", f(PriorityHigh, 'h'), pushedShedding, PriorityNormal},
		{"only high: high overflows", f(PriorityHigh, 'z'), overflowed, PriorityHigh},
		{"after overflow: refused", f(PriorityHigh, 'w'), queueClosed, PriorityHigh},
	}
	for _, s := range steps {
		res, victim := q.push(s.in)
		if res != s.res {
			t.Fatalf("%s: got result %d, want %d", s.name, res, s.res)
		}
		if (res == droppedNew || res == pushedShedding) && victim != s.victim {
			t.Fatalf("%s: dropped class %v, want %v", s.name, victim, s.victim)
		}
	}
	if got := q.droppedCount(PriorityLow); got != 3 {
		t.Errorf("got %d LOW drops, want 3", got)
	}
	if got := q.droppedCount(PriorityNormal); got != 3 {
		t.Errorf("got %d NORMAL drops, want 3", got)
	}
	if got := q.droppedCount(PriorityHigh); got != 0 {
		t.Errorf("got %d HIGH drops, want 0", got)
	}
	if _, st := q.pop(); st != popOverflow {
		t.Fatalf("got pop state %d, want overflow", st)
	}
}

func TestQueuePopOrderAndFinish(t *testing.T) {
	q := newOutQueue(10)
	for _, x := range []outFrame{{[]byte("l1"), PriorityLow}, {[]byte("n1"), PriorityNormal}, {[]byte("h1"), PriorityHigh}, {[]byte("n2"), PriorityNormal}, {[]byte("h2"), PriorityHigh}} {
		q.push(x)
	}
	q.close()
	if res, _ := q.push(outFrame{[]byte("late"), PriorityHigh}); res != queueClosed {
		t.Fatalf("push after close: got %d, want refused", res)
	}
	var got []string
	for {
		f, st := q.pop()
		if st == popFinish {
			break
		}
		if st != popFrame {
			t.Fatalf("got pop state %d", st)
		}
		got = append(got, string(f.b))
	}
	want := []string{"h1", "h2", "n1", "n2", "l1"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if q.len() != 0 {
		t.Fatalf("len %d after drain", q.len())
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(2, t0)
	first, second, third := b.take(t0), b.take(t0), b.take(t0)
	if !first || !second || third {
		t.Fatalf("takes at t0: %v %v %v, want exactly 2", first, second, third)
	}
	if !b.take(t0.Add(30 * time.Second)) { // refills 1 per 30 s
		t.Fatal("want a token after 30 s")
	}
	if b.take(t0.Add(30 * time.Second)) {
		t.Fatal("want no second token after 30 s")
	}
	off := newBucket(-1, t0)
	for range 100 {
		if !off.take(t0) {
			t.Fatal("disabled bucket refused")
		}
	}
}

func BenchmarkQueuePushPop(b *testing.B) {
	q := newOutQueue(1024)
	f := outFrame{b: make([]byte, 64), p: PriorityNormal}
	b.ReportAllocs()
	for range b.N {
		q.push(f)
		q.pop()
	}
}
