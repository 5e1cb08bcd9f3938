package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/edge"
)

// BenchmarkDirectAck measures direct→ack round trips through a dev region
// in this process (edge and core over QUIC on loopback, single-node shard
// on Pebble with fsync): the Go SDK sends, the ack comes back after commit.
// Reports p50/p99 latency; run with `make bench`.
func BenchmarkDirectAck(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("senders=%d", par), func(b *testing.B) {
			addr := freeAddrB(b)
			d, err := cluster.StartDev(cluster.DevConfig{DataDir: b.TempDir(), Addr: addr,
				Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			waitReady(b, d)
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

func waitReady(b *testing.B, d *cluster.Dev) {
	deadline := time.Now().Add(20 * time.Second)
	for !d.Core.Ready() {
		if time.Now().After(deadline) {
			b.Fatal("dev region not ready")
		}
		time.Sleep(10 * time.Millisecond)
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
