package core

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// BenchmarkHotGroup sends into one group conversation of 20 members from
// 20 or 200 concurrent senders (one or ten sessions' worth per member,
// each send with a dt as the SDKs send it) through a core over a
// one-replica raftstore group (real fsyncs in a temporary directory, as
// relaymesh dev); every send waits for its ack. It reports acked sends per
// second and the mean ack latency. Noisy on a shared machine: compare
// builds side by side.
//
//	go test -run '^$' -bench HotGroup -benchtime 20000x ./core
func BenchmarkHotGroup(b *testing.B) {
	for _, senders := range []int{20, 200} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) { benchHotGroup(b, senders) })
	}
}

func benchHotGroup(b *testing.B, senders int) {
	const members = 20
	cl := raftstoretest.NewCluster(b, 1, func(int) raftstore.StateMachine { return NewStateMachine() })
	node := cl.Node(cl.Leader())
	c := New(Config{Replica: node, Apps: apps.NewDev()})
	var pushed atomic.Int64
	detach := c.AttachEdge("e1", func(d *meshpb.Delivery) error {
		pushed.Add(1)
		return nil
	})
	defer func() { detach(); c.Close() }()

	ctx := context.Background()
	var conn atomic.Uint64
	do := func(peer string, g *lcpb.GenericCommand, key string) (*lcpb.GenericCommand, error) {
		raw, _ := proto.Marshal(g)
		rep, err := c.HandleClient(ctx, &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: testApp, PeerId: peer, EdgeId: "e1",
			ConnId: conn.Add(1), ProtocolVersion: 3, Command: raw, ConfigBitmap: 59, IdempotencyKey: key})
		if err != nil || len(rep.Commands) == 0 {
			return nil, fmt.Errorf("%s: %v (%d replies)", peer, err, len(rep.GetCommands()))
		}
		out := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(rep.Commands[0], out); err != nil {
			return nil, err
		}
		if out.GetCmd() == lcpb.CommandType_error {
			return nil, fmt.Errorf("%s: %v", peer, out.GetErrorMessage())
		}
		return out, nil
	}
	var peers []string
	for i := range members {
		p := fmt.Sprintf("m%02d", i)
		peers = append(peers, p)
		raw, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(),
			SessionMessage: &lcpb.SessionCommand{}})
		if _, err := c.HandleClient(ctx, &meshpb.ClientRequest{Kind: meshpb.ClientRequest_OPEN, AppId: testApp, PeerId: p,
			EdgeId: "e1", ConnId: conn.Add(1), ProtocolVersion: 3, Command: raw, ConfigBitmap: 59}); err != nil {
			b.Fatal(err)
		}
	}
	started, err := do(peers[0], &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(),
		Op: lcpb.OpType_start.Enum(), I: proto.Int32(1), ConvMessage: &lcpb.ConvCommand{M: peers[1:]}}, "")
	if err != nil {
		b.Fatal(err)
	}
	cid := started.GetConvMessage().GetCid()

	var next, latency atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer := peers[s%members]
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				dt := fmt.Sprintf("dt-%d", i)
				g := &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(int32(i%1_000_000) + 2),
					DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Dt: proto.String(dt),
						Msg: proto.String(`{"_lctype":-1,"_lctext":"hello from the hot group benchmark"}`)}}
				t0 := time.Now()
				ack, err := do(peer, g, dt)
				if err != nil || ack.GetCmd() != lcpb.CommandType_ack {
					b.Errorf("send %d: %v %v", i, err, ack)
					return
				}
				latency.Add(int64(time.Since(t0)))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "acked/s")
	b.ReportMetric(float64(latency.Load())/float64(b.N)/1e6, "ms/ack")
}
