package shard

import (
	"fmt"
	"testing"
)

func TestTempConvStartAndTTL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ttl     int64
		wantTTL int64
	}{
		{"default", 0, DefaultTempTTL},
		{"negative", -5, DefaultTempTTL},
		{"given", 60, 60},
		{"max", MaxTempTTL, MaxTempTTL},
		{"clamped", MaxTempTTL + 1, MaxTempTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.must(&Command{Op: OpStart, App: "a", CID: TempPrefix + "1", From: "alice", Now: 1000,
				Members: []string{"bob"}, Temp: true, TTL: tc.ttl})
			c := r.Conv
			if !c.Temp || c.TTL != tc.wantTTL {
				t.Fatalf("got temp=%v ttl=%d, want true %d", c.Temp, c.TTL, tc.wantTTL)
			}
			if got, want := c.ExpiresAt(), 1000+tc.wantTTL*1000; got != want {
				t.Fatalf("expiresAt: got %d, want %d", got, want)
			}
			if got := fmt.Sprint(c.Members); got != "[alice bob]" {
				t.Fatalf("members: got %s, want [alice bob]", got)
			}
			ids, err := MemberConvs(h.db, "a", "bob", 0)
			if err != nil || len(ids) != 1 || ids[0] != c.ID {
				t.Fatalf("member index: got %v, %v", ids, err)
			}
		})
	}
}

func TestTempConvRules(t *testing.T) {
	h := newHarness(t)
	ten := []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"}
	h.refuse(&Command{Op: OpStart, App: "a", CID: TempPrefix + "x", From: "alice", Now: 1,
		Members: append(ten, "m10"), Temp: true}, ErrConvFull)
	h.refuse(&Command{Op: OpStart, App: "a", CID: "plain", From: "alice", Now: 1, Temp: true}, ErrBadCommand)
	cid := TempPrefix + "t"
	h.must(&Command{Op: OpStart, App: "a", CID: cid, From: "alice", Now: 1000, Members: ten, Temp: true, TTL: 10})

	for _, c := range []*Command{
		{Op: OpAdd, Members: []string{"zed"}},
		{Op: OpAdd, Members: []string{"alice"}},
		{Op: OpRemove, Members: []string{"m1"}},
		{Op: OpRemove, Members: []string{"alice"}},
		{Op: OpUpdate, Update: []byte(`{"name":"x"}`)},
		{Op: OpMute, Mute: true},
		{Op: OpRole, Members: []string{"m1"}, Role: RoleManager},
		{Op: OpShutup, Members: []string{"m1"}, Mute: true},
		{Op: OpBlock, Members: []string{"m1"}, Mute: true},
	} {
		c.App, c.CID, c.From, c.Now = "a", cid, "alice", 2000
		h.refuse(c, ErrTempConv)
	}
	// Messages and cursors work until the TTL runs out.
	m := h.must(&Command{Op: OpAppend, App: "a", CID: cid, From: "m1", Now: 2000, MID: "x1", Data: "hi"}).Message
	h.must(&Command{Op: OpRead, App: "a", CID: cid, From: "alice", Now: 2001, MID: m.ID})
	last := 1000 + 10*1000 - 1
	h.must(&Command{Op: OpAppend, App: "a", CID: cid, From: "m1", Now: int64(last), MID: "x2", Data: "hi"})
	for _, c := range []*Command{
		{Op: OpAppend, MID: "x3", Data: "late"},
		{Op: OpAck, T: 3000},
		{Op: OpRead},
		{Op: OpAdd, Members: []string{"zed"}},
	} {
		c.App, c.CID, c.From, c.Now = "a", cid, "m1", 1000+10*1000
		h.refuse(c, ErrTempExpired)
	}
}

func TestMaxMembersFromCommand(t *testing.T) {
	h := newHarness(t)
	h.refuse(&Command{Op: OpStart, App: "a", CID: "c0", From: "alice", Now: 1,
		Members: []string{"b", "c"}, MaxMembers: 2}, ErrConvFull)
	h.must(&Command{Op: OpStart, App: "a", CID: "c1", From: "alice", Now: 1, Members: []string{"b"}, MaxMembers: 2})
	r := h.must(&Command{Op: OpAdd, App: "a", CID: "c1", From: "alice", Now: 2, Members: []string{"c"}, MaxMembers: 2})
	if len(r.Failed) != 1 || r.Failed[0].Err != ErrConvFull {
		t.Fatalf("add past the cap: got failed %v, want c with ErrConvFull", r.Failed)
	}
	// Without a cap in the command, MaxMembers applies.
	r = h.must(&Command{Op: OpAdd, App: "a", CID: "c1", From: "alice", Now: 3, Members: []string{"c"}})
	if len(r.Failed) != 0 || len(r.Conv.Members) != 3 {
		t.Fatalf("add under the default cap: got failed %v members %v", r.Failed, r.Conv.Members)
	}
}
