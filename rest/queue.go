package rest

import (
	"sync"
	"time"
)

// sendQueue admits REST message operations of each app at a fixed rate,
// holding at most bound of them waiting (LeanCloud, 2019–2020: 50 per
// second, rejected beyond 10,000 queued; REST-AND-HOOKS.md §1.7). It is a
// virtual queue: admit hands each request the time its turn comes and the
// request waits for it on its own goroutine, so the queue has no goroutine
// and no timer of its own.
type sendQueue struct {
	interval time.Duration // 0: unlimited
	bound    int

	mu   sync.Mutex
	next map[string]time.Time // guarded by mu; when the app's next turn comes
}

func newSendQueue(perSecond float64, bound int) *sendQueue {
	q := &sendQueue{bound: bound, next: make(map[string]time.Time)}
	if perSecond > 0 {
		q.interval = time.Duration(float64(time.Second) / perSecond)
	}
	return q
}

// admit reserves app's next turn: it returns how long the request waits
// for it, or ok=false when bound requests are already waiting.
func (q *sendQueue) admit(app string, now time.Time) (wait time.Duration, ok bool) {
	if q.interval == 0 {
		return 0, true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.next) > 4096 { // forget apps whose queue has drained
		for a, t := range q.next {
			if !t.After(now) {
				delete(q.next, a)
			}
		}
	}
	at := q.next[app]
	if at.Before(now) {
		at = now
	}
	wait = at.Sub(now)
	// Turns at at, at-interval, ... after now are taken by waiting
	// requests, this one included.
	if waiting := (wait + q.interval - 1) / q.interval; waiting > time.Duration(q.bound) {
		return 0, false
	}
	q.next[app] = at.Add(q.interval)
	return wait, true
}
