package shard

import (
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
