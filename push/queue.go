package push

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/metric"
)

// DefaultQueueSize is the bound of a Queue when QueueConfig.Size is zero.
const DefaultQueueSize = 1024

// QueueConfig configures a Queue. Zero fields take the defaults.
type QueueConfig struct {
	Size    int          // requests waiting at most; DefaultQueueSize
	Workers int          // concurrent pushes; 1
	Logger  *slog.Logger // failures at Debug; slog.Default()
}

// Queue is a bounded queue in front of a Provider; it is itself a Provider
// whose Push never blocks. When full, the oldest waiting request is dropped.
type Queue struct {
	p      Provider
	logger *slog.Logger
	ctx    context.Context // canceled by Close; bounds pushes in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers

	mu     sync.Mutex
	cond   *sync.Cond // on mu: a request is waiting or the queue closed
	buf    []Request  // guarded by mu; ring of capacity Size
	head   int        // guarded by mu; index of the oldest request
	n      int        // guarded by mu; requests waiting
	closed bool       // guarded by mu

	enqueued, dropped, sent, failed, discarded atomic.Int64
	// latency times the provider's Push of each request: [0] those sent,
	// [1] those failed.
	latency [2]metric.Latency
}

// QueueStats are a Queue's counters.
type QueueStats struct {
	Enqueued  int64 // requests accepted
	Dropped   int64 // oldest requests dropped because the queue was full
	Sent      int64 // requests the provider accepted
	Failed    int64 // requests the provider failed, or canceled by Close
	Discarded int64 // requests still waiting at Close
	Waiting   int   // requests waiting now

	// SentLatency and FailedLatency are how long the provider's Push
	// took for the requests sent and those failed (from a worker taking
	// the request to the provider's verdict; not the wait in the queue).
	// A provider that queues requests itself (APNs, FCM) answers at once.
	SentLatency, FailedLatency metric.LatencySnapshot
}

// NewQueue starts a Queue feeding p. Close stops it.
func NewQueue(p Provider, cfg QueueConfig) *Queue {
	if cfg.Size <= 0 {
		cfg.Size = DefaultQueueSize
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q := &Queue{p: p, logger: cfg.Logger, buf: make([]Request, cfg.Size)}
	q.cond = sync.NewCond(&q.mu)
	q.ctx, q.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		q.wg.Go(q.worker)
	}
	return q
}

// Push enqueues r without blocking; ctx is not used. It returns ErrClosed
// after Close. The queue keeps r's slices: the caller must not modify them.
func (q *Queue) Push(_ context.Context, r Request) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if q.n == len(q.buf) {
		q.buf[q.head] = Request{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.dropped.Add(1)
	}
	q.buf[(q.head+q.n)%len(q.buf)] = r
	q.n++
	q.enqueued.Add(1)
	q.mu.Unlock()
	q.cond.Signal()
	return nil
}

// Close stops the workers, canceling pushes in flight, discards the requests
// still waiting, and returns once the workers have exited.
func (q *Queue) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		q.discarded.Add(int64(q.n))
		clear(q.buf)
		q.n = 0
	}
	q.mu.Unlock()
	q.cancel()
	q.cond.Broadcast()
	q.wg.Wait()
}

// Stats returns the counters.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	n := q.n
	q.mu.Unlock()
	return QueueStats{
		Enqueued: q.enqueued.Load(), Dropped: q.dropped.Load(), Sent: q.sent.Load(),
		Failed: q.failed.Load(), Discarded: q.discarded.Load(), Waiting: n,
		SentLatency: q.latency[0].Snapshot(), FailedLatency: q.latency[1].Snapshot(),
	}
}

func (q *Queue) worker() {
	for {
		r, ok := q.next()
		if !ok {
			return
		}
		start := time.Now()
		err := q.p.Push(q.ctx, r)
		if err != nil {
			q.latency[1].Observe(time.Since(start))
			q.failed.Add(1)
			q.logger.LogAttrs(q.ctx, slog.LevelDebug, "push failed",
				slog.String("app", r.AppID), slog.String("conv", r.ConvID), slog.Any("err", err))
			continue
		}
		q.latency[0].Observe(time.Since(start))
		q.sent.Add(1)
	}
}

// next waits for the oldest request; ok is false once the queue is closed.
func (q *Queue) next() (r Request, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return Request{}, false
	}
	r = q.buf[q.head]
	q.buf[q.head] = Request{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return r, true
}
