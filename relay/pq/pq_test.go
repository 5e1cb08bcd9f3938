package pq

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestClassOf(t *testing.T) {
	for lc, want := range map[int32]Class{0: Normal, 1: High, 2: Normal, 3: Low, 9: Normal, -1: Normal} {
		if got := ClassOf(lc); got != want {
			t.Errorf("ClassOf(%d) = %v, want %v", lc, got, want)
		}
	}
}

// popAll drains q and returns the items in pop order.
func popAll(q *Queue[string]) []string {
	var out []string
	for {
		v, _, st := q.Pop()
		if st != PopItem {
			return out
		}
		out = append(out, v)
	}
}

// TestDropNew drives the relay's policy step by step: each push's
// outcome, then the pop order (HIGH > NORMAL > LOW, FIFO within a class).
// (Moved with the relay queue from core/relayqueue_test.go.)
func TestDropNew(t *testing.T) {
	type push struct {
		name    string
		class   Class
		dropped bool
		victim  Class // when dropped
	}
	tests := []struct {
		name   string
		cap    int
		pushes []push
		want   []string // pop order after the pushes
	}{
		{"order by class, FIFO within", 8, []push{
			{name: "l1", class: Low}, {name: "n1", class: Normal}, {name: "h1", class: High},
			{name: "l2", class: Low}, {name: "n2", class: Normal}, {name: "h2", class: High},
		}, []string{"h1", "h2", "n1", "n2", "l1", "l2"}},
		{"full: a new LOW is dropped", 2, []push{
			{name: "l1", class: Low}, {name: "l2", class: Low},
			{name: "l3", class: Low, dropped: true, victim: Low},
		}, []string{"l1", "l2"}},
		{"full: a NORMAL evicts the oldest LOW", 3, []push{
			{name: "l1", class: Low}, {name: "n1", class: Normal}, {name: "l2", class: Low},
			{name: "n2", class: Normal, dropped: true, victim: Low},
		}, []string{"n1", "n2", "l2"}},
		{"full, no LOW: a NORMAL is dropped", 2, []push{
			{name: "n1", class: Normal}, {name: "h1", class: High},
			{name: "n2", class: Normal, dropped: true, victim: Normal},
		}, []string{"h1", "n1"}},
		{"full: a HIGH evicts LOW before NORMAL", 3, []push{
			{name: "n1", class: Normal}, {name: "l1", class: Low}, {name: "n2", class: Normal},
			{name: "h1", class: High, dropped: true, victim: Low},
			{name: "h2", class: High, dropped: true, victim: Normal},
		}, []string{"h1", "h2", "n2"}},
		{"full of HIGH: a new HIGH is dropped", 2, []push{
			{name: "h1", class: High}, {name: "h2", class: High},
			{name: "h3", class: High, dropped: true, victim: High},
			{name: "l1", class: Low, dropped: true, victim: Low},
			{name: "n1", class: Normal, dropped: true, victim: Normal},
		}, []string{"h1", "h2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New[string](tt.cap, DropNew)
			for _, p := range tt.pushes {
				o := q.Push(p.name, p.class)
				if o.Dropped() != p.dropped || (o.Dropped() && o.Victim != p.victim) {
					t.Fatalf("push %s: got dropped=%v victim=%v, want dropped=%v victim=%v",
						p.name, o.Dropped(), o.Victim, p.dropped, p.victim)
				}
				if n := q.Len(); n > tt.cap {
					t.Fatalf("push %s: len %d over cap %d", p.name, n, tt.cap)
				}
			}
			if got := popAll(q); !slices.Equal(got, tt.want) {
				t.Fatalf("pop order: got %v, want %v", got, tt.want)
			}
			if n := q.Len(); n != 0 {
				t.Fatalf("len after draining: %d", n)
			}
		})
	}
}

