package edge

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// BenchmarkDeliverFanout is a push's whole trip through the edge: one
// Delivery to the sessions of 200 logged-in WebSocket clients on
// loopback (decode, one encoding, a copy per session, the queues, the
// writers, the socket writes), until every client has read its copy.
// ns/op is one fan-out of 200 copies; the per-copy cost is ns/op / 200.
// It is what the delivery latency histogram (relaymesh_delivery_seconds)
// adds its observation to.
func BenchmarkDeliverFanout(b *testing.B) { benchDeliver(b, 200) }

// BenchmarkDeliverOne is the same trip for a one-to-one push: one Delivery
// to one session.
func BenchmarkDeliverOne(b *testing.B) { benchDeliver(b, 1) }

func benchDeliver(b *testing.B, n int) {
	srv := New(Config{EdgeID: "edge-bench", Backend: &fakeBackend{}, Apps: apps.NewDev(), TokenKey: []byte("k")})
	ts := httptest.NewServer(srv.Handler())
	defer func() {
		srv.Close()
		ts.Close()
	}()
	url := "ws" + strings.TrimPrefix(ts.URL, "http")
	codec, _ := lcpb.CodecFor(lcpb.SubprotocolBinary3)
	var got atomic.Int64
	var wg sync.WaitGroup
	targets := make([]*meshpb.Target, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i := range n {
		peer := fmt.Sprintf("member-%03d", i)
		targets[i] = &meshpb.Target{PeerId: peer}
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{lcpb.SubprotocolBinary3}})
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(-1)
		open, _ := codec.Encode(openCmd(1, peer))
		if err := ws.Write(ctx, websocket.MessageBinary, open); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil { // session/opened
			b.Fatal(err)
		}
		wg.Go(func() {
			defer ws.CloseNow()
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
				got.Add(1)
			}
		})
	}
	push, _ := proto.Marshal(&lcpb.GenericCommand{
		Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("room"), Id: proto.String("m1"),
			Msg: proto.String(strings.Repeat("x", 256)), Timestamp: proto.Int64(time.Now().UnixMilli()), FromPeerId: proto.String("sender")},
	})
	d := &meshpb.Delivery{AppId: testApp, Targets: targets, Command: push, Priority: 2}
	b.ReportAllocs()
	want := int64(0)
	for b.Loop() {
		srv.Deliver(d)
		want += int64(n)
		for got.Load() < want {
			time.Sleep(20 * time.Microsecond)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(want), "ns/copy")
}
