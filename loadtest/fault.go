package loadtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// FaultGrace is how soon after a fault sends must succeed again: a send
// started later than this after the fault that still fails is counted in
// FaultCounts.FailedAfterGrace.
const FaultGrace = 2 * time.Second

// KillPID returns a Config.Fault that kills process pid with SIGKILL
// (kill -9): the process gets no chance to close anything. It returns
// once the process is gone (or a zombie), at most a second later.
func KillPID(pid int) func() error {
	return func() error {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("loadtest: kill -9 %d: %w", pid, err)
		}
		stat := fmt.Sprintf("/proc/%d/stat", pid)
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			b, err := os.ReadFile(stat)
			if err != nil {
				return nil // reaped
			}
			// "pid (comm) S ...": the state follows the last ')'.
			if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
				return nil
			}
		}
		return nil
	}
}

// FaultReport is what a worker measured around Config.Fault: the send
// ledger relative to the instant the fault was done (Fault returned: for
// KillPID, the process is gone).
type FaultReport struct {
	AtUnixMS int64       `json:"at_unix_ms"` // when Fault returned
	AfterS   float64     `json:"after_s"`    // seconds into the sending
	Err      string      `json:"error,omitempty"`
	Counts   FaultCounts `json:"counts"`
}

// FaultCounts settle the sends around a fault. Times are milliseconds
// relative to the fault (negative: before it).
type FaultCounts struct {
	// SentAfter, AckedAfter and FailedAfter count the sends started at or
	// after the fault.
	SentAfter   int64 `json:"sent_after"`
	AckedAfter  int64 `json:"acked_after"`
	FailedAfter int64 `json:"failed_after"`
	// FirstAckAfterMS: the earliest ack of a send started at or after the
	// fault: when sends succeed again (-1: none did).
	FirstAckAfterMS float64 `json:"first_ack_after_ms"`
	// FailedAfterGrace counts sends started FaultGrace or more after the
	// fault that failed.
	FailedAfterGrace int64 `json:"failed_after_grace"`
	// FirstFailedStartMS and LastFailedStartMS bound the start times of
	// every failed send of the run (0 when none failed).
	FirstFailedStartMS float64 `json:"first_failed_start_ms"`
	LastFailedStartMS  float64 `json:"last_failed_start_ms"`
	// MaxAckAfterMS is the slowest send→ack of a send started at or after
	// the fault.
	MaxAckAfterMS float64 `json:"max_ack_after_ms"`
}

// merge folds o (another worker's counts for the same fault) into c.
func (c *FaultCounts) merge(o FaultCounts) {
	c.SentAfter += o.SentAfter
	c.AckedAfter += o.AckedAfter
	c.FailedAfter += o.FailedAfter
	c.FailedAfterGrace += o.FailedAfterGrace
	if o.FirstAckAfterMS >= 0 && (c.FirstAckAfterMS < 0 || o.FirstAckAfterMS < c.FirstAckAfterMS) {
		c.FirstAckAfterMS = o.FirstAckAfterMS
	}
	if o.FirstFailedStartMS != 0 || o.LastFailedStartMS != 0 {
		if c.FirstFailedStartMS == 0 && c.LastFailedStartMS == 0 {
			c.FirstFailedStartMS, c.LastFailedStartMS = o.FirstFailedStartMS, o.LastFailedStartMS
		} else {
			c.FirstFailedStartMS = min(c.FirstFailedStartMS, o.FirstFailedStartMS)
			c.LastFailedStartMS = max(c.LastFailedStartMS, o.LastFailedStartMS)
		}
	}
	c.MaxAckAfterMS = max(c.MaxAckAfterMS, o.MaxAckAfterMS)
}

// SettleFault counts the sends relative to a fault at at.
func (l *Ledger) SettleFault(at time.Time) FaultCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := FaultCounts{FirstAckAfterMS: -1}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	failed := false
	for seq := uint64(1); seq <= uint64(l.n); seq++ {
		r := l.recLocked(seq)
		sentAt, ackedAt := l.base.Add(r.sentAt), l.base.Add(r.ackedAt)
		after := !sentAt.Before(at)
		if !r.acked {
			start := ms(sentAt.Sub(at))
			if !failed {
				c.FirstFailedStartMS, c.LastFailedStartMS = start, start
				failed = true
			}
			c.FirstFailedStartMS = min(c.FirstFailedStartMS, start)
			c.LastFailedStartMS = max(c.LastFailedStartMS, start)
		}
		if !after {
			continue
		}
		c.SentAfter++
		if !r.acked {
			c.FailedAfter++
			if sentAt.Sub(at) >= FaultGrace {
				c.FailedAfterGrace++
			}
			continue
		}
		c.AckedAfter++
		if a := ms(ackedAt.Sub(at)); c.FirstAckAfterMS < 0 || a < c.FirstAckAfterMS {
			c.FirstAckAfterMS = a
		}
		c.MaxAckAfterMS = max(c.MaxAckAfterMS, ms(r.ackedAt-r.sentAt))
	}
	return c
}

// errorKind names a failed send that has no LeanCloud code.
func errorKind(err error) string {
	switch {
	case errors.Is(err, client.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, client.ErrConnectionLost):
		return "connection lost"
	case errors.Is(err, client.ErrSessionClosed), errors.Is(err, client.ErrClosed):
		return "session closed"
	}
	return "other"
}
