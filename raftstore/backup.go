package raftstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

// Backups (issue 12, `relaymesh admin snapshot` and `restore`): a file that
// holds one group's whole state as of one applied index, and a restore of
// it into a group through raft.
//
// Backup file, format 1:
//
//	magic      "rmbackup1\n"
//	header     uvarint len | JSON BackupHeader (at most MaxBackupHeader bytes)
//	state      a snapshot stream (snapshot.go, "rmsnap1"), records in strictly
//	           increasing key order, its trailer's count equal to the header's
//	           Records
//	checksum   SHA-256 of every byte before it (32 bytes), then end of file
//
// A restore (Node.RestoreBackup) reads the whole file, checking all of it,
// into a snapshot stream of its own beside the replica before it touches
// the group; only then does it hand that stream to raft's user restore
// ((*raft.Raft).Restore): the leader installs it as a snapshot at a new
// index R = max(Applied, last index)+1 and its followers get it by
// InstallSnapshot. The state's applied index (appliedKey, which the fsm
// compares entries with) is rewritten to the header's Applied, which is
// below R, so every entry after the restore is applied (a file's own
// applied key, whatever it says, is dropped with every other reserved
// key).
const (
	backupMagic = "rmbackup1\n"
	// BackupFormat is the format version this package writes and reads.
	BackupFormat = 1
	// MaxBackupHeader bounds the header's JSON.
	MaxBackupHeader = 4 << 10
	// maxHeaderString bounds each string field of a header.
	maxHeaderString = 256
)

// BackupHeader describes a backup file.
type BackupHeader struct {
	Format  int    `json:"format"`
	Group   string `json:"group"`            // what the caller names the group: "shard", "catalog"
	Region  int    `json:"region,omitempty"` // the shard's region
	Shard   int    `json:"shard"`
	Node    string `json:"node,omitempty"` // the replica it was taken on
	Role    string `json:"role,omitempty"` // that replica's raft state then: Leader, Follower
	Applied uint64 `json:"applied_index"`  // the state's applied index
	Term    uint64 `json:"term"`           // the term of the entry at Applied (the current term if compacted)
	Created string `json:"created"`        // RFC 3339, UTC
	Records uint64 `json:"records"`        // records in the state stream
}

// validate checks a header read from a file.
func (h *BackupHeader) validate() error {
	if h.Format != BackupFormat {
		return fmt.Errorf("%w: format %d, this build reads %d", ErrBadBackup, h.Format, BackupFormat)
	}
	for _, s := range []string{h.Group, h.Node, h.Role, h.Created} {
		if len(s) > maxHeaderString {
			return fmt.Errorf("%w: a header field of %d bytes", ErrBadBackup, len(s))
		}
	}
	if h.Group == "" {
		return fmt.Errorf("%w: no group in the header", ErrBadBackup)
	}
	if h.Region < 0 || h.Region > 255 || h.Shard < 0 || h.Shard > 1<<16-1 {
		return fmt.Errorf("%w: region %d shard %d", ErrBadBackup, h.Region, h.Shard)
	}
	if _, err := time.Parse(time.RFC3339, h.Created); err != nil {
		return fmt.Errorf("%w: created %q", ErrBadBackup, h.Created)
	}
	return nil
}

// BackupProgress is called as records go by, with the records and bytes
// so far.
type BackupProgress func(records, bytes uint64)

// Backup writes a backup of the replica's state to w: a consistent
// Pebble snapshot of it, as of the applied index it holds. hdr names the
// group (Group, Region, Shard); Backup fills in the rest and returns it.
// progress may be nil.
func (n *Node) Backup(w io.Writer, hdr BackupHeader, progress BackupProgress) (*BackupHeader, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if err := n.fsm.err(); err != nil {
		return nil, err // its state stopped where its peers did not
	}
	snap := n.state.NewSnapshot()
	defer snap.Close()
	applied, err := AppliedIndex(snap)
	if err != nil {
		return nil, err
	}
	hdr.Format, hdr.Applied = BackupFormat, applied
	hdr.Role = n.raft.State().String()
	hdr.Node = n.cfg.NodeID
	hdr.Term = n.raft.CurrentTerm()
	var l raft.Log
	if applied > 0 && n.logs.GetLog(applied, &l) == nil {
		hdr.Term = l.Term
	}
	hdr.Created = time.Now().UTC().Format(time.RFC3339)
	if hdr.Records, err = countRecords(snap); err != nil {
		return nil, err
	}
	if err := hdr.validate(); err != nil {
		return nil, err
	}
	if err := writeBackup(w, snap, &hdr, progress); err != nil {
		return nil, err
	}
	return &hdr, nil
}

