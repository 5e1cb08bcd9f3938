package shard

import (
	"encoding/binary"
)

// Table tags: the first byte of every key.
const (
	tagConv   = 'C'
	tagUnique = 'U'
	tagMsg    = 'M'
	tagMsgID  = 'I'
	tagPatch  = 'P'
	tagCursor = 'R'
	tagMember = 'X'
	tagDedup  = 'D'
	tagRcp    = 'Q'
	tagWill   = 'W'
	tagLast   = 'L'
)

// keyBuf builds keys from length-prefixed components.
type keyBuf []byte

func newKey(tag byte) keyBuf { return keyBuf{tag} }

func (k keyBuf) str(s string) keyBuf {
	k = binary.AppendUvarint(k, uint64(len(s)))
	return append(k, s...)
}

func (k keyBuf) ts(t int64) keyBuf {
	return binary.BigEndian.AppendUint64(k, uint64(t))
}

func convKey(app, cid string) []byte   { return newKey(tagConv).str(app).str(cid) }
func convPrefix(app string) []byte     { return newKey(tagConv).str(app) }
func lastKey(app, cid string) []byte   { return newKey(tagLast).str(app).str(cid) }
func uniqueKey(app, h string) []byte   { return newKey(tagUnique).str(app).str(h) }
func msgPrefix(app, cid string) []byte { return newKey(tagMsg).str(app).str(cid) }
func msgKey(app, cid string, t int64, mid string) []byte {
	return keyBuf(msgPrefix(app, cid)).ts(t).str(mid)
}
func msgIDKey(app, cid, mid string) []byte { return newKey(tagMsgID).str(app).str(cid).str(mid) }
func patchPrefix(app, cid string) []byte   { return newKey(tagPatch).str(app).str(cid) }
func patchKey(app, cid string, pt int64, mid string) []byte {
	return keyBuf(patchPrefix(app, cid)).ts(pt).str(mid)
}
func cursorKey(app, cid, pid string) []byte { return newKey(tagCursor).str(app).str(cid).str(pid) }
func cursorPrefix(app, cid string) []byte   { return newKey(tagCursor).str(app).str(cid) }
func memberKey(app, pid, cid string) []byte { return newKey(tagMember).str(app).str(pid).str(cid) }
func memberPrefix(app, pid string) []byte   { return newKey(tagMember).str(app).str(pid) }
func dedupKey(app, sender, cid, dt string) []byte {
	return newKey(tagDedup).str(app).str(sender).str(cid).str(dt)
}

func rcpPrefix(app, cid string) []byte { return newKey(tagRcp).str(app).str(cid) }
func rcpKey(app, cid string, t int64, mid string) []byte {
	return keyBuf(rcpPrefix(app, cid)).ts(t).str(mid)
}
func willPrefix(app, pid string) []byte   { return newKey(tagWill).str(app).str(pid) }
func willKey(app, pid, cid string) []byte { return newKey(tagWill).str(app).str(pid).str(cid) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// readStr decodes one length-prefixed component at the front of b.
func readStr(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

// readTS decodes an 8-byte timestamp at the front of b.
func readTS(b []byte) (int64, []byte, bool) {
	if len(b) < 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(b)), b[8:], true
}
