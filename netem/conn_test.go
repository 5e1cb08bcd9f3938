package netem

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
)

func verifyNoLeaks(m *testing.M) { goleak.VerifyTestMain(m) }

// Two groups of one loopback address each: a (127.0.0.1) and b (127.0.0.2).
func abRules() *Rules {
	return NewRules(
		Group{Name: "a", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		Group{Name: "b", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}},
	)
}

func udpOn(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	// A large receive buffer: on a loaded machine the reader goroutine may
	// lag, and a kernel drop would look like an emulation bug.
	_ = c.SetReadBuffer(8 << 20)
	return c
}

// wrapped returns a shaped socket on ip, closed at the end of the test.
func wrapped(t *testing.T, ip string, tab *Table, seed uint64) *Conn {
	t.Helper()
	c := NewConn(udpOn(t, ip), Config{Table: tab, Seed: seed})
	t.Cleanup(func() { c.Close() })
	return c
}

// echo answers every datagram on c until it is closed.
func echo(c net.PacketConn) {
	b := make([]byte, 2048)
	for {
		n, addr, err := c.ReadFrom(b)
		if err != nil {
			return
		}
		c.WriteTo(b[:n], addr)
	}
}

// quantile of sorted durations.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// TestConnRTT: a datagram round trip between two shaped sockets costs
// both one-way latencies. The lower bound is a property (a datagram never
// leaves early); how close to it the round trips come is reported.
func TestConnRTT(t *testing.T) {
	const oneWay = 20 * time.Millisecond
	for _, jitter := range []time.Duration{0, 5 * time.Millisecond} {
		tab := NewTable(abRules().SetPair("a", "b", Link{Latency: oneWay, Jitter: jitter}))
		a, b := wrapped(t, "127.0.0.1", tab, 1), wrapped(t, "127.0.0.2", tab, 2)
		var wg sync.WaitGroup
		wg.Go(func() { echo(b) })
		buf := make([]byte, 64)
		var rtts []time.Duration
		for i := range 30 {
			binary.BigEndian.PutUint32(buf, uint32(i))
			t0 := time.Now()
			if _, err := a.WriteTo(buf[:4], b.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			a.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := a.ReadFrom(buf)
			if err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			rtt := time.Since(t0)
			if got := binary.BigEndian.Uint32(buf[:n]); got != uint32(i) {
				t.Fatalf("ping %d: echo of %d", i, got)
			}
			rtts = append(rtts, rtt)
		}
		b.Close()
		wg.Wait()
		slices.Sort(rtts)
		floor := 2 * (oneWay - jitter)
		if rtts[0] < floor {
			t.Errorf("jitter %v: fastest round trip %v, below the floor %v: a datagram left early", jitter, rtts[0], floor)
		}
		t.Logf("one-way %v ± %v: RTT min %v p50 %v p99 %v max %v (configured %v)", oneWay, jitter,
			rtts[0], quantile(rtts, 0.5), quantile(rtts, 0.99), rtts[len(rtts)-1], 2*oneWay)
		if s := a.Stats(); s.Delayed != 30 || s.Sent != 30 {
			t.Errorf("sender stats %+v, want 30 delayed and sent", s)
		}
	}
}

// collect counts datagrams arriving on c, by the uint32 they start with.
type collect struct {
	mu   sync.Mutex
	seen []uint32
	n    atomic.Int64
}

func (cl *collect) run(c net.PacketConn) {
	b := make([]byte, 2048)
	for {
		n, _, err := c.ReadFrom(b)
		if err != nil {
			return
		}
		if n >= 4 {
			cl.mu.Lock()
			cl.seen = append(cl.seen, binary.BigEndian.Uint32(b))
			cl.mu.Unlock()
		}
		cl.n.Add(1)
	}
}

func (cl *collect) list() []uint32 {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]uint32(nil), cl.seen...)
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnLoss: the share dropped matches Loss, and exactly the datagrams
// not dropped arrive.
func TestConnLoss(t *testing.T) {
	const n, loss = 4000, 0.2
	tab := NewTable(abRules().Set("a", "b", Link{Loss: loss}))
	a := wrapped(t, "127.0.0.1", tab, 42)
	b := udpOn(t, "127.0.0.2")
	var cl collect
	var wg sync.WaitGroup
	wg.Go(func() { cl.run(b) })
	buf := make([]byte, 32)
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(i))
		a.WriteTo(buf, b.LocalAddr())
		if i%200 == 199 {
			time.Sleep(time.Millisecond) // let the reader keep up: loopback drops nothing then
		}
	}
	s := a.Stats()
	waitUntil(t, 10*time.Second, "every datagram sent to arrive", func() bool { return cl.n.Load() >= s.Sent })
	b.Close()
	wg.Wait()
	// Binomial: mean n·p, sd √(n·p·(1−p)) ≈ 25; allow 5 sd.
	mean, sd := n*loss, math.Sqrt(n*loss*(1-loss))
	if math.Abs(float64(s.Lost)-mean) > 5*sd {
		t.Errorf("lost %d of %d, want about %.0f ± %.0f", s.Lost, n, mean, 5*sd)
	}
	if got := cl.n.Load(); got != s.Sent || s.Sent+s.Lost != n {
		t.Errorf("received %d, sent %d, lost %d, of %d written", got, s.Sent, s.Lost, n)
	}
	t.Logf("loss %.2f: dropped %d of %d (%.4f)", loss, s.Lost, n, float64(s.Lost)/n)
}

