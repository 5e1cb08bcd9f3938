package raftstore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

// backupOf takes a backup of c's leader.
func backupOf(t *testing.T, c *raftstoretest.Cluster) ([]byte, *raftstore.BackupHeader) {
	t.Helper()
	var buf bytes.Buffer
	var calls int
	hdr, err := c.Node(c.WaitLeader()).Backup(&buf, raftstore.BackupHeader{Group: "shard", Region: 1, Shard: 3},
		func(records, bytes uint64) { calls++ })
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if calls == 0 {
		t.Errorf("backup: progress never called")
	}
	return buf.Bytes(), hdr
}

// TestBackupRestore: a backup of group A restored into a group B that
// has entries of its own (fewer, or more, than A): B's replicas hold A's
// state, entries proposed after the restore are applied (the restored
// applied index is below raft's restore index), on every replica, after
// a restart of every replica too, and on a replica added afterwards.
func TestBackupRestore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst int // entries proposed in A and in B before the restore
	}{
		{"source ahead", 60, 5},
		{"target ahead", 10, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := raftstoretest.NewCluster(t, 1, newCounter, raftstoretest.WithConfig(smallLog))
			proposeN(t, a, "a", tc.src)
			file, hdr := backupOf(t, a)
			la := a.Node(a.WaitLeader())
			if hdr.Applied != la.AppliedIndex() || hdr.Applied == 0 || hdr.Term == 0 || hdr.Records == 0 ||
				hdr.Format != raftstore.BackupFormat || hdr.Role != "Leader" || hdr.Region != 1 || hdr.Shard != 3 {
				t.Fatalf("header %+v (leader applied %d)", hdr, la.AppliedIndex())
			}
			want, err := raftstoretest.Dump(la.State())
			if err != nil {
				t.Fatal(err)
			}
			a.Close()

			b := raftstoretest.NewCluster(t, 3, newCounter, raftstoretest.WithConfig(smallLog))
			proposeN(t, b, "b", tc.dst)
			l := b.WaitLeader()
			lastBefore := b.Node(l).Raft().LastIndex()
			res, err := b.Node(l).RestoreBackup(ctxT(t, 30*time.Second), bytes.NewReader(file), func(h *raftstore.BackupHeader) error {
				if h.Group != "shard" || h.Region != 1 || h.Shard != 3 {
					return fmt.Errorf("wrong group %+v", h)
				}
				return nil
			}, nil)
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if wantIdx := max(hdr.Applied, lastBefore) + 1; res.Index != wantIdx {
				t.Errorf("restore index = %d, want max(applied %d, last %d)+1", res.Index, hdr.Applied, lastBefore)
			}
			state := b.WaitConverged(20 * time.Second)
			if got := checkNoDup(t, state); got != uint64(tc.src) {
				t.Fatalf("count after restore = %d, want %d (A's)", got, tc.src)
			}
			for k, v := range want {
				if strings.HasPrefix(k, raftstore.ReservedPrefix) {
					continue
				}
				if state[k] != v {
					t.Fatalf("key %q = %q after restore, want %q", k, state[k], v)
				}
			}
			for k := range state {
				if strings.HasPrefix(k, "v/b-") {
					t.Fatalf("B's own key %q survived the restore", k)
				}
			}

			// Writes after the restore are applied on every replica.
			proposeN(t, b, "c", 10)
			if got := checkNoDup(t, b.WaitConverged(20*time.Second)); got != uint64(tc.src+10) {
				t.Fatalf("count after restore and 10 writes = %d, want %d", got, tc.src+10)
			}
			// ... and after every replica restarts (the state DB has no WAL:
			// they replay the log from the restore's snapshot).
			for i := range 3 {
				b.Kill(i)
			}
			for i := range 3 {
				b.Restart(i)
			}
			b.WaitLeader()
			proposeN(t, b, "d", 1)
			if got := checkNoDup(t, b.WaitConverged(20*time.Second)); got != uint64(tc.src+11) {
				t.Fatalf("count after restart = %d, want %d", got, tc.src+11)
			}
			// A replica added later gets the restored state too.
			b.Add()
			if got := checkNoDup(t, b.WaitConverged(20*time.Second)); got != uint64(tc.src+11) {
				t.Fatalf("count with a new replica = %d, want %d", got, tc.src+11)
			}
		})
	}
}

// failReader fails the test when read.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("a refused restore read its input")
	return 0, io.EOF
}

