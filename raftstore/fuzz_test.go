package raftstore

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/hashicorp/raft"
)

func FuzzDecodeLog(f *testing.F) {
	f.Add(appendLog(nil, testLog(3)))
	f.Add(appendLog(nil, &raft.Log{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := decodeLog(b, &l); err != nil {
			return
		}
		// Whatever decodes re-encodes to a prefix of the input (trailing
		// bytes are ignored) that decodes the same.
		enc := appendLog(nil, &l)
		var l2 raft.Log
		if err := decodeLog(enc, &l2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if l2.Index != l.Index || l2.Term != l.Term || !bytes.Equal(l2.Data, l.Data) {
			t.Fatalf("round trip changed %+v to %+v", l, l2)
		}
	})
}

func FuzzReadSnapshot(f *testing.F) {
	var buf bytes.Buffer
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	_ = db.Set([]byte("a"), []byte("1"), nil)
	_ = db.Set(appliedKey, []byte{0, 0, 0, 0, 0, 0, 0, 9}, nil)
	snap := db.NewSnapshot()
	if err := writeSnapshot(&buf, snap); err != nil {
		f.Fatal(err)
	}
	snap.Close()
	db.Close()
	f.Add(buf.Bytes())
	f.Add([]byte(snapMagic + "\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		_ = readSnapshot(bytes.NewReader(b), db) // must not panic or hang
	})
}
