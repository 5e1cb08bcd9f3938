package raftstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
)

// LogStoreForTest exposes the replica's log store to external tests.
func (n *Node) LogStoreForTest() *LogStore { return n.logs }

// ForgeBackupForTest writes a backup file with the given header and
// records (in key order), as a hand-made or hostile file would be.
func ForgeBackupForTest(hdr BackupHeader, kv [][2][]byte) []byte {
	var buf bytes.Buffer
	h := sha256.New()
	w := io.MultiWriter(&buf, h)
	js, _ := json.Marshal(hdr)
	w.Write([]byte(backupMagic))
	w.Write(binary.AppendUvarint(nil, uint64(len(js))))
	w.Write(js)
	sw := newSnapWriter(w)
	for _, r := range kv {
		sw.add(r[0], r[1])
	}
	if err := sw.finish(); err != nil {
		panic(err)
	}
	buf.Write(h.Sum(nil))
	return buf.Bytes()
}

// WriteFlush writes rounds × keys random 1 KB values to db, flushing each
// round into an L0 table (pace_test.go).
var WriteFlush = writeFlush
