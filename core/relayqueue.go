package core

import (
	"sync"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// RelayClass is the class of a delivery in an edge's relay queue (the
// core→edge hop). Index Stats.DroppedByPriority with it.
type RelayClass uint8

const (
	RelayHigh   RelayClass = 0
	RelayNormal RelayClass = 1
	RelayLow    RelayClass = 2
	// NumRelayClasses is the number of relay queue classes.
	NumRelayClasses = 3
)

// String names the class for logs and metrics labels.
func (p RelayClass) String() string {
	switch p {
	case RelayHigh:
		return "high"
	case RelayLow:
		return "low"
	}
	return "normal"
}

// roomClass maps a chatroom message's LeanCloud priority (1 HIGH, 2 NORMAL,
// 3 LOW; 0 or anything else NORMAL) to its relay class. Every delivery that
// is not chatroom traffic is RelayHigh (core/doc.go, "Relay queue").
func roomClass(lc int32) RelayClass {
	switch lc {
	case 1:
		return RelayHigh
	case 3:
		return RelayLow
	}
	return RelayNormal
}

// relayQueue is the bounded per-edge delivery queue with three classes. The
// edge link's sender goroutine pops HIGH before NORMAL before LOW, FIFO
// within a class.
//
// Overflow rule (when len == cap):
//   - a new LOW delivery is dropped;
//   - a new NORMAL delivery evicts the oldest queued LOW one, or is dropped
//     when there is none;
//   - a new HIGH delivery evicts the oldest LOW, else the oldest NORMAL one;
//     when the queue holds only HIGH deliveries the new one is dropped.
//
// push reports the class of what it dropped, if anything, so the caller
// counts it (Stats.DroppedByPriority). Unlike the edge's per-connection
// queue (edge/queue.go) nothing is closed on a HIGH overflow: the queue is
// shared by every connection of the edge.
type relayQueue struct {
	cap    int
	notify chan struct{} // capacity 1; signalled when a delivery is queued

	mu     sync.Mutex
	q      [NumRelayClasses][]*meshpb.Delivery // guarded by mu; FIFO per class
	n      int                                 // guarded by mu; total queued
	highIn uint64                              // guarded by mu; HIGH deliveries ever queued (fanout.go)
}

func newRelayQueue(capacity int) *relayQueue {
	if capacity < 1 {
		capacity = 1
	}
	return &relayQueue{cap: capacity, notify: make(chan struct{}, 1)}
}

func (q *relayQueue) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// push queues d as class p following the overflow rule. dropped says
// whether a delivery was dropped (d itself or an evicted older one) and
// victim is its class.
func (q *relayQueue) push(d *meshpb.Delivery, p RelayClass) (victim RelayClass, dropped bool) {
	_, victim, dropped = q.pushSeq(d, p)
	return victim, dropped
}

// pushSeq is push that also returns, for a HIGH delivery it queued, its
// place among every HIGH delivery ever queued (1, 2, …; 0 when d was
// dropped or is not HIGH). HIGH is FIFO and never evicted, so d has left
// the queue once that many HIGH deliveries were popped.
func (q *relayQueue) pushSeq(d *meshpb.Delivery, p RelayClass) (seq uint64, victim RelayClass, dropped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	queued := func() {
		q.q[p] = append(q.q[p], d)
		q.signal()
		if p == RelayHigh {
			q.highIn++
			seq = q.highIn
		}
	}
	if q.n < q.cap {
		queued()
		q.n++
		return seq, p, false
	}
	for c := RelayLow; c > p; c-- {
		if len(q.q[c]) > 0 {
			q.q[c][0] = nil
			q.q[c] = q.q[c][1:]
			queued()
			return seq, c, true
		}
	}
	return 0, p, true
}

// pop takes the next delivery, HIGH first; nil when the queue is empty.
func (q *relayQueue) pop() *meshpb.Delivery {
	d, _ := q.popClass()
	return d
}

// popClass is pop that also says the delivery's class.
func (q *relayQueue) popClass() (*meshpb.Delivery, RelayClass) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for c := range q.q {
		if len(q.q[c]) > 0 {
			d := q.q[c][0]
			q.q[c][0] = nil
			q.q[c] = q.q[c][1:]
			q.n--
			return d, RelayClass(c)
		}
	}
	return nil, 0
}

// len reports the number of queued deliveries.
func (q *relayQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
