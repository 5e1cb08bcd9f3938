package mesh

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestRaftCluster runs a 3-node hashicorp/raft cluster over NetworkTransport
// on the mesh's raft layer: it must elect a leader and replicate an Apply.
func TestRaftCluster(t *testing.T) {
	names := []string{"core-1", "core-2", "core-3"}
	ids := pki(t, names...)
	nodes := make([]*Node, len(names))
	for i, name := range names {
		nodes[i] = listen(t, ids[name])
	}
	raftGroup(t, nodes, names, "", "hello")
}

// TestRaftGroups runs three raft groups on the same three nodes, one of
// them the unnamed group: each elects its own leader and applies only its
// own entries (a stream for one group never reaches another).
func TestRaftGroups(t *testing.T) {
	names := []string{"core-1", "core-2", "core-3"}
	ids := pki(t, names...)
	nodes := make([]*Node, len(names))
	for i, name := range names {
		nodes[i] = listen(t, ids[name])
	}
	// One after the other (waitFor may fail the test, so it runs on the
	// test's goroutine); the earlier groups keep running meanwhile.
	for _, g := range []string{"", "shard-1-1", "shard-1-2"} {
		raftGroup(t, nodes, names, g, "entry of group "+g)
	}
}

// raftGroup starts raft group group on nodes, applies entry on its leader
// and waits until every replica applied exactly that.
func raftGroup(t *testing.T, nodes []*Node, names []string, group, entry string) {
	var servers []raft.Server
	for i, name := range names {
		servers = append(servers, raft.Server{ID: raft.ServerID(name), Address: raft.ServerAddress(nodes[i].Addr())})
	}
	rafts := make([]*raft.Raft, len(names))
	fsms := make([]*raft.MockFSM, len(names))
	for i, name := range names {
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(name)
		conf.HeartbeatTimeout = 300 * time.Millisecond
		conf.ElectionTimeout = 300 * time.Millisecond
		conf.LeaderLeaseTimeout = 200 * time.Millisecond
		conf.CommitTimeout = 10 * time.Millisecond
		conf.Logger = hclog.New(&hclog.LoggerOptions{Name: name + "/" + group, Output: t.Output(), Level: hclog.Warn})
		trans := raft.NewNetworkTransport(nodes[i].RaftLayerFor(group), 3, 5*time.Second, t.Output())
		if got, want := string(trans.LocalAddr()), nodes[i].Addr(); got != want {
			t.Fatalf("transport address: got %q, want %q", got, want)
		}
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		fsms[i] = &raft.MockFSM{}
		r, err := raft.NewRaft(conf, fsms[i], logs, logs, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
		rafts[i] = r
		t.Cleanup(func() { // runs before the node's Close (cleanups are LIFO)
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("raft shutdown: %v", err)
			}
			trans.Close()
		})
	}

	var leader *raft.Raft
	waitFor(t, 20*time.Second, "leader election", func() error {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				leader = r
				return nil
			}
		}
		return fmt.Errorf("group %q: no leader", group)
	})
	if err := leader.Apply([]byte(entry), 5*time.Second).Error(); err != nil {
		t.Fatalf("group %q: Apply: %v", group, err)
	}
	waitFor(t, 20*time.Second, "replication", func() error {
		for i, f := range fsms {
			logs := f.Logs()
			if len(logs) != 1 || string(logs[0]) != entry {
				return fmt.Errorf("%s in group %q applied %q", names[i], group, logs)
			}
		}
		return nil
	})
}
