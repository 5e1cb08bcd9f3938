package raftstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

// Snapshot stream, version 1 (raft's FileSnapshotStore adds a CRC over it):
//
//	magic "rmsnap1\n"
//	records, in key order:  0x01 | uvarint len(key) | key | uvarint len(value) | value
//	trailer:                0x00 | uvarint number of records
//
// The stream holds every key of the state DB, the applied index included.
const snapMagic = "rmsnap1\n"

// restoreBatchBytes bounds the size of one batch while loading a snapshot.
const restoreBatchBytes = 4 << 20

type fsmSnapshot struct {
	db   *pebble.DB
	snap *pebble.Snapshot
}

// Persist flushes the state DB, then makes the snapshot a checkpoint of it
// (snapstore.go), or, for a store of another kind, streams every key of the
// Pebble snapshot into sink.
//
// The flush comes first: a restart starts raft at the newest snapshot's
// index without restoring it (NoSnapshotRestoreOnStart) and replays only
// the log after it, so the state up to that index must be on disk before
// the snapshot is (sink.Close), and before raft compacts the log behind it
// (after Persist). The state may have no WAL; the flush writes everything
// applied so far, the snapshot's index and what came after it. raft runs
// Persist on its snapshot goroutine while the FSM goes on applying.
//
// A checkpoint holds the tables as of the flush, so its state (and applied
// index) may be past the snapshot's index: batches reach the tables in
// order, so it is the state as of some applied index at or above it, and a
// replica restored from it skips the entries up to that index when raft
// replays them (ApplyBatch), as after a restart.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.db.Flush(); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftstore: flush state before snapshot: %w", err)
	}
	var err error
	if k, ok := sink.(*snapSink); ok {
		err = k.checkpoint(s.db)
	} else {
		err = writeSnapshot(sink, s.snap)
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release closes the Pebble snapshot.
func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

func writeSnapshot(w io.Writer, r pebble.Reader) error {
	it, err := r.NewIter(nil)
	if err != nil {
		return fmt.Errorf("raftstore: snapshot iterator: %w", err)
	}
	defer it.Close()
	sw := newSnapWriter(w)
	for ok := it.First(); ok; ok = it.Next() {
		if bytes.Equal(it.Key(), restoringKey) {
			continue
		}
		sw.add(it.Key(), it.Value())
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("raftstore: snapshot iterator: %w", err)
	}
	return sw.finish()
}

// snapWriter writes a snapshot stream: the magic, then one record per
// add, then the trailer on finish, which reports the first write error.
type snapWriter struct {
	bw  *bufio.Writer
	n   uint64
	hdr []byte
	err error
}

func newSnapWriter(w io.Writer) *snapWriter {
	sw := &snapWriter{bw: bufio.NewWriterSize(w, 256<<10)}
	_, sw.err = sw.bw.WriteString(snapMagic)
	return sw
}

func (sw *snapWriter) add(k, v []byte) {
	if sw.err != nil {
		return
	}
	sw.hdr = append(sw.hdr[:0], 1)
	sw.hdr = binary.AppendUvarint(sw.hdr, uint64(len(k)))
	sw.bw.Write(sw.hdr)
	sw.bw.Write(k)
	sw.hdr = binary.AppendUvarint(sw.hdr[:0], uint64(len(v)))
	sw.bw.Write(sw.hdr)
	_, sw.err = sw.bw.Write(v) // bufio.Writer keeps its first error
	sw.n++
}

func (sw *snapWriter) finish() error {
	if sw.err == nil {
		sw.hdr = binary.AppendUvarint(append(sw.hdr[:0], 0), sw.n)
		sw.bw.Write(sw.hdr)
		sw.err = sw.bw.Flush()
	}
	if sw.err != nil {
		return fmt.Errorf("raftstore: write snapshot: %w", sw.err)
	}
	return nil
}

// readSnapshot loads a snapshot stream into db in bounded, unsynced batches;
// the caller flushes.
func readSnapshot(r io.Reader, db *pebble.DB) error {
	br := bufio.NewReaderSize(r, 256<<10)
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapMagic {
		return fmt.Errorf("%w: magic", ErrBadSnapshot)
	}
	b := db.NewBatch()
	defer func() { b.Close() }()
	var n uint64
	for {
		kind, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
		}
		if kind == 0 {
			want, err := binary.ReadUvarint(br)
			if err != nil {
				return fmt.Errorf("%w: trailer: %w", ErrBadSnapshot, err)
			}
			if want != n {
				return fmt.Errorf("%w: %d records, trailer says %d", ErrBadSnapshot, n, want)
			}
			break
		}
		if kind != 1 {
			return fmt.Errorf("%w: record kind %d", ErrBadSnapshot, kind)
		}
		k, err := readField(br)
		if err != nil {
			return err
		}
		v, err := readField(br)
		if err != nil {
			return err
		}
		if err := b.Set(k, v, nil); err != nil {
			return fmt.Errorf("raftstore: restore: %w", err)
		}
		n++
		if b.Len() >= restoreBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return fmt.Errorf("raftstore: restore: %w", err)
			}
			b.Close()
			b = db.NewBatch()
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("raftstore: restore: %w", err)
	}
	return nil
}

// byteReader is what readField reads from.
type byteReader interface {
	io.Reader
	io.ByteReader
}

func readField(br byteReader) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, fmt.Errorf("%w: field length: %w", ErrBadSnapshot, err)
	}
	if n > 1<<30 {
		return nil, fmt.Errorf("%w: field length %d", ErrBadSnapshot, n)
	}
	// Read what is there rather than allocating the declared length up front,
	// so a corrupt length cannot force a huge allocation.
	buf, err := io.ReadAll(io.LimitReader(br, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("%w: field: %w", ErrBadSnapshot, err)
	}
	if uint64(len(buf)) != n {
		return nil, fmt.Errorf("%w: field: %w", ErrBadSnapshot, io.ErrUnexpectedEOF)
	}
	return buf, nil
}
