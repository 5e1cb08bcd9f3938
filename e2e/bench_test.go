package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/edge"
)

// startBenchDev starts a dev region without send or query limits, closed
// when b ends, and waits until it serves.
func startBenchDev(b *testing.B) *cluster.Dev {
	b.Helper()
	d, err := cluster.StartDev(cluster.DevConfig{DataDir: b.TempDir(), Addr: freeAddrB(b),
		Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	waitReady(b, d)
	return d
}

// BenchmarkDirectAck measures direct→ack round trips through a dev region
// in this process (edge and core over QUIC on loopback, single-node shard
// on Pebble with fsync): the Go SDK sends, the ack comes back after commit.
// Reports p50/p99 latency; run with `make bench`.
func BenchmarkDirectAck(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("senders=%d", par), func(b *testing.B) {
			d := startBenchDev(b)
			ctx := context.Background()
			type sender struct {
				c   *client.Client
				cid string
			}
			var ss []sender
			for k := range par {
				c, err := client.Dial(ctx, d.Edge.URL, client.Options{AppID: "bench", ClientID: fmt.Sprintf("s%d", k)})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				// One conversation per sender: sends to one conversation are
				// serialised, sends to different ones run in parallel.
				cid, err := c.CreateConversation(ctx, []string{fmt.Sprintf("r%d", k)}, "bench", nil, false)
				if err != nil {
					b.Fatal(err)
				}
				ss = append(ss, sender{c, cid})
			}
			lat := make([][]time.Duration, par)
			msg := client.TextMessage("benchmark message of a typical chat length, about sixty bytes")
			b.ResetTimer()
			done := make(chan error, par)
			for k := range par {
				go func() {
					n := b.N / par
					if k < b.N%par {
						n++
					}
					for range n {
						t0 := time.Now()
						if _, err := ss[k].c.Send(ctx, ss[k].cid, msg, client.SendOptions{}); err != nil {
							done <- err
							return
						}
						lat[k] = append(lat[k], time.Since(t0))
					}
					done <- nil
				}()
			}
			for range par {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func freeAddrB(b *testing.B) string {
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p+1))
		if err != nil {
			l.Close()
			continue
		}
		u.Close()
		// dev's edge serves WebTransport on udp p as well.
		w, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		l.Close()
		if err != nil {
			continue
		}
		w.Close()
		return "127.0.0.1:" + strconv.Itoa(p)
	}
	b.Fatal("no free port pair")
	return ""
}

// BenchmarkLoginFanIn measures a login (Go SDK dial until its unread
// push) in a dev region of 8 shards in this process, for a client whose
// 4 conversations (one unread message each) all live on one shard: with
// the catalog's member index (the router asks that shard besides the
// system shard) and without it (LoginAsksEveryShard: every shard, as
// before the index). Reports the shard parts asked per login and p50/p99.
func BenchmarkLoginFanIn(b *testing.B) {
	const shards = 8
	for _, every := range []bool{false, true} {
		name := "index"
		if every {
			name = "every-shard"
		}
		b.Run(name, func(b *testing.B) {
			addr := freeAddrB(b)
			d, err := cluster.StartDev(cluster.DevConfig{DataDir: b.TempDir(), Addr: addr, Shards: shards, NoWebTransport: true,
				LoginAsksEveryShard: every, Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			waitReady(b, d)
			mine := readerConvs(b, d.Edge.URL)
			if !every {
				waitIndexVouches(b, d.Core.Router, shards, time.Now().Add(20*time.Second))
			}
			parts := d.Core.Router.Stats().LoginParts.Load()
			lat := timeLogins(b, d.Edge.URL, len(mine))
			b.ReportMetric(float64(d.Core.Router.Stats().LoginParts.Load()-parts)/float64(b.N)+1, "shards/login")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// readerConvs is the login benchmarks' data: alice creates group
// conversations on every shard, one message each, until 4 of them with
// "reader" a member too are on shard 3; it returns those 4.
func readerConvs(b *testing.B, url string) []string {
	b.Helper()
	ctx := context.Background()
	alice, err := client.Dial(ctx, url, client.Options{AppID: "bench", ClientID: "alice"})
	if err != nil {
		b.Fatal(err)
	}
	defer alice.Close()
	var mine []string
	for len(mine) < 4 {
		cid, err := alice.CreateConversation(ctx, []string{"filler"}, "g", nil, false)
		if err != nil {
			b.Fatal(err)
		}
		if catalogShard(cid) == 3 {
			if _, err := alice.AddMembers(ctx, cid, []string{"reader"}); err != nil {
				b.Fatal(err)
			}
			mine = append(mine, cid)
		}
		if _, err := alice.Send(ctx, cid, client.TextMessage("hello"), client.SendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return mine
}

// waitIndexVouches waits until rt's member index vouches for every shard
// but the system shard, failing after deadline.
func waitIndexVouches(b *testing.B, rt *core.Router, shards int, deadline time.Time) {
	b.Helper()
	for n := 1; n < shards; n++ {
		for !rt.IndexVouches(n) {
			if time.Now().After(deadline) {
				b.Fatal("the member index never vouched")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// timeLogins logs "reader" in at url b.N times, the timer running, each
// until its unread notification, which must name want conversations; it
// returns the latencies, sorted.
func timeLogins(b *testing.B, url string, want int) []time.Duration {
	b.Helper()
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		c, err := client.Dial(ctx, url, client.Options{AppID: "bench", ClientID: "reader"})
		if err != nil {
			b.Fatal(err)
		}
		for ev := range c.Events() {
			if u, ok := ev.(client.Unread); ok {
				if len(u.Convs) != want {
					b.Fatalf("unread in %d conversations, want %d", len(u.Convs), want)
				}
				break
			}
		}
		lat = append(lat, time.Since(t0))
		c.Close()
	}
	b.StopTimer()
	slices.Sort(lat)
	return lat
}

// catalogShard is the shard a conversation id names.
func catalogShard(cid string) uint16 { return catalog.HomeOf(cid).Shard }

// BenchmarkLoginFanInRegion is BenchmarkLoginFanIn in a region of three
// cores in this process (8 shards, every shard but the system shard led by
// one of the two cores that do not route, so each shard part is a mesh
// round trip on loopback).
func BenchmarkLoginFanInRegion(b *testing.B) {
	const shards = 8
	for _, every := range []bool{false, true} {
		name := "index"
		if every {
			name = "every-shard"
		}
		b.Run(name, func(b *testing.B) {
			r := startRegionWith(b, shards, 0, func(c *cluster.CoreConfig) { c.LoginAsksEveryShard = every })
			router := r.waitLeader()
			var others []int
			for i := range r.cores {
				if i != router {
					others = append(others, i)
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for n := 1; n < shards; n++ {
				to := others[n%2]
				for !r.cores[to].Replicas[n].IsLeader() {
					if time.Now().After(deadline) {
						b.Fatalf("shard %d never moved to core %d", n, to)
					}
					for _, c := range r.cores {
						if c.Replicas[n].IsLeader() {
							c.Replicas[n].Raft().LeadershipTransferToServer(raft.ServerID(r.cfgs[to].NodeID), raft.ServerAddress(r.cores[to].Node.Addr()))
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			rt := r.cores[router].Router
			mine := readerConvs(b, r.edge.URL)
			if !every {
				waitIndexVouches(b, rt, shards, deadline)
			}
			parts, fwd := rt.Stats().LoginParts.Load(), rt.Stats().Forwarded.Load()
			lat := timeLogins(b, r.edge.URL, len(mine))
			b.ReportMetric(float64(rt.Stats().LoginParts.Load()-parts)/float64(b.N)+1, "shards/login")
			b.ReportMetric(float64(rt.Stats().Forwarded.Load()-fwd)/float64(b.N), "forwarded/login")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkHistoryPage: a Go SDK client reads the newest 100 messages of a
// conversation of 1,000 (a history query, `logs`) from a dev region, end to
// end: the edge, the core's read of the shard's state and the reply.
//
//	go test ./e2e -run '^$' -bench HistoryPage -benchmem
func BenchmarkHistoryPage(b *testing.B) {
	d := startBenchDev(b)
	ctx := context.Background()
	c, err := client.Dial(ctx, d.Edge.URL, client.Options{AppID: "bench", ClientID: "reader"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cid, err := c.CreateConversation(ctx, []string{"other"}, "bench", nil, false)
	if err != nil {
		b.Fatal(err)
	}
	msg := client.TextMessage("benchmark message of a typical chat length, about sixty bytes")
	for range 1000 {
		if _, err := c.Send(ctx, cid, msg, client.SendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ms, err := c.History(ctx, cid, client.HistoryQuery{Limit: 100})
		if err != nil || len(ms) != 100 {
			b.Fatal(len(ms), err)
		}
	}
}
