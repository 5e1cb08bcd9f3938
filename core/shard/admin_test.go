package shard

import (
	"errors"
	"testing"
)

// TestAdminBypassesChecks: with Admin (the REST API) a non-member creates
// without a creator, adds, kicks, updates, sends and patches another's
// message; without it the same commands are refused.
func TestAdminBypassesChecks(t *testing.T) {
	h := newHarness(t)
	const app = "a"
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "alice", Now: 1, Members: []string{"bob"}})
	sent := h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "alice", Now: 2, MID: "m1", Data: "hi"})

	for _, tc := range []struct {
		name string
		cmd  Command
		want error // without Admin
	}{
		{"start without creator", Command{Op: OpStart, CID: "c2", Members: []string{"x", "y"}}, ErrBadCommand},
		{"add by non-member", Command{Op: OpAdd, CID: "c1", From: "server", Members: []string{"carol"}}, ErrNotMember},
		{"kick by non-member", Command{Op: OpRemove, CID: "c1", From: "server", Members: []string{"carol"}}, ErrNotMember},
		{"update by non-member", Command{Op: OpUpdate, CID: "c1", From: "server", Update: []byte(`{"name":"n"}`)}, ErrNotMember},
		{"send by non-member", Command{Op: OpAppend, CID: "c1", From: "server", MID: "m2", Data: "x"}, ErrNotMember},
		{"patch another's message", Command{Op: OpPatch, From: "bob", Patches: []Patch{{CID: "c1", MID: sent.Message.ID, Data: "edited"}}}, ErrNotSender},
		{"delete", Command{Op: OpDelete, CID: "c1"}, ErrRoleTooLow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			c.App, c.Now = app, 10
			if _, err := h.apply(&c); !errors.Is(err, tc.want) {
				t.Fatalf("without admin: got %v, want %v", err, tc.want)
			}
			if c.Op == OpDelete {
				return // checked in TestAdminDelete
			}
			c.Admin = true
			if _, err := h.apply(&c); err != nil {
				t.Fatalf("with admin: got %v, want success", err)
			}
		})
	}
	conv, _ := GetConv(h.db, app, "c1")
	if conv.IsMember("carol") || conv.Creator != "alice" {
		t.Errorf("after admin add+kick: members %v creator %q", conv.Members, conv.Creator)
	}
	m, _ := GetMessage(h.db, app, "c1", "m1")
	if m.Data != "edited" || m.From != "alice" {
		t.Errorf("admin patch: got %+v", m)
	}
}

// TestAdminDelete: a deleted conversation is gone with its history,
// cursors, member index and unique link; a new unique conversation of the
// same members gets a new id.
func TestAdminDelete(t *testing.T) {
	h := newHarness(t)
	const app = "a"
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "alice", Now: 1, Members: []string{"bob"}, Unique: true})
	h.must(&Command{Op: OpStart, App: app, CID: "keep", From: "alice", Now: 1, Members: []string{"carol"}})
	for i, id := range []string{"m1", "m2", "m3"} {
		h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "alice", Now: int64(2 + i), MID: id, Data: "x", Receipt: true})
		h.must(&Command{Op: OpAppend, App: app, CID: "keep", From: "alice", Now: int64(2 + i), MID: id, Data: "y"})
	}
	h.must(&Command{Op: OpRead, App: app, CID: "c1", From: "bob", Now: 9})
	h.must(&Command{Op: OpPatch, App: app, From: "alice", Now: 10, Patches: []Patch{{CID: "c1", MID: "m1", Recall: true}}})

	h.must(&Command{Op: OpDelete, App: app, CID: "c1", Now: 11, Admin: true})

	if conv, _ := GetConv(h.db, app, "c1"); conv != nil {
		t.Fatalf("conversation still there: %+v", conv)
	}
	if msgs, _ := ListMessages(h.db, app, "c1", LogQuery{Limit: 100}); len(msgs) != 0 {
		t.Errorf("history after delete: %d messages, want 0", len(msgs))
	}
	if _, ok, _ := MessageTS(h.db, app, "c1", "m2"); ok {
		t.Error("message id index survived")
	}
	if cs, _ := Cursors(h.db, app, "c1"); len(cs) != 0 {
		t.Errorf("cursors after delete: %v", cs)
	}
	if ms, _ := PatchesSince(h.db, app, "c1", 0, 10); len(ms) != 0 {
		t.Errorf("patches after delete: %d", len(ms))
	}
	for _, pid := range []string{"alice", "bob"} {
		cids, _ := MemberConvs(h.db, app, pid, 0)
		for _, cid := range cids {
			if cid == "c1" {
				t.Errorf("%s still indexed as member of c1", pid)
			}
		}
	}
	if msgs, _ := ListMessages(h.db, app, "keep", LogQuery{Limit: 100}); len(msgs) != 3 {
		t.Errorf("other conversation: %d messages, want 3", len(msgs))
	}
	res := h.must(&Command{Op: OpStart, App: app, CID: "c3", From: "alice", Now: 12, Members: []string{"bob"}, Unique: true})
	if res.Existing || res.Conv.ID != "c3" {
		t.Errorf("unique start after delete: existing=%v id=%s, want a new c3", res.Existing, res.Conv.ID)
	}
	if _, err := h.apply(&Command{Op: OpDelete, App: app, CID: "c1", Now: 13, Admin: true}); !errors.Is(err, ErrConvNotFound) {
		t.Errorf("second delete: got %v, want ErrConvNotFound", err)
	}
}
