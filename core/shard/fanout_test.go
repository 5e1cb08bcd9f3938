package shard

import (
	"errors"
	"reflect"
	"testing"
)

func tailIndexes(t *testing.T, h *harness) []uint64 {
	t.Helper()
	es, err := FanoutTail(h.db, h.idx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range es {
		out = append(out, e.Index)
	}
	return out
}

// TestFanoutTail: every stored message enters the tail under its raft
// index with its sender's session and narrowed recipients; FanoutDone on
// any command (refused ones included) or OpFanoutDone removes entries; a
// deduplicated send adds none.
func TestFanoutTail(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b", "c"}, Now: 1000})
	r1 := h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m1", Now: 1001, DT: "d1", Edge: "e1", Conn: 7})
	r2 := h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m2", Now: 1002, To: []string{"b"}})
	if r1.Index != 2 || r2.Index != 3 {
		t.Fatalf("append indexes %d, %d; want 2, 3", r1.Index, r2.Index)
	}
	es, err := FanoutTail(h.db, h.idx, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []FanoutEntry{
		{Index: 2, App: app, CID: "c1", MID: "m1", Edge: "e1", Conn: 7},
		{Index: 3, App: app, CID: "c1", MID: "m2", To: []string{"b"}},
	}
	if !reflect.DeepEqual(es, want) {
		t.Fatalf("tail:\n got %+v\nwant %+v", es, want)
	}
	if d := h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m3", Now: 1003, DT: "d1"}); !d.Dup || d.Index != 0 {
		t.Fatalf("dup append: Dup %v Index %d, want true 0", d.Dup, d.Index)
	}
	if got := tailIndexes(t, h); !reflect.DeepEqual(got, []uint64{2, 3}) {
		t.Fatalf("tail after a dup: %v, want [2 3]", got)
	}
	// A refused command still carries the done list.
	if _, err := h.apply(&Command{Op: OpAppend, App: app, CID: "nope", From: "a", MID: "m4", Now: 1004, FanoutDone: []uint64{2}}); err == nil {
		t.Fatal("append to a missing conversation succeeded")
	}
	if got := tailIndexes(t, h); !reflect.DeepEqual(got, []uint64{3}) {
		t.Fatalf("tail after done [2]: %v, want [3]", got)
	}
	h.must(&Command{Op: OpFanoutDone, FanoutDone: []uint64{3, 99}})
	if got := tailIndexes(t, h); len(got) != 0 {
		t.Fatalf("tail after done [3 99]: %v, want empty", got)
	}
	if got, err := FanoutTail(h.db, 1, 100); err != nil || len(got) != 0 {
		t.Fatalf("FanoutTail up to 1: %v %v", got, err)
	}
}

// appendsBatch is a batch of appends to c1 as the core's group commit
// proposes it: one per (from, mid, dt).
func appendsBatch(v int, now int64, sends ...[3]string) *Command {
	c := &Command{V: v, Op: OpBatch}
	for _, s := range sends {
		c.Batch = append(c.Batch, &Command{Op: OpAppend, App: app, CID: "c1", From: s[0], MID: s[1], DT: s[2],
			Now: now, Data: "d " + s[1], Edge: "e1", Conn: uint64(len(c.Batch) + 1)})
	}
	return c
}

// TestFanoutTailSeveralPerEntry: a Version4 batch of appends stores each
// message on its own (a muted sender's refused, a dedup token repeated in
// the batch answered with the first's message, timestamps rising in
// order) and keeps every stored message in the tail under the entry's
// index, in order; FanoutDone with that one index removes them all.
func TestFanoutTailSeveralPerEntry(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b", "c"}, Now: 1000})
	h.must(&Command{Op: OpShutup, App: app, CID: "c1", From: "a", Members: []string{"c"}, Mute: true, Now: 1001})
	res := h.must(appendsBatch(Version4, 1002,
		[3]string{"a", "m1", "dt1"}, [3]string{"c", "m2", ""}, [3]string{"a", "m3", "dt1"}, [3]string{"b", "m4", ""}))
	if len(res.Batch) != 4 {
		t.Fatalf("%d outcomes, want 4", len(res.Batch))
	}
	r1, r2, r3, r4 := res.Batch[0], res.Batch[1], res.Batch[2], res.Batch[3]
	if r1.Err != nil || r4.Err != nil || r3.Err != nil {
		t.Fatalf("outcomes %+v %+v %+v, want stored, dup, stored", r1, r3, r4)
	}
	if r2.Err == nil || !errors.Is(r2.Err, ErrShutup) {
		t.Fatalf("muted sender's append: got %v, want ErrShutup", r2.Err)
	}
	if !r3.Result.Dup || r3.Result.Message.ID != "m1" || r3.Result.Message.T != r1.Result.Message.T {
		t.Fatalf("repeated dt in the batch: got %+v, want a dup of m1", r3.Result.Message)
	}
	idx := h.idx
	if r1.Result.Index != idx || r4.Result.Index != idx || r3.Result.Index != 0 {
		t.Fatalf("indexes %d, %d, %d; want %d, %d, 0", r1.Result.Index, r4.Result.Index, r3.Result.Index, idx, idx)
	}
	if t1, t4 := r1.Result.Message.T, r4.Result.Message.T; t1 != 1002 || t4 != 1003 {
		t.Fatalf("timestamps %d, %d; want 1002, 1003", t1, t4)
	}
	if msgs, _ := ListMessages(h.db, app, "c1", LogQuery{Limit: 10, Newer: true}); len(msgs) != 2 ||
		msgs[0].ID != "m1" || msgs[1].ID != "m4" {
		t.Fatalf("history %+v, want m1, m4", msgs)
	}
	es, err := FanoutTail(h.db, h.idx, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []FanoutEntry{
		{Index: idx, Pos: 0, App: app, CID: "c1", MID: "m1", Edge: "e1", Conn: 1},
		{Index: idx, Pos: 1, App: app, CID: "c1", MID: "m4", Edge: "e1", Conn: 4},
	}
	if !reflect.DeepEqual(es, want) {
		t.Fatalf("tail:\n got %+v\nwant %+v", es, want)
	}
	// A single append after it, then a limit of one index: the entry's
	// messages come together.
	h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m5", Now: 1004})
	if es, _ := FanoutTail(h.db, h.idx, 1); len(es) != 2 || es[1].MID != "m4" {
		t.Fatalf("FanoutTail limit 1: %+v, want the entry's two", es)
	}
	h.must(&Command{Op: OpFanoutDone, FanoutDone: []uint64{idx}})
	if got := tailIndexes(t, h); !reflect.DeepEqual(got, []uint64{idx + 1}) {
		t.Fatalf("tail after done [%d]: %v, want [%d]", idx, got, idx+1)
	}
}

// TestBatchOfAppendsBeforeVersion4: a batch of appends of an older
// version applies as it did before Version4 (each append writes the
// entry's one tail key over the one before: only the last is kept), so an
// old log replays alike; a core needs Version4 to propose one.
func TestBatchOfAppendsBeforeVersion4(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1000})
	h.must(appendsBatch(Version3, 1001, [3]string{"a", "m1", ""}, [3]string{"b", "m2", ""}))
	es, err := FanoutTail(h.db, h.idx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].MID != "m2" || es[0].Pos != 0 {
		t.Fatalf("Version3 batch's tail %+v, want m2 alone", es)
	}
	two := appendsBatch(0, 1, [3]string{"a", "x", ""}, [3]string{"a", "y", ""})
	if need := NeedsVersion(two); need != Version4 {
		t.Errorf("NeedsVersion(two appends): got %d, want %d", need, Version4)
	}
	if need := NeedsVersion(appendsBatch(0, 1, [3]string{"a", "x", ""})); need != Version1 {
		t.Errorf("NeedsVersion(one append): got %d, want %d", need, Version1)
	}
	// A replica of this code refuses, fatally, a version newer than it.
	if _, err := h.apply(appendsBatch(Version+1, 1002, [3]string{"a", "m3", ""}, [3]string{"a", "m4", ""})); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("a batch of version %d: got %v, want ErrUnknownVersion", Version+1, err)
	}
}
