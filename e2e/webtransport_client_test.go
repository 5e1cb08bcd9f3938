package e2e

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/netem"
)

// startDevAt starts a dev region in this process on dir and addr, with
// the edge's limits lim[0] if given, and waits until its core is ready.
func startDevAt(t *testing.T, dir, addr string, lim ...edge.Limits) *cluster.Dev {
	t.Helper()
	cfg := cluster.DevConfig{DataDir: dir, Addr: addr}
	if len(lim) > 0 {
		cfg.Limits = lim[0]
	}
	d, err := cluster.StartDev(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, d)
	return d
}

// waitReady waits until the dev region's core is ready, 20 s at most.
func waitReady(tb testing.TB, d *cluster.Dev) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !d.Core.Ready() {
		if time.Now().After(deadline) {
			tb.Fatal("dev region not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wtClientOpts(id string) client.Options {
	return client.Options{AppID: wtApp, ClientID: id, Transport: client.TransportWebTransport,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: 500 * time.Millisecond, RequestTimeout: 10 * time.Second}
}

// TestWebTransportClient: the Go SDK over WebTransport (certificate
// trusted by the hash from /v1/webtransport, on its own PacketConn) chats with a WebSocket
// client both ways; the edge's shutdown reaches it as close code 1001 (as
// on WebSocket), it reconnects to the restarted edge and chats again.
func TestWebTransportClient(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	d := startDevAt(t, dir, addr)
	defer func() {
		if d != nil {
			d.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "ws://" + addr + "/"

	// Alice's connections share one UDP socket (Options.PacketConn),
	// across the reconnect below too.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ao := wtClientOpts("wtc-alice")
	ao.PacketConn = pc
	alice, err := client.Dial(ctx, url, ao)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, url, client.Options{AppID: wtApp, ClientID: "wtc-bob"})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	cid, err := alice.CreateConversation(ctx, []string{"wtc-bob"}, "wt", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, cid, "over webtransport", client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := wtWaitMessage(t, ctx, bob, func(m client.Message) bool { return m.ConvID == cid }); m.Text != "over webtransport" || m.From != "wtc-alice" {
		t.Fatalf("bob got %+v", m)
	}
	if _, err := bob.Send(ctx, cid, "over websocket", client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := wtWaitMessage(t, ctx, alice, func(m client.Message) bool { return m.ConvID == cid }); m.Text != "over websocket" || m.From != "wtc-bob" {
		t.Fatalf("alice got %+v", m)
	}
	// A transient message reaches the WebTransport client as a datagram.
	if _, err := bob.Send(ctx, cid, "typing", client.SendOptions{Transient: true}); err != nil {
		t.Fatal(err)
	}
	if m := wtWaitMessage(t, ctx, alice, func(m client.Message) bool { return m.ConvID == cid }); m.Text != "typing" || !m.Transient {
		t.Fatalf("alice got %+v, want the transient one", m)
	}

	// The edge shuts down: goaway first, as on WebSocket.
	d.Close()
	d = nil
	var disc client.Disconnected
	for got := false; !got; {
		select {
		case ev := <-alice.Events():
			disc, got = ev.(client.Disconnected)
		case <-ctx.Done():
			t.Fatal("no Disconnected")
		}
	}
	if !errors.Is(disc.Err, client.ErrGoaway) {
		t.Fatalf("Disconnected %v, want ErrGoaway", disc.Err)
	}

	d = startDevAt(t, dir, addr) // the same certificate (DATA/wt)
	for _, c := range []*client.Client{alice, bob} {
		for got := false; !got; {
			select {
			case ev := <-c.Events():
				_, got = ev.(client.Reconnected)
			case <-ctx.Done():
				t.Fatalf("%s: no Reconnected", c.ID())
			}
		}
	}
	if _, err := alice.Send(ctx, cid, "after the restart", client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := wtWaitMessage(t, ctx, bob, func(m client.Message) bool { return m.Text == "after the restart" }); m.From != "wtc-alice" {
		t.Fatalf("bob got %+v", m)
	}
}

// TestWebTransportClientLossAndMisuse: under 5 % loss on the client's
// QUIC socket (netem) requests still complete; a wrong certificate hash,
// an unknown transport and a base64 subprotocol over WebTransport are
// refused with errors, not hangs.
func TestWebTransportClientLossAndMisuse(t *testing.T) {
	addr := freeAddr(t)
	d := startDevAt(t, t.TempDir(), addr)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "ws://" + addr + "/"

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lossy := netem.NewConn(udp, netem.Config{Table: netem.NewTable(netem.NewRules().Set(netem.Any, netem.Any, netem.Link{Loss: 0.05})), Seed: 7})
	defer lossy.Close()
	o := wtClientOpts("wtc-lossy")
	o.PacketConn = lossy
	c, err := client.Dial(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	cid, err := c.CreateConversation(ctx, []string{"wtc-x"}, "lossy", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := c.Send(ctx, cid, "m", client.SendOptions{}); err != nil {
			t.Fatalf("send %d under loss: %v", i, err)
		}
	}
	c.Close()
	if st := lossy.Stats(); st.Lost == 0 || st.Written < 40 {
		t.Fatalf("netem stats %+v: no loss injected", st)
	}

	bad := wtClientOpts("wtc-bad")
	bad.CertHashes = [][]byte{make([]byte, 32)}
	if _, err := client.Dial(ctx, url, bad); err == nil {
		t.Fatal("a wrong certificate hash was accepted")
	}
	unk := wtClientOpts("wtc-unk")
	unk.Transport = "carrier-pigeon"
	if _, err := client.Dial(ctx, url, unk); err == nil {
		t.Fatal("an unknown transport dialled")
	}
	b64 := wtClientOpts("wtc-b64")
	b64.Subprotocol = "lc.protobuf2.3.base64"
	if _, err := client.Dial(ctx, url, b64); err == nil {
		t.Fatal("a base64 subprotocol over webtransport dialled")
	}
}

// TestWebTransportClientCloseCode: the edge's idle timeout closes the
// session with 4107; the SDK reports it as the websocket.CloseError a
// WebSocket would give (code and reason), wrapped in ErrConnectionLost.
func TestWebTransportClientCloseCode(t *testing.T) {
	addr := freeAddr(t)
	d := startDevAt(t, t.TempDir(), addr, edge.Limits{IdleTimeout: time.Second})
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := wtClientOpts("wtc-idle")
	o.KeepAlive = -1
	c, err := client.Dial(ctx, "ws://"+addr+"/", o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		select {
		case ev := <-c.Events():
			disc, ok := ev.(client.Disconnected)
			if !ok {
				continue
			}
			ce, ok := errors.AsType[websocket.CloseError](disc.Err)
			if !ok || ce.Code != 4107 || ce.Reason == "" || !errors.Is(disc.Err, client.ErrConnectionLost) {
				t.Fatalf("Disconnected %v, want the idle close 4107 as a websocket.CloseError", disc.Err)
			}
			return
		case <-ctx.Done():
			t.Fatal("the idle session was not closed")
		}
	}
}
