package raftstore

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

// snapStore is the replica's raft.SnapshotStore. A snapshot raft takes of
// the local state is a Pebble checkpoint: hard links to the state DB's
// tables, made in milliseconds whatever the state's size. Writing the whole
// state as a stream instead cost a full copy (uncompressed, twice the DB)
// every few minutes under load, and the copy's CPU and disk traffic stalled
// the group's applies for seconds each time (docs/BENCHMARKS.md, stop 32).
// The stream a follower or a restore needs is made from the checkpoint
// only when one is opened.
//
// The on-disk layout is raft.FileSnapshotStore's, so snapshots written by
// earlier releases stay readable:
//
//	Dir/snapshots/snapshots/<term>-<index>-<ms>/meta.json   raft's metadata (+ the stream's CRC-64)
//	                                            state.bin   a stream (received, or written by earlier releases)
//	                                            ckpt/       a checkpoint of the state DB (snapshots taken here)
//	                                            stream.bin  the stream made from ckpt/ when first opened
//
// A snapshot is written in <name>.tmp and renamed when complete; a .tmp
// left by a crash is removed when the store is opened.
type snapStore struct {
	path   string
	retain int
	log    *slog.Logger
	opts   func() *pebble.Options // for opening a checkpoint read-only

	mu sync.Mutex // serialises making stream.bin
}

const (
	snapMetaFile   = "meta.json"
	snapStateFile  = "state.bin"
	snapCkptDir    = "ckpt"
	snapStreamFile = "stream.bin"
	snapTmpSuffix  = ".tmp"
)

var snapCRCTable = crc64.MakeTable(crc64.ECMA) // as raft.FileSnapshotStore

// snapMeta is meta.json: raft.FileSnapshotStore's fields, and whether the
// snapshot is a checkpoint (then CRC is empty and Size is 0 until the
// stream is made; Open reports its size).
type snapMeta struct {
	raft.SnapshotMeta
	CRC        []byte
	Checkpoint bool `json:",omitempty"`
}

func openSnapStore(dir string, retain int, log *slog.Logger, opts func() *pebble.Options) (*snapStore, error) {
	path := filepath.Join(dir, "snapshots")
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasSuffix(e.Name(), snapTmpSuffix) {
			if err := os.RemoveAll(filepath.Join(path, e.Name())); err != nil {
				return nil, fmt.Errorf("raftstore: remove unfinished snapshot: %w", err)
			}
		}
	}
	return &snapStore{path: path, retain: retain, log: log, opts: opts}, nil
}

// Create starts a snapshot (its metadata has no Peers: they are only for
// version-0 snapshots, and raft writes version 1). The sink takes either a stream (Write, as raft
// does with a snapshot it receives) or a checkpoint of the state DB
// (checkpoint, as fsmSnapshot.Persist does), not both.
func (s *snapStore) Create(version raft.SnapshotVersion, index, term uint64, conf raft.Configuration,
	confIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("raftstore: unsupported snapshot version %d", version)
	}
	name := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	dir := filepath.Join(s.path, name+snapTmpSuffix)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftstore: create snapshot: %w", err)
	}
	return &snapSink{store: s, dir: dir, meta: snapMeta{SnapshotMeta: raft.SnapshotMeta{
		Version: version, ID: name, Index: index, Term: term,
		Configuration: conf, ConfigurationIndex: confIndex,
	}}}, nil
}

// List returns the snapshots, newest first, at most retain of them.
func (s *snapStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.metas()
	if err != nil {
		return nil, err
	}
	var out []*raft.SnapshotMeta
	for i, m := range metas {
		if i == s.retain {
			break
		}
		out = append(out, &m.SnapshotMeta)
	}
	return out, nil
}

// metas reads every complete snapshot's metadata, newest first (raft's
// order: term, index, ID).
func (s *snapStore) metas() ([]*snapMeta, error) {
	ents, err := os.ReadDir(s.path)
	if err != nil {
		return nil, fmt.Errorf("raftstore: list snapshots: %w", err)
	}
	var metas []*snapMeta
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), snapTmpSuffix) {
			continue
		}
		m, err := s.readMeta(e.Name())
		if err != nil {
			s.log.Warn("snapshot without readable metadata", "name", e.Name(), "err", err)
			continue
		}
		if m.Version < raft.SnapshotVersionMin || m.Version > raft.SnapshotVersionMax {
			s.log.Warn("snapshot of an unknown version", "name", e.Name(), "version", m.Version)
			continue
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *snapMeta) int {
		if c := cmpU64(b.Term, a.Term); c != 0 {
			return c
		}
		if c := cmpU64(b.Index, a.Index); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return metas, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *snapStore) readMeta(name string) (*snapMeta, error) {
	b, err := os.ReadFile(filepath.Join(s.path, name, snapMetaFile))
	if err != nil {
		return nil, err
	}
	m := &snapMeta{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Open returns a snapshot's stream. A stream on disk is checked against its
// CRC first; a checkpoint's stream is made (once) from the checkpoint.
func (s *snapStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return nil, nil, fmt.Errorf("raftstore: open snapshot %q: bad id", id)
	}
	m, err := s.readMeta(id)
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: open snapshot %s: %w", id, err)
	}
	dir := filepath.Join(s.path, id)
	if m.Checkpoint {
		f, size, err := s.checkpointStream(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("raftstore: open snapshot %s: %w", id, err)
		}
		meta := m.SnapshotMeta
		meta.Size = size
		return &meta, bufferedFile{bufio.NewReaderSize(f, 256<<10), f}, nil
	}
	f, err := os.Open(filepath.Join(dir, snapStateFile))
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: open snapshot %s: %w", id, err)
	}
	h := crc64.New(snapCRCTable)
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("raftstore: open snapshot %s: %w", id, err)
	}
	if !bytes.Equal(h.Sum(nil), m.CRC) {
		f.Close()
		return nil, nil, fmt.Errorf("%w: snapshot %s: CRC mismatch", ErrBadSnapshot, id)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("raftstore: open snapshot %s: %w", id, err)
	}
	meta := m.SnapshotMeta
	return &meta, bufferedFile{bufio.NewReaderSize(f, 256<<10), f}, nil
}