// TestRestoreRefused: a follower refuses before reading; a bad file
// (truncated anywhere, any byte flipped, huge or bad header fields, data
// after the end) or a header the caller refuses changes nothing.
func TestRestoreRefused(t *testing.T) {
	src := raftstoretest.NewCluster(t, 1, newCounter, raftstoretest.WithConfig(smallLog))
	proposeN(t, src, "a", 5)
	file, _ := backupOf(t, src)
	src.Close()

	c := raftstoretest.NewCluster(t, 3, newCounter, raftstoretest.WithConfig(smallLog))
	proposeN(t, c, "b", 7)
	l := c.WaitLeader()
	ctx := ctxT(t, 30*time.Second)

	fol := c.Node((l + 1) % 3)
	if _, err := fol.RestoreBackup(ctx, failReader{t}, nil, nil); !errors.Is(err, raftstore.ErrNotLeader) {
		t.Fatalf("restore on a follower: %v, want ErrNotLeader", err)
	}

	header := func(h string) []byte {
		b := append([]byte("rmbackup1\n"), binary.AppendUvarint(nil, uint64(len(h)))...)
		return append(b, h...)
	}
	bad := map[string][]byte{
		"empty":              nil,
		"not a backup":       []byte("hello world, this is not a backup at all"),
		"huge header length": append([]byte("rmbackup1\n"), binary.AppendUvarint(nil, 1<<40)...),
		"header over limit":  header(`{"format":1,"group":"shard","created":"2026-01-01T00:00:00Z","node":"` + strings.Repeat("x", raftstore.MaxBackupHeader) + `"}`),
		"huge field":         header(`{"format":1,"group":"shard","created":"2026-01-01T00:00:00Z","node":"` + strings.Repeat("x", 1000) + `"}`),
		"future format":      header(`{"format":2,"group":"shard","created":"2026-01-01T00:00:00Z"}`),
		"unknown field":      header(`{"format":1,"group":"shard","created":"2026-01-01T00:00:00Z","extra":1}`),
		"bad region":         header(`{"format":1,"group":"shard","region":300,"created":"2026-01-01T00:00:00Z"}`),
		"huge record count":  header(`{"format":1,"group":"shard","created":"2026-01-01T00:00:00Z","records":18446744073709551615}`),
		"data after the end": append(append([]byte(nil), file...), 0),
	}
	for n := 0; n < len(file); n += max(1, len(file)/97) {
		bad[fmt.Sprintf("truncated at %d", n)] = file[:n]
	}
	for i := 0; i < len(file); i++ {
		f := append([]byte(nil), file...)
		f[i] ^= 0x20
		bad[fmt.Sprintf("byte %d flipped", i)] = f
	}
	// Every file is refused by ReadBackup alone ...
	for name, f := range bad {
		if _, err := raftstore.ReadBackup(bytes.NewReader(f), nil, nil, nil); !errors.Is(err, raftstore.ErrBadBackup) {
			t.Errorf("%s: ReadBackup: %v, want ErrBadBackup", name, err)
		}
	}
	// ... and a sample of them by the leader, which changes nothing.
	before := c.WaitConverged(10 * time.Second)
	snapIdx := c.Node(l).Raft().Stats()["last_snapshot_index"]
	for _, name := range []string{"empty", "huge header length", "huge field", "huge record count", "data after the end",
		fmt.Sprintf("truncated at %d", len(file)/97*90), fmt.Sprintf("byte %d flipped", len(file)/2), fmt.Sprintf("byte %d flipped", len(file)-1)} {
		f, ok := bad[name]
		if !ok {
			t.Fatalf("no case %q", name)
		}
		if _, err := c.Node(l).RestoreBackup(ctx, bytes.NewReader(f), nil, nil); !errors.Is(err, raftstore.ErrBadBackup) {
			t.Errorf("%s: restore: %v, want ErrBadBackup", name, err)
		}
	}
	errNo := errors.New("not this one")
	if _, err := c.Node(l).RestoreBackup(ctx, bytes.NewReader(file), func(*raftstore.BackupHeader) error { return errNo }, nil); !errors.Is(err, errNo) {
		t.Errorf("restore with a refusing check: %v", err)
	}
	if got := c.Node(l).Raft().Stats()["last_snapshot_index"]; got != snapIdx {
		t.Errorf("a refused restore made a snapshot: last_snapshot_index %s, was %s", got, snapIdx)
	}
	after := c.WaitConverged(10 * time.Second)
	if checkNoDup(t, after) != 7 || len(after) != len(before) {
		t.Errorf("state changed by refused restores: %d keys, was %d", len(after), len(before))
	}
	// The good file still restores.
	if _, err := c.Node(l).RestoreBackup(ctx, bytes.NewReader(file), nil, nil); err != nil {
		t.Fatalf("restore of the good file: %v", err)
	}
	if got := checkNoDup(t, c.WaitConverged(10*time.Second)); got != 5 {
		t.Fatalf("count = %d, want 5", got)
	}
}