// TestConnOrderWithJitter: jitter delays datagrams but one destination's
// arrive in the order they were written.
func TestConnOrderWithJitter(t *testing.T) {
	tab := NewTable(abRules().Set("a", "b", Link{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond}))
	a := wrapped(t, "127.0.0.1", tab, 7)
	b := udpOn(t, "127.0.0.2")
	var cl collect
	var wg sync.WaitGroup
	wg.Go(func() { cl.run(b) })
	buf := make([]byte, 8)
	const n = 500
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(i))
		a.WriteTo(buf, b.LocalAddr())
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
	// Every datagram the emulation sent, unless the kernel dropped some on
	// loopback under load (counted, not netem's doing); order is the claim.
	sent := a.Stats().Sent
	waitUntil(t, 10*time.Second, "the datagrams", func() bool { return cl.n.Load() >= sent*95/100 })
	deadline := time.Now().Add(2 * time.Second)
	for cl.n.Load() < sent && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.Close()
	wg.Wait()
	got := cl.list()
	if !slices.IsSorted(got) {
		t.Errorf("arrival order not the write order (%d datagrams): first out of order at %d", len(got), firstUnsorted(got))
	}
	if int64(len(got)) < sent {
		t.Logf("%d of %d datagrams arrived (loopback drops under load)", len(got), sent)
	}
}

func firstUnsorted(s []uint32) int {
	for i := 1; i < len(s); i++ {
		if s[i] < s[i-1] {
			return i
		}
	}
	return -1
}

// TestConnPartition: nothing passes a Down link; after healing the same
// socket reaches the peer again. The marker sent after healing is the
// positive control: anything sent during the partition would have
// arrived before it.
func TestConnPartition(t *testing.T) {
	rules := abRules().Set("a", "b", Link{Latency: time.Millisecond})
	tab := NewTable(rules)
	a := wrapped(t, "127.0.0.1", tab, 3)
	b := udpOn(t, "127.0.0.2")
	var cl collect
	var wg sync.WaitGroup
	wg.Go(func() { cl.run(b) })
	send := func(v uint32) {
		buf := binary.BigEndian.AppendUint32(nil, v)
		if _, err := a.WriteTo(buf, b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	waitUntil(t, 5*time.Second, "the datagram before the partition", func() bool { return cl.n.Load() == 1 })
	tab.Set(rules.Clone().Set("a", "b", Link{Latency: time.Millisecond, Down: true}))
	for i := range 100 {
		send(uint32(100 + i))
	}
	tab.Set(rules)
	send(2)
	waitUntil(t, 5*time.Second, "the marker after healing", func() bool { return cl.n.Load() >= 2 })
	b.Close()
	wg.Wait()
	if got := cl.list(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("received %v, want [1 2]: datagrams crossed the partition", got)
	}
	if s := a.Stats(); s.Cut != 100 {
		t.Errorf("cut %d, want 100", s.Cut)
	}
}

// TestConnOverflow: a full delay line drops and counts.
func TestConnOverflow(t *testing.T) {
	tab := NewTable(abRules().Set("a", "b", Link{Latency: time.Hour}))
	a := NewConn(udpOn(t, "127.0.0.1"), Config{Table: tab, MaxQueuedBytes: 1000})
	defer a.Close()
	dst := &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: 9}
	for range 20 {
		a.WriteTo(make([]byte, 100), dst)
	}
	if s := a.Stats(); s.Delayed != 10 || s.Overflow != 10 {
		t.Errorf("stats %+v, want 10 delayed and 10 overflowed", s)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close with a full line: %v", err)
	}
	if _, err := a.WriteTo([]byte{1}, dst); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
	}
}

