package shard

import (
	"errors"
	"fmt"
	"testing"
)

// refuse applies c, expects want and checks that nothing was written.
func (h *harness) refuse(c *Command, want error) {
	h.t.Helper()
	b, err := c.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	batch := h.db.NewIndexedBatch()
	defer batch.Close()
	v := h.fsm.Apply(batch, 1, b)
	if err, ok := v.(error); !ok || !errors.Is(err, want) {
		h.t.Fatalf("%s by %s: got %v, want %v", c.Op, c.From, v, want)
	}
	if n := batch.Count(); n != 0 {
		h.t.Fatalf("refused %s wrote %d keys", c.Op, n)
	}
}

func TestModerationRules(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "o", Members: []string{"m", "x", "y"}, Now: 1})
	h.must(&Command{Op: OpRole, App: app, CID: "c", From: "o", Members: []string{"m"}, Role: RoleManager, Now: 2})
	conv, _ := GetConv(h.db, app, "c")
	roles := map[string]string{"o": RoleOwner, "m": RoleManager, "x": RoleMember, "z": RoleMember}
	for pid, want := range roles {
		if got := conv.Role(pid); got != want {
			t.Fatalf("role of %s: got %s, want %s", pid, got, want)
		}
	}
	tests := []struct {
		actor, target string
		want          bool
	}{
		{"o", "m", true}, {"o", "x", true}, {"o", "o", false},
		{"m", "x", true}, {"m", "o", false}, {"m", "m", false},
		{"x", "y", false}, {"x", "o", false}, {"x", "m", false},
	}
	for _, tt := range tests {
		if got := conv.mayActOn(tt.actor, tt.target); got != tt.want {
			t.Errorf("mayActOn(%s, %s): got %v, want %v", tt.actor, tt.target, got, tt.want)
		}
	}

	for _, c := range []struct {
		cmd  *Command
		want error
	}{
		{&Command{Op: OpRemove, App: app, CID: "c", From: "x", Members: []string{"y"}}, ErrRoleTooLow},
		{&Command{Op: OpShutup, App: app, CID: "c", From: "x", Members: []string{"y"}, Mute: true}, ErrRoleTooLow},
		{&Command{Op: OpBlock, App: app, CID: "c", From: "x", Members: []string{"y"}, Mute: true}, ErrRoleTooLow},
		{&Command{Op: OpBlock, App: app, CID: "c", From: "z", Members: []string{"y"}, Mute: true}, ErrNotMember},
		{&Command{Op: OpRole, App: app, CID: "c", From: "x", Members: []string{"y"}, Role: RoleManager}, ErrRoleTooLow},
		{&Command{Op: OpRole, App: app, CID: "c", From: "m", Members: []string{"o"}, Role: RoleMember}, ErrNeedOwner},
		{&Command{Op: OpRole, App: app, CID: "c", From: "o", Members: []string{"y"}, Role: RoleOwner}, ErrRoleTooLow},
		{&Command{Op: OpRole, App: app, CID: "c", From: "o", Members: []string{"y"}, Role: "admin"}, ErrUnknownRole},
		{&Command{Op: OpRole, App: app, CID: "c", From: "o", Members: []string{"z"}, Role: RoleManager}, ErrNotMember},
	} {
		h.refuse(c.cmd, c.want)
	}

	// A Manager's block: the Owner fails, x is removed and barred.
	r := h.must(&Command{Op: OpBlock, App: app, CID: "c", From: "m", Members: []string{"x", "o"}, Mute: true, Now: 3})
	if len(r.Allowed) != 1 || r.Allowed[0] != "x" || len(r.Failed) != 1 || r.Failed[0].PID != "o" || !errors.Is(r.Failed[0].Err, ErrRoleTooLow) ||
		len(r.Removed) != 1 || r.Conv.IsMember("x") || !r.Conv.IsBlocked("x") {
		t.Fatalf("block: got %+v", r)
	}
	if ids, _ := MemberConvs(h.db, app, "x", 0); len(ids) != 0 {
		t.Fatalf("member index of a blocked client: %v", ids)
	}
	r = h.must(&Command{Op: OpAdd, App: app, CID: "c", From: "x", Members: []string{"x"}, Now: 4})
	if len(r.Changed) != 0 || len(r.Failed) != 1 || !errors.Is(r.Failed[0].Err, ErrBlocked) {
		t.Fatalf("blocked join: got %+v", r)
	}
	// Removing a Manager clears the role.
	h.must(&Command{Op: OpRemove, App: app, CID: "c", From: "o", Members: []string{"m"}, Now: 5})
	h.must(&Command{Op: OpAdd, App: app, CID: "c", From: "o", Members: []string{"m"}, Now: 6})
	conv, _ = GetConv(h.db, app, "c")
	if conv.Role("m") != RoleMember {
		t.Fatalf("role after leaving and rejoining: %s", conv.Role("m"))
	}
	// A muted member cannot send or leave a will.
	h.must(&Command{Op: OpShutup, App: app, CID: "c", From: "o", Members: []string{"y"}, Mute: true, Now: 7})
	h.refuse(&Command{Op: OpAppend, App: app, CID: "c", From: "y", MID: "m1", Now: 8}, ErrShutup)
	h.refuse(&Command{Op: OpWill, App: app, CID: "c", From: "y", MID: "m1", Now: 8}, ErrShutup)
}

