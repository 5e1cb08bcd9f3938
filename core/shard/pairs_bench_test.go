package shard

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// pairsConvs is how many two-member conversations the pairs benchmarks
// spread their messages over (the load tester's pairs scenario has one per
// two sessions).
const pairsConvs = 1000

// pairsCommands returns what one one-to-one message costs the state
// machine in the pairs scenario: the send (with a dedup token, as every SDK
// sends one) and the recipient's ack, coalesced into an OpBatch as
// core/cursors.go proposes it.
func pairsCommands(i int) (send, ack *Command) {
	cid := fmt.Sprintf("c%04d", i%pairsConvs)
	now := int64(1000 + i)
	send = &Command{Op: OpAppend, App: app, CID: cid, From: cid + "-a", MID: fmt.Sprintf("m%08d", i),
		Data: `{"_lctype":-1,"_lctext":"hello from the pairs benchmark"}`, DT: fmt.Sprintf("dt-%08d", i), Now: now}
	ack = &Command{Op: OpBatch, Batch: []*Command{{Op: OpAck, App: app, CID: cid, From: cid + "-b", T: now, Now: now}}}
	return send, ack
}

func pairsStart(i int) *Command {
	cid := fmt.Sprintf("c%04d", i)
	return &Command{Op: OpStart, App: app, CID: cid, From: cid + "-a", Members: []string{cid + "-b"}, Now: 1}
}

// BenchmarkPairsApply applies the pairs scenario's messages as raftstore
// does (64 messages and their acks per batch), on a state DB opened like
// raftstore's (no WAL, 16 MiB memtables) with the given options; enough
// messages flush memtables into sstables, so the point reads of the
// append (dedup token) and the ack (cursor) meet real tables. Reported per
// message.
//
//	go test -run '^$' -bench PairsApply -benchtime 200000x ./core/shard
func BenchmarkPairsApply(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts func(*pebble.Options)
	}{
		{"pebble-defaults", func(*pebble.Options) {}},
		{"bloom", raftstore.TuneStateDB},
		{"cache", func(o *pebble.Options) { o.Cache = pebble.NewCache(raftstore.StateCacheSize) }},
		{"raftstore", func(o *pebble.Options) {
			raftstore.TuneStateDB(o)
			o.Cache = pebble.NewCache(raftstore.StateCacheSize)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			o := &pebble.Options{FS: vfs.NewMem(), MemTableSize: 16 << 20, DisableWAL: true}
			tc.opts(o)
			db, err := pebble.Open("", o)
			if o.Cache != nil {
				o.Cache.Unref() // the DB holds its own reference
			}
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			f, idx := New(), uint64(0)
			apply := func(cmds []*Command) {
				batch := db.NewIndexedBatch()
				defer batch.Close()
				for _, c := range cmds {
					enc, err := c.Encode()
					if err != nil {
						b.Fatal(err)
					}
					idx++
					switch v := f.Apply(batch, idx, enc).(type) {
					case error:
						b.Fatal(v)
					case *Result:
						for _, it := range v.Batch {
							if it.Err != nil {
								b.Fatal(it.Err)
							}
						}
					}
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
			}
			var cmds []*Command
			for i := range pairsConvs {
				cmds = append(cmds, pairsStart(i))
			}
			apply(cmds)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 64 {
				cmds = cmds[:0]
				for j := i; j < min(i+64, b.N); j++ {
					send, ack := pairsCommands(j)
					cmds = append(cmds, send, ack)
				}
				apply(cmds)
			}
		})
	}
}

// BenchmarkPairsPropose proposes the pairs scenario's messages through a
// one-replica raftstore group (real fsyncs in a temporary directory) from
// 256 concurrent senders, each send followed by its ack, as relaymesh dev
// commits them; it reports committed messages per second and the mean
// proposal latency. Noisy on a shared machine: compare runs side by side.
//
//	go test -run '^$' -bench PairsPropose -benchtime 100000x ./core/shard
func BenchmarkPairsPropose(b *testing.B) {
	c := raftstoretest.NewCluster(b, 1, func(int) raftstore.StateMachine { return New() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	propose := func(cmd *Command) {
		enc, err := cmd.Encode()
		if err != nil {
			b.Fatal(err)
		}
		v, err := c.Propose(ctx, enc)
		if err != nil {
			b.Error(err)
			return
		}
		if err, ok := v.(error); ok {
			b.Error(err)
		}
	}
	for i := range pairsConvs {
		propose(pairsStart(i))
	}
	const senders = 256
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				send, ack := pairsCommands(i)
				propose(send)
				propose(ack)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}