// TestBackupAppliedKeyIgnored: a file whose state claims an applied index
// far above its header's (a hand-made or hostile file) does not make the
// restored group skip the entries after the restore: the restore drops
// the file's reserved keys and writes the header's applied index, which
// raft's restore index is above.
func TestBackupAppliedKeyIgnored(t *testing.T) {
	kv := [][2][]byte{
		{[]byte("count"), binary.BigEndian.AppendUint64(nil, 3)},
		{[]byte(raftstore.ReservedPrefix + "applied"), binary.BigEndian.AppendUint64(nil, 1<<40)},
		{[]byte(raftstore.ReservedPrefix + "restoring"), nil},
	}
	file := raftstore.ForgeBackupForTest(raftstore.BackupHeader{Format: 1, Group: "shard", Applied: 4, Term: 1,
		Created: time.Now().UTC().Format(time.RFC3339), Records: uint64(len(kv))}, kv)
	c := raftstoretest.NewCluster(t, 3, newCounter, raftstoretest.WithConfig(smallLog))
	proposeN(t, c, "b", 2)
	l := c.Node(c.WaitLeader())
	res, err := l.RestoreBackup(ctxT(t, 30*time.Second), bytes.NewReader(file), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1 {
		t.Errorf("records loaded %d, want 1 (reserved keys dropped)", res.Records)
	}
	proposeN(t, c, "c", 2)
	state := c.WaitConverged(10 * time.Second)
	if got := checkNoDup(t, state); got != 5 {
		t.Fatalf("count = %d, want 5 (3 restored + 2 after)", got)
	}
	if _, ok := state[raftstore.ReservedPrefix+"restoring"]; ok {
		t.Fatal("the file's restore marker was loaded")
	}
}

// TestBackupRestoreLarge: a state of 60,000 keys (about 14 MB: several
// load batches, many progress calls) goes through a backup and a restore
// into a three-replica group, whose every replica (two of them by
// InstallSnapshot) then holds every key.
func TestBackupRestoreLarge(t *testing.T) {
	const n = 60000
	src := raftstoretest.NewCluster(t, 1, newCounter, raftstoretest.WithConfig(smallLog))
	proposeN(t, src, "a", 1)
	l := src.Node(src.WaitLeader())
	val := bytes.Repeat([]byte("v"), 200)
	b := l.State().NewBatch()
	for i := range n {
		if err := b.Set([]byte(fmt.Sprintf("big/%08d", i)), val, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil { // the state DB has no WAL
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var calls int
	var lastBytes uint64
	hdr, err := l.Backup(&buf, raftstore.BackupHeader{Group: "shard", Region: 1}, func(records, bytes uint64) {
		calls++
		lastBytes = bytes
	})
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	if hdr.Records < n || calls < n/4096 || lastBytes != uint64(buf.Len()) {
		t.Fatalf("backup: %d records, %d progress calls, last at %d of %d bytes", hdr.Records, calls, lastBytes, buf.Len())
	}
	t.Logf("backup: %d records, %d bytes", hdr.Records, buf.Len())

	// The product's raft timeouts, not the test clusters' short ones: the
	// followers install 13 MB by InstallSnapshot, which under the race
	// detector on a loaded machine outlasted a 200 ms leader lease (CI:
	// the leader stepped down and the restore failed "leadership lost").
	c := raftstoretest.NewCluster(t, 3, newCounter, raftstoretest.WithConfig(func(i int, cfg *raftstore.Config) {
		smallLog(i, cfg)
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
	}))
	lead := c.Node(c.WaitLeader())
	var rcalls int
	if _, err := lead.RestoreBackup(ctxT(t, 60*time.Second), bytes.NewReader(buf.Bytes()), nil, func(records, bytes uint64) { rcalls++ }); err != nil {
		t.Fatal(err)
	}
	if rcalls < n/4096 {
		t.Errorf("restore: %d progress calls", rcalls)
	}
	proposeN(t, c, "b", 3)
	state := c.WaitConverged(60 * time.Second)
	big := 0
	for k, v := range state {
		if strings.HasPrefix(k, "big/") && v == string(val) {
			big++
		}
	}
	if big != n || checkNoDup(t, state) != 4 {
		t.Fatalf("after the restore: %d big keys (want %d), count %d (want 4)", big, n, checkNoDup(t, state))
	}
}
