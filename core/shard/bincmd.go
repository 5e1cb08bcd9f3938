package shard

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The binary form of a command (Version5 on): what core proposes, where
// encoding/json's reflection showed in the profile of every message (the
// proposer's encode, every replica's decode). It travels in a JSON
// envelope, {"v":5,"bin":"<base64>"}, so a replica of an earlier release
// reads its version and stops (ErrUnknownVersion) instead of refusing a
// command it cannot parse while the others apply it. Encode stays JSON:
// commands sent to other regions (devicesync.go), backups and tools keep
// the form every release reads.
//
// The payload is the command's set fields, each a tag byte and its value:
// strings and byte strings length-prefixed (uvarint), integers as
// varints, a true bool as its tag alone, lists counted; the batch's
// commands as nested payloads; the rarely used structured fields (devices,
// notifications, imports, patches, attributes) as their JSON. Zero fields
// are left out, as JSON's omitempty leaves them.

// Version5 proposes commands in the binary form (EncodeBinary). What a
// command means does not change.
const Version5 = 5

var (
	binHead = []byte(`{"v":`)
	binMid  = []byte(`,"bin":"`)
	binTail = []byte(`"}`)
)

// errBinCommand: a binary command's payload does not parse.
var errBinCommand = errors.New("bad binary command")

const (
	bV byte = iota + 1
	bOp
	bApp
	bCID
	bFrom
	bNow
	bAdmin
	bMembers
	bAttr
	bTransient
	bUnique
	bTemp
	bTTL
	bMaxMembers
	bUpdate
	bMute
	bRole
	bMID
	bData
	bBin
	bMentionPids
	bMentionAll
	bDT
	bReceipt
	bGroupReceipt
	bEdge
	bConn
	bTo
	bFanoutDone
	bFire
	bPriority
	bWords
	bReset
	bPatches
	bBatch
	bT
	bValidTill
	bDayLimit
	bGlobal
	bDevice
	bNotifs
	bImport
)

// maxBinDepth bounds nested batches in a payload (no batch nests another;
// one level more is refused by Apply, not by a stack).
const maxBinDepth = 2

// EncodeBinary marshals c for Propose in the binary form when its version
// (stamped as Encode does) is Version5 or later, and as JSON otherwise.
func (c *Command) EncodeBinary() ([]byte, error) {
	if c.V == 0 {
		c.V = Version
	}
	if c.V < Version5 {
		return c.Encode()
	}
	p, err := appendBinCommand(make([]byte, 0, 512), c)
	if err != nil {
		return nil, fmt.Errorf("shard: encode command: %w", err)
	}
	out := make([]byte, 0, len(binHead)+4+len(binMid)+base64.StdEncoding.EncodedLen(len(p))+len(binTail))
	out = append(out, binHead...)
	out = strconv.AppendInt(out, int64(c.V), 10)
	out = append(out, binMid...)
	out = base64.StdEncoding.AppendEncode(out, p)
	return append(out, binTail...), nil
}

// binPayload returns the payload and version of a command in the binary
// envelope; ok is false when b is not one (a JSON command).
func binPayload(b []byte) (payload []byte, v int, ok bool) {
	if !bytes.HasPrefix(b, binHead) || !bytes.HasSuffix(b, binTail) {
		return nil, 0, false
	}
	rest := b[len(binHead) : len(b)-len(binTail)]
	i := bytes.IndexByte(rest, ',')
	if i <= 0 || i > 9 || !bytes.HasPrefix(rest[i:], binMid) {
		return nil, 0, false
	}
	n, err := strconv.Atoi(string(rest[:i]))
	if err != nil || n < Version5 {
		return nil, 0, false
	}
	return rest[i+len(binMid):], n, true
}

func appendStr(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	return appendLenStr(append(b, tag), s)
}

// appendLenStr appends s length-prefixed, as JSON would carry it: each
// byte of invalid UTF-8 becomes U+FFFD, as encoding/json writes it, so a
// command means the same in either form.
func appendLenStr(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		var v []byte
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				v = utf8.AppendRune(v, utf8.RuneError)
			} else {
				v = append(v, s[i:i+n]...)
			}
			i += n
		}
		s = string(v)
	}
	return keyBuf(b).str(s) // keys.go: the same length-prefixed component
}

func appendInt(b []byte, tag byte, v int64) []byte {
	if v == 0 {
		return b
	}
	return binary.AppendVarint(append(b, tag), v)
}

func appendBool(b []byte, tag byte, v bool) []byte {
	if !v {
		return b
	}
	return append(b, tag)
}

func appendStrs(b []byte, tag byte, l []string) []byte {
	if len(l) == 0 {
		return b
	}
	b = binary.AppendUvarint(append(b, tag), uint64(len(l)))
	for _, s := range l {
		b = appendLenStr(b, s)
	}
	return b
}

// appendJSON appends v's JSON under tag, as encoding/json writes the field
// in a JSON command (a json.RawMessage compacted).
func appendJSON(b []byte, tag byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return keyBuf(append(b, tag)).str(string(j)), nil
}

