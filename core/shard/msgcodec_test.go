package shard

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func codecMessages() []*Message {
	return []*Message{
		{},
		{ID: "m", CID: "c", From: "u", T: 1},
		{ID: "6f1e2d3c4b5a69788796a5b4", CID: "5f0e1d2c3b4a5968778695a4", From: "alice", T: 1733400000123,
			Data: `{"_lctype":-1,"_lctext":"hello \"quoted\" ✓ 中文"}`, Receipt: true},
		{ID: "b", CID: "c", From: "u", T: 2, Data: "AAEC/w==", Bin: true, PatchT: 1733400000999},
		{ID: "r", CID: "c", From: "u", T: 3, Recalled: true, PatchT: 4},
		{ID: "@", CID: "c", From: "u", T: 5, Data: "@b @c", MentionPids: []string{"b", "c", ""}, MentionAll: true},
		{ID: strings.Repeat("i", 300), CID: "c", From: strings.Repeat("f", 200), T: -7, Data: strings.Repeat("d", 70000), PatchT: -1},
		{ID: "nul", CID: "c\x00", From: "\xff\xfe", T: 1 << 62, Data: "\x00\x01"},
	}
}

// TestMessageCodec: every field of a message survives the binary form, and
// the JSON form stored before Version6 reads back the same.
func TestMessageCodec(t *testing.T) {
	for i, m := range codecMessages() {
		b := encodeMessage(m)
		if b[0] != msgFormat1 {
			t.Fatalf("%d: first byte %#x", i, b[0])
		}
		var got Message
		if err := decodeMessage(b, &got); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !reflect.DeepEqual(&got, m) {
			t.Errorf("%d: binary: got %+v, want %+v", i, got, *m)
		}
		if m.From == "\xff\xfe" {
			continue // JSON replaces invalid UTF-8: the binary form is the one that keeps it
		}
		j, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got = Message{ID: "stale", MentionPids: []string{"stale"}} // a reused value is cleared
		if err := decodeMessage(j, &got); err != nil {
			t.Fatalf("%d: json: %v", i, err)
		}
		if !reflect.DeepEqual(&got, m) {
			t.Errorf("%d: json: got %+v, want %+v", i, got, *m)
		}
	}
	// The binary form is smaller than the JSON one for a text message.
	m := codecMessages()[2]
	j, _ := json.Marshal(m)
	if b := encodeMessage(m); len(b) >= len(j)-30 {
		t.Errorf("binary %d bytes, JSON %d", len(b), len(j))
	}
}

