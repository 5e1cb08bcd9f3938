package shard

import (
	"slices"
	"testing"
)

// TestObserveMembers: the observer hears, with the entry's index, of the
// clients whose memberships an entry changed (start, add, remove, delete,
// subscribe), not of messages nor of chatrooms (which keep no member
// entries); ClientCount and ClientCounts read what the login reads.
func TestObserveMembers(t *testing.T) {
	h := newHarness(t)
	type heard struct {
		index   uint64
		clients []string
	}
	var got []heard
	h.fsm.ObserveMembers(func(index uint64, ts []MemberTouch) {
		var cs []string
		for _, x := range ts {
			if x.App != "app" {
				t.Errorf("touch of app %q", x.App)
			}
			cs = append(cs, x.Client)
		}
		slices.Sort(cs)
		got = append(got, heard{index, slices.Compact(cs)})
	})
	last := func() heard {
		t.Helper()
		if len(got) == 0 {
			t.Fatal("nothing heard")
		}
		x := got[len(got)-1]
		got = nil
		return x
	}
	h.must(&Command{Op: OpStart, App: "app", CID: "c1", From: "alice", Members: []string{"bob"}, Now: 1})
	if x := last(); x.index != h.idx || !slices.Equal(x.clients, []string{"alice", "bob"}) {
		t.Fatalf("start: heard %+v at %d", x, h.idx)
	}
	h.must(&Command{Op: OpAppend, App: "app", CID: "c1", From: "alice", MID: "m1", Data: "hi", Now: 2})
	if len(got) != 0 {
		t.Fatalf("a message touched %+v", got)
	}
	h.must(&Command{Op: OpAdd, App: "app", CID: "c1", From: "alice", Members: []string{"carol"}, Now: 3})
	if x := last(); !slices.Equal(x.clients, []string{"carol"}) {
		t.Fatalf("add: %+v", x)
	}
	h.must(&Command{Op: OpRemove, App: "app", CID: "c1", From: "alice", Members: []string{"bob"}, Now: 4})
	if x := last(); !slices.Equal(x.clients, []string{"bob"}) {
		t.Fatalf("remove: %+v", x)
	}
	h.must(&Command{Op: OpStart, App: "app", CID: "room", From: "alice", Members: []string{"dave"}, Transient: true, Now: 5})
	if len(got) != 0 {
		t.Fatalf("a chatroom touched %+v", got)
	}
	h.must(&Command{Op: OpSysStart, App: "app", CID: "sys", From: "sys", Admin: true, Now: 5})
	got = nil
	h.must(&Command{Op: OpSubscribe, App: "app", CID: "sys", From: "erin", Members: []string{"erin"}, Now: 6})
	if x := last(); !slices.Equal(x.clients, []string{"erin"}) {
		t.Fatalf("subscribe: %+v", x)
	}
	if n, err := ClientCount(h.db, "app", "erin"); err != nil || n != 1 {
		t.Fatalf("ClientCount(erin) = %d, %v; want 1 (a subscription)", n, err)
	}
	// A global broadcast is due to every client: it counts for AllClients.
	h.must(&Command{Op: OpSysBcast, App: "app", CID: "sys", From: "sys", MID: "g1", Data: "x", Now: 7,
		ValidTill: 1 << 50, Admin: true, Global: true})
	if x := last(); !slices.Contains(x.clients, AllClients) {
		t.Fatalf("global broadcast: %+v, want AllClients", x)
	}
	if n, err := ClientCount(h.db, "app", AllClients); err != nil || n != 1 {
		t.Fatalf("ClientCount(AllClients) = %d, %v; want 1", n, err)
	}
	if n, err := ClientCount(h.db, "app", "alice"); err != nil || n != 1 {
		t.Fatalf("ClientCount(alice) = %d, %v; want 1", n, err)
	}
	if n, _ := ClientCount(h.db, "app", "bob"); n != 0 {
		t.Fatalf("ClientCount(bob) = %d, want 0", n)
	}
	counts := map[string]uint64{}
	if err := ClientCounts(h.db, func(app, pid string, n uint64) { counts[pid] = n }); err != nil {
		t.Fatal(err)
	}
	if len(counts) != 4 || counts["alice"] != 1 || counts["carol"] != 1 || counts["erin"] != 1 || counts[AllClients] != 1 {
		t.Fatalf("ClientCounts: %v, want alice, carol, erin and AllClients", counts)
	}
	h.must(&Command{Op: OpDelete, App: "app", CID: "c1", Admin: true, Now: 6})
	if x := last(); !slices.Equal(x.clients, []string{"alice", "carol"}) {
		t.Fatalf("delete: %+v", x)
	}
	if h.fsm.MemberIndex() != h.idx {
		t.Fatalf("MemberIndex %d, want %d", h.fsm.MemberIndex(), h.idx)
	}
	// A refused entry touches nobody; the floor only rises.
	if _, err := h.apply(&Command{Op: OpAdd, App: "app", CID: "gone", From: "alice", Members: []string{"x"}, Now: 7}); err == nil {
		t.Fatal("add to a deleted conversation applied")
	}
	if len(got) != 0 {
		t.Fatalf("a refused entry touched %+v", got)
	}
	h.fsm.FloorMemberIndex(2)
	if h.fsm.MemberIndex() != h.idx-1 {
		t.Fatalf("MemberIndex after a lower floor: %d", h.fsm.MemberIndex())
	}
	// After a restore, the next entry's predecessor is the floor.
	h.fsm.Reset()
	h.must(&Command{Op: OpAppend, App: "app", CID: "room", From: "alice", MID: "m2", Data: "x", Now: 8})
	if h.fsm.MemberIndex() != h.idx-1 {
		t.Fatalf("MemberIndex after a restore: %d, want %d", h.fsm.MemberIndex(), h.idx-1)
	}
}
