package shard

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

type harness struct {
	t   testing.TB
	db  *pebble.DB
	fsm *FSM
	idx uint64
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &harness{t: t, db: db, fsm: New()}
}

// apply runs one command and commits it; it returns the result or error.
func (h *harness) apply(c *Command) (*Result, error) {
	h.t.Helper()
	b, err := c.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	return h.applyRaw(b)
}

// applyRaw applies encoded command bytes as raftstore does: the batch is
// committed unless the result is fatal, which discards it.
func (h *harness) applyRaw(b []byte) (*Result, error) {
	h.t.Helper()
	batch := h.db.NewIndexedBatch()
	defer batch.Close()
	h.idx++
	v := h.fsm.Apply(batch, h.idx, b)
	if fe, ok := v.(*FatalError); ok {
		h.fsm.Reset()
		return nil, fe
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		h.t.Fatal(err)
	}
	switch v := v.(type) {
	case *Result:
		return v, nil
	case error:
		return nil, v
	}
	h.t.Fatalf("Apply returned %T", v)
	return nil, nil
}

func (h *harness) must(c *Command) *Result {
	h.t.Helper()
	r, err := h.apply(c)
	if err != nil {
		h.t.Fatalf("%s: %v", c.Op, err)
	}
	return r
}

const app = "app1"

func TestStartUnique(t *testing.T) {
	h := newHarness(t)
	r1 := h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Unique: true, Now: 1000,
		Attr: json.RawMessage(`{"name":"x"}`)})
	if r1.Existing {
		t.Fatal("first start existing")
	}
	r2 := h.must(&Command{Op: OpStart, App: app, CID: "c2", From: "b", Members: []string{"a", "b"}, Unique: true, Now: 2000})
	if !r2.Existing || r2.Conv.ID != "c1" {
		t.Fatalf("got %v existing=%v, want c1 existing", r2.Conv.ID, r2.Existing)
	}
	r3 := h.must(&Command{Op: OpStart, App: app, CID: "c3", From: "b", Members: []string{"a"}, Now: 2000})
	if r3.Existing || r3.Conv.ID != "c3" {
		t.Fatalf("non-unique start got %v", r3.Conv.ID)
	}
	// Other app: separate namespace.
	r4 := h.must(&Command{Op: OpStart, App: "app2", CID: "c4", From: "a", Members: []string{"b"}, Unique: true, Now: 1})
	if r4.Existing {
		t.Fatal("unique leaked across apps")
	}
	ids, _ := MemberConvs(h.db, app, "a", 0)
	if len(ids) != 2 {
		t.Fatalf("member index of a: got %v, want 2 convs", ids)
	}
}

func TestAppendMonotonicAndDedup(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	var last int64
	for i, now := range []int64{100, 100, 50, 200} {
		r := h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: string(rune('p' + i)), Data: "x", Now: now})
		if r.Message.T <= last {
			t.Fatalf("message %d: t=%d not after %d", i, r.Message.T, last)
		}
		last = r.Message.T
	}
	r1 := h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m1", DT: "dt1", Now: 300})
	r2 := h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m2", DT: "dt1", Now: 400})
	if !r2.Dup || r2.Message.ID != "m1" || r2.Message.T != r1.Message.T {
		t.Fatalf("dedup: got %+v dup=%v, want m1", r2.Message, r2.Dup)
	}
	if _, err := h.apply(&Command{Op: OpAppend, App: app, CID: "c", From: "z", MID: "m3", Now: 500}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("non-member append: got %v, want ErrNotMember", err)
	}
	if _, err := h.apply(&Command{Op: OpAppend, App: app, CID: "nope", From: "a", MID: "m4", Now: 500}); !errors.Is(err, ErrConvNotFound) {
		t.Fatalf("missing conv: got %v", err)
	}
}