func TestReceiptIndex(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "r1", Receipt: true, Now: 10})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "p", Now: 20})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "b", MID: "own", Receipt: true, Now: 25})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "r2", Receipt: true, Now: 30})
	r := h.must(&Command{Op: OpAck, App: app, CID: "c", From: "b", T: 25, Now: 100})
	if len(r.Receipts) != 1 || r.Receipts[0] != (Receipt{CID: "c", MID: "r1", To: "a", From: "b", T: 100}) {
		t.Fatalf("ack to 25: got %+v", r.Receipts)
	}
	r = h.must(&Command{Op: OpRead, App: app, CID: "c", From: "b", Now: 200}) // read all
	if len(r.Receipts) != 3 || r.Receipts[0].MID != "r2" || r.Receipts[0].Read ||
		r.Receipts[1].MID != "r1" || !r.Receipts[1].Read || r.Receipts[2].MID != "r2" || !r.Receipts[2].Read {
		t.Fatalf("read all: got %+v", r.Receipts)
	}
	if r = h.must(&Command{Op: OpRead, App: app, CID: "c", From: "b", Now: 300}); len(r.Receipts) != 0 {
		t.Fatalf("read again: got %+v", r.Receipts)
	}
	// Groups: only with GroupReceipt.
	h.must(&Command{Op: OpStart, App: app, CID: "g", From: "a", Members: []string{"b", "c"}, Now: 1})
	h.must(&Command{Op: OpAppend, App: app, CID: "g", From: "a", MID: "g1", Receipt: true, Now: 10})
	h.must(&Command{Op: OpAppend, App: app, CID: "g", From: "a", MID: "g2", Receipt: true, GroupReceipt: true, Now: 20})
	r = h.must(&Command{Op: OpAck, App: app, CID: "g", From: "c", T: 20, Now: 30})
	if len(r.Receipts) != 1 || r.Receipts[0].MID != "g2" {
		t.Fatalf("group ack: got %+v", r.Receipts)
	}
}

func TestWills(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpWill, App: app, CID: "c", From: "a", MID: "w1", Data: "bye", Edge: "e", Conn: 1, Now: 5})
	// Another session's end leaves it alone; its own end sends it.
	if r := h.must(&Command{Op: OpEndWills, App: app, From: "a", Edge: "e", Conn: 2, Fire: true, Now: 6}); len(r.Fired) != 0 {
		t.Fatalf("other session fired %+v", r.Fired)
	}
	end := &Command{Op: OpEndWills, App: app, From: "a", Edge: "e", Conn: 1, Fire: true, Now: 10}
	r := h.must(end)
	if len(r.Fired) != 1 || r.Fired[0].Message.ID != "w1" || r.Fired[0].Message.T != 10 || len(r.Fired[0].Members) != 2 {
		t.Fatalf("fired: got %+v", r.Fired)
	}
	if ms, _ := ListMessages(h.db, app, "c", LogQuery{Limit: 10}); len(ms) != 1 || ms[0].Data != "bye" {
		t.Fatalf("history after fire: %+v", ms)
	}
	if r := h.must(end); len(r.Fired) != 0 { // replayed: nothing twice
		t.Fatalf("second end fired %+v", r.Fired)
	}
	// Dropped on an explicit close.
	h.must(&Command{Op: OpWill, App: app, CID: "c", From: "a", MID: "w2", Edge: "e", Conn: 3, Now: 20})
	h.must(&Command{Op: OpEndWills, App: app, From: "a", Edge: "e", Conn: 3, Now: 21})
	if cids, _ := SessionWills(h.db, app, "a", "e", 3); len(cids) != 0 {
		t.Fatalf("wills after drop: %v", cids)
	}
}

