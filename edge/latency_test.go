package edge

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestBackendHistogram: the backend latency histogram renders Prometheus'
// cumulative buckets (a duration on a bound counts in that bucket),
// +Inf, _sum in seconds and _count, per cmd label; concurrent
// observations all count.
func TestBackendHistogram(t *testing.T) {
	var m Metrics
	for _, d := range []time.Duration{time.Millisecond, 3 * time.Millisecond, 40 * time.Millisecond, time.Minute} {
		m.observeBackend(lcpb.CommandType_direct, d)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { m.observeBackend(lcpb.CommandType_conv, 2*time.Second) })
	}
	wg.Wait()
	out := metricsText(t, m.Collector())
	for _, want := range []string{
		"# TYPE relaymesh_edge_backend_seconds histogram",
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.001"} 1`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.0025"} 1`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.005"} 2`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="0.05"} 3`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="10"} 3`,
		`relaymesh_edge_backend_seconds_bucket{cmd="direct",le="+Inf"} 4`,
		`relaymesh_edge_backend_seconds_sum{cmd="direct"} 60.044`,
		`relaymesh_edge_backend_seconds_count{cmd="direct"} 4`,
		`relaymesh_edge_backend_seconds_bucket{cmd="other",le="1"} 0`,
		`relaymesh_edge_backend_seconds_bucket{cmd="other",le="2.5"} 50`,
		`relaymesh_edge_backend_seconds_count{cmd="other"} 50`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestDeliveryLatency: a message's copies written to clients are timed
// from the message's server timestamp, one observation per copy written,
// under the delivery's priority class; a replay, a push that is not a
// message, a copy for a session not here and a timestamp ahead of the
// edge's clock (counted as zero) do not skew it. The series is
// lint-clean.
func TestDeliveryLatency(t *testing.T) {
	env := newEnv(t, nil)
	alice := env.dial(t, lcpb.SubprotocolBinary3)
	alice.login(1, "alice")
	bob := env.dial(t, lcpb.SubprotocolBase64v3)
	bob.login(1, "bob")
	m := env.srv.Metrics()
	msg := func(id string, ts int64) []byte {
		b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c1"), Id: proto.String(id), Msg: proto.String("hi"), Timestamp: proto.Int64(ts)}})
		return b
	}
	both := []*meshpb.Target{{PeerId: "alice"}, {PeerId: "bob"}, {PeerId: "carol"}} // carol is not here
	recvID := func(c *client, id string) {
		t.Helper()
		if r := c.recv(); r.GetDirectMessage().GetId() != id {
			t.Fatalf("got %v %q, want message %s", r.GetCmd(), r.GetDirectMessage().GetId(), id)
		}
	}

	// 300 ms old at HIGH: two copies in (0.25, 0.5].
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: both, Command: msg("old", time.Now().Add(-300*time.Millisecond).UnixMilli()), Priority: 1})
	recvID(alice, "old")
	recvID(bob, "old")
	waitFor(t, "two timed copies", func() bool { return m.Delivery[PriorityHigh].Count() == 2 })

	// A replay of it, a session/closed push and a fresh message from a
	// core whose clock is ahead (LOW): only the last is timed, as zero.
	replay := &meshpb.Delivery{AppId: testApp, Targets: both, Command: msg("old", time.Now().Add(-time.Hour).UnixMilli()), Priority: 1, Replay: true, MsgId: "old"}
	env.srv.Deliver(replay)
	closed, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
		SessionMessage: &lcpb.SessionCommand{Code: proto.Int32(1)}})
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "bob"}}, Command: closed, Priority: 1})
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: both, Command: msg("ahead", time.Now().Add(time.Hour).UnixMilli()), Priority: 3})
	recvID(alice, "old") // the replay (the edge passes it: nothing marked it as seen in this test)
	recvID(alice, "ahead")
	// Each connection's writer wrote the replay (HIGH) before the LOW
	// copy, so once both LOW copies are timed the replay's would be too.
	waitFor(t, "the LOW copies timed", func() bool { return m.Delivery[PriorityLow].Count() == 2 })

	out := metricsText(t, m.Collector())
	for _, want := range []string{
		"# TYPE relaymesh_delivery_seconds histogram",
		`relaymesh_delivery_seconds_bucket{priority="high",le="0.25"} 0`,
		`relaymesh_delivery_seconds_bucket{priority="high",le="0.5"} 2`,
		`relaymesh_delivery_seconds_count{priority="high"} 2`,
		`relaymesh_delivery_seconds_bucket{priority="low",le="0.001"} 2`,
		`relaymesh_delivery_seconds_sum{priority="low"} 0`,
		`relaymesh_delivery_seconds_count{priority="normal"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if problems, err := testutil.CollectAndLint(m.Collector(), "relaymesh_delivery_seconds"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// TestDeliveryLatencyConcurrent: copies written by many connections'
// writers at once are each counted once (run with -race).
func TestDeliveryLatencyConcurrent(t *testing.T) {
	env := newEnv(t, nil)
	const n, msgs = 8, 50
	var targets []*meshpb.Target
	var clients []*client
	for i := range n {
		c := env.dial(t, lcpb.SubprotocolBinary3)
		peer := fmt.Sprintf("p%d", i)
		c.login(1, peer)
		clients = append(clients, c)
		targets = append(targets, &meshpb.Target{PeerId: peer})
	}
	var wg sync.WaitGroup
	for i := range msgs {
		wg.Go(func() {
			b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
				DirectMessage: &lcpb.DirectCommand{Id: proto.String(fmt.Sprint(i)), Timestamp: proto.Int64(time.Now().UnixMilli())}})
			env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: targets, Command: b})
		})
	}
	wg.Wait()
	for _, c := range clients {
		for range msgs {
			c.recv()
		}
	}
	m := env.srv.Metrics()
	waitFor(t, "every copy timed", func() bool { return m.Delivery[PriorityNormal].Count() == n*msgs })
}

// TestObserveDeliveryBounds: bogus timestamps (far past, far future,
// negative, the int64 extremes) and priorities out of range neither
// overflow nor panic: the past counts as a day, the future as zero, a
// timestamp that is not positive not at all, a bad priority as NORMAL.
func TestObserveDeliveryBounds(t *testing.T) {
	var m Metrics
	now := time.UnixMilli(1_800_000_000_000)
	for _, at := range []int64{1, 1 << 62, math.MaxInt64, now.UnixMilli() - 1} {
		m.observeDelivery(Priority(99), at, now)
	}
	for _, at := range []int64{0, -1, math.MinInt64} {
		m.observeDelivery(PriorityHigh, at, now)
	}
	s := m.Delivery[PriorityNormal].Snapshot()
	if s.Count() != 4 || m.Delivery[PriorityHigh].Count() != 0 {
		t.Fatalf("got %d normal and %d high observations, want 4 and 0", s.Count(), m.Delivery[PriorityHigh].Count())
	}
	if want := 24*time.Hour + time.Millisecond; s.Sum != want {
		t.Errorf("sum: got %v, want a day (the past) + 0 + 0 (the future) + 1ms = %v", s.Sum, want)
	}
}
