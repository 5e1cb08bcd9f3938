package shard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/cockroachdb/pebble"
)

// Reader is the read side of the state: a *pebble.DB for the core's queries,
// the indexed *pebble.Batch inside Apply.
type Reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// hasPrefix reports whether r holds any key with prefix p.
func hasPrefix(r Reader, p []byte) (bool, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return false, err
	}
	found := it.First()
	return found, it.Close()
}

// getJSON loads key into v; ok is false when the key is absent.
func getJSON(r Reader, key []byte, v any) (ok bool, err error) {
	return getDecoded(r, key, func(b []byte) error { return json.Unmarshal(b, v) })
}

// getMsg loads the message stored at key into m (either form,
// msgcodec.go); ok is false when the key is absent.
func getMsg(r Reader, key []byte, m *Message) (ok bool, err error) {
	return getDecoded(r, key, func(b []byte) error { return decodeMessage(b, m) })
}

func getDecoded(r Reader, key []byte, decode func([]byte) error) (ok bool, err error) {
	b, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: get: %w", ErrStorage, err)
	}
	defer closer.Close()
	if err := decode(b); err != nil {
		return false, fmt.Errorf("%w: decode %q: %v", ErrStorage, key, err)
	}
	return true, nil
}

func getRaw(r Reader, key []byte) ([]byte, bool, error) {
	b, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("shard: get: %w", err)
	}
	out := append([]byte(nil), b...)
	closer.Close()
	return out, true, nil
}

// GetConv returns the conversation, or nil if it does not exist.
func GetConv(r Reader, app, cid string) (*Conv, error) {
	c := new(Conv)
	ok, err := getJSON(r, convKey(app, cid), c)
	if !ok || err != nil {
		return nil, err
	}
	if err := readLast(r, app, c); err != nil {
		return nil, err
	}
	return c, nil
}

// readLast overlays the last message kept under its own key, if any.
func readLast(r Reader, app string, c *Conv) error {
	b, closer, err := r.Get(lastKey(app, c.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shard: get: %w", err)
	}
	defer closer.Close()
	l, err := decodeLast(b)
	if err != nil {
		return err
	}
	c.setLast(l)
	return nil
}

// FindUnique returns the id of the unique conversation with exactly these
// members (normalized by the caller or not), or "".
func FindUnique(r Reader, app string, members []string) (string, error) {
	b, ok, err := getRaw(r, uniqueKey(app, memberSetHash(normalize(members))))
	if !ok || err != nil {
		return "", err
	}
	return string(b), nil
}

// ScanConvs calls fn for each conversation of app in id order until fn
// returns false.
func ScanConvs(r Reader, app string, fn func(*Conv) bool) error {
	p := convPrefix(app)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("shard: scan convs: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		c := new(Conv)
		if err := json.Unmarshal(it.Value(), c); err != nil {
			return fmt.Errorf("shard: decode conv: %w", err)
		}
		if err := readLast(r, app, c); err != nil {
			return err
		}
		if !fn(c) {
			break
		}
	}
	return it.Error()
}

// MemberConvs returns up to limit ids of the conversations pid belongs to
// (limit <= 0: all).
func MemberConvs(r Reader, app, pid string, limit int) ([]string, error) {
	p := memberPrefix(app, pid)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("shard: member convs: %w", err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		cid, _, ok := readStr(it.Key()[len(p):])
		if !ok {
			continue
		}
		out = append(out, cid)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, it.Error()
}

// GetCursor returns pid's cursor in cid (zero if none).
func GetCursor(r Reader, app, cid, pid string) (Cursor, error) {
	var c Cursor
	_, err := getJSON(r, cursorKey(app, cid, pid), &c)
	return c, err
}

// Cursors returns every stored cursor of cid by clientId.
func Cursors(r Reader, app, cid string) (map[string]Cursor, error) {
	p := cursorPrefix(app, cid)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("shard: cursors: %w", err)
	}
	defer it.Close()
	out := make(map[string]Cursor)
	for ok := it.First(); ok; ok = it.Next() {
		pid, _, ok := readStr(it.Key()[len(p):])
		if !ok {
			continue
		}
		var c Cursor
		if json.Unmarshal(it.Value(), &c) == nil {
			out[pid] = c
		}
	}
	return out, it.Error()
}

// MessageTS returns the timestamp of message mid in cid, or ok=false.
func MessageTS(r Reader, app, cid, mid string) (int64, bool, error) {
	b, ok, err := getRaw(r, msgIDKey(app, cid, mid))
	if !ok || err != nil {
		return 0, false, err
	}
	t, _, ok := readTS(b)
	if !ok {
		return 0, false, errCorrupt("message id index", msgIDKey(app, cid, mid))
	}
	return t, true, nil
}

// GetMessage returns message mid of cid, or nil. An id index entry
// without its message is corrupt state (the two are written and deleted
// together).
func GetMessage(r Reader, app, cid, mid string) (*Message, error) {
	t, ok, err := MessageTS(r, app, cid, mid)
	if !ok || err != nil {
		return nil, err
	}
	m := new(Message)
	ok, err = getMsg(r, msgKey(app, cid, t, mid), m)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: message %q indexed at %d is missing", ErrStorage, mid, t)
	}
	return m, nil
}

