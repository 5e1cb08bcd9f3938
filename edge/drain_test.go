package edge

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestDrain: a drain says goaway to every session with its peerId, takes
// the edge out of /healthz and refuses new sockets at once, keeps serving
// a client that has not left yet, and at its deadline closes what is
// still open.
func TestDrain(t *testing.T) {
	env := newEnv(t, nil)
	leaver := env.dial(t, lcpb.SubprotocolBinary3)
	leaver.login(1, "alice")
	stayer := env.dial(t, lcpb.SubprotocolBinary3)
	stayer.login(1, "bob")
	stayer.login(2, "carol")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- env.srv.Drain(ctx) }()

	if r := leaver.recv(); r.GetCmd() != lcpb.CommandType_goaway || r.GetPeerId() != "alice" || r.GetService() != lcpb.ServiceIM {
		t.Fatalf("leaver got %v peer %q, want goaway for alice", r.GetCmd(), r.GetPeerId())
	}
	got := map[string]bool{}
	for range 2 {
		r := stayer.recv()
		if r.GetCmd() != lcpb.CommandType_goaway {
			t.Fatalf("stayer got %v, want goaway", r.GetCmd())
		}
		got[r.GetPeerId()] = true
	}
	if !got["bob"] || !got["carol"] {
		t.Fatalf("goaway peers %v, want bob and carol", got)
	}
	resp, err := http.Get(env.ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz during a drain: %d, want 503", resp.StatusCode)
	}
	if _, resp, err := websocket.Dial(context.Background(), env.url, &websocket.DialOptions{Subprotocols: []string{lcpb.SubprotocolBinary3}}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial during a drain: err=%v resp=%v, want 503", err, resp)
	}

	// A session that logs in during the drain is told to leave as well,
	// after its session/opened.
	stayer.send(openCmd(3, "dave"))
	if r := stayer.recv(); r.GetOp() != lcpb.OpType_opened {
		t.Fatalf("login during the drain: got %v/%v, want session/opened first", r.GetCmd(), r.GetOp())
	}
	if r := stayer.recv(); r.GetCmd() != lcpb.CommandType_goaway || r.GetPeerId() != "dave" {
		t.Fatalf("after a login during the drain: got %v for %q, want goaway for dave", r.GetCmd(), r.GetPeerId())
	}

	// The client that left goes; the one that stays is still served.
	leaver.ws.Close(websocket.StatusNormalClosure, "")
	<-leaver.done
	stayer.send(echoCmd(7))
	if r := stayer.recv(); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != 7 {
		t.Fatalf("a draining edge stopped serving: got %v", r.GetCmd())
	}
	waitFor(t, "the leaver's connection to end", func() bool { return env.srv.Metrics().ConnectionsOpen.Load() == 1 })
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a client was still connected", err)
	default:
	}

	cancel() // the deadline
	select {
	case err := <-drained:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Drain = %v, want the context's error when it closed connections", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after its deadline")
	}
	if code := stayer.closeStatus(); code != CloseShutdown {
		t.Errorf("stayer closed with %v, want going away", code)
	}
	if m := env.srv.Metrics(); m.Drained.Load() != 2 || m.DrainForced.Load() != 1 {
		t.Errorf("drained %d, forced %d; want 2 and 1", m.Drained.Load(), m.DrainForced.Load())
	}
	if err := env.srv.Close(); err != nil {
		t.Errorf("Close after Drain: %v", err)
	}
}

// TestDrainEveryoneLeaves: when every client leaves after goaway, Drain
// returns nil without waiting for its deadline.
func TestDrainEveryoneLeaves(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- env.srv.Drain(ctx) }()
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_goaway {
		t.Fatalf("got %v, want goaway", r.GetCmd())
	}
	c.ws.Close(websocket.StatusNormalClosure, "")
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain = %v, want nil: everyone left", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Drain waited although every client had left")
	}
	if f := env.srv.Metrics().DrainForced.Load(); f != 0 {
		t.Errorf("forced %d, want 0", f)
	}
}
