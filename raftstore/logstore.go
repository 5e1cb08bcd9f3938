package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

// Key layout of the raft DB (Dir/raft):
//
//	'l' + uint64 big-endian index  -> encoded raft.Log (see encodeLog)
//	's' + key                      -> stable store value (current term, vote, ...)
//
// Big-endian indexes sort numerically, so FirstIndex and LastIndex are the
// first and last keys of the 'l' range and DeleteRange is one range tombstone.
const (
	prefixLog    = 'l'
	prefixStable = 's'
)

var (
	logLower = []byte{prefixLog}
	logUpper = []byte{prefixLog + 1}
)

// LogStore keeps the raft log and the raft stable store in one Pebble DB.
// It implements raft.LogStore and raft.StableStore. Every write is synced:
// raft relies on the log and the term/vote being durable before it answers
// a peer or counts its own vote.
//
// Many raft groups may share one DB (Group, issue 9 step 2b): a group's
// keys are those above behind a prefix ('g', uvarint length, name), so one
// node's groups write one WAL and Pebble's commit pipeline syncs the
// batches of every group that commit together with one fsync.
type LogStore struct {
	db     *pebble.DB
	prefix []byte // "" for the DB's own (unshared) keys
	shared bool   // a Group view: Close leaves the DB open
}

var (
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

// OpenLogStore opens (creating if needed) a log store in dir. nil opts
// means the defaults Open uses, with Pebble's log discarded.
func OpenLogStore(dir string, opts *pebble.Options) (*LogStore, error) {
	if opts == nil {
		opts = logDBOptions(slog.New(slog.DiscardHandler))
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open log store %s: %w", dir, err)
	}
	return &LogStore{db: db}, nil
}

// Group returns the log store of raft group name inside s's DB, for a
// node hosting many groups. Its Close leaves the DB open: the owner of s
// closes it after every group.
func (s *LogStore) Group(name string) *LogStore {
	p := append([]byte{'g'}, binary.AppendUvarint(nil, uint64(len(name)))...)
	p = append(p, name...)
	return &LogStore{db: s.db, prefix: p, shared: true}
}

// Close closes the underlying DB (a Group view: nothing).
func (s *LogStore) Close() error {
	if s.shared {
		return nil
	}
	return s.db.Close()
}

func (s *LogStore) logKey(index uint64) []byte {
	k := make([]byte, len(s.prefix)+9)
	copy(k, s.prefix)
	k[len(s.prefix)] = prefixLog
	binary.BigEndian.PutUint64(k[len(s.prefix)+1:], index)
	return k
}

func (s *LogStore) logBounds() (lower, upper []byte) {
	lower = append(append([]byte(nil), s.prefix...), logLower...)
	upper = append(append([]byte(nil), s.prefix...), logUpper...)
	return lower, upper
}

// FirstIndex returns the first index written, 0 for no entries.
func (s *LogStore) FirstIndex() (uint64, error) {
	return s.edgeIndex(true)
}

// LastIndex returns the last index written, 0 for no entries.
func (s *LogStore) LastIndex() (uint64, error) {
	return s.edgeIndex(false)
}

func (s *LogStore) edgeIndex(first bool) (uint64, error) {
	lower, upper := s.logBounds()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("raftstore: log iterator: %w", err)
	}
	var ok bool
	if first {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	var idx uint64
	if ok {
		k := it.Key()
		if len(k) != len(s.prefix)+9 {
			_ = it.Close()
			return 0, fmt.Errorf("%w: key length %d", ErrCorruptLog, len(k))
		}
		idx = binary.BigEndian.Uint64(k[len(s.prefix)+1:])
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("raftstore: log iterator: %w", err)
	}
	return idx, nil
}

// GetLog gets the log entry at index, or raft.ErrLogNotFound.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	v, closer, err := s.db.Get(s.logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: get log %d: %w", index, err)
	}
	defer closer.Close()
	return decodeLog(v, log)
}

// StoreLog stores one log entry.
func (s *LogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores the entries in one synced Pebble batch.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	size := 0
	for _, l := range logs {
		size += 9 + logHeaderLen + 2*binary.MaxVarintLen64 + len(l.Data) + len(l.Extensions)
	}
	b := s.db.NewBatchWithSize(size + (16+len(s.prefix))*len(logs))
	defer b.Close()
	var buf []byte
	for _, l := range logs {
		buf = appendLog(buf[:0], l)
		if err := b.Set(s.logKey(l.Index), buf, nil); err != nil {
			return fmt.Errorf("raftstore: store log %d: %w", l.Index, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: store logs: %w", err)
	}
	return nil
}

// DeleteRange deletes the entries in [min, max], inclusive.
func (s *LogStore) DeleteRange(min, max uint64) error {
	if max < min {
		return nil
	}
	_, end := s.logBounds()
	if max != ^uint64(0) {
		end = s.logKey(max + 1)
	}
	if err := s.db.DeleteRange(s.logKey(min), end, pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: delete logs [%d, %d]: %w", min, max, err)
	}
	return nil
}

func (s *LogStore) stableKey(key []byte) []byte {
	k := make([]byte, len(s.prefix)+1+len(key))
	copy(k, s.prefix)
	k[len(s.prefix)] = prefixStable
	copy(k[len(s.prefix)+1:], key)
	return k
}

// Set stores a stable value, synced.
func (s *LogStore) Set(key, val []byte) error {
	if err := s.db.Set(s.stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: stable set %q: %w", key, err)
	}
	return nil
}

// Get returns a stable value, or ErrKeyNotFound.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(s.stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: stable get %q: %w", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// SetUint64 stores a stable uint64 (big-endian), synced.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns a stable uint64, or 0 and ErrKeyNotFound.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: stable uint64 %q has %d bytes", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Encoded raft.Log, version 1:
//
//	version  u8 (=1)
//	index    u64 BE
//	term     u64 BE
//	type     u8 (raft.LogType)
//	appended i64 BE unix nanoseconds, 0 for the zero time
//	uvarint len(data) | data
//	uvarint len(extensions) | extensions
const (
	logVersion   = 1
	logHeaderLen = 1 + 8 + 8 + 1 + 8
)

func appendLog(buf []byte, l *raft.Log) []byte {
	buf = append(buf, logVersion)
	buf = binary.BigEndian.AppendUint64(buf, l.Index)
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	return buf
}

// decodeLog decodes v into l; l's byte slices are copies, not aliases of v.
func decodeLog(v []byte, l *raft.Log) error {
	if len(v) < logHeaderLen || v[0] != logVersion {
		return fmt.Errorf("%w: header", ErrCorruptLog)
	}
	l.Index = binary.BigEndian.Uint64(v[1:])
	l.Term = binary.BigEndian.Uint64(v[9:])
	l.Type = raft.LogType(v[17])
	at := int64(binary.BigEndian.Uint64(v[18:]))
	l.AppendedAt = time.Time{}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	rest := v[logHeaderLen:]
	var err error
	if l.Data, rest, err = readBytes(rest); err != nil {
		return err
	}
	if l.Extensions, _, err = readBytes(rest); err != nil {
		return err
	}
	return nil
}

func readBytes(v []byte) (field, rest []byte, err error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return nil, nil, fmt.Errorf("%w: field length", ErrCorruptLog)
	}
	v = v[k:]
	if n == 0 {
		return nil, v[0:], nil
	}
	return append([]byte(nil), v[:n]...), v[n:], nil
}
