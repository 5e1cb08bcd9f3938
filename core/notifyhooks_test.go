package core

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestNotifyHooksNeverBlock: with a _clientOnline hook that hangs, logins
// still complete, at most notifyWorkers calls are in flight, the queue
// holds notifyQueueLen and everything past that is dropped and counted;
// once the hook answers, every queued call is made.
func TestNotifyHooksNeverBlock(t *testing.T) {
	var inFlight, maxInFlight, calls atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		<-release
		calls.Add(1)
	}))
	defer srv.Close()
	rep := newFakeReplica(t)
	c := New(Config{Replica: rep, Apps: apps.NewDev(), Hooks: hooks.New(hooks.Config{
		Apps:    map[string]hooks.App{"app": {URLs: map[string]string{hooks.HookClientOnline: srv.URL}}},
		Timeout: time.Minute, HTTPClient: srv.Client(),
	})})
	defer c.Close()
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open() // before Close: the workers' calls return

	const n = notifyQueueLen + 100
	for i := range n {
		rep, err := c.HandleClient(context.Background(), &meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN,
			AppId: "app", PeerId: fmt.Sprint("p", i), EdgeId: "e1", ConnId: uint64(i + 1), SourceIp: "10.0.0.1"})
		if err != nil || rep.GetErrorCode() != 0 {
			t.Fatalf("login %d while the hook hangs: %v %v", i, rep, err)
		}
	}
	s := c.NotifyStats()
	if s.Queued+s.Dropped != n || s.Dropped < 100-notifyWorkers || s.Queued > notifyQueueLen+notifyWorkers {
		t.Fatalf("stats after %d logins: %+v; want at most %d queued, the rest dropped", n, s, notifyQueueLen+notifyWorkers)
	}
	waitFor(t, "the workers' calls", func() bool { return inFlight.Load() == notifyWorkers })
	if m := maxInFlight.Load(); m != notifyWorkers {
		t.Fatalf("%d calls in flight, want %d", m, notifyWorkers)
	}
	open()
	waitFor(t, "every queued call made", func() bool { return calls.Load() == s.Queued })
}