// TestAdminModeration: the server API (Admin, no From) may mute, block and
// set roles on anyone, the Owner included, but cannot make an Owner.
func TestAdminModeration(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "o", Members: []string{"x", "y"}, Now: 1})
	res := h.must(&Command{Op: OpShutup, App: app, CID: "c", Admin: true, Members: []string{"o", "x"}, Mute: true, Now: 2})
	if len(res.Failed) != 0 || len(res.Changed) != 2 {
		t.Fatalf("admin shutup: got changed %v failed %v, want both changed", res.Changed, res.Failed)
	}
	h.refuse(&Command{Op: OpAppend, App: app, CID: "c", From: "x", MID: "m1", Now: 3}, ErrShutup)
	h.must(&Command{Op: OpRole, App: app, CID: "c", Admin: true, Members: []string{"y"}, Role: RoleManager, Now: 4})
	h.refuse(&Command{Op: OpRole, App: app, CID: "c", Admin: true, Members: []string{"y"}, Role: RoleOwner, Now: 5}, ErrRoleTooLow)
	res = h.must(&Command{Op: OpBlock, App: app, CID: "c", Admin: true, Members: []string{"y"}, Mute: true, Now: 6})
	if len(res.Removed) != 1 {
		t.Fatalf("admin block: removed %v, want [y]", res.Removed)
	}
	conv, _ := GetConv(h.db, app, "c")
	if conv.IsMember("y") || !conv.IsBlocked("y") || conv.Role("y") != RoleMember {
		t.Fatalf("after block: members %v blocked %v managers %v", conv.Members, conv.Blocked, conv.Managers)
	}
	res = h.must(&Command{Op: OpAdd, App: app, CID: "c", From: "y", Members: []string{"y"}, Now: 7})
	if len(res.Failed) != 1 || !errors.Is(res.Failed[0].Err, ErrBlocked) {
		t.Fatalf("blocked y joins: failed %v, want ErrBlocked", res.Failed)
	}
}

// TestTemporaryMute: a temporary mute refuses sends until Now passes its
// end (the command's clock only), is lifted by Mute:false, and a
// client's permanent mute is a separate list.
func TestTemporaryMute(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "o", Members: []string{"x", "y"}, Now: 1000})
	tmp := func(pid string, ttl int64, now int64) *Command {
		return &Command{Op: OpShutup, App: app, CID: "c", Admin: true, Members: []string{pid}, Mute: ttl > 0, Temp: true, TTL: ttl, Now: now}
	}
	send := func(from string, now int64) *Command {
		return &Command{Op: OpAppend, App: app, CID: "c", From: from, MID: fmt.Sprintf("%s-%d", from, now), Now: now}
	}
	h.must(tmp("x", 2, 1000)) // until 3000
	h.refuse(send("x", 1500), ErrShutup)
	h.refuse(send("x", 2999), ErrShutup)
	h.must(send("y", 2999))
	h.must(send("x", 3000))
	conv, _ := GetConv(h.db, app, "c")
	if conv.IsShutup("x") || conv.IsSilenced("x", 3000) || !conv.IsSilenced("x", 2999) {
		t.Fatalf("x: IsShutup %v, silenced at 3000 %v, at 2999 %v", conv.IsShutup("x"), conv.IsSilenced("x", 3000), conv.IsSilenced("x", 2999))
	}

	h.must(tmp("y", 60, 4000))
	h.refuse(send("y", 5000), ErrShutup)
	h.must(tmp("y", 0, 5001)) // lifted
	h.must(send("y", 5002))

	// A new mute drops expired entries.
	h.must(tmp("o", 1, 6000))
	conv, _ = GetConv(h.db, app, "c")
	if len(conv.TempShutup) != 1 || conv.TempShutup[0] != (TempMute{"o", 7000}) {
		t.Fatalf("temporary mutes: got %v, want only o until 7000", conv.TempShutup)
	}
	for _, ttl := range []int64{MaxTempShutupTTL + 1, -1} {
		c := tmp("x", ttl, 6000)
		c.Mute = true
		h.refuse(c, ErrBadCommand)
	}
	// Clients need a role to mute temporarily too.
	h.refuse(&Command{Op: OpShutup, App: app, CID: "c", From: "x", Members: []string{"y"}, Mute: true, Temp: true, TTL: 5, Now: 6000}, ErrRoleTooLow)
}