// TestMessageCodecMalformed: a damaged binary value is an error, never a
// panic or a message made up of the pieces.
func TestMessageCodecMalformed(t *testing.T) {
	good := encodeMessage(codecMessages()[5])
	for n := range len(good) { // every truncation
		var m Message
		if err := decodeMessage(good[:n], &m); err == nil {
			t.Errorf("truncated to %d of %d bytes: decoded %+v", n, len(good), m)
		}
	}
	if err := decodeMessage(append(bytes.Clone(good), 0), new(Message)); !errors.Is(err, errBadMessage) {
		t.Errorf("a byte after the last field: %v", err)
	}
	flags := bytes.Clone(good)
	flags[9] |= 0x80
	if err := decodeMessage(flags, new(Message)); !errors.Is(err, errBadMessage) {
		t.Errorf("unknown flag: %v", err)
	}
	// A large mention count with no bytes behind it is refused before
	// anything is allocated for it (a slice of 2^20 strings is 16 MiB).
	for _, cnt := range []uint64{1 << 20, 1 << 40} {
		huge := encodeMessage(&Message{ID: "m"})
		huge = binary.AppendUvarint(huge[:len(huge)-1], cnt)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := decodeMessage(huge, new(Message))
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errBadMessage) {
			t.Errorf("mention count %d: %v", cnt, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("mention count %d: %d bytes allocated", cnt, n)
		}
	}
	// A string length past the value, and a length that overflows 64 bits.
	long := append([]byte{msgFormat1}, make([]byte, 9)...)
	long = append(long, 0)                   // patchT 0
	long = binary.AppendUvarint(long, 1<<62) // id length
	over := append(bytes.Clone(long[:11]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)
	for name, b := range map[string][]byte{"length past the end": long, "length overflow": over, "empty": nil, "not json": []byte("[1]x")} {
		if err := decodeMessage(b, new(Message)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzMessageCodec(f *testing.F) {
	for _, m := range codecMessages()[:6] {
		f.Add(encodeMessage(m))
		j, _ := json.Marshal(m)
		f.Add(j)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if decodeMessage(b, &m) != nil {
			return
		}
		// Whatever decodes encodes to a value that decodes the same.
		var again Message
		if err := decodeMessage(encodeMessage(&m), &again); err != nil {
			t.Fatalf("re-encoded %+v: %v", m, err)
		}
		if len(m.MentionPids) == 0 {
			m.MentionPids = nil // JSON's [] and null are no mentions
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoded: got %+v, want %+v", again, m)
		}
	})
}

// TestStoredMessageForm: a Version5 command stores its message as JSON, a
// Version6 one in the binary form; every read of messages (by id, the log
// either way, unread, patches since, the system conversation's messages)
// reads a history holding both, and an edit at Version6 of a message
// stored as JSON rewrites it in the binary form.
func TestStoredMessageForm(t *testing.T) {
	h := newHarness(t)
	raw := func(key []byte) []byte {
		t.Helper()
		b, ok, err := getRaw(h.db, key)
		if err != nil || !ok {
			t.Fatalf("%q: %v, %v", key, ok, err)
		}
		return b
	}
	h.must(&Command{V: Version5, Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	for i, v := range []int{Version5, Version6, Version5, Version6} {
		mid := string(rune('1' + i))
		h.must(&Command{V: v, Op: OpAppend, App: app, CID: "c", From: "a", MID: mid, Data: `{"n":"` + mid + `"}`,
			Now: int64(10 * (i + 1)), MentionPids: []string{"b"}})
		b := raw(msgKey(app, "c", int64(10*(i+1)), mid))
		if json := b[0] == '{'; json != (v == Version5) {
			t.Errorf("version %d stored %q", v, b)
		}
	}
	ms, err := ListMessages(h.db, app, "c", LogQuery{Limit: 10})
	if err != nil || len(ms) != 4 {
		t.Fatalf("log: %v, %v", ms, err)
	}
	for i, m := range ms {
		mid := string(rune('1' + i))
		if m.ID != mid || m.CID != "c" || m.From != "a" || m.T != int64(10*(i+1)) || m.Data != `{"n":"`+mid+`"}` || len(m.MentionPids) != 1 {
			t.Errorf("log %d: %+v", i, m)
		}
	}
	if ms, err := ListMessages(h.db, app, "c", LogQuery{Newer: true, Limit: 3}); err != nil || len(ms) != 3 || ms[2].ID != "3" {
		t.Errorf("log, newer: %v, %v", ms, err)
	}
	if u, err := CountUnread(h.db, app, "c", "b", 0); err != nil || u.Count != 4 || !u.Mentioned || u.Last == nil || u.Last.ID != "4" {
		t.Errorf("unread: %+v, %v", u, err)
	}
	// Edit message 1 (JSON) at Version6, recall message 2 (binary) at Version5.
	h.must(&Command{V: Version6, Op: OpPatch, App: app, From: "a", Now: 50, Patches: []Patch{{CID: "c", MID: "1", Data: "edited"}}})
	h.must(&Command{V: Version5, Op: OpPatch, App: app, From: "a", Now: 60, Patches: []Patch{{CID: "c", MID: "2", Recall: true}}})
	if b := raw(msgKey(app, "c", 10, "1")); b[0] != msgFormat1 {
		t.Errorf("message 1 edited at Version6: %q", b)
	}
	if b := raw(msgKey(app, "c", 20, "2")); b[0] != '{' {
		t.Errorf("message 2 recalled at Version5: %q", b)
	}
	if m, err := GetMessage(h.db, app, "c", "1"); err != nil || m.Data != "edited" || m.PatchT != 50 {
		t.Errorf("message 1: %+v, %v", m, err)
	}
	if m, err := GetMessage(h.db, app, "c", "2"); err != nil || !m.Recalled || m.PatchT != 60 {
		t.Errorf("message 2: %+v, %v", m, err)
	}
	if ps, err := PatchesSince(h.db, app, "c", 0, 10); err != nil || len(ps) != 2 || ps[0].ID != "1" || ps[1].ID != "2" {
		t.Errorf("patches: %v, %v", ps, err)
	}

	// The system conversation: messages in ('z') and to one user ('u').
	h.must(&Command{Op: OpSysStart, App: app, CID: "s", From: "sys", Now: 100, Admin: true})
	for i, v := range []int{Version5, Version6} {
		h.must(&Command{V: v, Op: OpSysIn, App: app, CID: "s", From: "bob", MID: "in" + string(rune('1'+i)), Data: "hi", Now: int64(200 + i)})
		h.must(&Command{V: v, Op: OpSysSend, App: app, CID: "s", From: "sys", Members: []string{"bob"}, MID: "out" + string(rune('1'+i)),
			Data: "yo", Now: int64(300 + i), Admin: true})
	}
	in, err := SysMessages(h.db, app, "s", 0, 0, 10, false)
	if err != nil || len(in) != 2 || in[0].ID != "in1" || in[1].ID != "in2" || in[1].From != "bob" || in[1].Data != "hi" {
		t.Errorf("messages to the server: %v, %v", in, err)
	}
	if b := raw(keyBuf(sysInPrefix(app, "s")).ts(201).str("in2")); b[0] != msgFormat1 {
		t.Errorf("sys_in at Version6: %q", b)
	}
	out, err := UserMessages(h.db, app, "s", "bob", 0, 0, 10, false)
	if err != nil || len(out) != 2 || out[0].ID != "out1" || out[1].ID != "out2" || out[1].Data != "yo" {
		t.Errorf("messages to bob: %v, %v", out, err)
	}
	if b := raw(userMsgKey(app, "s", "bob", 301, "out2")); b[0] != msgFormat1 {
		t.Errorf("sys_send at Version6: %q", b)
	}
	if due, err := DueUserMessages(h.db, app, "bob", 0, 10); err != nil || len(due) != 2 {
		t.Errorf("due to bob: %v, %v", due, err)
	}
}

// TestStoredMessageDamaged: a stored message that does not decode is a
// storage error for the read, not a made-up message.
func TestStoredMessageDamaged(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m", Data: "x", Now: 10})
	k := msgKey(app, "c", 10, "m")
	b, _, _ := getRaw(h.db, k)
	if err := h.db.Set(k, b[:len(b)-1], nil); err != nil {
		t.Fatal(err)
	}
	if m, err := GetMessage(h.db, app, "c", "m"); !errors.Is(err, ErrStorage) {
		t.Errorf("by id: %+v, %v", m, err)
	}
	if ms, err := ListMessages(h.db, app, "c", LogQuery{Limit: 5}); !errors.Is(err, errBadMessage) {
		t.Errorf("log: %v, %v", ms, err)
	}
}

func BenchmarkMessageCodec(b *testing.B) {
	m := &Message{ID: "6f1e2d3c4b5a69788796a5b4", CID: "5f0e1d2c3b4a5968778695a4", From: "user-0042", T: 1733400000123,
		Data: `{"_lctype":-1,"_lctext":"hello from the pairs benchmark, a line of text"}`, Receipt: true}
	j, _ := json.Marshal(m)
	bin := encodeMessage(m)
	b.Logf("a text message: JSON %d bytes, binary %d", len(j), len(bin))
	b.Run("encode/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(m)
		}
	})
	b.Run("encode/binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeMessage(m)
		}
	})
	b.Run("decode/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeMessage(j, new(Message))
		}
	})
	b.Run("decode/binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeMessage(bin, new(Message))
		}
	})
}

// BenchmarkHistoryPage reads a page of 100 messages of a conversation's log
// (a history query) stored by Version5 (JSON) and Version6 (binary)
// commands.
func BenchmarkHistoryPage(b *testing.B) {
	for _, v := range []int{Version5, Version6} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			h := newHarness(b)
			h.must(&Command{V: v, Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
			for i := range 1000 {
				h.must(&Command{V: v, Op: OpAppend, App: app, CID: "c", From: "a", MID: fmt.Sprintf("%024x", i),
					Data: `{"_lctype":-1,"_lctext":"hello from the history benchmark, a line of text"}`, Now: int64(10 + i)})
			}
			b.ReportAllocs()
			for b.Loop() {
				ms, err := ListMessages(h.db, app, "c", LogQuery{Limit: 100})
				if err != nil || len(ms) != 100 {
					b.Fatal(len(ms), err)
				}
			}
		})
	}
}
