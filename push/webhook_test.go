package push

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/hooks"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testRequest() Request {
	return Request{
		AppID: "app", ConvID: "conv1", From: "alice", To: []string{"bob"},
		Payload: json.RawMessage(`{"alert":"hi"}`), Timestamp: 1700000000000,
	}
}

// gateway answers with the statuses in order (the last one repeats) and
// counts requests.
func gateway(t *testing.T, statuses ...int) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		w.WriteHeader(statuses[min(i, len(statuses)-1)])
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func fastWebhook(srv *httptest.Server, attempts int) *Webhook {
	return NewWebhook(WebhookConfig{
		URL: srv.URL, MaxAttempts: attempts, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		Timeout: time.Second, HTTPClient: srv.Client(),
	})
}

func TestWebhookDelivers(t *testing.T) {
	got := make(chan Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := hooks.Verify(r, "secret"); err != nil {
			t.Errorf("gateway: Verify: %v", err)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type: got %q", ct)
		}
		var req Request
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("gateway: %v in %s", err, body)
		}
		got <- req
	}))
	defer srv.Close()
	w := NewWebhook(WebhookConfig{URL: srv.URL, Key: "secret", HTTPClient: srv.Client()})
	if err := w.Push(context.Background(), testRequest()); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.AppID != "app" || r.ConvID != "conv1" || r.From != "alice" || len(r.To) != 1 || string(r.Payload) != `{"alert":"hi"}` || r.Timestamp != 1700000000000 {
		t.Errorf("gateway got %+v", r)
	}
	if s := w.Stats(); s != (WebhookStats{Sent: 1, Attempts: 1}) {
		t.Errorf("stats: got %+v", s)
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		wantErr   error
		wantCalls int64
		want      WebhookStats
	}{
		{"503 then ok", []int{503, 429, 200}, nil, 3, WebhookStats{Sent: 1, Attempts: 3, Retries: 2}},
		{"always 500", []int{500}, ErrFailed, 4, WebhookStats{Failed: 1, Attempts: 4, Retries: 3}},
		{"400 is final", []int{400}, ErrRejected, 1, WebhookStats{Failed: 1, Attempts: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := gateway(t, tc.statuses...)
			w := fastWebhook(srv, 4)
			err := w.Push(context.Background(), testRequest())
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("err: got %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && !errors.Is(err, ErrFailed) {
				t.Errorf("err %v does not wrap ErrFailed", err)
			}
			if calls.Load() != tc.wantCalls {
				t.Errorf("requests: got %d, want %d", calls.Load(), tc.wantCalls)
			}
			if s := w.Stats(); s != tc.want {
				t.Errorf("stats: got %+v, want %+v", s, tc.want)
			}
		})
	}
}

func TestWebhookAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	w := NewWebhook(WebhookConfig{URL: srv.URL, Timeout: 10 * time.Millisecond, MaxAttempts: 2, Backoff: time.Millisecond, HTTPClient: srv.Client()})
	err := w.Push(context.Background(), testRequest())
	if !errors.Is(err, ErrFailed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err: got %v, want ErrFailed wrapping DeadlineExceeded", err)
	}
	if s := w.Stats(); s.Attempts != 2 || s.Failed != 1 {
		t.Errorf("stats: got %+v, want 2 attempts, 1 failed", s)
	}
}

func TestWebhookContextCanceled(t *testing.T) {
	srv, _ := gateway(t, 500)
	w := NewWebhook(WebhookConfig{URL: srv.URL, MaxAttempts: 10, Backoff: time.Hour, HTTPClient: srv.Client()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Push(ctx, testRequest()) }()
	waitFor(t, func() bool { return w.Stats().Attempts == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !errors.Is(err, ErrFailed) {
		t.Errorf("err: got %v, want ErrFailed wrapping Canceled", err)
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
