package shard_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

var (
	replicasSeed = flag.Uint64("replicas.seed", 0, "seed of the random replica tests (0: a new one, logged)")
	replicasCmds = flag.Int("replicas.commands", 1000, "commands per random replica test run (make lab runs more)")
)

// recorder keeps one replica's outcome of every raft index it applied.
// It outlives the replica's restarts, so a replayed entry is checked
// against what the replica answered the first time.
type recorder struct {
	mu        sync.Mutex
	out       map[uint64]string // guarded by mu
	conflicts []string          // guarded by mu
}

func newRecorder() *recorder { return &recorder{out: map[uint64]string{}} }

func (r *recorder) put(idx uint64, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.out[idx]; ok && old != s && !strings.HasPrefix(old, "FATAL") {
		r.conflicts = append(r.conflicts, fmt.Sprintf("index %d: applied as %s, replayed as %s", idx, old, s))
	}
	r.out[idx] = s
}

func (r *recorder) snapshot() (map[uint64]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.out), slices.Clone(r.conflicts)
}

// recSM is the shard FSM recording each outcome.
type recSM struct {
	fsm *shard.FSM
	rec *recorder
}

func (s *recSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	v := s.fsm.Apply(b, index, cmd)
	s.rec.put(index, outcome(v))
	return v
}

func (s *recSM) Reset() { s.fsm.Reset() }

// outcome renders an Apply result for comparison across replicas.
func outcome(v any) string {
	switch v := v.(type) {
	case *shard.Result:
		b, err := json.Marshal(v)
		if err != nil {
			return "unencodable result: " + err.Error()
		}
		var fails []string
		for _, f := range v.Failed {
			fails = append(fails, f.PID+": "+f.Err.Error())
		}
		for _, it := range v.Batch {
			if it.Err != nil {
				fails = append(fails, it.Err.Error())
			}
		}
		return fmt.Sprintf("ok %s %v", b, fails)
	case *shard.FatalError:
		return "FATAL " + v.Error()
	case error:
		return "refused " + v.Error()
	}
	return fmt.Sprintf("unexpected %T", v)
}

func seed(t *testing.T) uint64 {
	s := *replicasSeed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d: reproduce with go test -run '%s$' ./core/shard -replicas.seed=%d -replicas.commands=%d",
		s, t.Name(), s, *replicasCmds)
	return s
}

// propose proposes cmd through the leader; a refusal by the shard is a
// result, not a failure.
func propose(ctx context.Context, c *raftstoretest.Cluster, cmd *shard.Command) (refused bool, err error) {
	// The log holds both forms, every other command each: JSON (version 4
	// entries and what leaves the shard) and the binary form the core
	// proposes (bincmd.go).
	encode := cmd.Encode
	if proposeBinary.Add(1)%2 == 0 {
		encode = cmd.EncodeBinary
	}
	b, err := encode()
	if err != nil {
		return false, err
	}
	_, err = c.Propose(ctx, b)
	var se *shard.Error
	if errors.As(err, &se) {
		return true, nil
	}
	return false, err
}

var proposeBinary atomic.Int64

// compare checks that every recorder holds the same outcome for every
// index and that none was fatal; it returns how many entries were
// applied, and how many of them refused.
func compare(t *testing.T, recs []*recorder) (applied, refused int) {
	t.Helper()
	var first map[uint64]string
	for i, r := range recs {
		out, conflicts := r.snapshot()
		for _, c := range conflicts {
			t.Errorf("replica %d: %s", i, c)
		}
		if i == 0 {
			first = out
			continue
		}
		for idx, o := range first {
			if other, ok := out[idx]; !ok {
				t.Errorf("index %d: applied by replica 0, not by replica %d", idx, i)
			} else if other != o {
				t.Errorf("index %d: replica 0 answered %s, replica %d %s", idx, o, i, other)
			}
		}
		if len(out) != len(first) {
			t.Errorf("replica %d applied %d entries, replica 0 %d", i, len(out), len(first))
		}
	}
	for _, o := range first {
		switch {
		case strings.HasPrefix(o, "FATAL"):
			t.Errorf("fatal outcome on a healthy replica: %s", o)
		case strings.HasPrefix(o, "refused"):
			refused++
		}
	}
	return len(first), refused
}