// TestDropNewBounded pushes far more than the capacity in a mix and
// checks the bound, that no HIGH is lost while lower classes can make room,
// and that pushes minus drops equal what pops.
func TestDropNewBounded(t *testing.T) {
	const capacity = 16
	q := New[string](capacity, DropNew)
	var dropped [NumClasses]int
	// 10% HIGH, 40% NORMAL, 50% LOW; a consumer taking one in three.
	mix := []Class{High, Normal, Low, Low, Normal, Low, Normal, Low, Normal, Low}
	pushed, popped := 0, 0
	for i := range 1000 {
		if o := q.Push(fmt.Sprint(i), mix[i%len(mix)]); o.Dropped() {
			dropped[o.Victim]++
		}
		pushed++
		if q.Len() > capacity {
			t.Fatalf("len %d over cap", q.Len())
		}
		if i%3 == 0 {
			if _, _, st := q.Pop(); st == PopItem {
				popped++
			}
		}
	}
	rest := len(popAll(q))
	if sum := dropped[0] + dropped[1] + dropped[2]; pushed-sum != popped+rest {
		t.Fatalf("pushed %d - dropped %v != popped %d + rest %d", pushed, dropped, popped, rest)
	}
	for c := range Class(NumClasses) {
		if got := q.Dropped(c); got != int64(dropped[c]) {
			t.Errorf("Dropped(%v) = %d, want %d", c, got, dropped[c])
		}
	}
	if dropped[High] != 0 || dropped[Low] == 0 {
		t.Fatalf("dropped %v: want LOW shed and no HIGH lost", dropped)
	}
}

// TestOverflowClose drives the edge's policy (moved from
// edge/queue_test.go): shedding as DropNew, but a HIGH that cannot fit
// overflows the queue, which then refuses everything.
func TestOverflowClose(t *testing.T) {
	q := New[byte](3, OverflowClose)
	steps := []struct {
		name   string
		class  Class
		tag    byte
		res    Result
		victim Class // meaningful when something was dropped
	}{
		{"low fits", Low, 'a', Queued, 0},
		{"low fits", Low, 'b', Queued, 0},
		{"normal fits", Normal, 'c', Queued, 0},
		{"full: new low is dropped", Low, 'x', DroppedNew, Low},
		{"full: normal evicts oldest low", Normal, 'd', QueuedShed, Low},
		{"full: high evicts the last low", High, 'e', QueuedShed, Low},
		{"full, no low: new normal is dropped", Normal, 'y', DroppedNew, Normal},
		{"full, no low: high evicts oldest normal", High, 'g', QueuedShed, Normal},
		{"full: high evicts the last normal", High, 'h', QueuedShed, Normal},
		{"only high: high overflows", High, 'z', Overflowed, High},
		{"after overflow: refused", High, 'w', Refused, High},
	}
	for _, s := range steps {
		o := q.Push(s.tag, s.class)
		if o.Result != s.res {
			t.Fatalf("%s: got result %d, want %d", s.name, o.Result, s.res)
		}
		if (o.Result == DroppedNew || o.Result == QueuedShed) && o.Victim != s.victim {
			t.Fatalf("%s: dropped class %v, want %v", s.name, o.Victim, s.victim)
		}
	}
	if got := q.Dropped(Low); got != 3 {
		t.Errorf("got %d LOW drops, want 3", got)
	}
	if got := q.Dropped(Normal); got != 3 {
		t.Errorf("got %d NORMAL drops, want 3", got)
	}
	if got := q.Dropped(High); got != 0 {
		t.Errorf("got %d HIGH drops, want 0", got)
	}
	if _, _, st := q.Pop(); st != PopOverflow {
		t.Fatalf("got pop state %d, want overflow", st)
	}
	if q.Len() != 0 {
		t.Fatalf("len %d after an overflow pop, want 0", q.Len())
	}
}

