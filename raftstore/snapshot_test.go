package raftstore_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

func smallLog(i int, c *raftstore.Config) {
	c.TrailingLogs = 10
	c.SnapshotThreshold = 1 << 30 // only forced snapshots
	c.SnapshotInterval = time.Hour
}

func proposeN(t *testing.T, c *raftstoretest.Cluster, prefix string, n int) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	for i := range n {
		if _, err := c.Propose(ctx, []byte(fmt.Sprintf("%s-%d", prefix, i))); err != nil {
			t.Fatalf("propose %s-%d: %v", prefix, i, err)
		}
	}
}

// snapFiles lists what is named name in the replica's snapshots.
func snapFiles(t *testing.T, dir, name string) []string {
	t.Helper()
	got, err := filepath.Glob(filepath.Join(dir, "snapshots", "snapshots", "*", name))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func firstIndex(t *testing.T, n *raftstore.Node) uint64 {
	t.Helper()
	fi, err := n.LogStoreForTest().FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestSnapshotCompactionRestore: a follower is down while the leader
// snapshots and compacts its log; on restart the follower is behind the
// leader's first index and must be restored from the snapshot. A fresh
// replica added afterwards is restored the same way.
func TestSnapshotCompactionRestore(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, newCounter, raftstoretest.WithConfig(smallLog))
	l := c.WaitLeader()
	proposeN(t, c, "a", 50)
	lagger := (l + 1) % 3
	c.Kill(lagger)
	proposeN(t, c, "b", 200)

	for _, i := range c.Live() {
		if err := c.Node(i).Raft().Snapshot().Error(); err != nil {
			t.Fatalf("snapshot on %d: %v", i, err)
		}
	}
	for _, i := range c.Live() {
		if got := snapFiles(t, c.Dir(i), "ckpt"); len(got) != 1 {
			t.Fatalf("replica %d: %d snapshot checkpoints, want its snapshot to be one", i, len(got))
		}
		last := c.Node(i).Raft().AppliedIndex()
		if fi := firstIndex(t, c.Node(i)); fi < last-20 || fi <= 1 {
			t.Fatalf("replica %d: FirstIndex = %d after snapshot at ~%d with TrailingLogs 10", i, fi, last)
		}
	}
	proposeN(t, c, "c", 20)

	c.Restart(lagger)
	state := c.WaitConverged(20 * time.Second)
	if got := checkNoDup(t, state); got != 270 {
		t.Fatalf("count = %d, want 270", got)
	}
	if s := c.Node(lagger).Raft().Stats()["last_snapshot_index"]; s == "0" {
		t.Fatalf("lagging replica caught up without a snapshot (last_snapshot_index %s)", s)
	}
	// The leader sent the stream it made from its checkpoint; the lagging
	// replica keeps the stream it received.
	made := 0
	for _, i := range c.Live() {
		if i != lagger {
			made += len(snapFiles(t, c.Dir(i), "stream.bin"))
		}
	}
	if made == 0 {
		t.Fatal("no snapshot stream was made from a checkpoint")
	}
	if got := snapFiles(t, c.Dir(lagger), "state.bin"); len(got) == 0 {
		t.Fatal("lagging replica kept no received snapshot stream")
	}

	// The restored replica keeps its state across a restart.
	c.Kill(lagger)
	c.Restart(lagger)
	proposeN(t, c, "d", 10)
	state = c.WaitConverged(20 * time.Second)
	if got := checkNoDup(t, state); got != 280 {
		t.Fatalf("count = %d, want 280", got)
	}

	fresh := c.Add()
	state = c.WaitConverged(20 * time.Second)
	if got := checkNoDup(t, state); got != 280 {
		t.Fatalf("count with fresh replica %d = %d, want 280", fresh, got)
	}
	proposeN(t, c, "e", 10)
	state = c.WaitConverged(20 * time.Second)
	if got := checkNoDup(t, state); got != 290 {
		t.Fatalf("count = %d, want 290", got)
	}
}

// TestRestartAfterSnapshot restarts a single replica whose log was compacted:
// raft starts from the snapshot index without restoring it, and the state DB
// carries the rest.
func TestRestartAfterSnapshot(t *testing.T) {
	c := raftstoretest.NewCluster(t, 1, newCounter, raftstoretest.WithConfig(smallLog))
	proposeN(t, c, "a", 100)
	if err := c.Node(0).Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	proposeN(t, c, "b", 30)
	if fi := firstIndex(t, c.Node(0)); fi <= 1 {
		t.Fatalf("FirstIndex = %d after snapshot, want compacted", fi)
	}
	c.Kill(0)
	c.Restart(0)
	c.WaitLeader()
	proposeN(t, c, "c", 1)
	if got := checkNoDup(t, c.WaitConverged(5*time.Second)); got != 131 {
		t.Fatalf("count = %d, want 131", got)
	}
}

// TestInterruptedRestore: a crash in the middle of a snapshot restore leaves
// the state half loaded with the restore marker set; Open restores again
// from the newest snapshot on disk.
func TestInterruptedRestore(t *testing.T) {
	c := raftstoretest.NewCluster(t, 1, newCounter, raftstoretest.WithConfig(smallLog))
	proposeN(t, c, "a", 40)
	if err := c.Node(0).Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.Kill(0)

	// Simulate the crash: the wiping batch of Restore ran, nothing was loaded.
	db, err := pebble.Open(filepath.Join(c.Dir(0), "state"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteRange([]byte{}, []byte{0xff, 0xff}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte(raftstore.ReservedPrefix+"restoring"), nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	c.Restart(0)
	c.WaitLeader()
	proposeN(t, c, "b", 1)
	if got := checkNoDup(t, c.WaitConverged(5*time.Second)); got != 41 {
		t.Fatalf("count = %d, want 41", got)
	}
}
