package edge

import "sync"

// Priority classes of the per-connection outbound queue, as LeanCloud's
// GenericCommand.priority (1 HIGH, 2 NORMAL, 3 LOW; 0 or anything else is
// NORMAL). Replies to the client's own requests and session control frames
// (opened, closed, error, goaway) are always HIGH.
type Priority uint8

const (
	PriorityHigh   Priority = 0
	PriorityNormal Priority = 1
	PriorityLow    Priority = 2
	numPriorities           = 3
)

// String names the class for metrics labels.
func (p Priority) String() string {
	switch p {
	case PriorityHigh:
		return "high"
	case PriorityLow:
		return "low"
	}
	return "normal"
}

// priorityOf maps a LeanCloud priority value to a queue class.
func priorityOf(lc int32) Priority {
	switch lc {
	case 1:
		return PriorityHigh
	case 3:
		return PriorityLow
	}
	return PriorityNormal
}

// outFrame is one encoded lcpb.GenericCommand (protobuf bytes; the writer
// applies base64 for the proto2base64 subprotocols).
type outFrame struct {
	b []byte
	p Priority
}

// pushResult says what a push did.
type pushResult uint8

const (
	pushed         pushResult = iota // queued, nothing dropped
	pushedShedding                   // queued after dropping an older, lower-class frame
	droppedNew                       // the new frame itself was dropped
	overflowed                       // HIGH could not fit: the connection must be closed
	queueClosed                      // the queue no longer accepts frames
)

// outQueue is the bounded per-connection outbound queue with three priority
// classes. The writer goroutine pops HIGH before NORMAL before LOW.
//
// Overflow rule (when len == cap):
//   - a new LOW frame is dropped;
//   - a new NORMAL frame evicts the oldest queued LOW frame, or is dropped
//     when there is none;
//   - a new HIGH frame evicts the oldest LOW, else the oldest NORMAL frame;
//     when the queue holds only HIGH frames the queue overflows: it refuses
//     every further frame and the writer closes the connection (after a
//     goaway) so the client reconnects and resyncs from history.
//
// Every dropped frame is counted in dropped[class]. Persisted messages are
// never lost by shedding: they stay in history and unread counts.
type outQueue struct {
	cap    int
	notify chan struct{} // capacity 1; signalled on every state change

	mu       sync.Mutex
	q        [numPriorities][]outFrame // guarded by mu; FIFO per class
	n        int                       // guarded by mu; total queued
	overflow bool                      // guarded by mu
	finish   bool                      // guarded by mu; close once drained
	dropped  [numPriorities]int64      // guarded by mu
}

func newOutQueue(capacity int) *outQueue {
	if capacity < 1 {
		capacity = 1
	}
	return &outQueue{cap: capacity, notify: make(chan struct{}, 1)}
}

func (q *outQueue) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// push queues f following the overflow rule. It returns what happened and,
// when something was dropped, the class of the dropped frame.
func (q *outQueue) push(f outFrame) (pushResult, Priority) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow || q.finish {
		return queueClosed, f.p
	}
	if q.n < q.cap {
		q.q[f.p] = append(q.q[f.p], f)
		q.n++
		q.signal()
		return pushed, f.p
	}
	victim, ok := q.victimLocked(f.p)
	if !ok {
		if f.p == PriorityHigh {
			q.overflow = true
			q.signal()
			return overflowed, f.p
		}
		q.dropped[f.p]++
		return droppedNew, f.p
	}
	q.q[victim][0] = outFrame{}
	q.q[victim] = q.q[victim][1:]
	q.dropped[victim]++
	q.q[f.p] = append(q.q[f.p], f)
	q.signal()
	return pushedShedding, victim
}

// victimLocked picks the class whose oldest frame makes room for a new frame
// of class p: a strictly lower class, LOW first.
func (q *outQueue) victimLocked(p Priority) (Priority, bool) {
	for c := PriorityLow; c > p; c-- {
		if len(q.q[c]) > 0 {
			return c, true
		}
	}
	return 0, false
}

// popState is what pop found.
type popState uint8

const (
	popFrame    popState = iota // f is valid
	popEmpty                    // nothing to do; wait for notify
	popFinish                   // drained after finish: close normally
	popOverflow                 // overflowed: discard and close
)

// pop takes the next frame, HIGH first.
func (q *outQueue) pop() (outFrame, popState) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow {
		for c := range q.q {
			q.q[c] = nil
		}
		q.n = 0
		return outFrame{}, popOverflow
	}
	for c := range q.q {
		if len(q.q[c]) > 0 {
			f := q.q[c][0]
			q.q[c][0] = outFrame{}
			q.q[c] = q.q[c][1:]
			q.n--
			return f, popFrame
		}
	}
	if q.finish {
		return outFrame{}, popFinish
	}
	return outFrame{}, popEmpty
}

// close makes the writer exit once the queue is drained; later pushes are refused.
func (q *outQueue) close() {
	q.mu.Lock()
	q.finish = true
	q.mu.Unlock()
	q.signal()
}

// len reports the number of queued frames.
func (q *outQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// droppedCount reports frames of class p dropped so far.
func (q *outQueue) droppedCount(p Priority) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped[p]
}
