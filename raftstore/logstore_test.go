package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openTestLogStore(t *testing.T, dir string) *LogStore {
	t.Helper()
	s, err := OpenLogStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testLog(i uint64) *raft.Log {
	return &raft.Log{
		Index:      i,
		Term:       i/10 + 1,
		Type:       raft.LogCommand,
		Data:       []byte(fmt.Sprintf("data-%d", i)),
		Extensions: []byte{byte(i)},
		AppendedAt: time.Unix(1700000000, int64(i)),
	}
}

func checkIndexes(t *testing.T, s *LogStore, first, last uint64) {
	t.Helper()
	if got, err := s.FirstIndex(); err != nil || got != first {
		t.Errorf("FirstIndex = %d, %v; want %d", got, err, first)
	}
	if got, err := s.LastIndex(); err != nil || got != last {
		t.Errorf("LastIndex = %d, %v; want %d", got, err, last)
	}
}

func TestLogStore(t *testing.T) {
	dir := t.TempDir()
	s := openTestLogStore(t, dir)
	checkIndexes(t, s, 0, 0)
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty store: got %v, want ErrLogNotFound", err)
	}

	if err := s.StoreLog(testLog(1)); err != nil {
		t.Fatal(err)
	}
	var batch []*raft.Log
	for i := uint64(2); i <= 300; i++ {
		batch = append(batch, testLog(i))
	}
	if err := s.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s, 1, 300)

	for _, i := range []uint64{1, 2, 255, 256, 300} {
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		want := testLog(i)
		if l.Index != want.Index || l.Term != want.Term || l.Type != want.Type ||
			!bytes.Equal(l.Data, want.Data) || !bytes.Equal(l.Extensions, want.Extensions) ||
			!l.AppendedAt.Equal(want.AppendedAt) {
			t.Errorf("GetLog(%d) = %+v, want %+v", i, l, *want)
		}
	}

	tests := []struct {
		name        string
		min, max    uint64
		first, last uint64
	}{
		{"prefix", 1, 100, 101, 300},
		{"empty range", 50, 40, 101, 300},
		{"suffix (conflict truncation)", 251, 300, 101, 250},
		{"already gone", 1, 50, 101, 250},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.DeleteRange(tc.min, tc.max); err != nil {
				t.Fatal(err)
			}
			checkIndexes(t, s, tc.first, tc.last)
			if tc.min <= tc.max {
				for _, i := range []uint64{tc.min, tc.max} {
					if err := s.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
						t.Errorf("GetLog(%d) after delete: got %v, want ErrLogNotFound", i, err)
					}
				}
			}
		})
	}

	// Reopen: the log is durable.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestLogStore(t, dir)
	defer s.Close()
	checkIndexes(t, s, 101, 250)
	if err := s.GetLog(200, &l); err != nil || string(l.Data) != "data-200" {
		t.Errorf("GetLog(200) after reopen = %q, %v; want data-200", l.Data, err)
	}
	// Delete everything.
	if err := s.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s, 0, 0)
}

func TestStableStore(t *testing.T) {
	dir := t.TempDir()
	s := openTestLogStore(t, dir)
	// raft recognises a missing key by the error text "not found".
	if _, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get missing: got %v, want \"not found\"", err)
	}
	if _, err := s.GetUint64([]byte("LastVoteTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 missing: got %v, want \"not found\"", err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	// Stable keys and log keys do not collide.
	if err := s.StoreLog(testLog(7)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestLogStore(t, dir)
	defer s.Close()
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n1" {
		t.Errorf("Get = %q, %v; want n1", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Errorf("GetUint64 = %d, %v; want 42", v, err)
	}
	checkIndexes(t, s, 7, 7)
}

func TestLogCodec(t *testing.T) {
	tests := []*raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogNoop},
		testLog(99),
		{Index: ^uint64(0), Term: ^uint64(0), Type: raft.LogConfiguration, Data: bytes.Repeat([]byte{7}, 1000)},
	}
	for _, want := range tests {
		var got raft.Log
		if err := decodeLog(appendLog(nil, want), &got); err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
			!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
			!got.AppendedAt.Equal(want.AppendedAt) {
			t.Errorf("round trip: got %+v, want %+v", got, *want)
		}
	}
	enc := appendLog(nil, testLog(5))
	for _, bad := range [][]byte{nil, enc[:10], enc[:len(enc)-1], append([]byte{9}, enc[1:]...)} {
		var l raft.Log
		if err := decodeLog(bad, &l); !errors.Is(err, ErrCorruptLog) {
			t.Errorf("decode %x: got %v, want ErrCorruptLog", bad, err)
		}
	}
}

// Groups sharing one DB see only their own log and stable keys, and the
// DB's own (unshared) keys are apart from all of them; a group's Close
// leaves the DB open; reopened, every group finds its entries.
func TestLogStoreGroups(t *testing.T) {
	dir := t.TempDir()
	db := openTestLogStore(t, dir)
	own := db
	a, b, ab := db.Group("shard-1-1"), db.Group("shard-1-2"), db.Group("shard-1-1x")
	for i := uint64(1); i <= 20; i++ {
		if err := a.StoreLog(testLog(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(100); i <= 110; i++ {
		if err := b.StoreLog(testLog(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := own.StoreLog(testLog(7)); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, a, 1, 20)
	checkIndexes(t, b, 100, 110)
	checkIndexes(t, own, 7, 7)
	checkIndexes(t, ab, 0, 0) // a name that extends another's is another group
	if err := a.DeleteRange(1, 15); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, a, 16, 20)
	checkIndexes(t, b, 0, 0)
	checkIndexes(t, own, 7, 7)
	var l raft.Log
	if err := a.GetLog(100, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("group a reads b's entry: %v", err)
	}
	if err := a.SetUint64([]byte("CurrentTerm"), 5); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("group b sees a's term: %v", err)
	}
	if _, err := own.GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("the DB's own keys see a's term: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLog(testLog(200)); err != nil {
		t.Fatalf("a group's Close closed the shared DB: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2 := openTestLogStore(t, dir)
	defer db2.Close()
	checkIndexes(t, db2.Group("shard-1-1"), 16, 20)
	checkIndexes(t, db2.Group("shard-1-2"), 200, 200)
	if v, err := db2.Group("shard-1-1").GetUint64([]byte("CurrentTerm")); err != nil || v != 5 {
		t.Fatalf("a's term after reopening: %d, %v", v, err)
	}
}
