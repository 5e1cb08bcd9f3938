package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/hooks"
)

// Webhook defaults.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMaxAttempts = 3
	DefaultBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// WebhookConfig configures a Webhook provider. Zero fields take the defaults.
type WebhookConfig struct {
	URL         string
	Key         string        // signs requests when set (see package hooks)
	Timeout     time.Duration // per attempt
	MaxAttempts int           // attempts in all, first included
	Backoff     time.Duration // delay before the first retry; doubles
	MaxBackoff  time.Duration // bound on the delay
	HTTPClient  *http.Client
	Now         func() time.Time
}

// Webhook POSTs pushes as JSON to a gateway. It is safe for concurrent use.
type Webhook struct {
	cfg WebhookConfig

	sent, failed, attempts, retries atomic.Int64
}

// WebhookStats are a Webhook's counters.
type WebhookStats struct {
	Sent     int64 // pushes the gateway accepted
	Failed   int64 // pushes given up on
	Attempts int64 // HTTP requests made
	Retries  int64 // attempts after the first
}

// NewWebhook returns a Webhook provider for cfg.
func NewWebhook(cfg WebhookConfig) *Webhook {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Webhook{cfg: cfg}
}

// Stats returns the counters.
func (w *Webhook) Stats() WebhookStats {
	return WebhookStats{Sent: w.sent.Load(), Failed: w.failed.Load(), Attempts: w.attempts.Load(), Retries: w.retries.Load()}
}

// Push POSTs r, retrying as the package documentation describes. It returns
// an error wrapping ErrFailed (and ErrRejected for a refusal) once it gives
// up, or ctx's error when ctx ends first.
func (w *Webhook) Push(ctx context.Context, r Request) error {
	if r.To == nil {
		r.To = []string{}
	}
	body, err := json.Marshal(r)
	if err != nil {
		w.failed.Add(1)
		return fmt.Errorf("%w: encoding request: %w", ErrFailed, err)
	}
	delay := w.cfg.Backoff
	var last error
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			w.retries.Add(1)
		}
		w.attempts.Add(1)
		retry, err := w.attempt(ctx, body)
		if err == nil {
			w.sent.Add(1)
			return nil
		}
		last = err
		if ctx.Err() != nil {
			// Cancelled while the attempt was in flight: say so, whatever
			// the attempt itself returned.
			w.failed.Add(1)
			return fmt.Errorf("%w: %w (after %v)", ErrFailed, ctx.Err(), last)
		}
		if !retry || attempt >= w.cfg.MaxAttempts {
			break
		}
		// Full delay halved plus jitter: in [delay/2, delay).
		wait := delay/2 + rand.N(delay/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			w.failed.Add(1)
			return fmt.Errorf("%w: %w (after %v)", ErrFailed, ctx.Err(), last)
		case <-t.C:
		}
		delay = min(delay*2, w.cfg.MaxBackoff)
	}
	w.failed.Add(1)
	return fmt.Errorf("%w: %s: %w", ErrFailed, w.cfg.URL, last)
}

// attempt makes one request and reports whether a failure may be retried.
func (w *Webhook) attempt(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if w.cfg.Key != "" {
		ts := strconv.FormatInt(w.cfg.Now().UnixMilli(), 10)
		req.Header.Set(hooks.HeaderTimestamp, ts)
		req.Header.Set(hooks.HeaderSignature, hooks.Sign(w.cfg.Key, ts, body))
	}
	resp, err := w.cfg.HTTPClient.Do(req)
	if err != nil {
		return !errors.Is(err, context.Canceled), err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("%w: status %d", ErrRejected, resp.StatusCode)
	}
}
