package push

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Device providers' defaults (APNs, FCM).
const (
	// DefaultExpiry is how long a push service keeps a notification for a
	// device that is off: LeanCloud's 7 days (apns-expiration, FCM ttl).
	DefaultExpiry = 7 * 24 * time.Hour
	// DefaultDeviceAttempts is the attempts per device, first included.
	DefaultDeviceAttempts = 4
	// DefaultDeviceQueue and DefaultDeviceWorkers size a device
	// provider's own queue: devices waiting, and sends in flight.
	DefaultDeviceQueue   = 4096
	DefaultDeviceWorkers = 8
	// MaxRetryAfter bounds how long a Retry-After answer makes a worker
	// wait; a longer one fails the device.
	MaxRetryAfter = time.Minute
)

// Retry configures how a device provider retries one device: transport
// errors, timeouts, 429 and 5xx are retried up to Attempts in all, after a
// delay drawn from [d/2, d] where d doubles from Backoff up to MaxBackoff
// (jitter keeps a burst of failures from retrying in step); a Retry-After
// the service sent is waited at least, up to MaxRetryAfter.
type Retry struct {
	Attempts   int           // DefaultDeviceAttempts
	Backoff    time.Duration // DefaultBackoff
	MaxBackoff time.Duration // DefaultMaxBackoff
	Timeout    time.Duration // per attempt; DefaultTimeout
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = DefaultDeviceAttempts
	}
	if r.Backoff <= 0 {
		r.Backoff = DefaultBackoff
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = DefaultMaxBackoff
	}
	if r.MaxBackoff < r.Backoff {
		r.MaxBackoff = r.Backoff
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultTimeout
	}
	return r
}

// delay is the wait before retry n (1 for the first retry).
func (r Retry) delay(n int, retryAfter time.Duration) time.Duration {
	d := r.Backoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// verdict is what one attempt at one device came to.
type verdict uint8

const (
	vSent    verdict = iota // accepted
	vRetry                  // worth another attempt (after retryAfter, if set)
	vInvalid                // the token is no longer valid: remove the device
	vFail                   // refused for good
)

// attemptResult is one attempt's outcome.
type attemptResult struct {
	v          verdict
	retryAfter time.Duration
	reason     string // the service's reason, for logs and the sink
	err        error
}

// Errors of device providers.
var (
	// ErrInvalidDevice wraps a push the service refused because the
	// device's token is no longer valid.
	ErrInvalidDevice = errors.New("push: device token invalid")
	// ErrConfig marks an unusable provider configuration (key, account).
	ErrConfig = errors.New("push: bad provider configuration")
)

// sendDevice runs attempt until it succeeds, fails for good or runs out of
// attempts, counting in c; an invalid device goes to sink.
func sendDevice(ctx context.Context, r Retry, c *counters, app string, d Device, sink DeviceSink,
	attempt func(ctx context.Context) attemptResult) error {
	var last attemptResult
	for n := 1; ; n++ {
		if n > 1 {
			c.retried.Add(1)
		}
		actx, cancel := context.WithTimeout(ctx, r.Timeout)
		start := time.Now()
		last = attempt(actx)
		c.attempts.Observe(time.Since(start))
		cancel()
		switch last.v {
		case vSent:
			c.sent.Add(1)
			return nil
		case vInvalid:
			c.invalid.Add(1)
			if sink != nil {
				sink.Invalid(ctx, app, d, last.reason)
			}
			return fmt.Errorf("%w: %s: %s", ErrInvalidDevice, d.ID, last.reason)
		}
		if ctx.Err() != nil {
			c.failed.Add(1)
			return fmt.Errorf("%w: %w (after %v)", ErrFailed, ctx.Err(), last.err)
		}
		if last.v == vFail || n >= r.Attempts || last.retryAfter > MaxRetryAfter {
			break
		}
		t := time.NewTimer(r.delay(n, last.retryAfter))
		select {
		case <-ctx.Done():
			t.Stop()
			c.failed.Add(1)
			return fmt.Errorf("%w: %w (after %v)", ErrFailed, ctx.Err(), last.err)
		case <-t.C:
		}
	}
	c.failed.Add(1)
	if last.v == vFail {
		return fmt.Errorf("%w: %w", ErrRejected, last.err)
	}
	return fmt.Errorf("%w: %w", ErrFailed, last.err)
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// transportVerdict classifies a request that got no response.
func transportVerdict(ctx context.Context, err error) attemptResult {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return attemptResult{v: vFail, err: err}
	}
	return attemptResult{v: vRetry, err: err}
}