func TestListMessages(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	for i := int64(1); i <= 10; i++ {
		h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: string(rune('a' + i)), Now: i * 10})
	}
	ts := func(ms []*Message) []int64 {
		var out []int64
		for _, m := range ms {
			out = append(out, m.T)
		}
		return out
	}
	tests := []struct {
		name string
		q    LogQuery
		want []int64
	}{
		{"latest", LogQuery{Limit: 3}, []int64{80, 90, 100}},
		{"older than 50", LogQuery{Start: 50, Limit: 3}, []int64{20, 30, 40}},
		{"older incl 50", LogQuery{Start: 50, StartIncl: true, Limit: 3}, []int64{30, 40, 50}},
		{"older to 30", LogQuery{Start: 60, End: 30, Limit: 10}, []int64{40, 50}},
		{"older to 30 incl", LogQuery{Start: 60, End: 30, EndIncl: true, Limit: 10}, []int64{30, 40, 50}},
		{"newer from start", LogQuery{Newer: true, Limit: 2}, []int64{10, 20}},
		{"newer than 50", LogQuery{Start: 50, Newer: true, Limit: 2}, []int64{60, 70}},
		{"newer incl 50 to 70", LogQuery{Start: 50, StartIncl: true, End: 70, Newer: true, Limit: 10}, []int64{50, 60}},
		{"far future", LogQuery{Start: 64092211200000, Limit: 2}, []int64{90, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := ListMessages(h.db, app, "c", tt.q)
			if err != nil {
				t.Fatal(err)
			}
			got := ts(ms)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestPatchAndCursors(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	m1 := h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m1", Data: "hi", Now: 10}).Message
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "b", MID: "m2", Data: "yo", Now: 20})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m3", Data: "x", Now: 30, MentionPids: []string{"b"}})

	if _, err := h.apply(&Command{Op: OpPatch, App: app, From: "b", Now: 40, Patches: []Patch{{CID: "c", MID: "m1", Recall: true}}}); !errors.Is(err, ErrNotSender) {
		t.Fatalf("patch by other: got %v, want ErrNotSender", err)
	}
	if _, err := h.apply(&Command{Op: OpPatch, App: app, From: "a", Now: 40, Patches: []Patch{{CID: "c", MID: "nope", Recall: true}}}); !errors.Is(err, ErrMsgNotFound) {
		t.Fatalf("patch missing: got %v, want ErrMsgNotFound", err)
	}
	r := h.must(&Command{Op: OpPatch, App: app, From: "a", Now: 40, Patches: []Patch{{CID: "c", MID: "m1", Recall: true}}})
	if len(r.Patched) != 1 || !r.Patched[0].Recalled || r.Patched[0].PatchT != 40 || r.Patched[0].T != m1.T {
		t.Fatalf("recall: got %+v", r.Patched)
	}
	h.must(&Command{Op: OpPatch, App: app, From: "a", Now: 40, Patches: []Patch{{CID: "c", MID: "m3", Data: "edited", MentionPids: []string{"b"}}}})
	got, _ := GetMessage(h.db, app, "c", "m1")
	if d, _ := got.Content(); d != RecalledData {
		t.Fatalf("recalled content: got %q", d)
	}
	ps, _ := PatchesSince(h.db, app, "c", 40, 10)
	if len(ps) != 1 || ps[0].ID != "m3" || ps[0].PatchT != 41 || ps[0].Data != "edited" {
		t.Fatalf("patches since 40: got %+v", ps)
	}
	conv, _ := GetConv(h.db, app, "c")
	if conv.LastData != "edited" || conv.LastPatch != 41 {
		t.Fatalf("last message after edit: %+v", conv)
	}

	u, _ := CountUnread(h.db, app, "c", "b", 0)
	if u.Count != 2 || !u.Mentioned {
		t.Fatalf("unread for b: got %+v, want 2 mentioned", u)
	}
	h.must(&Command{Op: OpRead, App: app, CID: "c", From: "b", MID: "m1"})
	cur, _ := GetCursor(h.db, app, "c", "b")
	if cur.Read != 10 || cur.Ack != 10 {
		t.Fatalf("cursor: got %+v", cur)
	}
	h.must(&Command{Op: OpAck, App: app, CID: "c", From: "b", T: 1 << 50}) // clamped to last
	cur, _ = GetCursor(h.db, app, "c", "b")
	if cur.Ack != 30 || cur.Read != 10 {
		t.Fatalf("ack clamp: got %+v", cur)
	}
	h.must(&Command{Op: OpRead, App: app, CID: "c", From: "b"}) // read all
	cur, _ = GetCursor(h.db, app, "c", "b")
	if cur.Read != 30 {
		t.Fatalf("read all: got %+v", cur)
	}
}

func TestMembersAndAttrs(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Unique: true, Now: 1,
		Attr: json.RawMessage(`{"name":"n","attr":{"k":1}}`)})
	if _, err := h.apply(&Command{Op: OpAdd, App: app, CID: "c", From: "z", Members: []string{"y"}}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("add by non-member: got %v", err)
	}
	r := h.must(&Command{Op: OpAdd, App: app, CID: "c", From: "z", Members: []string{"z"}, Now: 2}) // join
	if len(r.Changed) != 1 || !r.Conv.IsMember("z") {
		t.Fatalf("join: got %+v", r)
	}
	if id, _ := FindUnique(h.db, app, []string{"a", "b"}); id != "" {
		t.Fatalf("unique key survived membership change: %q", id)
	}
	r = h.must(&Command{Op: OpRemove, App: app, CID: "c", From: "a", Members: []string{"b", "q"}, Now: 3})
	if len(r.Changed) != 1 || r.Conv.IsMember("b") {
		t.Fatalf("remove: got %+v", r)
	}
	if ids, _ := MemberConvs(h.db, app, "b", 0); len(ids) != 0 {
		t.Fatalf("member index after remove: %v", ids)
	}
	r = h.must(&Command{Op: OpUpdate, App: app, CID: "c", From: "a", Now: 4, Update: json.RawMessage(`{"attr.k":2,"name":"m","attr.j":{"__op":"Delete"}}`)})
	if string(r.AttrModified) != `{"attr":{"k":2},"name":"m"}` {
		t.Fatalf("attrModified: got %s", r.AttrModified)
	}
	if string(r.Conv.Attr) != `{"attr":{"k":2},"name":"m"}` {
		t.Fatalf("attr: got %s", r.Conv.Attr)
	}
	if _, err := h.apply(&Command{Op: OpUpdate, App: app, CID: "c", From: "a", Update: json.RawMessage(`{"m":["x"]}`)}); !errors.Is(err, ErrUpdateForbidden) {
		t.Fatalf("update m: got %v", err)
	}
	r = h.must(&Command{Op: OpMute, App: app, CID: "c", From: "a", Mute: true})
	if len(r.Conv.Muted) != 1 {
		t.Fatalf("mute: got %v", r.Conv.Muted)
	}
}

