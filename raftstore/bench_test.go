package raftstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// putIndexSM stores each command under its raft index, like a message log.
type putIndexSM struct{}

func (putIndexSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	var k [10]byte
	k[0], k[1] = 'm', '/'
	binary.BigEndian.PutUint64(k[2:], index)
	must(b.Set(k[:], cmd, nil))
	return index
}

// BenchmarkPropose3 measures committed commands per second on a 3-replica
// in-process group over TCP (real fsyncs), with concurrent proposers
// sending 128-byte commands to the leader.
//
//	go test -run XXX -bench Propose3 -benchtime 200000x ./raftstore/
func BenchmarkPropose3(b *testing.B) {
	for _, workers := range []int{256, 1024} {
		b.Run(fmt.Sprintf("proposers=%d", workers), func(b *testing.B) {
			benchPropose(b, 3, workers)
		})
	}
}

func benchPropose(b *testing.B, replicas, workers int) {
	c := raftstoretest.NewCluster(b, replicas, func(int) raftstore.StateMachine { return putIndexSM{} })
	leader := c.Node(c.WaitLeader())
	cmd := make([]byte, 128)
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := leader.Propose(ctx, cmd); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}