// TestConnNoRulesPassThrough: without a link nothing is queued.
func TestConnNoRulesPassThrough(t *testing.T) {
	a := wrapped(t, "127.0.0.1", NewTable(abRules()), 1)
	b := udpOn(t, "127.0.0.2")
	defer b.Close()
	a.WriteTo([]byte("ping"), b.LocalAddr())
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, _, err := b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if s := a.Stats(); s.Delayed != 0 || s.Sent != 1 {
		t.Errorf("stats %+v, want one datagram sent directly", s)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "netem"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.2")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestQUICOverConn runs a real quic-go connection over two shaped
// sockets: the RTT quic-go measures is at least the two one-way latencies,
// a partition stops a stream round trip, and healing restores it on the
// same connection.
func TestQUICOverConn(t *testing.T) {
	const oneWay = 25 * time.Millisecond
	rules := abRules().SetPair("a", "b", Link{Latency: oneWay})
	tab := NewTable(rules)
	ca, cb := wrapped(t, "127.0.0.1", tab, 1), wrapped(t, "127.0.0.2", tab, 2)
	qconf := &quic.Config{MaxIdleTimeout: 30 * time.Second, HandshakeIdleTimeout: 10 * time.Second}
	trB := &quic.Transport{Conn: cb}
	defer trB.Close()
	ln, err := trB.Listen(&tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"netem-test"}}, qconf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { // server: echo every stream
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		defer c.CloseWithError(0, "")
		for {
			s, err := c.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				b, _ := io.ReadAll(s)
				s.Write(b)
				s.Close()
			})
		}
	})
	trA := &quic.Transport{Conn: ca}
	defer trA.Close()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	t0 := time.Now()
	c, err := trA.Dial(dctx, cb.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"netem-test"}}, qconf)
	dcancel()
	if err != nil {
		t.Fatalf("dial through netem: %v", err)
	}
	defer c.CloseWithError(0, "")
	hs := time.Since(t0)

	roundTrip := func(d time.Duration, msg string) (time.Duration, error) {
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		t0 := time.Now()
		s, err := c.OpenStreamSync(rctx)
		if err != nil {
			return 0, err
		}
		stop := context.AfterFunc(rctx, func() { s.CancelRead(1); s.CancelWrite(1) })
		defer stop()
		if _, err := s.Write([]byte(msg)); err != nil {
			return 0, err
		}
		s.Close()
		b, err := io.ReadAll(s)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(b, []byte(msg)) {
			return 0, errors.New("bad echo " + string(b))
		}
		return time.Since(t0), nil
	}
	var rtts []time.Duration
	for range 10 {
		d, err := roundTrip(5*time.Second, "hello")
		if err != nil {
			t.Fatalf("stream round trip before the partition: %v", err)
		}
		rtts = append(rtts, d)
	}
	slices.Sort(rtts)
	st := c.ConnectionStats()
	if st.MinRTT < 2*oneWay {
		t.Errorf("quic-go's min RTT %v, below the two one-way latencies %v", st.MinRTT, 2*oneWay)
	}
	t.Logf("one-way %v: handshake %v, stream round trip min %v p50 %v max %v; quic-go RTT min %v smoothed %v",
		oneWay, hs, rtts[0], quantile(rtts, 0.5), rtts[len(rtts)-1], st.MinRTT, st.SmoothedRTT)

	tab.Set(rules.Clone().SetPair("a", "b", Link{Latency: oneWay, Down: true}))
	if _, err := roundTrip(time.Second, "cut"); err == nil {
		t.Fatal("a stream round trip crossed the partition")
	}
	tab.Set(rules)
	d, err := roundTrip(10*time.Second, "healed")
	if err != nil {
		t.Fatalf("stream round trip after healing: %v", err)
	}
	t.Logf("after healing: round trip %v on the same connection", d)
	if s := ca.Stats(); s.Cut == 0 {
		t.Errorf("client stats %+v: nothing was cut during the partition", s)
	}
}
