package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

func testSnapStore(t *testing.T, dir string, retain int) *snapStore {
	t.Helper()
	s, err := openSnapStore(dir, retain, slog.New(slog.DiscardHandler), func() *pebble.Options {
		o := &pebble.Options{}
		TuneStateDB(o)
		return o
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testStateDB(t *testing.T, wal bool) (*pebble.DB, string) {
	t.Helper()
	dir := t.TempDir()
	o := stateDBOptions(slog.New(slog.DiscardHandler), wal, nil)
	o.DisableAutomaticCompactions = true // tables stay where a test looks for them
	db, err := pebble.Open(dir, o)
	o.Cache.Unref()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

// putState writes n keys from key i0 and the applied index, in one batch
// as ApplyBatch does.
func putState(t *testing.T, db *pebble.DB, i0, n int, applied uint64) {
	t.Helper()
	b := db.NewBatch()
	for i := i0; i < i0+n; i++ {
		must(t, b.Set(fmt.Appendf(nil, "k%06d", i), bytes.Repeat([]byte{byte(i)}, 100), nil))
	}
	var v [8]byte
	for i := range v {
		v[i] = byte(applied >> (56 - 8*i))
	}
	must(t, b.Set(appliedKey, v[:], nil))
	must(t, b.Commit(pebble.NoSync))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// streamOf is the snapshot stream of db's current state.
func streamOf(t *testing.T, db *pebble.DB) []byte {
	t.Helper()
	snap := db.NewSnapshot()
	defer snap.Close()
	var buf bytes.Buffer
	must(t, writeSnapshot(&buf, snap))
	return buf.Bytes()
}

func readAllClose(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	b, err := io.ReadAll(rc)
	must(t, err)
	must(t, rc.Close())
	return b
}

// TestSnapshotCheckpoint: the snapshot of the local state is a checkpoint
// whose tables are the state DB's own files (hard links, nothing copied);
// opening it yields the stream of the state as of the flush, sized as raft
// sends it, made once. Writes after the snapshot are not in it. With and
// without the state DB's WAL.
func TestSnapshotCheckpoint(t *testing.T) {
	for _, wal := range []bool{false, true} {
		t.Run(fmt.Sprintf("wal=%v", wal), func(t *testing.T) {
			db, dbDir := testStateDB(t, wal)
			for i := range 20 {
				putState(t, db, i*500, 500, uint64(i+1))
			}
			must(t, db.Flush())
			putState(t, db, 10000, 10, 21) // in the memtable only
			want := streamOf(t, db)

			s := testSnapStore(t, t.TempDir(), 2)
			sink, err := s.Create(1, 21, 3, raft.Configuration{}, 1, nil)
			must(t, err)
			fs := &fsmSnapshot{db: db, snap: db.NewSnapshot()}
			must(t, fs.Persist(sink))
			fs.Release()
			putState(t, db, 20000, 10, 22) // after the snapshot

			dir := filepath.Join(s.path, sink.ID())
			if _, err := os.Stat(filepath.Join(dir, snapStateFile)); !os.IsNotExist(err) {
				t.Fatalf("checkpoint snapshot has a %s (err %v)", snapStateFile, err)
			}
			tables, _ := filepath.Glob(filepath.Join(dir, snapCkptDir, "*.sst"))
			if len(tables) == 0 {
				t.Fatal("checkpoint has no tables")
			}
			linked := 0
			for _, p := range tables {
				a, err := os.Stat(p)
				must(t, err)
				if b, err := os.Stat(filepath.Join(dbDir, filepath.Base(p))); err == nil && os.SameFile(a, b) {
					linked++
				}
			}
			if linked == 0 {
				t.Fatalf("none of the checkpoint's %d tables is a link to the state DB's", len(tables))
			}

			list, err := s.List()
			must(t, err)
			if len(list) != 1 || list[0].ID != sink.ID() || list[0].Index != 21 || list[0].Term != 3 {
				t.Fatalf("List = %+v", list)
			}
			meta, rc, err := s.Open(sink.ID())
			must(t, err)
			got := readAllClose(t, rc)
			if !bytes.Equal(got, want) {
				t.Fatalf("checkpoint stream: %d bytes, want the state at the flush (%d bytes)", len(got), len(want))
			}
			if meta.Size != int64(len(got)) || meta.Index != 21 {
				t.Fatalf("Open meta: size %d index %d, stream %d bytes", meta.Size, meta.Index, len(got))
			}
			st1, err := os.Stat(filepath.Join(dir, snapStreamFile))
			must(t, err)
			meta2, rc, err := s.Open(sink.ID())
			must(t, err)
			if got2 := readAllClose(t, rc); !bytes.Equal(got2, want) || meta2.Size != meta.Size {
				t.Fatal("second Open differs")
			}
			st2, err := os.Stat(filepath.Join(dir, snapStreamFile))
			must(t, err)
			if !os.SameFile(st1, st2) || !st1.ModTime().Equal(st2.ModTime()) {
				t.Fatal("second Open made the stream again")
			}

			// The stream restores: same keys, the applied index of the flush.
			db2, _ := testStateDB(t, false)
			f, err := newFSM(db2, nopSM{})
			must(t, err)
			_, rc, err = s.Open(sink.ID())
			must(t, err)
			must(t, f.Restore(rc))
			if a, _ := AppliedIndex(db2); a != 21 {
				t.Fatalf("restored applied index %d, want 21", a)
			}
			if !bytes.Equal(streamOf(t, db2), want) {
				t.Fatal("restored state differs from the checkpoint's")
			}
		})
	}
}

type nopSM struct{}

func (nopSM) Apply(*pebble.Batch, uint64, []byte) any { return nil }

// TestSnapStoreStream: a stream written to a sink (a snapshot received from
// the leader, a backup restored) reads back as written; a stream changed on
// disk is refused by its CRC.
func TestSnapStoreStream(t *testing.T) {
	s := testSnapStore(t, t.TempDir(), 2)
	sink, err := s.Create(1, 7, 2, raft.Configuration{Servers: []raft.Server{{ID: "a", Address: "x"}}}, 3, nil)
	must(t, err)
	data := bytes.Repeat([]byte("stream"), 100000)
	if _, err := sink.Write(data[:1000]); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(data[1000:]); err != nil {
		t.Fatal(err)
	}
	must(t, sink.Close())
	meta, rc, err := s.Open(sink.ID())
	must(t, err)
	if got := readAllClose(t, rc); !bytes.Equal(got, data) {
		t.Fatal("stream differs")
	}
	if meta.Size != int64(len(data)) || meta.ConfigurationIndex != 3 || len(meta.Configuration.Servers) != 1 {
		t.Fatalf("meta %+v", meta)
	}

	p := filepath.Join(s.path, sink.ID(), snapStateFile)
	b, err := os.ReadFile(p)
	must(t, err)
	b[len(b)/2] ^= 1
	must(t, os.WriteFile(p, b, 0o644))
	if _, _, err := s.Open(sink.ID()); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("Open of a changed stream: %v, want ErrBadSnapshot", err)
	}
	for _, id := range []string{"", "..", "../x", "a/b", "nosuch"} {
		if _, _, err := s.Open(id); err == nil {
			t.Errorf("Open(%q) succeeded", id)
		}
	}
}

// TestSnapStoreReadsFileSnapshotStore: snapshots written by earlier
// releases (raft.FileSnapshotStore, same directory) are listed and open,
// and a newer checkpoint snapshot sorts before them.
func TestSnapStoreReadsFileSnapshotStore(t *testing.T) {
	dir := t.TempDir()
	old, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, nil)
	must(t, err)
	osink, err := old.Create(1, 5, 1, raft.Configuration{}, 1, nil)
	must(t, err)
	if _, err := osink.Write([]byte("old stream")); err != nil {
		t.Fatal(err)
	}
	must(t, osink.Close())

	s := testSnapStore(t, dir, 2)
	list, err := s.List()
	must(t, err)
	if len(list) != 1 || list[0].ID != osink.ID() {
		t.Fatalf("List = %+v, want the old snapshot", list)
	}
	_, rc, err := s.Open(osink.ID())
	must(t, err)
	if got := readAllClose(t, rc); string(got) != "old stream" {
		t.Fatalf("old snapshot reads %q", got)
	}

	db, _ := testStateDB(t, false)
	putState(t, db, 0, 10, 9)
	sink, err := s.Create(1, 9, 1, raft.Configuration{}, 1, nil)
	must(t, err)
	must(t, (&fsmSnapshot{db: db, snap: db.NewSnapshot()}).Persist(sink))
	list, err = s.List()
	must(t, err)
	if len(list) != 2 || list[0].ID != sink.ID() || list[1].ID != osink.ID() {
		t.Fatalf("List = %v %v, want the checkpoint first", list[0].ID, list[len(list)-1].ID)
	}
}

// TestSnapStoreRetain: only the newest retain snapshots stay on disk; a
// cancelled one and one a crash left unfinished are gone.
func TestSnapStoreRetain(t *testing.T) {
	dir := t.TempDir()
	s := testSnapStore(t, dir, 2)
	db, _ := testStateDB(t, false)
	var ids []string
	for i := range 4 {
		putState(t, db, i*10, 10, uint64(i+1))
		sink, err := s.Create(1, uint64(i+1), 1, raft.Configuration{}, 1, nil)
		must(t, err)
		must(t, (&fsmSnapshot{db: db, snap: db.NewSnapshot()}).Persist(sink))
		ids = append(ids, sink.ID())
	}
	sink, err := s.Create(1, 99, 1, raft.Configuration{}, 1, nil)
	must(t, err)
	if _, err := sink.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	must(t, sink.Cancel())

	ents, err := os.ReadDir(s.path)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != ids[2] || names[1] != ids[3] {
		t.Fatalf("snapshot dir holds %v, want %v", names, ids[2:])
	}

	must(t, os.Mkdir(filepath.Join(s.path, "1-100-1"+snapTmpSuffix), 0o755))
	s = testSnapStore(t, dir, 2)
	if _, err := os.Stat(filepath.Join(s.path, "1-100-1"+snapTmpSuffix)); !os.IsNotExist(err) {
		t.Fatalf("unfinished snapshot left after open: %v", err)
	}
	list, err := s.List()
	must(t, err)
	if len(list) != 2 || list[0].ID != ids[3] {
		t.Fatalf("List after reopen = %d snapshots", len(list))
	}
}

// TestSnapStoreMisuse: a sink takes a stream or a checkpoint, not both;
// Close and Cancel are idempotent; a checkpoint snapshot whose checkpoint
// is gone does not open; two Opens at once make one stream, the same for
// both.
func TestSnapStoreMisuse(t *testing.T) {
	db, _ := testStateDB(t, false)
	putState(t, db, 0, 2000, 5)
	s := testSnapStore(t, t.TempDir(), 3)

	sink, err := s.Create(1, 5, 1, raft.Configuration{}, 1, nil)
	must(t, err)
	if _, err := sink.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := sink.(*snapSink).checkpoint(db); err == nil {
		t.Fatal("checkpoint after a stream accepted")
	}
	must(t, sink.Cancel())
	must(t, sink.Cancel())
	must(t, sink.Close())

	if _, err := s.Create(0, 5, 1, raft.Configuration{}, 1, nil); err == nil {
		t.Fatal("version 0 accepted")
	}

	sink, err = s.Create(1, 6, 1, raft.Configuration{}, 1, nil)
	must(t, err)
	must(t, (&fsmSnapshot{db: db, snap: db.NewSnapshot()}).Persist(sink))
	if _, err := sink.Write([]byte("x")); err == nil {
		t.Fatal("a stream written after a checkpoint accepted")
	}
	must(t, sink.Close()) // closed by Persist: nothing more

	want := streamOf(t, db)
	got := make([][]byte, 2)
	errs := make(chan error, 2)
	for i := range got {
		go func() {
			_, rc, err := s.Open(sink.ID())
			if err == nil {
				got[i], err = io.ReadAll(rc)
				rc.Close()
			}
			errs <- err
		}()
	}
	for range got {
		must(t, <-errs)
	}
	for i := range got {
		if !bytes.Equal(got[i], want) {
			t.Fatalf("concurrent Open %d: %d bytes, want %d", i, len(got[i]), len(want))
		}
	}

	sink2, err := s.Create(1, 7, 1, raft.Configuration{}, 1, nil)
	must(t, err)
	must(t, (&fsmSnapshot{db: db, snap: db.NewSnapshot()}).Persist(sink2))
	must(t, os.RemoveAll(filepath.Join(s.path, sink2.ID(), snapCkptDir)))
	if _, _, err := s.Open(sink2.ID()); err == nil {
		t.Fatal("a checkpoint snapshot without its checkpoint opened")
	}
	if _, err := os.Stat(filepath.Join(s.path, sink2.ID(), snapStreamFile)); !os.IsNotExist(err) {
		t.Fatalf("a failed Open left a stream behind: %v", err)
	}
}