// LogQuery selects a page of a conversation's message log.
type LogQuery struct {
	// Start and End bound the page by timestamp; 0 means unbounded. Start is
	// where reading begins: for Older the newest end, for Newer the oldest.
	Start, End         int64
	StartIncl, EndIncl bool
	// StartMID and EndMID, when set with their timestamp, make the bound one
	// message, (timestamp, id), instead of a whole millisecond: messages of
	// the same millisecond on the far side of it are in the page. This is
	// LeanCloud's cursor (t+mid, tt+tmid); the order within a millisecond is
	// the key order of the ids, the same on every page.
	StartMID, EndMID string
	Newer            bool // read towards newer messages (direction NEW)
	Limit            int  // > 0
	Filter           func(*Message) bool
	// MaxScan bounds how many messages a filtered query looks at (0: 10000).
	MaxScan int
}

func tsBound(p []byte, t int64) []byte { return keyBuf(append([]byte(nil), p...)).ts(t) }

func inc(t int64) int64 {
	if t == math.MaxInt64 {
		return t
	}
	return t + 1
}

// ListMessages returns the selected page in ascending timestamp order.
func ListMessages(r Reader, app, cid string, q LogQuery) ([]*Message, error) {
	p := msgPrefix(app, cid)
	lo, hi := p, prefixEnd(p)
	// Convert to [older bound, newer bound].
	oldT, oldMID, oldIncl, newT, newMID, newIncl := q.End, q.EndMID, q.EndIncl, q.Start, q.StartMID, q.StartIncl
	if q.Newer {
		oldT, oldMID, oldIncl, newT, newMID, newIncl = q.Start, q.StartMID, q.StartIncl, q.End, q.EndMID, q.EndIncl
	}
	switch {
	case oldT > 0 && oldMID != "":
		// Keys of one message are never prefixes of another's (the id is
		// length-prefixed), so key+0x00 is the first key after it.
		lo = msgKey(app, cid, oldT, oldMID)
		if !oldIncl {
			lo = append(lo, 0)
		}
	case oldT > 0 && oldIncl:
		lo = tsBound(p, oldT)
	case oldT > 0:
		lo = tsBound(p, inc(oldT))
	}
	switch {
	case newT > 0 && newMID != "":
		hi = msgKey(app, cid, newT, newMID)
		if newIncl {
			hi = append(hi, 0)
		}
	case newT > 0 && newIncl:
		hi = tsBound(p, inc(newT))
	case newT > 0:
		hi = tsBound(p, newT)
	}
	if bytes.Compare(lo, hi) >= 0 && hi != nil {
		return nil, nil
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("shard: list messages: %w", err)
	}
	defer it.Close()
	maxScan := q.MaxScan
	if maxScan <= 0 {
		maxScan = 10000
	}
	var out []*Message
	step, ok := it.Last, it.Prev
	if q.Newer {
		step, ok = it.First, it.Next
	}
	scanned := 0
	for valid := step(); valid && len(out) < q.Limit && scanned < maxScan; valid = ok() {
		scanned++
		m := new(Message)
		if err := decodeMessage(it.Value(), m); err != nil {
			return nil, err
		}
		if q.Filter != nil && !q.Filter(m) {
			continue
		}
		out = append(out, m)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("shard: list messages: %w", err)
	}
	if !q.Newer {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, nil
}

// Unread summarizes the messages of cid after a cursor that pid did not send.
type Unread struct {
	Count     int
	Mentioned bool
	Last      *Message // newest message of the conversation (any sender)
}

// MaxUnreadScan caps how many messages CountUnread looks at; the count
// saturates there.
const MaxUnreadScan = 1000

// CountUnread counts messages after `after` not sent by pid.
func CountUnread(r Reader, app, cid, pid string, after int64) (Unread, error) {
	var u Unread
	p := msgPrefix(app, cid)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: tsBound(p, inc(after)), UpperBound: prefixEnd(p)})
	if err != nil {
		return u, fmt.Errorf("shard: unread: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.Last(); ok && n < MaxUnreadScan; ok = it.Prev() {
		n++
		m := new(Message)
		if err := decodeMessage(it.Value(), m); err != nil {
			return u, err
		}
		if u.Last == nil {
			u.Last = m
		}
		if m.From == pid {
			continue
		}
		u.Count++
		if m.MentionAll || containsUnsorted(m.MentionPids, pid) {
			u.Mentioned = true
		}
	}
	return u, it.Error()
}

// PatchesSince returns up to limit messages of cid patched after since, in
// patch time order.
func PatchesSince(r Reader, app, cid string, since int64, limit int) ([]*Message, error) {
	p := patchPrefix(app, cid)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: tsBound(p, inc(since)), UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("shard: patches: %w", err)
	}
	defer it.Close()
	var out []*Message
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		_, rest, ok1 := readTS(it.Key()[len(p):])
		mid, _, ok2 := readStr(rest)
		t, _, ok3 := readTS(it.Value())
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		m := new(Message)
		found, err := getMsg(r, msgKey(app, cid, t, mid), m)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, m)
		}
	}
	return out, it.Error()
}

// UniqueMemberHash is the key of the unique conversation that creator from
// starting one with members finds (the shard's unique index): the hash of
// the sorted, deduplicated member set with the creator in it. A router
// places unique conversations by it (core/router.go).
func UniqueMemberHash(members []string, from string) string {
	return memberSetHash(normalize(append(append([]string(nil), members...), from)))
}

// UniqueConv is the unique conversation of member-set hash h in app, if
// this shard has one.
func UniqueConv(r Reader, app, h string) (cid string, ok bool, err error) {
	b, ok, err := getRaw(r, uniqueKey(app, h))
	return string(b), ok, err
}
