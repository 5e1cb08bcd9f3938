package raftstore_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// fatalErr is a FatalApplyError.
type fatalErr struct{ error }

func (fatalErr) FatalApply() {}

// faultySM is counterSM, except that while broken is set it answers the
// command "boom" with a fatal apply error (as a replica whose storage
// failed would), after writing to the batch, which must then be thrown
// away.
type faultySM struct {
	counterSM
	broken *atomic.Bool
}

func (s faultySM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	if string(cmd) == "boom" && s.broken.Load() {
		must(b.Set([]byte("half-applied"), cmd, nil))
		return fatalErr{errors.New("injected storage failure")}
	}
	return s.counterSM.Apply(b, index, cmd)
}

// proposeAll proposes cmds in order through the current leader.
func proposeAll(t *testing.T, c *raftstoretest.Cluster, cmds ...string) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	for _, cmd := range cmds {
		if _, err := c.Propose(ctx, []byte(cmd)); err != nil {
			t.Fatalf("propose %s: %v", cmd, err)
		}
	}
}

func count(state map[string]string) uint64 {
	v, ok := state["count"]
	if !ok {
		return 0
	}
	return binary.BigEndian.Uint64([]byte(v))
}

// TestFatalApplyStopsReplica: a replica whose state machine cannot apply an
// entry (its storage failed) stops, instead of answering differently from
// its peers; the others keep serving; once the fault is gone a restart
// replays the log and the replica holds exactly the others' state.
func TestFatalApplyStopsReplica(t *testing.T) {
	for _, role := range []string{"follower", "leader"} {
		t.Run(role, func(t *testing.T) {
			var broken [3]atomic.Bool
			c := raftstoretest.NewCluster(t, 3, func(i int) raftstore.StateMachine {
				return faultySM{broken: &broken[i]}
			})
			proposeAll(t, c, "a", "b", "c")
			leader := c.WaitLeader()
			bad := (leader + 1) % 3
			if role == "leader" {
				bad = leader
			}
			c.WaitConverged(10 * time.Second)
			appliedBefore := c.Node(bad).AppliedIndex()
			broken[bad].Store(true)

			ctx := ctxT(t, 20*time.Second)
			res, err := c.Node(leader).Propose(ctx, []byte("boom"))
			if role == "leader" {
				if !errors.Is(err, raftstore.ErrReplicaFailed) {
					t.Fatalf("propose on the failing leader: got %v, %v; want ErrReplicaFailed", res, err)
				}
			} else if err != nil || res != uint64(4) {
				t.Fatalf("propose boom: got %v, %v; want 4 (the healthy leader applied it)", res, err)
			}
			raftstoretest.WaitFor(t, 10*time.Second, func() error {
				if c.Node(bad).Err() == nil {
					return errors.New("replica with the failed storage still runs")
				}
				return nil
			})
			select {
			case <-c.Node(bad).Failed():
			default:
				t.Fatal("Failed() not closed")
			}
			if !errors.Is(c.Node(bad).Err(), raftstore.ErrReplicaFailed) {
				t.Fatalf("Err() = %v, want ErrReplicaFailed", c.Node(bad).Err())
			}
			if _, err := c.Node(bad).Propose(ctx, []byte("x")); !errors.Is(err, raftstore.ErrReplicaFailed) {
				t.Fatalf("propose on the failed replica: %v, want ErrReplicaFailed", err)
			}
			// Nothing of the failing batch reached its state.
			st, err := raftstoretest.Dump(c.Node(bad).State())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := st["half-applied"]; ok {
				t.Fatal("the failing entry's writes reached the state")
			}
			if got := c.Node(bad).AppliedIndex(); got != appliedBefore {
				t.Fatalf("failed replica applied index %d, want %d (unchanged)", got, appliedBefore)
			}
			if c.Node(bad).IsLeader() {
				t.Fatal("failed replica is leader")
			}

			// The others keep serving, with the same results they would
			// have had (count goes on from 4).
			c.Kill(bad)
			c.WaitLeader()
			proposeAll(t, c, "d", "e")
			state := c.WaitConverged(10 * time.Second)
			if got := count(state); got != 6 {
				t.Fatalf("count on the healthy replicas = %d, want 6", got)
			}

			// Storage fixed: the restarted replica replays and converges.
			broken[bad].Store(false)
			c.Restart(bad)
			state = c.WaitConverged(15 * time.Second)
			if got := checkNoDup(t, state); got != 6 {
				t.Fatalf("count after the restart = %d, want 6", got)
			}
		})
	}
}

// readCheckedSM is counterSM, except that a failed read of the state is
// a fatal apply error, as a real state machine treats it.
type readCheckedSM struct{ counterSM }

func (s readCheckedSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	_, closer, err := b.Get([]byte("count"))
	switch {
	case err == nil:
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return fatalErr{fmt.Errorf("read count: %w", err)}
	}
	return s.counterSM.Apply(b, index, cmd)
}

// TestStateReadFailureStopsReplica: a replica whose disk fails reads
// (pebble's errorfs on its state DB's tables) stops at the first entry it
// cannot apply; the others keep serving; with the disk fixed a restart
// replays the log and the replica converges byte for byte.
func TestStateReadFailureStopsReplica(t *testing.T) {
	var failReads atomic.Bool
	var bad atomic.Int32
	bad.Store(-1)
	c := raftstoretest.NewCluster(t, 3, func(int) raftstore.StateMachine { return readCheckedSM{} },
		raftstoretest.WithConfig(func(i int, cfg *raftstore.Config) {
			cfg.StateOptions = func(o *pebble.Options) {
				o.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
					if failReads.Load() && int(bad.Load()) == i && op.OpKind() == errorfs.OpKindRead &&
						strings.HasSuffix(path, ".sst") {
						return errors.New("injected read error")
					}
					return nil
				}))
				o.Cache = pebble.NewCache(0) // every read reaches the file
				t.Cleanup(o.Cache.Unref)
			}
		}))
	proposeAll(t, c, "a", "b")
	f := (c.WaitLeader() + 1) % 3
	c.WaitConverged(10 * time.Second)
	// Move the state into tables, so the next apply reads from disk.
	if err := c.Node(f).State().Flush(); err != nil {
		t.Fatal(err)
	}
	bad.Store(int32(f))
	failReads.Store(true)
	proposeAll(t, c, "c")
	raftstoretest.WaitFor(t, 10*time.Second, func() error {
		if c.Node(f).Err() == nil {
			return fmt.Errorf("replica %d still runs", f)
		}
		return nil
	})
	if err := c.Node(f).Err(); !strings.Contains(err.Error(), "injected read error") {
		t.Fatalf("Err() = %v, want the injected read error", err)
	}
	proposeAll(t, c, "d")
	c.Kill(f)
	state := c.WaitConverged(10 * time.Second)
	if got := count(state); got != 4 {
		t.Fatalf("count on the healthy replicas = %d, want 4", got)
	}
	failReads.Store(false)
	c.Restart(f)
	state = c.WaitConverged(15 * time.Second)
	if got := checkNoDup(t, state); got != 4 {
		t.Fatalf("count after the restart = %d, want 4", got)
	}
}
