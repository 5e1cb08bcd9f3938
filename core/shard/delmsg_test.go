package shard

import (
	"errors"
	"testing"
)

// TestDeleteMessage: a deleted message leaves history, the id index, the
// patch log, pending receipts and unread counts; deleting the last message
// makes the previous one the last, and later messages are still stamped
// after the deleted one.
func TestDeleteMessage(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpStart, App: app, CID: "other", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m1", Data: "one", Now: 10})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m2", Data: "two", Now: 20, Receipt: true})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m3", Data: "three", Now: 30})
	h.must(&Command{Op: OpAppend, App: app, CID: "other", From: "a", MID: "m2", Data: "keep", Now: 20})
	h.must(&Command{Op: OpPatch, App: app, From: "a", Now: 40, Patches: []Patch{{CID: "c", MID: "m2", Data: "two'"}}})

	for _, tc := range []struct {
		name string
		cmd  Command
		want error
	}{
		{"not admin", Command{CID: "c", MID: "m2"}, ErrRoleTooLow},
		{"unknown message", Command{CID: "c", MID: "nope", Admin: true}, ErrMsgNotFound},
		{"wrong timestamp", Command{CID: "c", MID: "m2", T: 21, Admin: true}, ErrMsgNotFound},
		{"unknown conversation", Command{CID: "nope", MID: "m2", Admin: true}, ErrConvNotFound},
		{"no id", Command{CID: "c", Admin: true}, ErrBadCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			c.Op, c.App, c.Now = OpDelMsg, app, 50
			if _, err := h.apply(&c); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	ids := func(cid string) []string {
		t.Helper()
		ms, err := ListMessages(h.db, app, cid, LogQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	r := h.must(&Command{Op: OpDelMsg, App: app, CID: "c", MID: "m2", T: 20, Now: 50, Admin: true})
	if r.Message == nil || r.Message.ID != "m2" {
		t.Fatalf("result message: got %+v, want m2", r.Message)
	}
	if got := ids("c"); len(got) != 2 || got[0] != "m1" || got[1] != "m3" {
		t.Fatalf("history after delete: got %v, want [m1 m3]", got)
	}
	if got := ids("other"); len(got) != 1 {
		t.Fatalf("other conversation: got %v, want [m2]", got)
	}
	if m, _ := GetMessage(h.db, app, "c", "m2"); m != nil {
		t.Fatalf("GetMessage after delete: got %+v, want nil", m)
	}
	if ps, _ := PatchesSince(h.db, app, "c", 0, 10); len(ps) != 0 {
		t.Fatalf("patches after delete: got %d, want 0", len(ps))
	}
	if u, _ := CountUnread(h.db, app, "c", "b", 0); u.Count != 2 {
		t.Fatalf("unread for b: got %d, want 2", u.Count)
	}
	// m2's pending receipt is gone: reading past it yields none.
	if rr := h.must(&Command{Op: OpRead, App: app, CID: "c", From: "b", MID: "m1", Now: 51}); len(rr.Receipts) != 0 {
		t.Fatalf("receipts: got %+v, want none", rr.Receipts)
	}
	conv, _ := GetConv(h.db, app, "c")
	if conv.LastMID != "m3" {
		t.Fatalf("last after deleting a middle message: got %q, want m3", conv.LastMID)
	}

	// Deleting the last message: m1 becomes the last, m3's time stays a floor.
	h.must(&Command{Op: OpRead, App: app, CID: "c", From: "b", Now: 52}) // b read up to m3
	h.must(&Command{Op: OpDelMsg, App: app, CID: "c", MID: "m3", Now: 53, Admin: true})
	conv, _ = GetConv(h.db, app, "c")
	if conv.LastMID != "m1" || conv.LastT != 10 || conv.LastData != "one" || conv.LastFrom != "a" {
		t.Fatalf("last after deleting it: got mid %q t %d data %q from %q, want m1 10 one a",
			conv.LastMID, conv.LastT, conv.LastData, conv.LastFrom)
	}
	if cached, _ := h.fsm.Conv(h.db, app, "c"); cached.LastMID != "m1" || cached.FloorT != 30 {
		t.Fatalf("cached conv: last %q floor %d, want m1 30", cached.LastMID, cached.FloorT)
	}
	m4 := h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m4", Data: "four", Now: 5}).Message
	if m4.T != 31 {
		t.Fatalf("message after deleted last (clock behind): t %d, want 31", m4.T)
	}
	if u, _ := CountUnread(h.db, app, "c", "b", 30); u.Count != 1 {
		t.Fatalf("unread for b after new message: got %d, want 1", u.Count)
	}

	// Deleting every message leaves no last message.
	h.must(&Command{Op: OpDelMsg, App: app, CID: "c", MID: "m1", Now: 60, Admin: true})
	h.must(&Command{Op: OpDelMsg, App: app, CID: "c", MID: "m4", Now: 61, Admin: true})
	conv, _ = GetConv(h.db, app, "c")
	if conv.LastMID != "" || conv.LastT != 0 || conv.LastData != "" {
		t.Fatalf("last after deleting all: got %+v, want none", conv)
	}
	if got := ids("c"); len(got) != 0 {
		t.Fatalf("history after deleting all: got %v", got)
	}
	if _, err := h.apply(&Command{Op: OpDelMsg, App: app, CID: "c", MID: "m1", Now: 62, Admin: true}); !errors.Is(err, ErrMsgNotFound) {
		t.Fatalf("second delete: got %v, want ErrMsgNotFound", err)
	}
}

// TestDeleteMessageDeterministic: replaying the same log on a fresh state
// (what a follower, or a restore followed by replay, does) leaves the same
// bytes, whether or not the conversation cache was warm.
func TestDeleteMessageDeterministic(t *testing.T) {
	log := []*Command{
		{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b", "c"}, Now: 1},
		{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m1", Data: "x", Now: 2},
		{Op: OpAppend, App: app, CID: "c", From: "b", MID: "m2", Data: "y", Now: 3, Receipt: true},
		{Op: OpPatch, App: app, From: "a", Now: 4, Patches: []Patch{{CID: "c", MID: "m1", Recall: true}}},
		{Op: OpDelMsg, App: app, CID: "c", MID: "m2", Now: 5, Admin: true},
		{Op: OpAppend, App: app, CID: "c", From: "c", MID: "m3", Data: "z", Now: 2},
		{Op: OpDelMsg, App: app, CID: "c", MID: "m3", Now: 6, Admin: true},
	}
	hot, cold := newHarness(t), newHarness(t)
	for _, c := range log {
		applyBatch(t, hot, []*Command{c}, false)
		applyBatch(t, cold, []*Command{c}, true)
	}
	if !sameState(t, hot.db, cold.db) {
		t.Fatal("state differs between replays")
	}
	checkCache(t, hot)
	conv, _ := GetConv(cold.db, app, "c")
	if conv.LastMID != "m1" || conv.LastData != RecalledData || conv.LastPatch != 4 || conv.FloorT != 4 {
		t.Fatalf("last: got mid %q data %q patch %d floor %d, want m1 recalled 4 4",
			conv.LastMID, conv.LastData, conv.LastPatch, conv.FloorT)
	}
}