// checkpointStream opens the snapshot stream of the checkpoint in dir,
// writing it to stream.bin first if no earlier Open did.
func (s *snapStore) checkpointStream(dir string) (*os.File, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(dir, snapStreamFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := s.makeStream(dir, path); err != nil {
			return nil, 0, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// makeStream writes the snapshot stream of the checkpoint in dir to path,
// through a temporary file and a rename. Nothing writes to a checkpoint, so
// the read-only DB is read as it is.
func (s *snapStore) makeStream(dir, path string) error {
	start := time.Now()
	opts := s.opts()
	opts.ReadOnly = true
	db, err := pebble.Open(filepath.Join(dir, snapCkptDir), opts)
	if err != nil {
		return fmt.Errorf("open checkpoint: %w", err)
	}
	tmp := path + snapTmpSuffix
	var size int64
	out, err := os.Create(tmp)
	if err == nil {
		err = writeSnapshot(out, db)
		if err == nil {
			size, err = out.Seek(0, io.SeekCurrent)
		}
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	s.log.Info("made the stream of a snapshot checkpoint", "dir", dir, "bytes", size, "took", time.Since(start))
	return nil
}

// reap removes the snapshots beyond the newest retain.
func (s *snapStore) reap() error {
	metas, err := s.metas()
	if err != nil {
		return err
	}
	for i := s.retain; i < len(metas); i++ {
		if err := os.RemoveAll(filepath.Join(s.path, metas[i].ID)); err != nil {
			return fmt.Errorf("raftstore: remove old snapshot: %w", err)
		}
	}
	return nil
}

type bufferedFile struct {
	*bufio.Reader
	f *os.File
}

func (b bufferedFile) Close() error { return b.f.Close() }

// snapSink is one snapshot being written.
type snapSink struct {
	store *snapStore
	dir   string // the .tmp directory
	meta  snapMeta

	state *os.File // a stream: state.bin
	hash  hash.Hash64
	bw    *bufio.Writer
	ckpt  bool // a checkpoint was made in dir
	done  bool
}

func (k *snapSink) ID() string { return k.meta.ID }

// Write appends to the snapshot's stream.
func (k *snapSink) Write(p []byte) (int, error) {
	if k.ckpt {
		return 0, errors.New("raftstore: snapshot sink: a stream written after a checkpoint")
	}
	if k.state == nil {
		f, err := os.Create(filepath.Join(k.dir, snapStateFile))
		if err != nil {
			return 0, err
		}
		k.state, k.hash = f, crc64.New(snapCRCTable)
		k.bw = bufio.NewWriterSize(io.MultiWriter(f, k.hash), 256<<10)
	}
	n, err := k.bw.Write(p)
	k.meta.Size += int64(n)
	return n, err
}

// checkpoint makes the snapshot a checkpoint of db, whose every applied
// batch must be in its tables (the caller flushed: the state DB may have no
// WAL, and a checkpoint holds only tables and WAL files).
func (k *snapSink) checkpoint(db *pebble.DB) error {
	if k.state != nil || k.ckpt {
		return errors.New("raftstore: snapshot sink: a checkpoint after a stream")
	}
	if err := db.Checkpoint(filepath.Join(k.dir, snapCkptDir), pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("raftstore: checkpoint state: %w", err)
	}
	k.ckpt = true
	k.meta.Checkpoint = true
	return nil
}

// Close completes the snapshot: the stream synced, the metadata written,
// the directory renamed into place; then older snapshots are reaped.
func (k *snapSink) Close() error {
	if k.done {
		return nil
	}
	k.done = true
	err := k.finish()
	if err != nil {
		_ = os.RemoveAll(k.dir)
		return err
	}
	if err := k.store.reap(); err != nil {
		k.store.log.Warn("snapshot: reaping old snapshots", "err", err)
	}
	return nil
}

func (k *snapSink) finish() error {
	if !k.ckpt && k.state == nil { // an empty stream
		if _, err := k.Write(nil); err != nil {
			return err
		}
	}
	if k.state != nil {
		err := k.bw.Flush()
		if err == nil {
			err = k.state.Sync()
		}
		if cerr := k.state.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("raftstore: write snapshot: %w", err)
		}
		k.meta.CRC = k.hash.Sum(nil)
	}
	b, err := json.Marshal(&k.meta)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(k.dir, snapMetaFile), b); err != nil {
		return fmt.Errorf("raftstore: write snapshot metadata: %w", err)
	}
	if err := syncDir(k.dir); err != nil {
		return err
	}
	final := strings.TrimSuffix(k.dir, snapTmpSuffix)
	if err := os.Rename(k.dir, final); err != nil {
		return fmt.Errorf("raftstore: finish snapshot: %w", err)
	}
	return syncDir(k.store.path)
}

// Cancel abandons the snapshot.
func (k *snapSink) Cancel() error {
	if k.done {
		return nil
	}
	k.done = true
	if k.state != nil {
		_ = k.state.Close()
	}
	return os.RemoveAll(k.dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("raftstore: sync %s: %w", dir, err)
	}
	return nil
}