// countRecords counts the records a snapshot stream of snap holds.
func countRecords(snap *pebble.Snapshot) (uint64, error) {
	it, err := snap.NewIter(nil)
	if err != nil {
		return 0, fmt.Errorf("raftstore: backup: %w", err)
	}
	defer it.Close()
	var n uint64
	for ok := it.First(); ok; ok = it.Next() {
		if !bytes.Equal(it.Key(), restoringKey) {
			n++
		}
	}
	if err := it.Error(); err != nil {
		return 0, fmt.Errorf("raftstore: backup: %w", err)
	}
	return n, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

func writeBackup(w io.Writer, snap *pebble.Snapshot, hdr *BackupHeader, progress BackupProgress) error {
	h := sha256.New()
	bw := bufio.NewWriterSize(w, 256<<10)
	cw := &countingWriter{w: io.MultiWriter(bw, h)}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	if len(js) > MaxBackupHeader {
		return fmt.Errorf("raftstore: backup header of %d bytes", len(js))
	}
	pre := append([]byte(backupMagic), binary.AppendUvarint(nil, uint64(len(js)))...)
	cw.Write(pre)
	if _, err := cw.Write(js); err != nil {
		return fmt.Errorf("raftstore: write backup: %w", err)
	}
	it, err := snap.NewIter(nil)
	if err != nil {
		return fmt.Errorf("raftstore: backup: %w", err)
	}
	defer it.Close()
	sw := newSnapWriter(cw)
	for ok := it.First(); ok; ok = it.Next() {
		if bytes.Equal(it.Key(), restoringKey) {
			continue
		}
		sw.add(it.Key(), it.Value())
		if progress != nil && sw.n%4096 == 0 {
			progress(sw.n, cw.n)
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("raftstore: backup: %w", err)
	}
	if sw.n != hdr.Records {
		return fmt.Errorf("raftstore: backup: %d records, counted %d", sw.n, hdr.Records)
	}
	if err := sw.finish(); err != nil {
		return err
	}
	if _, err := bw.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("raftstore: write backup: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("raftstore: write backup: %w", err)
	}
	if progress != nil {
		progress(sw.n, cw.n+sha256.Size)
	}
	return nil
}

// hashReader hashes every byte read through it.
type hashReader struct {
	br *bufio.Reader
	h  hash.Hash
	n  uint64
	b  [1]byte
}

func (r *hashReader) Read(p []byte) (int, error) {
	n, err := r.br.Read(p)
	r.h.Write(p[:n])
	r.n += uint64(n)
	return n, err
}

func (r *hashReader) ReadByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err == nil {
		r.b[0] = c
		r.h.Write(r.b[:])
		r.n++
	}
	return c, err
}

// ReadBackup reads and checks a whole backup file from r: its header
// (check, when set, may refuse it before the state is read), every
// record (passed to rec, when set, in key order; rec must not keep k or
// v), the record count and the checksum, and that nothing follows.
// Every flaw is an error wrapping ErrBadBackup; rec sees the records of
// a file that turns out to be bad, so a caller acts on them only once
// ReadBackup returns nil.
func ReadBackup(r io.Reader, check func(*BackupHeader) error, rec func(k, v []byte) error, progress BackupProgress) (*BackupHeader, error) {
	hr := &hashReader{br: bufio.NewReaderSize(r, 256<<10), h: sha256.New()}
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(hr, magic); err != nil {
		return nil, fmt.Errorf("%w: magic: %w", ErrBadBackup, noEOF(err))
	}
	if string(magic) != backupMagic {
		return nil, fmt.Errorf("%w: not a relaymesh backup (magic)", ErrBadBackup)
	}
	hl, err := binary.ReadUvarint(hr)
	if err != nil {
		return nil, fmt.Errorf("%w: header length: %w", ErrBadBackup, noEOF(err))
	}
	if hl == 0 || hl > MaxBackupHeader {
		return nil, fmt.Errorf("%w: header length %d (at most %d)", ErrBadBackup, hl, MaxBackupHeader)
	}
	js := make([]byte, hl)
	if _, err := io.ReadFull(hr, js); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrBadBackup, err)
	}
	hdr := new(BackupHeader)
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrBadBackup, err)
	}
	if err := hdr.validate(); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(hdr); err != nil {
			return nil, err
		}
	}
	smagic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(hr, smagic); err != nil {
		return nil, fmt.Errorf("%w: state stream: %w", ErrBadBackup, noEOF(err))
	}
	if string(smagic) != snapMagic {
		return nil, fmt.Errorf("%w: state stream magic", ErrBadBackup)
	}
	var n uint64
	var prev []byte
	for {
		kind, err := hr.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: after %d records: %w", ErrBadBackup, n, noEOF(err))
		}
		if kind == 0 {
			want, err := binary.ReadUvarint(hr)
			if err != nil {
				return nil, fmt.Errorf("%w: trailer: %w", ErrBadBackup, noEOF(err))
			}
			if want != n || n != hdr.Records {
				return nil, fmt.Errorf("%w: %d records, trailer says %d, header %d", ErrBadBackup, n, want, hdr.Records)
			}
			break
		}
		if kind != 1 {
			return nil, fmt.Errorf("%w: record kind %d", ErrBadBackup, kind)
		}
		if n == hdr.Records {
			return nil, fmt.Errorf("%w: more records than the header's %d", ErrBadBackup, hdr.Records)
		}
		k, err := readField(hr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadBackup, noEOF(err))
		}
		v, err := readField(hr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadBackup, noEOF(err))
		}
		if n > 0 && bytes.Compare(prev, k) >= 0 {
			return nil, fmt.Errorf("%w: record %d out of key order", ErrBadBackup, n)
		}
		prev = append(prev[:0], k...)
		if rec != nil {
			if err := rec(k, v); err != nil {
				return nil, err
			}
		}
		n++
		if progress != nil && n%4096 == 0 {
			progress(n, hr.n)
		}
	}
	sum := hr.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(hr.br, got); err != nil {
		return nil, fmt.Errorf("%w: checksum: %w", ErrBadBackup, noEOF(err))
	}
	if !bytes.Equal(sum, got) {
		return nil, fmt.Errorf("%w: checksum mismatch (the file is corrupt)", ErrBadBackup)
	}
	if _, err := hr.br.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the checksum", ErrBadBackup)
	}
	if progress != nil {
		progress(n, hr.n+sha256.Size)
	}
	return hdr, nil
}

