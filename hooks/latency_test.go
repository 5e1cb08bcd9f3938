package hooks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relaymesh/relaymesh/metric"
)

// TestHookLatency: each HTTP exchange with a hook is timed once, under
// its hook and outcome: a 2xx reply is "ok" (a slow one in the bucket of
// its delay), a 500 and a timeout "failed"; hooks not called stay at
// zero; concurrent calls all count; the series are lint-clean.
func TestHookLatency(t *testing.T) {
	var mu sync.Mutex
	mode := "ok"
	srv := newHookServer(t, func(w http.ResponseWriter, r *http.Request, hook string) {
		mu.Lock()
		m := mode
		mu.Unlock()
		switch m {
		case "slow":
			time.Sleep(300 * time.Millisecond)
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		case "hang":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		io.WriteString(w, `{}`)
	})
	c := srv.client(PolicyDefault, time.Second)
	set := func(m string) { mu.Lock(); mode = m; mu.Unlock() }
	ctx := context.Background()
	send := func() error { return c.MessageSent(ctx, "app", MessageSent{MsgID: "m"}) }

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if err := send(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	set("slow")
	if err := send(); err != nil {
		t.Fatal(err)
	}
	set("500")
	if err := send(); !errors.Is(err, ErrStatus) {
		t.Fatalf("500: got %v, want ErrStatus", err)
	}
	set("hang")
	if err := send(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("hang: got %v, want ErrTimeout", err)
	}
	lat := c.Latency(HookMessageSent)
	ok, failed := lat["ok"], lat["failed"]
	if ok.Count() != 11 || failed.Count() != 2 {
		t.Fatalf("got %d ok and %d failed exchanges, want 11 and 2", ok.Count(), failed.Count())
	}
	if failed.Sum < time.Second {
		t.Errorf("the failed exchanges took %v in all, want at least the 1s timeout", failed.Sum)
	}
	text, err := metric.Text(c.Collector())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`relaymesh_hook_seconds_count{hook="_messageSent",outcome="ok"} 11`,
		`relaymesh_hook_seconds_bucket{hook="_messageSent",outcome="ok",le="0.25"} 10`, // the slow one took 300ms
		`relaymesh_hook_seconds_count{hook="_messageSent",outcome="failed"} 2`,
		`relaymesh_hook_seconds_bucket{hook="_messageSent",outcome="failed",le="0.5"} 1`, // the 500; the timeout took 1s
		`relaymesh_hook_seconds_count{hook="_messageReceived",outcome="ok"} 0`,
		`relaymesh_hook_seconds_count{hook="_userVerify",outcome="failed"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if problems, err := testutil.CollectAndLint(c.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if c.Latency("_noSuchHook") != nil {
		t.Error("Latency of an unknown hook is not nil")
	}
}
