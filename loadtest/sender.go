package loadtest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// sender is one session sending into one conversation.
type sender struct {
	s     *session
	c     *conv
	pos   int
	label string // cross-region: "from->to" region pair; "" for none
}

// maxInFlight bounds concurrent sends per worker; a send that is due while
// this many are waiting for their ack is skipped and counted in Behind.
const maxInFlight = 4096

// edgeSendBurst is the edge's default per-session send budget (60/min).
const edgeSendBurst = 60

// sendAt sends at rate messages/s in total, round-robin over senders, for
// d or until max messages, then waits for the acks of those in flight.
func (w *worker) sendAt(ctx context.Context, senders []sender, rate float64, d time.Duration, limit int) {
	if len(senders) == 0 || rate <= 0 || limit <= 0 {
		w.idle(ctx, d)
		return
	}
	// The edge allows a session 60 sends a minute (token bucket of 60).
	if per := min(float64(limit), rate*d.Seconds()) / float64(len(senders)); per > edgeSendBurst &&
		rate/float64(len(senders)) > 1 {
		w.noteErr("warning: %.1f msg/s per sender (%d senders) exceeds the edge's 60 sends/min per session; expect 4116 MESSAGE_SENT_QUOTA_EXCEEDED — use more sessions (or --senders) or a lower --rate",
			rate/float64(len(senders)), len(senders))
	}
	w.pace(ctx, rate, d, limit, func(i int) { w.sendOne(senders[i%len(senders)]) })
}

// pace calls send(i) for i = 0, 1, … at rate per second for d or until
// limit calls, at most maxInFlight at a time (a call due while that many
// run is skipped and counted in Behind), then waits for those running.
func (w *worker) pace(ctx context.Context, rate float64, d time.Duration, limit int, send func(i int)) {
	if rate <= 0 || limit <= 0 {
		w.idle(ctx, d)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	issued := 0
	for issued < limit {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := min(int(rate*time.Since(start).Seconds())+1, limit)
		for ; issued < due; issued++ {
			select {
			case sem <- struct{}{}:
			default:
				w.behind.Add(1)
				continue
			}
			i := issued
			wg.Go(func() {
				defer func() { <-sem }()
				send(i)
			})
		}
	}
}

// sendOne sends one ledger-tracked message and records its ack.
func (w *worker) sendOne(sd sender) {
	if sd.s.closed.Load() {
		return
	}
	t0 := time.Now()
	id, seq := w.ledger.Sent(sd.c.cid, len(sd.c.members), sd.c.others(sd.pos), t0)
	if sd.label != "" {
		w.ledger.Label(seq, sd.label)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent, err := sd.s.cl.Send(ctx, sd.c.cid, client.TextMessage(id), client.SendOptions{})
	now := time.Now()
	if err != nil {
		w.sendErrors.Add(1)
		var le *client.Error
		if errors.As(err, &le) {
			w.countCode(le.Code)
		} else {
			w.countKind(errorKind(err))
		}
		w.noteErr("send %s from %s: %v", id, sd.s.id, err)
		return
	}
	w.ledger.Acked(seq, sent.ID, sent.Timestamp, now)
	w.ackH.Record(now.Sub(t0))
	if sd.label != "" {
		w.pair(sd.label).Ack.Record(now.Sub(t0))
	}
	w.ackS.Record(now, now.Sub(t0))
}

// idle waits for d or until ctx ends.
func (w *worker) idle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