// noEOF turns a clean EOF in the middle of a file into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// RestoreResult is what RestoreBackup did.
type RestoreResult struct {
	Header  *BackupHeader
	Records uint64 // records loaded (the file's, less its reserved keys)
	// Index is the raft index the restored state stands at (the user
	// snapshot's), AppliedIndex the replica's applied index once the
	// entry raft commits after it is applied.
	Index, AppliedIndex uint64
}

// defaultRestoreTimeout bounds a restore whose ctx has no deadline.
const defaultRestoreTimeout = 2 * time.Minute

// RestoreBackup replaces the group's state with the backup file read from
// r, through raft: only on the leader (elsewhere ErrNotLeader, before r is
// read). It reads and checks all of r first (ReadBackup; check may refuse
// the header), into a snapshot stream in the replica's directory, and
// touches nothing when the file is bad (ErrBadBackup) or ctx ends. Then
// raft installs it on this replica and its followers, and RestoreBackup
// returns once an entry after it is committed. The replica's state
// machine is Reset as for any snapshot restore.
func (n *Node) RestoreBackup(ctx context.Context, r io.Reader, check func(*BackupHeader) error, progress BackupProgress) (*RestoreResult, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if err := n.fsm.err(); err != nil {
		return nil, err
	}
	if !n.IsLeader() {
		return nil, fmt.Errorf("%w: restore", ErrNotLeader)
	}
	f, err := os.CreateTemp(n.cfg.Dir, "restore-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("raftstore: restore: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sw := newSnapWriter(f)
	var loaded uint64
	hdr, err := ReadBackup(r, check, func(k, v []byte) error {
		if bytes.HasPrefix(k, []byte(ReservedPrefix)) {
			return nil // the applied index and markers are this group's own
		}
		sw.add(k, v)
		loaded++
		if loaded%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("raftstore: restore: %w", err)
			}
		}
		return nil
	}, progress)
	if err != nil {
		return nil, err
	}
	// The applied index of the restored state: the backup's, which raft's
	// new snapshot index is above (see the file comment).
	sw.add(appliedKey, binary.BigEndian.AppendUint64(nil, hdr.Applied))
	if err := sw.finish(); err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("raftstore: restore: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("raftstore: restore: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("raftstore: restore: %w", err)
	}
	if !n.IsLeader() {
		return nil, fmt.Errorf("%w: restore", ErrNotLeader)
	}
	timeout := defaultRestoreTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Second)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: hdr.Applied, Term: hdr.Term, Size: size}
	if err := n.raft.Restore(meta, bufio.NewReaderSize(f, 256<<10), timeout); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
			return nil, fmt.Errorf("%w: restore: %w", ErrNotLeader, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			// A follower's raft never takes a user restore: it waits.
			return nil, fmt.Errorf("raftstore: restore (the replica may have lost the leadership; see its state before retrying): %w", err)
		}
		return nil, fmt.Errorf("raftstore: restore: %w", err)
	}
	res := &RestoreResult{Header: hdr, Records: loaded, AppliedIndex: n.AppliedIndex()}
	var idx uint64
	if _, err := fmt.Sscan(n.raft.Stats()["last_snapshot_index"], &idx); err == nil {
		res.Index = idx
	}
	return res, nil
}
