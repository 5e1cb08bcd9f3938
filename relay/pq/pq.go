// Package pq is the bounded three-class priority queue of every hop that
// sheds: the relay's queue per attached edge (package relay, core → edge)
// and the edge's queue per client connection (package edge, edge → client).
// One type, two overflow policies (Policy), so the rule a reader finds in
// one place is the rule both hops run.
//
// Classes are LeanCloud's message priorities (ClassOf): HIGH before NORMAL
// before LOW, FIFO within a class. Overflow rule (when Len == capacity):
//
//   - a new LOW item is dropped;
//   - a new NORMAL item evicts the oldest queued LOW item, or is dropped
//     when there is none;
//   - a new HIGH item evicts the oldest LOW, else the oldest NORMAL item;
//     when the queue holds only HIGH items the policy decides:
//     DropNew drops the new HIGH item (the relay: its queue is shared by
//     every connection of an edge, so nothing is closed), OverflowClose
//     overflows the queue: it refuses every later item and Pop reports
//     PopOverflow, so its owner closes the connection and the client
//     resyncs from history (the edge).
//
// Every item dropped is counted by its class (Dropped); the hops count
// them again in their own metrics. Persisted messages are never lost by
// shedding: they stay in history and unread counts.
//
// The package imports nothing of relaymesh's, so the relay and the edge
// may both use it (DESIGN.md, "the house").
package pq

import (
	"sync"
	"time"
)

// Class is a priority class. Index per-class counters with it.
type Class uint8

// The classes, highest first; their order is the pop order.
const (
	High   Class = 0
	Normal Class = 1
	Low    Class = 2
	// NumClasses is the number of classes.
	NumClasses = 3
)

// String names the class for logs and metrics labels.
func (c Class) String() string {
	switch c {
	case High:
		return "high"
	case Low:
		return "low"
	}
	return "normal"
}

// ClassOf maps a LeanCloud priority (GenericCommand.priority,
// Delivery.priority: 1 HIGH, 2 NORMAL, 3 LOW; 0 or anything else NORMAL)
// to its class.
func ClassOf(lc int32) Class {
	switch lc {
	case 1:
		return High
	case 3:
		return Low
	}
	return Normal
}

// Policy is what a new HIGH item does when the queue is full of HIGH items.
type Policy uint8

const (
	// DropNew drops the new HIGH item (counted); the queue goes on.
	DropNew Policy = iota
	// OverflowClose overflows the queue: this and every later push is
	// refused and Pop reports PopOverflow.
	OverflowClose
)

// Result says what a push did.
type Result uint8

const (
	Queued     Result = iota // queued, nothing dropped
	QueuedShed               // queued after evicting an older item of a lower class (Outcome.Victim)
	DroppedNew               // the new item itself was dropped
	Overflowed               // OverflowClose: a HIGH item could not fit; the queue refuses everything from now on
	Refused                  // the queue had overflowed or was closed: not queued, not counted
)

// Outcome is what Push did.
type Outcome struct {
	Result Result
	// Victim is the class of the item dropped (QueuedShed, DroppedNew),
	// else the class of the new item.
	Victim Class
	// Seq is, for a HIGH item queued, its place among every HIGH item
	// ever queued (1, 2, …); 0 otherwise. HIGH is FIFO and never evicted,
	// so the item has left the queue once that many HIGH items were
	// popped (the relay's fan-out tracking, core/fanout.go).
	Seq uint64
}

// Dropped reports whether the push dropped an item (the new one or an
// evicted one); Victim is its class.
func (o Outcome) Dropped() bool { return o.Result == QueuedShed || o.Result == DroppedNew }

// State is what Pop found.
type State uint8

const (
	PopItem     State = iota // an item is returned
	PopEmpty                 // nothing queued; wait on Notify
	PopDrained               // closed and drained: the owner finishes normally
	PopOverflow              // overflowed: the queue was emptied; the owner closes
)

// Queue is a bounded priority queue of T. It is safe for concurrent use;
// one consumer pops and waits on Notify.
type Queue[T any] struct {
	cap    int
	policy Policy
	notify chan struct{} // capacity 1; signalled on every state change

	mu       sync.Mutex
	q        [NumClasses][]T   // guarded by mu; FIFO per class
	n        int               // guarded by mu; total queued
	overflow bool              // guarded by mu
	closed   bool              // guarded by mu; finish once drained
	highIn   uint64            // guarded by mu; HIGH items ever queued
	dropped  [NumClasses]int64 // guarded by mu
	space    chan struct{}     // guarded by mu; closed by the next Pop (PushWait waits on it)
	waiters  int               // guarded by mu; PushWaits waiting now
}

