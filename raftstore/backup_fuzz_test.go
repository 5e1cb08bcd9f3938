package raftstore

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzReadBackup: any input is read without a panic or a hang, and what
// ReadBackup accepts has a valid header and exactly its records, in
// strictly increasing key order; anything it refuses is ErrBadBackup.
func FuzzReadBackup(f *testing.F) {
	hdr := BackupHeader{Format: BackupFormat, Group: "shard", Region: 1, Shard: 2, Applied: 7, Term: 1,
		Created: time.Unix(0, 0).UTC().Format(time.RFC3339), Records: 2}
	f.Add(ForgeBackupForTest(hdr, [][2][]byte{{[]byte("a"), []byte("1")}, {[]byte("b"), nil}}))
	hdr.Records = 0
	f.Add(ForgeBackupForTest(hdr, nil))
	f.Add([]byte(backupMagic + "\x05{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var n uint64
		var prev []byte
		h, err := ReadBackup(bytes.NewReader(b), nil, func(k, v []byte) error {
			if n > 0 && bytes.Compare(prev, k) >= 0 {
				t.Fatalf("record %d out of order", n)
			}
			prev = append(prev[:0], k...)
			n++
			return nil
		}, nil)
		if err != nil {
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("refused with %v, not ErrBadBackup", err)
			}
			return
		}
		if verr := h.validate(); verr != nil || h.Records != n {
			t.Fatalf("accepted header %+v (%v) with %d records", h, verr, n)
		}
	})
}
