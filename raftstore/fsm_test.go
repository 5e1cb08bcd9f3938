package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

type putSM struct{}

// Apply stores cmd "k=v" as k -> v and returns the number of keys seen so far
// through the batch under "n".
func (putSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	k, v, _ := bytes.Cut(cmd, []byte("="))
	_ = b.Set(k, v, nil)
	return index
}

func openState(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func cmdLogs(from, to uint64) []*raft.Log {
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, &raft.Log{Index: i, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("k%03d=v%d", i, i))})
	}
	return logs
}

func TestFSMSkipsApplied(t *testing.T) {
	db := openState(t, t.TempDir())
	defer db.Close()
	f, err := newFSM(db, putSM{})
	if err != nil {
		t.Fatal(err)
	}
	res := f.ApplyBatch(cmdLogs(1, 10))
	if len(res) != 10 || res[9] != uint64(10) {
		t.Fatalf("results %v", res)
	}
	// A replay overlapping the applied index applies only the new entries.
	logs := append(cmdLogs(5, 12), &raft.Log{Index: 13, Type: raft.LogConfiguration})
	res = f.ApplyBatch(logs)
	for i, r := range res {
		idx := logs[i].Index
		switch {
		case idx <= 10 || idx == 13:
			if r != nil {
				t.Errorf("entry %d: result %v, want nil (skipped)", idx, r)
			}
		case r != idx:
			t.Errorf("entry %d: result %v, want %d", idx, r, idx)
		}
	}
	if got, _ := AppliedIndex(db); got != 13 {
		t.Fatalf("applied index = %d, want 13", got)
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	base := t.TempDir()
	src := openState(t, filepath.Join(base, "src"))
	defer src.Close()
	f, _ := newFSM(src, putSM{})
	f.ApplyBatch(cmdLogs(1, 500))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f.ApplyBatch(cmdLogs(501, 510)) // after the snapshot: not in it
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, snap.(*fsmSnapshot).snap); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := openState(t, filepath.Join(base, "dst"))
	defer dst.Close()
	g, _ := newFSM(dst, putSM{})
	g.ApplyBatch(cmdLogs(900, 905)) // stale keys the restore must wipe
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g.applied.Load() != 500 {
		t.Fatalf("applied after restore = %d, want 500", g.applied.Load())
	}
	for k, want := range map[string]string{"k001": "v1", "k500": "v500"} {
		if v, c, err := dst.Get([]byte(k)); err != nil {
			t.Errorf("%s missing after restore: %v", k, err)
		} else {
			if string(v) != want {
				t.Errorf("%s after restore: got %q, want %q", k, v, want)
			}
			c.Close()
		}
	}
	for _, k := range []string{"k501", "k900", string(restoringKey)} {
		if _, _, err := dst.Get([]byte(k)); !errors.Is(err, pebble.ErrNotFound) {
			t.Errorf("%q present after restore, want gone", k)
		}
	}

	// Corrupt streams are rejected.
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"magic":     []byte("nope"),
		"truncated": buf.Bytes()[:buf.Len()/2],
		"trailer":   append(append([]byte(nil), buf.Bytes()[:buf.Len()-1]...), 0x7f),
	} {
		if err := g.Restore(io.NopCloser(bytes.NewReader(bad))); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: got %v, want ErrBadSnapshot", name, err)
		}
	}
	// A failed restore leaves the marker, so Open would restore again.
	if r, _ := g.restoring(); !r {
		t.Errorf("restore marker missing after a failed restore")
	}
}

// resetSM counts Reset calls.
type resetSM struct {
	putSM
	resets int
}

func (r *resetSM) Reset() { r.resets++ }

