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

// key returns tag and parts, length-prefixed, in one allocation with room
// for extra bytes more (a timestamp and an id that the caller appends):
// keys are built on every message's apply, and growing them part by part
// cost an allocation per part.
func key(tag byte, extra int, parts ...string) keyBuf {
	n := 1 + extra
	for _, p := range parts {
		n += uvarintLen(uint64(len(p))) + len(p)
	}
	k := make(keyBuf, 1, n)
	k[0] = tag
	for _, p := range parts {
		k = k.str(p)
	}
	return k
}

// uvarintLen is the length of x's uvarint encoding.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// strLen is the room s takes as a component.
func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func (k keyBuf) str(s string) keyBuf {
	k = binary.AppendUvarint(k, uint64(len(s)))
	return append(k, s...)
}

func (k keyBuf) ts(t int64) keyBuf {
	return binary.BigEndian.AppendUint64(k, uint64(t))
}

func convKey(app, cid string) []byte   { return key(tagConv, 0, app, cid) }
func convPrefix(app string) []byte     { return key(tagConv, 0, app) }
func lastKey(app, cid string) []byte   { return key(tagLast, 0, app, cid) }
func uniqueKey(app, h string) []byte   { return key(tagUnique, 0, app, h) }
func msgPrefix(app, cid string) []byte { return key(tagMsg, 0, app, cid) }
func msgKey(app, cid string, t int64, mid string) []byte {
	return key(tagMsg, 8+strLen(mid), app, cid).ts(t).str(mid)
}
func msgIDKey(app, cid, mid string) []byte { return key(tagMsgID, 0, app, cid, mid) }
func patchPrefix(app, cid string) []byte   { return key(tagPatch, 0, app, cid) }
func patchKey(app, cid string, pt int64, mid string) []byte {
	return key(tagPatch, 8+strLen(mid), app, cid).ts(pt).str(mid)
}
func cursorKey(app, cid, pid string) []byte { return key(tagCursor, 0, app, cid, pid) }
func cursorPrefix(app, cid string) []byte   { return key(tagCursor, 0, app, cid) }
func memberKey(app, pid, cid string) []byte { return key(tagMember, 0, app, pid, cid) }
func memberPrefix(app, pid string) []byte   { return key(tagMember, 0, app, pid) }
func dedupKey(app, sender, cid, dt string) []byte {
	return key(tagDedup, 0, app, sender, cid, dt)
}

func rcpPrefix(app, cid string) []byte { return key(tagRcp, 0, app, cid) }
func rcpKey(app, cid string, t int64, mid string) []byte {
	return key(tagRcp, 8+strLen(mid), app, cid).ts(t).str(mid)
}
func willPrefix(app, pid string) []byte   { return key(tagWill, 0, app, pid) }
func willKey(app, pid, cid string) []byte { return key(tagWill, 0, app, pid, cid) }

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
