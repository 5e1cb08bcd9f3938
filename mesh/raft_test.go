package mesh

import (
	"errors"
	"fmt"
	"io"
	"net"
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

// TestRaftLayerCloseEndsDials: closing a raft group's layer (raftstore
// does it first when the group shuts down) ends its dial to a dead peer
// and an RPC waiting on a peer that never answers, at once instead of
// after the transport's timeout, so a shutdown is not held by them.
func TestRaftLayerCloseEndsDials(t *testing.T) {
	ids := pki(t, "core-1", "core-2")
	a := listen(t, ids["core-1"])
	b := listen(t, ids["core-2"])
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // swallows every packet
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	la := a.RaftLayerFor("g")
	lb := b.RaftLayerFor("g") // never Accepts: a stream to it gets no answer
	defer lb.Close()

	// A stream to b, opened before the close; its Read waits for an answer.
	conn, err := la.Dial(raft.ServerAddress(b.Addr()), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		read <- err
	}()
	dialed := make(chan error, 1)
	go func() {
		c, err := la.Dial(raft.ServerAddress(dead.LocalAddr().String()), time.Hour)
		if c != nil {
			c.Close()
		}
		dialed <- err
	}()
	select {
	case err := <-dialed:
		t.Fatalf("dial to a dead address ended before the close: %v", err)
	case err := <-read:
		t.Fatalf("read from a silent peer ended before the close: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	la.Close()
	// The guard is far below the dials' hour: only the close can end them.
	guard := time.After(20 * time.Second)
	select {
	case err := <-dialed:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("dial after the layer closed: %v, want ErrClosed", err)
		}
	case <-guard:
		t.Fatal("dial to a dead address still waiting after the layer closed")
	}
	select {
	case err := <-read:
		if err != io.EOF {
			t.Errorf("read after the layer closed: %v, want io.EOF", err)
		}
	case <-guard:
		t.Fatal("read from a silent peer still waiting after the layer closed")
	}
	// A closed layer dials nothing.
	if _, err := la.Dial(raft.ServerAddress(b.Addr()), time.Hour); !errors.Is(err, ErrClosed) {
		t.Errorf("dial on a closed layer: %v, want ErrClosed", err)
	}
}
