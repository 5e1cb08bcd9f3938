package mesh

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/netem"
)

// TestListenWithPacketConn: a node whose socket is wrapped by netem
// (WithPacketConn, as the lab runs cores and edges) pays the injected
// latency on every call, is cut off by a partition and reachable again on
// healing; Close closes the wrapper and its socket.
func TestListenWithPacketConn(t *testing.T) {
	const oneWay = 20 * time.Millisecond
	rules := netem.NewRules(
		netem.Group{Name: "a", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		netem.Group{Name: "b", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}},
	).SetPair("a", "b", netem.Link{Latency: oneWay})
	tab := netem.NewTable(rules)
	var conns []*netem.Conn
	shaped := WithPacketConn(func(u *net.UDPConn) net.PacketConn {
		c := netem.NewConn(u, netem.Config{Table: tab})
		conns = append(conns, c)
		return c
	})
	ids := pki(t, "core-a", "core-b")
	a, err := Listen("127.0.0.1:0", ids["core-a"], testLogger(t), shaped)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen("127.0.0.2:0", ids["core-b"], testLogger(t), shaped)
	if err != nil {
		t.Fatal(err)
	}
	b.HandleRPC("echo", func(ctx context.Context, peer string, req []byte) ([]byte, error) { return req, nil })

	call := func(d time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		t0 := time.Now()
		_, err := a.Call(ctx, b.Addr(), "echo", []byte("x"))
		return time.Since(t0), err
	}
	if _, err := call(10 * time.Second); err != nil { // dial + first call
		t.Fatal(err)
	}
	best := time.Hour
	for range 5 {
		d, err := call(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		best = min(best, d)
	}
	if best < 2*oneWay {
		t.Errorf("fastest call %v, below the two one-way latencies %v: the hook did not shape", best, 2*oneWay)
	}
	t.Logf("one-way %v: fastest mesh call %v", oneWay, best)

	tab.Set(rules.Clone().SetPair("a", "b", netem.Link{Down: true}))
	if _, err := call(500 * time.Millisecond); err == nil {
		t.Fatal("a call crossed the partition")
	}
	tab.Set(rules)
	if _, err := call(10 * time.Second); err != nil {
		t.Fatalf("call after healing: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// The partition cuts what either side sends; a's call surely sent
	// some, b may have had nothing to send while it lasted.
	if sa, sb := conns[0].Stats(), conns[1].Stats(); sa.Cut+sb.Cut == 0 || sa.Delayed == 0 || sb.Delayed == 0 {
		t.Errorf("wrapper stats a %+v, b %+v: want delayed datagrams on both and cut ones", sa, sb)
	}
	if _, err := conns[1].WriteTo([]byte{1}, a.udp.LocalAddr()); err == nil {
		t.Error("the node's Close left its wrapped conn open")
	}
}
