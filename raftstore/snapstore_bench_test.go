package raftstore

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// BenchmarkSnapshotPersist takes raft snapshots of a state DB of 64 and
// 256 MiB (1 KiB values, half of each random): as a stream into raft's
// FileSnapshotStore (how every snapshot was taken before stop 32) and as a
// checkpoint (snapStore). disk-MB/op is what one snapshot adds on disk.
//
//	go test -run '^$' -bench SnapshotPersist -benchtime 5x ./raftstore/
func BenchmarkSnapshotPersist(b *testing.B) {
	for _, mb := range []int{64, 256} {
		db := benchStateDB(b, mb)
		b.Run(fmt.Sprintf("state=%dMiB/stream", mb), func(b *testing.B) {
			base := b.TempDir()
			store, err := raft.NewFileSnapshotStoreWithLogger(base, 2, hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			benchPersist(b, db, store, base)
		})
		b.Run(fmt.Sprintf("state=%dMiB/checkpoint", mb), func(b *testing.B) {
			base := b.TempDir()
			store, err := openSnapStore(base, 2, slog.New(slog.DiscardHandler), func() *pebble.Options { return &pebble.Options{} })
			if err != nil {
				b.Fatal(err)
			}
			benchPersist(b, db, store, base)
		})
	}
}

func benchPersist(b *testing.B, db *pebble.DB, store raft.SnapshotStore, base string) {
	var added int64
	i := uint64(0)
	for b.Loop() {
		i++
		sink, err := store.Create(1, i, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := (&fsmSnapshot{db: db, snap: db.NewSnapshot()}).Persist(sink); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		// Both stores keep a snapshot in base/snapshots/<id>.
		added += newBytes(b, filepath.Join(base, "snapshots", sink.ID()))
		b.StartTimer()
	}
	b.ReportMetric(float64(added)/float64(b.N)/(1<<20), "disk-MB/op")
}

// newBytes is the size of the files under dir that are not links to
// another file (a checkpoint's tables are the state DB's).
func newBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			return nil
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func benchStateDB(b *testing.B, mb int) *pebble.DB {
	b.Helper()
	o := stateDBOptions(slog.New(slog.DiscardHandler), false, nil)
	db, err := pebble.Open(b.TempDir(), o)
	o.Cache.Unref()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	v := make([]byte, 1024)
	batch := db.NewBatch()
	for i := range mb << 10 {
		rand.Read(v[:512])
		if err := batch.Set(fmt.Appendf(nil, "m%09d", i), v, nil); err != nil {
			b.Fatal(err)
		}
		if batch.Len() > 4<<20 {
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch = db.NewBatch()
		}
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	return db
}
