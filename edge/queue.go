package edge

import "github.com/relaymesh/relaymesh/relay/pq"

// Priority classes of the per-connection outbound queue, as LeanCloud's
// GenericCommand.priority (1 HIGH, 2 NORMAL, 3 LOW; 0 or anything else is
// NORMAL; pq.ClassOf). Replies to the client's own requests and session
// control frames (opened, closed, error, goaway) are always HIGH. The
// classes are relay/pq's, which the relay's queue per edge shares.
type Priority = pq.Class

const (
	PriorityHigh   = pq.High
	PriorityNormal = pq.Normal
	PriorityLow    = pq.Low
	numPriorities  = pq.NumClasses
)

// outFrame is one encoded lcpb.GenericCommand (protobuf bytes; the writer
// applies base64 for the proto2base64 subprotocols).
type outFrame struct {
	b []byte
	p Priority
	// dgram: a transient direct, which a WebTransport session sends as a
	// datagram when it fits (wt.go); WebSocket ignores it.
	dgram bool
	// fan: a copy of a delivery to several sessions on this edge, written
	// in the writer pool's fan-out lane (writers.go).
	fan bool
	// at is the server timestamp (Unix ms) of the message a delivered
	// copy carries, for the delivery latency (Metrics.Delivery); zero
	// for every other frame.
	at int64
}

// lane is the writer pool lane for f's turn (writers.go).
func (f *outFrame) lane() int {
	if f.fan {
		return laneFan
	}
	return laneFirst
}

// outQueue is the bounded per-connection outbound queue: a relay/pq queue
// with the OverflowClose policy. The writer goroutine pops HIGH before
// NORMAL before LOW.
//
// Overflow rule (when len == cap; pq's package doc):
//   - a new LOW frame is dropped;
//   - a new NORMAL frame evicts the oldest queued LOW frame, or is dropped
//     when there is none;
//   - a new HIGH frame evicts the oldest LOW, else the oldest NORMAL frame;
//     when the queue holds only HIGH frames the queue overflows: it refuses
//     every further frame and the writer closes the connection (after a
//     goaway) so the client reconnects and resyncs from history.
//
// Every dropped frame is counted by its class (Metrics.Dropped, and the
// queue's own pq.Queue.Dropped). Persisted messages are never lost by
// shedding: they stay in history and unread counts.
type outQueue = pq.Queue[outFrame]

func newOutQueue(capacity int) *outQueue { return pq.New[outFrame](capacity, pq.OverflowClose) }
