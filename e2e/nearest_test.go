package e2e

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/lab"
	"github.com/relaymesh/relaymesh/netem"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestNearestEdgeSDK: one edge behind 80 ms, the same edge behind 5 ms
// (two netem TCP proxies in front of a real relaymesh): the Go SDK with
// Options.Nearest measures both and logs in through the fast one; without
// it, it takes the first URL it was given.
func TestNearestEdgeSDK(t *testing.T) {
	d := startDev(t, t.TempDir(), freeAddr(t))
	far, err := netem.NewTCPProxy("127.0.0.1:0", d.Addr, netem.Link{Latency: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	near, err := netem.NewTCPProxy("127.0.0.1:0", d.Addr, netem.Link{Latency: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer near.Close()
	farURL, nearURL := "ws://"+far.Addr()+"/", "ws://"+near.Addr()+"/"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	plain, err := client.Dial(ctx, farURL, client.Options{AppID: "nearest", ClientID: "plain", Servers: []string{nearURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if plain.URL() != farURL {
		t.Errorf("without Nearest: on %s, want the first URL %s", plain.URL(), farURL)
	}

	t0 := time.Now()
	c, err := client.Dial(ctx, farURL, client.Options{AppID: "nearest", ClientID: "near", Servers: []string{nearURL}, Nearest: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("Dial with Nearest (probe of both, then login): %v", time.Since(t0))
	if c.URL() != nearURL {
		t.Errorf("with Nearest: on %s, want the 5 ms one %s", c.URL(), nearURL)
	}
	if got := c.Servers(); !slices.Equal(got, []string{nearURL, farURL}) {
		t.Errorf("order %v, want near then far", got)
	}
	// The session works there.
	cid, err := c.CreateConversation(ctx, []string{"plain"}, "nearest", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, cid, client.TextMessage("via the near edge"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, plain, "via the near edge", nil)
}

// TestEdgeDrainSDK: SIGTERM drains an edge process. Every session on it
// gets goaway with its peerId; the Go SDK moves to its other edge at once
// and keeps chatting there; a client that ignores goaway is closed (1001)
// at the drain's deadline; the process exits 0.
func TestEdgeDrainSDK(t *testing.T) {
	l := startLab(t, lab.Config{Regions: 1, Cores: 1, Edges: 2, DrainTimeout: 2 * time.Second})
	r := l.Regions()[0]
	e1, e2 := r.Edges[0], r.Edges[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mover := labClient(t, ctx, l, "drain-mover", e1.URL, e2.URL)
	peer := labClient(t, ctx, l, "drain-peer", e2.URL)
	cid, err := peer.CreateConversation(ctx, []string{"drain-mover"}, "drain", nil, false)
	if err != nil {
		t.Fatal(err)
	}

	// A raw client on e1 that never leaves by itself.
	ws, _, err := websocket.Dial(ctx, e1.URL, &websocket.DialOptions{Subprotocols: []string{lcpb.SubprotocolBinary3}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	write := func(cmd *lcpb.GenericCommand) {
		b, _ := proto.Marshal(cmd)
		if err := ws.Write(ctx, websocket.MessageBinary, b); err != nil {
			t.Fatal(err)
		}
	}
	write(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(l.AppID()), PeerId: proto.String("drain-stayer"), SessionMessage: &lcpb.SessionCommand{Ua: proto.String("raw")}})
	var frames []*lcpb.GenericCommand
	var closeErr error
	var mu sync.Mutex
	opened := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				mu.Lock()
				closeErr = err
				mu.Unlock()
				return
			}
			cmd := new(lcpb.GenericCommand)
			if proto.Unmarshal(b, cmd) == nil {
				if cmd.GetOp() == lcpb.OpType_opened {
					close(opened)
				}
				mu.Lock()
				frames = append(frames, cmd)
				mu.Unlock()
			}
		}
	}()
	select {
	case <-opened:
	case <-time.After(15 * time.Second):
		t.Fatal("raw client not logged in")
	}

	t0 := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e1.Stop(30 * time.Second) }()

	// The SDK is told goaway and moves to e2 at once.
	deadline := time.After(20 * time.Second)
	sawGoaway := false
	for moved := false; !moved; {
		select {
		case ev := <-mover.Events():
			switch e := ev.(type) {
			case client.Disconnected:
				sawGoaway = sawGoaway || errors.Is(e.Err, client.ErrGoaway)
				t.Logf("mover disconnected after %v: %v", time.Since(t0), e.Err)
			case client.Reconnected:
				if e.URL != e2.URL {
					t.Fatalf("mover reconnected to %s, want the other edge %s", e.URL, e2.URL)
				}
				moved = true
				t.Logf("mover on %s %v after the SIGTERM (down %v)", e.URL, time.Since(t0), e.Down)
			}
		case <-deadline:
			t.Fatal("the SDK did not move to the other edge within 20 s")
		}
	}
	if !sawGoaway {
		t.Error("the SDK's disconnect was not a goaway")
	}
	if _, err := peer.Send(ctx, cid, client.TextMessage("after the drain"), client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, mover, "after the drain", nil)

	// The raw client got goaway for its peer and is closed at the deadline.
	select {
	case <-readDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the raw client was not closed by the drain's deadline")
	}
	closedAfter := time.Since(t0)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not return")
	}
	if err := e1.Wait(ctx); err != nil {
		t.Errorf("drained edge exited with %v, want status 0", err)
	}
	mu.Lock()
	defer mu.Unlock()
	goaway := slices.IndexFunc(frames, func(c *lcpb.GenericCommand) bool {
		return c.GetCmd() == lcpb.CommandType_goaway && c.GetPeerId() == "drain-stayer"
	})
	if goaway < 0 {
		t.Errorf("raw client frames %v: no goaway with its peerId", frames)
	}
	if code := websocket.CloseStatus(closeErr); code != websocket.StatusGoingAway {
		t.Errorf("raw client closed with %v (%v), want 1001 going away", code, closeErr)
	}
	t.Logf("raw client closed %v after the SIGTERM (drain_timeout 2s)", closedAfter)
	if closedAfter < 2*time.Second {
		t.Errorf("raw client closed after %v, before the drain's 2 s deadline", closedAfter)
	}
	if b := tailLog(l, e1.Name); !strings.Contains(b, "1 connections closed at the deadline") {
		t.Errorf("edge log does not report the one forced close:\n%s", b)
	}
}

func tailLog(l *lab.Lab, node string) string {
	n, err := l.Node(node)
	if err != nil {
		return err.Error()
	}
	return readFile(n.Info().Log)
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