// TestReplicasAgree runs a seeded random sequence of shard commands
// through the leader of a 3-replica group (real hashicorp/raft and Pebble),
// with a leadership transfer and a leader crash and restart in the middle,
// then checks that the replicas answered every entry alike and hold the
// same state byte for byte. Nothing is excluded from the comparison: the
// applied index (raftstore's reserved key) is equal too once all replicas
// have applied the same entries.
func TestReplicasAgree(t *testing.T) {
	g := newGen(seed(t))
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	c := raftstoretest.NewCluster(t, 3, func(i int) raftstore.StateMachine {
		return &recSM{fsm: shard.New(), rec: recs[i]}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	n := *replicasCmds
	killed := -1
	tally := map[shard.Op][2]int{} // op -> {applied, refused} as the leader answered
	for k := range n {
		switch {
		case k == n/3:
			l := c.WaitLeader()
			if err := c.Node(l).Raft().LeadershipTransfer().Error(); err != nil {
				t.Logf("leadership transfer from %d: %v", l, err)
			}
			t.Logf("command %d: leader %d transferred leadership to %d", k, l, c.WaitLeader())
		case k == 2*n/3:
			killed = c.WaitLeader()
			c.Kill(killed)
			t.Logf("command %d: leader %d killed, %d took over", k, killed, c.WaitLeader())
		case k == 2*n/3+n/8:
			c.Restart(killed)
			t.Logf("command %d: replica %d restarted", k, killed)
		}
		cmd := g.next()
		ref, err := propose(ctx, c, cmd)
		if err != nil {
			t.Fatalf("command %d (%s): %v", k, cmd.Op, err)
		}
		v := tally[cmd.Op]
		if ref {
			v[1]++
		} else {
			v[0]++
		}
		tally[cmd.Op] = v
	}
	state := c.WaitConverged(30 * time.Second)
	ops := slices.Sorted(maps.Keys(tally))
	var line []string
	for _, op := range ops {
		line = append(line, fmt.Sprintf("%s %d/%d", op, tally[op][0], tally[op][1]))
	}
	t.Logf("applied/refused by op: %s", strings.Join(line, ", "))
	if n >= 1000 {
		for _, op := range []shard.Op{shard.OpStart, shard.OpAdd, shard.OpRemove, shard.OpUpdate, shard.OpMute,
			shard.OpAppend, shard.OpPatch, shard.OpAck, shard.OpRead, shard.OpBatch, shard.OpRole, shard.OpShutup,
			shard.OpBlock, shard.OpWill, shard.OpEndWills, shard.OpDelete, shard.OpDelMsg, shard.OpSysStart,
			shard.OpSubscribe, shard.OpSysBcast} {
			// Generated at all, or the generator lost it; applied at
			// least once is chance for the ops whose preconditions the
			// random state rarely meets (a role change by a manager, a
			// node removal): a note, not a failure.
			switch {
			case tally[op][0]+tally[op][1] == 0:
				t.Errorf("no %s generated: the generator no longer covers it", op)
			case tally[op][0] == 0:
				t.Logf("note: every %s was refused in this run (%d tries)", op, tally[op][1])
			}
		}
	}
	applied, refused := compare(t, recs)
	t.Logf("%d entries applied alike on 3 replicas, %d of them refused; %d state keys identical",
		applied, refused, len(state))
	// The sequence must exercise both sides.
	if applied < n || refused < n/10 || applied-refused < n/3 {
		t.Errorf("%d applied, %d refused: the generator no longer covers both sides", applied, refused)
	}
}

// TestReplicaDiskFailure: one replica's disk starts failing reads (pebble
// errorfs on its state DB) in the middle of a random sequence. That replica
// stops at the first entry it cannot read for (it never answers it
// differently); the other two keep serving, alike; once the disk is fixed
// the replica restarts, replays the log, and holds exactly their state.
func TestReplicaDiskFailure(t *testing.T) {
	g := newGen(seed(t))
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	var broken [3]atomic.Bool
	c := raftstoretest.NewCluster(t, 3, func(i int) raftstore.StateMachine {
		return &recSM{fsm: shard.New(), rec: recs[i]}
	}, raftstoretest.WithConfig(func(i int, cfg *raftstore.Config) {
		cfg.StateOptions = func(o *pebble.Options) {
			o.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
				if broken[i].Load() && op.OpKind() == errorfs.OpKindRead && strings.HasSuffix(path, ".sst") {
					return errors.New("injected read error")
				}
				return nil
			}))
			o.Cache = pebble.NewCache(0) // reads reach the files
			t.Cleanup(o.Cache.Unref)
		}
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	n := *replicasCmds / 2
	run := func(k int) {
		cmd := g.next()
		if _, err := propose(ctx, c, cmd); err != nil && !errors.Is(err, raftstore.ErrReplicaFailed) {
			t.Fatalf("command %d (%s): %v", k, cmd.Op, err)
		}
	}
	for k := range n {
		run(k)
	}
	bad := (c.WaitLeader() + 1) % 3
	c.WaitConverged(30 * time.Second)
	if err := c.Node(bad).State().Flush(); err != nil { // the state now lives in tables
		t.Fatal(err)
	}
	c.Node(bad).StateMachine().(*recSM).Reset() // and nothing decoded is cached
	broken[bad].Store(true)
	for k := n; c.Node(bad).Err() == nil; k++ {
		if k > 2*n {
			t.Fatalf("replica %d still runs %d commands after its disk failed", bad, k-n)
		}
		run(k)
	}
	err := c.Node(bad).Err()
	if !errors.Is(err, shard.ErrStorage) || !errors.Is(err, raftstore.ErrReplicaFailed) {
		t.Fatalf("replica %d stopped with %v, want a storage failure", bad, err)
	}
	t.Logf("replica %d stopped: %v", bad, err)
	for k := range n / 2 {
		run(2*n + k)
	}
	c.Kill(bad)
	c.WaitConverged(30 * time.Second)
	healthy := []*recorder{}
	for i, r := range recs {
		if i != bad {
			healthy = append(healthy, r)
		}
	}
	compare(t, healthy)
	// What the failed replica answered before it stopped is what the others
	// answered; the entry it stopped at is fatal there, nothing else.
	ref, _ := healthy[0].snapshot()
	out, _ := recs[bad].snapshot()
	fatals := 0
	for idx, o := range out {
		if strings.HasPrefix(o, "FATAL") {
			fatals++
			continue
		}
		if ref[idx] != o {
			t.Errorf("index %d: failed replica answered %s, the others %s", idx, o, ref[idx])
		}
	}
	if fatals != 1 {
		t.Errorf("%d fatal entries on the failed replica, want 1", fatals)
	}

	broken[bad].Store(false)
	c.Restart(bad)
	state := c.WaitConverged(30 * time.Second)
	applied, refused := compare(t, recs)
	t.Logf("after the restart: %d entries alike on 3 replicas (%d refused), %d state keys identical",
		applied, refused, len(state))
}