func TestApplyGarbage(t *testing.T) {
	h := newHarness(t)
	for _, b := range [][]byte{nil, []byte("{"), []byte(`{"op":"nope","app":"a"}`), []byte(`{"op":"start"}`)} {
		batch := h.db.NewIndexedBatch()
		v := h.fsm.Apply(batch, 1, b)
		if _, ok := v.(error); !ok {
			t.Fatalf("Apply(%q) = %T, want error", b, v)
		}
		if batch.Count() != 0 {
			t.Fatalf("Apply(%q) wrote %d keys", b, batch.Count())
		}
		batch.Close()
	}
}

// BenchmarkEncode encodes and decodes a send as the core proposes it (a
// round of one append, as core/sendgroup.go makes it) and a cursor move, in
// JSON and in the binary form (bincmd.go).
func BenchmarkEncode(b *testing.B) {
	send := &Command{V: Version, Op: OpBatch, Batch: []*Command{{Op: OpAppend, App: "app", CID: "0123456789abcdef01234567",
		From: "alice", Now: 1700000000000, MID: "abcdefghijklmnopqrst", Data: `{"_lctype":-1,"_lctext":"hello world"}`,
		DT: "uuid-uuid-uuid-uuid", Edge: "edge-1", Conn: 12345}}, FanoutDone: []uint64{88123}}
	ack := &Command{V: Version, Op: OpBatch, Batch: []*Command{{Op: OpAck, App: "app", CID: "0123456789abcdef01234567",
		From: "bob", Now: 1700000000000, T: 1700000000000}}}
	for _, tc := range []struct {
		name string
		c    *Command
	}{{"send", send}, {"ack", ack}} {
		for _, form := range []string{"json", "binary"} {
			b.Run(tc.name+"/"+form, func(b *testing.B) {
				encode := tc.c.Encode
				if form == "binary" {
					encode = tc.c.EncodeBinary
				}
				b.ReportAllocs()
				for b.Loop() {
					buf, _ := encode()
					if _, err := DecodeCommand(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
