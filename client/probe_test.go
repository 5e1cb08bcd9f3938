package client

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

func TestHealthURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/":        "http://127.0.0.1:8080/healthz",
		"wss://im.example.com/ws?x=1": "https://im.example.com/healthz",
		"wss://[::1]:443/":            "https://[::1]:443/healthz",
		"http://example.com/":         "",
		"ws:///nohost":                "",
		"::not a url":                 "",
	} {
		got, ok := healthURL(in)
		if got != want || ok != (want != "") {
			t.Errorf("healthURL(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestNearestPicksFastest: with Nearest the client dials the server whose
// /healthz answers fastest, lists a server that is up but not ready (503)
// after the healthy ones and a dead one last; without it, the list order
// is kept. Reconnects go to the next nearest.
func TestNearestPicksFastest(t *testing.T) {
	slow, fast, notReady := newFakeServer(t), newFakeServer(t), newFakeServer(t)
	dead := deadURL(t)
	slow.setHealth(func(w http.ResponseWriter, r *http.Request) { time.Sleep(150 * time.Millisecond) })
	fast.setHealth(func(w http.ResponseWriter, r *http.Request) {})
	notReady.setHealth(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })

	opts := testOptions(t)
	opts.Servers = []string{dead, notReady.url, fast.url}
	plain, _, _ := dial(t, slow, opts)
	if plain.URL() != slow.url {
		t.Fatalf("without Nearest: URL %s, want the first server %s", plain.URL(), slow.url)
	}

	opts.Nearest = true
	c, err := Dial(context.Background(), slow.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.URL() != fast.url {
		t.Errorf("with Nearest: URL %s, want the fastest %s", c.URL(), fast.url)
	}
	if got, want := c.Servers(), []string{fast.url, slow.url, notReady.url, dead}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v (fast, slow, not ready, dead)", got, want)
	}
	fc := fast.nextConn(t)
	fc.expect(t, lcpb.CommandType_session, lcpb.OpType_open)
	fast.srv.Close() // the nearest edge dies
	fc.drop()
	ev := waitEvent[Reconnected](t, c)
	if ev.URL != slow.url {
		t.Errorf("after losing the nearest: reconnected to %s, want the next nearest %s", ev.URL, slow.url)
	}
}

// TestNearestBoundedProbe: a server whose /healthz never answers (or
// answers a huge body) costs Dial at most ProbeTimeout and goes last.
func TestNearestBoundedProbe(t *testing.T) {
	hang, big, ok := newFakeServer(t), newFakeServer(t), newFakeServer(t)
	hang.setHealth(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	big.setHealth(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 8<<20)) // read only 1 KiB of it
	})
	ok.setHealth(func(w http.ResponseWriter, r *http.Request) {})
	opts := testOptions(t)
	opts.Nearest = true
	opts.ProbeTimeout = 300 * time.Millisecond
	opts.Servers = []string{big.url, ok.url}
	t0 := time.Now()
	c, err := Dial(context.Background(), hang.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("Dial with a hanging server's probe: %v", time.Since(t0))
	l := c.Servers()
	if l[len(l)-1] != hang.url {
		t.Errorf("order %v: the hanging server is not last", l)
	}
	if c.URL() == hang.url {
		t.Errorf("dialled the server whose probe hung")
	}
}