func appendBinCommand(b []byte, c *Command) ([]byte, error) {
	var err error
	b = appendInt(b, bV, int64(c.V))
	b = appendStr(b, bOp, string(c.Op))
	b = appendStr(b, bApp, c.App)
	b = appendStr(b, bCID, c.CID)
	b = appendStr(b, bFrom, c.From)
	b = appendInt(b, bNow, c.Now)
	b = appendBool(b, bAdmin, c.Admin)
	b = appendStrs(b, bMembers, c.Members)
	if len(c.Attr) > 0 {
		if b, err = appendJSON(b, bAttr, c.Attr); err != nil {
			return nil, err
		}
	}
	b = appendBool(b, bTransient, c.Transient)
	b = appendBool(b, bUnique, c.Unique)
	b = appendBool(b, bTemp, c.Temp)
	b = appendInt(b, bTTL, c.TTL)
	b = appendInt(b, bMaxMembers, int64(c.MaxMembers))
	if len(c.Update) > 0 {
		if b, err = appendJSON(b, bUpdate, c.Update); err != nil {
			return nil, err
		}
	}
	b = appendBool(b, bMute, c.Mute)
	b = appendStr(b, bRole, c.Role)
	b = appendStr(b, bMID, c.MID)
	b = appendStr(b, bData, c.Data)
	b = appendBool(b, bBin, c.Bin)
	b = appendStrs(b, bMentionPids, c.MentionPids)
	b = appendBool(b, bMentionAll, c.MentionAll)
	b = appendStr(b, bDT, c.DT)
	b = appendBool(b, bReceipt, c.Receipt)
	b = appendBool(b, bGroupReceipt, c.GroupReceipt)
	b = appendStr(b, bEdge, c.Edge)
	if c.Conn != 0 {
		b = binary.AppendUvarint(append(b, bConn), c.Conn)
	}
	b = appendStrs(b, bTo, c.To)
	if len(c.FanoutDone) > 0 {
		b = binary.AppendUvarint(append(b, bFanoutDone), uint64(len(c.FanoutDone)))
		for _, x := range c.FanoutDone {
			b = binary.AppendUvarint(b, x)
		}
	}
	b = appendBool(b, bFire, c.Fire)
	b = appendInt(b, bPriority, int64(c.Priority))
	b = appendStrs(b, bWords, c.Words)
	b = appendBool(b, bReset, c.Reset)
	if len(c.Patches) > 0 {
		if b, err = appendJSON(b, bPatches, c.Patches); err != nil {
			return nil, err
		}
	}
	if len(c.Batch) > 0 {
		b = binary.AppendUvarint(append(b, bBatch), uint64(len(c.Batch)))
		for _, sub := range c.Batch {
			if sub == nil {
				return nil, errors.New("nil command in a batch")
			}
			// A length prefix reserved at its most, then filled in:
			// the nested payload is written in place.
			at := len(b)
			b = append(b, make([]byte, binary.MaxVarintLen32)...)
			if b, err = appendBinCommand(b, sub); err != nil {
				return nil, err
			}
			n := len(b) - at - binary.MaxVarintLen32
			var lb [binary.MaxVarintLen64]byte
			w := binary.PutUvarint(lb[:], uint64(n))
			copy(b[at+w:], b[at+binary.MaxVarintLen32:])
			copy(b[at:], lb[:w])
			b = b[:len(b)-(binary.MaxVarintLen32-w)]
		}
	}
	b = appendInt(b, bT, c.T)
	b = appendInt(b, bValidTill, c.ValidTill)
	b = appendInt(b, bDayLimit, int64(c.DayLimit))
	b = appendBool(b, bGlobal, c.Global)
	if c.Device != nil {
		if b, err = appendJSON(b, bDevice, c.Device); err != nil {
			return nil, err
		}
	}
	if len(c.Notifs) > 0 {
		if b, err = appendJSON(b, bNotifs, c.Notifs); err != nil {
			return nil, err
		}
	}
	if c.Import != nil {
		if b, err = appendJSON(b, bImport, c.Import); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// binReader reads a payload; the first error sticks. Strings are cut from
// src, the payload as one string, so they cost no allocation each.
type binReader struct {
	b   []byte // what is left to read
	src string // the whole payload
	err error
}

func (r *binReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errBinCommand, what)
	}
}

func (r *binReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("length past the end")
		r.b = nil
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

func (r *binReader) str() string { return r.strOf(r.bytes()) }

// strOf returns p, the bytes just read, as the string src holds them
// (no copy).
func (r *binReader) strOf(p []byte) string {
	at := len(r.src) - len(r.b) - len(p)
	return r.src[at : at+len(p)]
}

// count reads a list's length, bounded by the bytes left (each item takes
// at least one).
func (r *binReader) count() int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail("count past the end")
		r.b = nil
		return 0
	}
	return int(n)
}

