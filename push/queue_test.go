package push

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate is a provider that blocks every push until released, recording the
// conversation ids it was given.
type gate struct {
	release chan struct{}
	mu      sync.Mutex
	got     []string // guarded by mu
	fail    bool
}

func (g *gate) Push(ctx context.Context, r Request) error {
	g.mu.Lock()
	g.got = append(g.got, r.ConvID)
	g.mu.Unlock()
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if g.fail {
		return errors.New("provider down")
	}
	return nil
}

func (g *gate) seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.got...)
}

func req(conv string) Request { return Request{AppID: "app", ConvID: conv} }

func TestQueueDropsOldest(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	q := NewQueue(g, QueueConfig{Size: 3, Workers: 1})
	defer q.Close()
	if err := q.Push(context.Background(), req("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(g.seen()) == 1 }) // the worker holds "a"
	for _, c := range []string{"b", "c", "d", "e", "f"} {
		if err := q.Push(context.Background(), req(c)); err != nil {
			t.Fatal(err)
		}
	}
	if s := q.Stats(); s.Dropped != 2 || s.Waiting != 3 || s.Enqueued != 6 {
		t.Errorf("stats: got %+v, want 2 dropped, 3 waiting, 6 enqueued", s)
	}
	close(g.release)
	waitFor(t, func() bool { return q.Stats().Sent == 4 })
	if got := strings.Join(g.seen(), ""); got != "adef" {
		t.Errorf("delivered: got %q, want %q (b and c dropped)", got, "adef")
	}
}

func TestQueueCloseDiscards(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	q := NewQueue(g, QueueConfig{Size: 8, Workers: 2})
	for _, c := range []string{"a", "b", "c", "d"} {
		q.Push(context.Background(), req(c))
	}
	waitFor(t, func() bool { return len(g.seen()) == 2 })
	q.Close() // cancels the two in flight, discards the two waiting
	s := q.Stats()
	if s.Failed != 2 || s.Discarded != 2 || s.Waiting != 0 || s.Sent != 0 {
		t.Errorf("stats: got %+v, want 2 failed, 2 discarded", s)
	}
	if err := q.Push(context.Background(), req("e")); !errors.Is(err, ErrClosed) {
		t.Errorf("Push after Close: got %v, want ErrClosed", err)
	}
	q.Close() // idempotent
}

func TestQueueCountsFailures(t *testing.T) {
	g := &gate{release: make(chan struct{}), fail: true}
	close(g.release)
	var logs bytes.Buffer
	q := NewQueue(g, QueueConfig{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer q.Close()
	q.Push(context.Background(), req("a"))
	waitFor(t, func() bool { return q.Stats().Failed == 1 })
	q.Close()
	if !strings.Contains(logs.String(), "provider down") {
		t.Errorf("failure not logged at debug: %q", logs.String())
	}
}

func TestLogProvider(t *testing.T) {
	var buf bytes.Buffer
	l := NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	if err := l.Push(context.Background(), testRequest()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"conv":"conv1"`, `"from":"alice"`, `"to":["bob"]`, `"payload":"{\"alert\":\"hi\"}"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log line %s lacks %s", buf.String(), want)
		}
	}
}

// TestQueueLatency: each request the provider sent or failed is timed
// once, under its outcome, from the worker taking it to the provider's
// verdict (a push held 50ms at the gate takes at least that); a request
// dropped from the queue is not timed.
func TestQueueLatency(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	q := NewQueue(g, QueueConfig{Size: 1, Workers: 1})
	defer q.Close()
	for _, c := range []string{"a", "b", "c"} { // "a" held by the worker, "b" dropped for "c"
		if err := q.Push(context.Background(), req(c)); err != nil {
			t.Fatal(err)
		}
		if c == "a" {
			waitFor(t, func() bool { return len(g.seen()) == 1 })
		}
	}
	time.Sleep(50 * time.Millisecond)
	g.release <- struct{}{} // "a" sent
	waitFor(t, func() bool { return len(g.seen()) == 2 })
	g.mu.Lock()
	g.fail = true
	g.mu.Unlock()
	g.release <- struct{}{} // "c" failed
	waitFor(t, func() bool { return q.Stats().Failed == 1 })
	s := q.Stats()
	if s.SentLatency.Count() != 1 || s.FailedLatency.Count() != 1 || s.Dropped != 1 {
		t.Fatalf("got %d sent and %d failed timed, %d dropped; want 1, 1, 1", s.SentLatency.Count(), s.FailedLatency.Count(), s.Dropped)
	}
	if s.SentLatency.Sum < 50*time.Millisecond {
		t.Errorf("the sent push took %v, want at least the 50ms it was held", s.SentLatency.Sum)
	}
}