func TestFSMResetsStateMachine(t *testing.T) {
	base := t.TempDir()
	src := openState(t, filepath.Join(base, "src"))
	defer src.Close()
	f, _ := newFSM(src, putSM{})
	f.ApplyBatch(cmdLogs(1, 5))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, snap.(*fsmSnapshot).snap); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := openState(t, filepath.Join(base, "dst"))
	defer dst.Close()
	sm := &resetSM{}
	g, _ := newFSM(dst, sm)
	if sm.resets != 1 {
		t.Fatalf("resets after open = %d, want 1", sm.resets)
	}
	g.ApplyBatch(cmdLogs(1, 3))
	if sm.resets != 1 {
		t.Fatalf("resets after apply = %d, want 1", sm.resets)
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if sm.resets < 2 {
		t.Fatalf("resets after restore = %d, want at least 2", sm.resets)
	}
	n := sm.resets
	if err := g.Restore(io.NopCloser(bytes.NewReader(nil))); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("bad restore: got %v", err)
	}
	if sm.resets <= n {
		t.Fatal("a failed restore did not reset the state machine")
	}
}

// flushSink is a raft.SnapshotSink that records the state DB's flush count
// at its first write.
type flushSink struct {
	bytes.Buffer
	db                      *pebble.DB
	atFirstWrite            int64
	wrote, closed, canceled bool
}

func (s *flushSink) Write(p []byte) (int, error) {
	if !s.wrote {
		s.wrote, s.atFirstWrite = true, dbStats(s.db).Flushes
	}
	return s.Buffer.Write(p)
}
func (s *flushSink) Close() error  { s.closed = true; return nil }
func (s *flushSink) ID() string    { return "test" }
func (s *flushSink) Cancel() error { s.canceled = true; return nil }

// TestSnapshotFlushesInPersist: taking a snapshot (on the FSM's goroutine,
// between applies) flushes nothing; Persist (on raft's snapshot goroutine)
// flushes the state before it writes the snapshot, so the state at its
// index is on disk before the snapshot is.
func TestSnapshotFlushesInPersist(t *testing.T) {
	db := openState(t, t.TempDir())
	defer db.Close()
	f, err := newFSM(db, putSM{})
	if err != nil {
		t.Fatal(err)
	}
	f.ApplyBatch(cmdLogs(1, 200))
	before := dbStats(db)
	if before.MemtableBytes == 0 {
		t.Fatal("nothing in the memtable to flush")
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	if got := dbStats(db).Flushes; got != before.Flushes {
		t.Fatalf("Snapshot flushed the state (%d flushes, was %d): the FSM's applies wait for it", got, before.Flushes)
	}
	f.ApplyBatch(cmdLogs(201, 210)) // applies go on while the snapshot is open
	sink := &flushSink{db: db}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.wrote || !sink.closed || sink.canceled {
		t.Fatalf("sink: wrote %v, closed %v, canceled %v", sink.wrote, sink.closed, sink.canceled)
	}
	if sink.atFirstWrite <= before.Flushes {
		t.Fatalf("the snapshot was written before the state was flushed (%d flushes at its first write, %d before)", sink.atFirstWrite, before.Flushes)
	}
	// The snapshot holds the state at its index: up to 200.
	if n := strings.Count(sink.String(), "k2"); n != 1 { // k200 only
		t.Fatalf("snapshot holds %d keys k2xx, want 1 (k200)", n)
	}
}

// TestDBStatsBytes: the bytes flushes and compactions wrote are counted
// (relaymesh_pebble_flushed_bytes_total, …_compacted_bytes_total).
func TestDBStatsBytes(t *testing.T) {
	db := openState(t, t.TempDir())
	defer db.Close()
	if st := dbStats(db); st.FlushedBytes != 0 || st.CompactedBytes != 0 {
		t.Fatalf("a new DB: flushed %d, compacted %d bytes", st.FlushedBytes, st.CompactedBytes)
	}
	writeFlush(t, db, 2, 500)
	st := dbStats(db)
	if st.Flushes < 2 || st.FlushedBytes < 1000 {
		t.Fatalf("after two flushes of 500 KB: %d flushes, %d bytes flushed", st.Flushes, st.FlushedBytes)
	}
	if err := db.Compact([]byte("k"), []byte("l"), true); err != nil {
		t.Fatal(err)
	}
	if st := dbStats(db); st.Compactions == 0 || st.CompactedBytes < 1000 {
		t.Fatalf("after a compaction: %d compactions, %d bytes compacted", st.Compactions, st.CompactedBytes)
	}
}
