package hooks

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitUntil polls cond until it holds or 5 s pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSysMessageShape(t *testing.T) {
	m := NewSysMessage("c1", "m1", "alice", "hi", false, 1438267062584, "")
	got, err := json.Marshal([]SysMessage{m})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"fromIp":"","conv":{"__type":"Pointer","className":"_Conversation","objectId":"c1"},` +
		`"msgId":"m1","from":"alice","bin":false,"data":"hi",` +
		`"createdAt":{"__type":"Date","iso":"2015-07-30T14:37:42.584Z"},` +
		`"updatedAt":{"__type":"Date","iso":"2015-07-30T14:37:42.584Z"},"timestamp":1438267062584}]`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestSysWebhookRetries: a webhook that fails twice then succeeds gets the
// same signed batch three times, and the counters say so.
func TestSysWebhookRetries(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var bodies [][]byte
	var verifyErr error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := Verify(r, "mk")
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		if err != nil {
			verifyErr = err
		}
		mu.Unlock()
		if r.Header.Get(HeaderHook) != SysHookName || r.Header.Get("X-LC-Id") != "app" {
			t.Errorf("headers: got %v", r.Header)
		}
		if calls.Add(1) <= 2 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
	}))
	defer srv.Close()
	w := NewSysWebhook(SysConfig{Apps: map[string]SysApp{"app": {URL: srv.URL, MasterKey: "mk"}}, Backoff: time.Millisecond, Workers: 1})
	defer w.Close()
	if !w.Enqueue("app", NewSysMessage("c1", "m1", "alice", "hi", false, 1000, "")) {
		t.Fatal("enqueue refused")
	}
	if w.Enqueue("other", NewSysMessage("c1", "m2", "alice", "hi", false, 1000, "")) {
		t.Error("enqueue for an app without a webhook: got true, want false")
	}
	waitUntil(t, "delivery", func() bool { return w.Stats().Sent == 1 })
	s := w.Stats()
	if s.Requests != 3 || s.Failures != 2 || s.Retries != 2 || s.Lost != 0 || s.Dropped != 0 {
		t.Errorf("stats: got %+v, want 3 requests, 2 failures, 2 retries, nothing lost", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if verifyErr != nil {
		t.Errorf("signature: %v", verifyErr)
	}
	for i, b := range bodies {
		var got []SysMessage
		if err := json.Unmarshal(b, &got); err != nil || len(got) != 1 || got[0].MsgID != "m1" {
			t.Errorf("request %d: got %s, want an array with m1", i, b)
		}
	}
}

// TestSysWebhookTimeout: a webhook that never answers costs 1+Retries
// attempts, each timed out, and the message is counted lost.
func TestSysWebhookTimeout(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	w := NewSysWebhook(SysConfig{Apps: map[string]SysApp{"app": {URL: srv.URL}}, Timeout: 30 * time.Millisecond,
		Backoff: time.Millisecond, Workers: 1})
	defer w.Close()
	w.Enqueue("app", NewSysMessage("c1", "m1", "alice", "hi", false, 1000, ""))
	waitUntil(t, "giving up", func() bool { return w.Stats().Lost == 1 })
	s := w.Stats()
	if s.Requests != 4 || s.Timeouts != 4 || s.Failures != 4 || s.Retries != 3 || s.Sent != 0 {
		t.Errorf("stats: got %+v, want 4 timed-out requests, 3 retries", s)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("server calls: got %d, want 4", n)
	}
}

// TestSysWebhookBatchAndOverflow: messages queued while a request is in
// flight go out together in the next one; past the queue's bound they are
// dropped without blocking.
func TestSysWebhookBatchAndOverflow(t *testing.T) {
	hold := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got []SysMessage
		json.NewDecoder(r.Body).Decode(&got)
		mu.Lock()
		sizes = append(sizes, len(got))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-hold
		}
	}))
	defer srv.Close()
	w := NewSysWebhook(SysConfig{Apps: map[string]SysApp{"app": {URL: srv.URL}}, QueueSize: 3, Workers: 1})
	defer w.Close()
	w.Enqueue("app", NewSysMessage("c1", "m0", "a", "x", false, 1, ""))
	waitUntil(t, "first request", func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	for i := range 4 {
		ok := w.Enqueue("app", NewSysMessage("c1", "m", "a", "x", false, 1, ""))
		if want := i < 3; ok != want {
			t.Errorf("enqueue %d: got %t, want %t", i, ok, want)
		}
	}
	close(hold)
	waitUntil(t, "second request", func() bool { return w.Stats().Sent == 4 })
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[1] != 3 {
		t.Errorf("batch sizes: got %v, want [1 3]", sizes)
	}
	if s := w.Stats(); s.Dropped != 1 || s.Enqueued != 4 {
		t.Errorf("stats: got %+v, want 4 enqueued, 1 dropped", s)
	}
}
