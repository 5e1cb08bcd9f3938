package shard

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// A stored message's value ('M'; the system conversation's 'z' and 'u',
// sysconv.go) is binary from Version6 on, and JSON before it (Message's
// field tags). The binary form names no field and escapes nothing: a text
// message's content is JSON itself, and as a JSON string each of its
// quotes took a backslash more. Both forms are read; which one is written
// is the command's version (applier.putMsg), so that a replica of an older
// release never meets a value it cannot read during an upgrade.
//
//	0x01 t(8, big-endian) flags(1) patchT(varint)
//	str(id) str(cid) str(from) str(data) count(uvarint) str(mention)...
//
// flags: bit 0 Bin, 1 MentionAll, 2 Recalled, 3 Receipt; other bits are
// refused, as are bytes after the last field. A str is a uvarint length and
// the bytes (keyBuf.str). A JSON value starts with '{', never with 0x01.

// msgFormat1 is the first byte of a binary message value.
const msgFormat1 = 0x01

const (
	msgFlagBin = 1 << iota
	msgFlagMentionAll
	msgFlagRecalled
	msgFlagReceipt
	msgFlagsKnown = msgFlagBin | msgFlagMentionAll | msgFlagRecalled | msgFlagReceipt
)

var errBadMessage = errors.New("shard: malformed message value")

// encodeMessage returns m's binary form.
func encodeMessage(m *Message) []byte {
	n := 1 + 8 + 1 + binary.MaxVarintLen64 + strLen(m.ID) + strLen(m.CID) + strLen(m.From) +
		strLen(m.Data) + uvarintLen(uint64(len(m.MentionPids)))
	for _, p := range m.MentionPids {
		n += strLen(p)
	}
	b := make(keyBuf, 0, n)
	b = append(b, msgFormat1)
	b = b.ts(m.T)
	var flags byte
	if m.Bin {
		flags |= msgFlagBin
	}
	if m.MentionAll {
		flags |= msgFlagMentionAll
	}
	if m.Recalled {
		flags |= msgFlagRecalled
	}
	if m.Receipt {
		flags |= msgFlagReceipt
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, m.PatchT)
	b = b.str(m.ID).str(m.CID).str(m.From).str(m.Data)
	b = binary.AppendUvarint(b, uint64(len(m.MentionPids)))
	for _, p := range m.MentionPids {
		b = b.str(p)
	}
	return b
}

// decodeMessage reads a stored message value of either form into m.
func decodeMessage(b []byte, m *Message) error {
	if len(b) == 0 || b[0] != msgFormat1 {
		*m = Message{}
		if err := json.Unmarshal(b, m); err != nil {
			return fmt.Errorf("shard: decode message: %w", err)
		}
		return nil
	}
	fail := func(what string) error { return fmt.Errorf("%w: %s", errBadMessage, what) }
	if len(b) < 10 {
		return fail("short header")
	}
	*m = Message{T: int64(binary.BigEndian.Uint64(b[1:9]))}
	flags := b[9]
	if flags&^msgFlagsKnown != 0 {
		return fail(fmt.Sprintf("unknown flags %#x", flags))
	}
	m.Bin, m.MentionAll = flags&msgFlagBin != 0, flags&msgFlagMentionAll != 0
	m.Recalled, m.Receipt = flags&msgFlagRecalled != 0, flags&msgFlagReceipt != 0
	pt, w := binary.Varint(b[10:])
	if w <= 0 {
		return fail("patch time")
	}
	m.PatchT = pt
	// One string holds the value: each field is a piece of it, one
	// allocation instead of one a field. The lengths are read from b, at
	// the same offsets.
	s, pos := string(b), 10+w
	str := func() (string, bool) {
		n, w := binary.Uvarint(b[pos:])
		if w <= 0 || n > uint64(len(b)-pos-w) {
			return "", false
		}
		pos += w
		v := s[pos : pos+int(n)]
		pos += int(n)
		return v, true
	}
	var ok bool
	for _, f := range []*string{&m.ID, &m.CID, &m.From, &m.Data} {
		if *f, ok = str(); !ok {
			return fail("string field")
		}
	}
	cnt, w := binary.Uvarint(b[pos:])
	if w <= 0 || cnt > uint64(len(b)-pos-w) { // each mention takes a byte at least
		return fail("mention count")
	}
	pos += w
	if cnt > 0 {
		m.MentionPids = make([]string, cnt)
		for i := range m.MentionPids {
			if m.MentionPids[i], ok = str(); !ok {
				return fail("mention")
			}
		}
	}
	if pos != len(b) {
		return fail(fmt.Sprintf("%d bytes after the last field", len(b)-pos))
	}
	return nil
}

// putMsg stores m under key in the form the command's version writes.
func (a *applier) putMsg(key []byte, m *Message) {
	if a.v < Version6 {
		a.set(key, m) // JSON
		return
	}
	a.set(key, encodeMessage(m))
}