// TestPopOrderAndClose: HIGH > NORMAL > LOW, FIFO within a class; after
// Close pushes are refused and Pop drains, then reports PopDrained.
func TestPopOrderAndClose(t *testing.T) {
	q := New[string](10, OverflowClose)
	for _, x := range []struct {
		v string
		c Class
	}{{"l1", Low}, {"n1", Normal}, {"h1", High}, {"n2", Normal}, {"h2", High}} {
		q.Push(x.v, x.c)
	}
	q.Close()
	if o := q.Push("late", High); o.Result != Refused {
		t.Fatalf("push after close: got %d, want refused", o.Result)
	}
	var got []string
	for {
		v, _, st := q.Pop()
		if st == PopDrained {
			break
		}
		if st != PopItem {
			t.Fatalf("got pop state %d", st)
		}
		got = append(got, v)
	}
	if want := []string{"h1", "h2", "n1", "n2", "l1"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if q.Len() != 0 {
		t.Fatalf("len %d after drain", q.Len())
	}
}

// TestSeq: HIGH items queued (evicting or not) are numbered 1, 2, … in
// push order; others and dropped HIGH items get 0; Pop says the class.
func TestSeq(t *testing.T) {
	q := New[string](3, DropNew)
	for _, s := range []struct {
		v    string
		c    Class
		want uint64
	}{
		{"h1", High, 1}, {"n1", Normal, 0}, {"l1", Low, 0},
		{"h2", High, 2}, // evicts l1
		{"h3", High, 3}, // evicts n1
		{"h4", High, 0}, // dropped: only HIGH queued
	} {
		if got := q.Push(s.v, s.c).Seq; got != s.want {
			t.Fatalf("push %s: seq %d, want %d", s.v, got, s.want)
		}
	}
	for _, want := range []string{"h1", "h2", "h3"} {
		v, c, st := q.Pop()
		if st != PopItem || v != want || c != High {
			t.Fatalf("pop: got %q %v %d, want %q high", v, c, st, want)
		}
	}
}

// TestNotify: a push signals Notify; a signal is not lost when no one
// waits, and several pushes leave one signal.
func TestNotify(t *testing.T) {
	q := New[int](4, DropNew)
	select {
	case <-q.Notify():
		t.Fatal("signalled before any push")
	default:
	}
	q.Push(1, Normal)
	q.Push(2, Normal)
	select {
	case <-q.Notify():
	default:
		t.Fatal("no signal after a push")
	}
	select {
	case <-q.Notify():
		t.Fatal("two signals for two pushes; want one standing signal")
	default:
	}
}

func BenchmarkPushPop(b *testing.B) {
	type frame struct {
		b []byte
		c Class
	}
	q := New[frame](1024, OverflowClose)
	f := frame{b: make([]byte, 64), c: Normal}
	b.ReportAllocs()
	for range b.N {
		q.Push(f, f.c)
		q.Pop()
	}
}

// TestPushWait: a HIGH push into a DropNew queue full of HIGH waits for the
// consumer instead of being dropped; with nobody popping it is dropped once
// its wait ends (counted); with something to evict, or for another class,
// it never waits.
func TestPushWait(t *testing.T) {
	q := New[int](2, DropNew)
	q.Push(1, High)
	q.Push(2, High)
	type res struct {
		o      Outcome
		waited bool
	}
	done := make(chan res, 1)
	go func() {
		o, w := q.PushWait(3, High, time.Minute)
		done <- res{o, w}
	}()
	// Pop once the waiter is parked (it made q.space), so the push cannot
	// have gone in before the pop.
	for !q.Waiting() {
		time.Sleep(time.Millisecond)
	}
	if v, _, st := q.Pop(); st != PopItem || v != 1 {
		t.Fatalf("pop: %v %v", v, st)
	}
	r := <-done
	if r.o.Result != Queued || !r.waited {
		t.Fatalf("PushWait: %+v waited %v, want queued after a wait", r.o, r.waited)
	}
	if q.Len() != 2 || q.Dropped(High) != 0 {
		t.Fatalf("len %d, HIGH dropped %d; want 2, 0", q.Len(), q.Dropped(High))
	}
	for _, want := range []int{2, 3} {
		if v, _, _ := q.Pop(); v != want {
			t.Fatalf("pop: got %d, want %d (order kept)", v, want)
		}
	}

	// Nobody pops: dropped when the wait ends.
	q.Push(4, High)
	q.Push(5, High)
	if o, w := q.PushWait(6, High, 20*time.Millisecond); o.Result != DroppedNew || !w {
		t.Fatalf("PushWait with nobody popping: %+v waited %v, want dropped after a wait", o, w)
	}
	if q.Dropped(High) != 1 {
		t.Fatalf("HIGH dropped %d, want 1", q.Dropped(High))
	}

	// Something to evict, another class, another policy: no wait.
	q2 := New[int](2, DropNew)
	q2.Push(1, High)
	q2.Push(2, Low)
	if o, w := q2.PushWait(3, High, time.Minute); o.Result != QueuedShed || w {
		t.Fatalf("PushWait with a LOW to evict: %+v waited %v", o, w)
	}
	if o, w := q2.PushWait(4, Normal, time.Minute); o.Result != DroppedNew || w {
		t.Fatalf("PushWait NORMAL into a queue full of HIGH: %+v waited %v", o, w)
	}
	q3 := New[int](1, OverflowClose)
	q3.Push(1, High)
	if o, w := q3.PushWait(2, High, time.Minute); o.Result != Overflowed || w {
		t.Fatalf("PushWait under OverflowClose: %+v waited %v", o, w)
	}
}