func (r *binReader) strs() []string {
	n := r.count()
	if r.err != nil {
		return nil
	}
	l := make([]string, 0, n)
	for range n {
		l = append(l, r.str())
		if r.err != nil {
			return nil
		}
	}
	return l
}

func (r *binReader) json(v any) {
	j := r.bytes()
	if r.err != nil {
		return
	}
	if err := json.Unmarshal(j, v); err != nil {
		r.fail(err.Error())
	}
}

// int32 reads a varint that must fit an int32, as JSON's decode of an
// int32 field refuses a number that does not.
func (r *binReader) int32() int32 {
	v := r.varint()
	if int64(int32(v)) != v {
		r.fail("integer out of range")
		return 0
	}
	return int32(v)
}

// decodeBinCommand parses a payload into a command.
func decodeBinCommand(p []byte, depth int) (*Command, error) {
	return decodeBinFrom(p, string(p), depth)
}

// decodeBinFrom parses payload p, whose bytes src holds as a string.
func decodeBinFrom(p []byte, src string, depth int) (*Command, error) {
	c := new(Command)
	r := &binReader{b: p, src: src}
	last := byte(0)
	for len(r.b) > 0 && r.err == nil {
		tag := r.b[0]
		r.b = r.b[1:]
		if tag <= last { // each field once, in order: one form for one command
			r.fail(fmt.Sprintf("field %d after %d", tag, last))
			break
		}
		last = tag
		switch tag {
		case bV:
			c.V = int(r.varint())
		case bOp:
			c.Op = Op(r.str())
		case bApp:
			c.App = r.str()
		case bCID:
			c.CID = r.str()
		case bFrom:
			c.From = r.str()
		case bNow:
			c.Now = r.varint()
		case bAdmin:
			c.Admin = true
		case bMembers:
			c.Members = r.strs()
		case bAttr:
			r.json(&c.Attr)
		case bTransient:
			c.Transient = true
		case bUnique:
			c.Unique = true
		case bTemp:
			c.Temp = true
		case bTTL:
			c.TTL = r.varint()
		case bMaxMembers:
			c.MaxMembers = int(r.varint())
		case bUpdate:
			r.json(&c.Update)
		case bMute:
			c.Mute = true
		case bRole:
			c.Role = r.str()
		case bMID:
			c.MID = r.str()
		case bData:
			c.Data = r.str()
		case bBin:
			c.Bin = true
		case bMentionPids:
			c.MentionPids = r.strs()
		case bMentionAll:
			c.MentionAll = true
		case bDT:
			c.DT = r.str()
		case bReceipt:
			c.Receipt = true
		case bGroupReceipt:
			c.GroupReceipt = true
		case bEdge:
			c.Edge = r.str()
		case bConn:
			c.Conn = r.uvarint()
		case bTo:
			c.To = r.strs()
		case bFanoutDone:
			n := r.count()
			if r.err == nil {
				c.FanoutDone = make([]uint64, 0, n)
				for range n {
					c.FanoutDone = append(c.FanoutDone, r.uvarint())
				}
			}
		case bFire:
			c.Fire = true
		case bPriority:
			c.Priority = r.int32()
		case bWords:
			c.Words = r.strs()
		case bReset:
			c.Reset = true
		case bPatches:
			r.json(&c.Patches)
		case bBatch:
			if depth >= maxBinDepth {
				r.fail("batches nested too deep")
				break
			}
			n := r.count()
			if r.err != nil {
				break
			}
			c.Batch = make([]*Command, 0, n)
			for range n {
				sub := r.bytes()
				if r.err != nil {
					break
				}
				sc, err := decodeBinFrom(sub, r.strOf(sub), depth+1)
				if err != nil {
					return nil, err
				}
				c.Batch = append(c.Batch, sc)
			}
		case bT:
			c.T = r.varint()
		case bValidTill:
			c.ValidTill = r.varint()
		case bDayLimit:
			c.DayLimit = int(r.varint())
		case bGlobal:
			c.Global = true
		case bDevice:
			c.Device = new(DeviceOp)
			r.json(c.Device)
		case bNotifs:
			r.json(&c.Notifs)
		case bImport:
			c.Import = new(ImportOp)
			r.json(c.Import)
		default:
			r.fail(fmt.Sprintf("unknown field %d", tag))
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

// decodeBinEnvelope parses a command in the binary envelope. A version
// newer than this code's is an error (the caller's peekVersion reads it
// from the envelope and makes it fatal).
func decodeBinEnvelope(payload []byte, v int) (*Command, error) {
	if v > Version {
		return nil, fmt.Errorf("%w: version %d", errBinCommand, v)
	}
	p := make([]byte, base64.StdEncoding.DecodedLen(len(payload)))
	n, err := base64.StdEncoding.Decode(p, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBinCommand, err)
	}
	c, err := decodeBinCommand(p[:n], 0)
	if err != nil {
		return nil, err
	}
	if c.V != v {
		return nil, fmt.Errorf("%w: version %d in a version %d envelope", errBinCommand, c.V, v)
	}
	return c, nil
}