// New returns a queue of at most capacity items (at least 1).
func New[T any](capacity int, policy Policy) *Queue[T] {
	if capacity < 1 {
		capacity = 1
	}
	return &Queue[T]{cap: capacity, policy: policy, notify: make(chan struct{}, 1)}
}

// Notify is signalled when an item is queued, the queue overflows or it is
// closed. It has capacity 1: one signal may stand for several changes, so
// the consumer pops until PopEmpty before it waits again.
func (q *Queue[T]) Notify() <-chan struct{} { return q.notify }

func (q *Queue[T]) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// Push queues v as class c following the overflow rule (package doc).
func (q *Queue[T]) Push(v T, c Class) Outcome {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow || q.closed {
		return Outcome{Result: Refused, Victim: c}
	}
	if q.n < q.cap {
		q.n++
		return Outcome{Result: Queued, Victim: c, Seq: q.appendLocked(v, c)}
	}
	for victim := Low; victim > c; victim-- {
		if len(q.q[victim]) > 0 {
			var zero T
			q.q[victim][0] = zero
			q.q[victim] = q.q[victim][1:]
			q.dropped[victim]++
			return Outcome{Result: QueuedShed, Victim: victim, Seq: q.appendLocked(v, c)}
		}
	}
	if c == High && q.policy == OverflowClose {
		q.overflow = true
		q.signal()
		return Outcome{Result: Overflowed, Victim: c}
	}
	q.dropped[c]++
	return Outcome{Result: DroppedNew, Victim: c}
}

// PushWait is Push for a producer that would rather wait than lose a HIGH
// item under DropNew: while the queue is full and holds nothing a new HIGH
// item could evict, it waits for the consumer to pop, for at most wait in
// all; then it pushes as Push does (dropping the item if the queue is still
// full of HIGH). Other classes and policies push at once. waited reports
// whether it had to wait.
func (q *Queue[T]) PushWait(v T, c Class, wait time.Duration) (o Outcome, waited bool) {
	if c != High || q.policy != DropNew || wait <= 0 {
		return q.Push(v, c), false
	}
	var deadline *time.Timer
	for {
		q.mu.Lock()
		if q.overflow || q.closed || q.n < q.cap || len(q.q[Normal]) > 0 || len(q.q[Low]) > 0 {
			q.mu.Unlock()
			break
		}
		if q.space == nil {
			q.space = make(chan struct{})
		}
		ch := q.space
		q.waiters++
		q.mu.Unlock()
		if deadline == nil {
			deadline = time.NewTimer(wait)
			defer deadline.Stop()
		}
		waited = true
		timedOut := false
		select {
		case <-ch:
		case <-deadline.C:
			timedOut = true
		}
		q.mu.Lock()
		q.waiters--
		q.mu.Unlock()
		if timedOut {
			break
		}
	}
	return q.Push(v, c), waited
}

// Waiting reports whether a PushWait is waiting for room now.
func (q *Queue[T]) Waiting() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiters > 0
}

// appendLocked queues v as class c and returns its HIGH sequence number (0
// for other classes).
func (q *Queue[T]) appendLocked(v T, c Class) (seq uint64) {
	q.q[c] = append(q.q[c], v)
	q.signal()
	if c == High {
		q.highIn++
		seq = q.highIn
	}
	return seq
}

// Pop takes the next item, HIGH first.
func (q *Queue[T]) Pop() (v T, c Class, st State) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow {
		for c := range q.q {
			q.q[c] = nil
		}
		q.n = 0
		return v, High, PopOverflow
	}
	for c := range q.q {
		if len(q.q[c]) > 0 {
			v = q.q[c][0]
			var zero T
			q.q[c][0] = zero
			q.q[c] = q.q[c][1:]
			q.n--
			if q.space != nil {
				close(q.space)
				q.space = nil
			}
			return v, Class(c), PopItem
		}
	}
	if q.closed {
		return v, 0, PopDrained
	}
	return v, 0, PopEmpty
}

// Close refuses later pushes; Pop reports PopDrained once the items queued
// before are popped.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// Ready reports whether Pop would return something other than PopEmpty:
// an item, the overflow or the end of a closed queue.
func (q *Queue[T]) Ready() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n > 0 || q.overflow || q.closed
}

// Len reports the number of queued items.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Dropped reports the items of class c dropped so far (evicted or refused
// for room; an overflow drops nothing by itself).
func (q *Queue[T]) Dropped(c Class) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped[c]
}
