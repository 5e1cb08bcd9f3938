package shard

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func sysHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.must(&Command{Op: OpSysStart, App: app, CID: "s1", From: "sys", Now: 1000, Admin: true})
	h.must(&Command{Op: OpSysStart, App: app, CID: "s2", From: "sys", Now: 1000, Admin: true})
	return h
}

func TestSubscriberRows(t *testing.T) {
	h := sysHarness(t)
	for i, p := range []string{"carol", "alice", "bob"} {
		h.must(&Command{Op: OpSubscribe, App: app, CID: "s1", From: p, Members: []string{p}, Now: int64(2000 + i)})
	}
	h.must(&Command{Op: OpSubscribe, App: app, CID: "s2", From: "alice", Members: []string{"alice"}, Now: 1500})
	rows, err := SubscriberRows(h.db, app, "s1", "", 2)
	if err != nil {
		t.Fatal(err)
	}
	// Key order: shorter ids first.
	want := []Subscription{{PID: "bob", CID: "s1", T: 2002}, {PID: "alice", CID: "s1", T: 2001}}
	if !slices.Equal(rows, want) {
		t.Errorf("first page: got %v, want %v", rows, want)
	}
	rows, _ = SubscriberRows(h.db, app, "s1", "alice", 2)
	if want := []Subscription{{PID: "carol", CID: "s1", T: 2000}}; !slices.Equal(rows, want) {
		t.Errorf("second page: got %v, want %v", rows, want)
	}
	subs, _ := ClientSubscriptions(h.db, app, "alice")
	if want := []Subscription{{PID: "alice", CID: "s1", T: 2001}, {PID: "alice", CID: "s2", T: 1500}}; !slices.Equal(subs, want) {
		t.Errorf("alice's subscriptions: got %v, want %v", subs, want)
	}
	// Subscribing again keeps the first time.
	h.must(&Command{Op: OpSubscribe, App: app, CID: "s1", From: "alice", Members: []string{"alice"}, Now: 9000})
	if t1, _, _ := SubscribedAt(h.db, app, "s1", "alice"); t1 != 2001 {
		t.Errorf("resubscribe: got time %d, want 2001", t1)
	}
}

func TestSysUserMessages(t *testing.T) {
	h := sysHarness(t)
	if _, err := h.apply(&Command{Op: OpSysSend, App: app, CID: "s1", From: "sys", Members: []string{"bob"}, MID: "m0", Data: "x", Now: 3000}); !errors.Is(err, ErrRoleTooLow) {
		t.Errorf("send without Admin: got %v, want ErrRoleTooLow", err)
	}
	h.must(&Command{Op: OpSysSend, App: app, CID: "s1", From: "sys", Members: []string{"bob", "carol"}, MID: "m1", Data: "one", Now: 3000, Admin: true})
	h.must(&Command{Op: OpSysSend, App: app, CID: "s2", From: "sys", Members: []string{"bob"}, MID: "m2", Data: "two", Now: 4000, Admin: true})
	h.must(&Command{Op: OpSysSend, App: app, CID: "s1", From: "sys", Members: []string{"bob"}, MID: "m3", Data: "three", Now: 5000, Admin: true})

	ids := func(ms []*Message) (out []string) {
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	got, err := UserMessages(h.db, app, "s1", "bob", 0, 0, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"m1", "m3"}; !slices.Equal(ids(got), want) {
		t.Errorf("bob in s1: got %v, want %v", ids(got), want)
	}
	if got[0].T != 3000 || got[0].Data != "one" || got[0].From != "sys" {
		t.Errorf("m1: got %+v", got[0])
	}
	due, _ := DueUserMessages(h.db, app, "bob", 3000, 0)
	if want := []string{"m2", "m3"}; !slices.Equal(ids(due), want) {
		t.Errorf("bob due after 3000: got %v, want %v", ids(due), want)
	}
	due, _ = DueUserMessages(h.db, app, "carol", 0, 0)
	if want := []string{"m1"}; !slices.Equal(ids(due), want) {
		t.Errorf("carol due: got %v, want %v", ids(due), want)
	}

	if _, err := h.apply(&Command{Op: OpSysUnsend, App: app, CID: "s1", Members: []string{"bob"}, MID: "m1", T: 3001, Now: 6000, Admin: true}); !errors.Is(err, ErrMsgNotFound) {
		t.Errorf("delete with the wrong timestamp: got %v, want ErrMsgNotFound", err)
	}
	h.must(&Command{Op: OpSysUnsend, App: app, CID: "s1", Members: []string{"bob"}, MID: "m1", T: 3000, Now: 6000, Admin: true})
	got, _ = UserMessages(h.db, app, "s1", "bob", 0, 0, 0, true)
	if want := []string{"m3"}; !slices.Equal(ids(got), want) {
		t.Errorf("bob in s1 after delete: got %v, want %v", ids(got), want)
	}
	due, _ = DueUserMessages(h.db, app, "bob", 0, 0)
	if want := []string{"m2", "m3"}; !slices.Equal(ids(due), want) {
		t.Errorf("bob due after delete: got %v, want %v", ids(due), want)
	}
	if has, _ := HasUserMessages(h.db, app, "carol"); !has {
		t.Error("carol has messages: got false")
	}
	if has, _ := HasUserMessages(h.db, app, "dave"); has {
		t.Error("dave has messages: got true")
	}
}

func TestSysUnbroadcast(t *testing.T) {
	h := sysHarness(t)
	h.must(&Command{Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "b1", Data: "one", Now: 2000, ValidTill: 10000, Admin: true, Global: true})
	h.must(&Command{Op: OpSysBcast, App: app, CID: "s2", From: "sys", MID: "b2", Data: "two", Now: 3000, ValidTill: 10000, Admin: true, Global: true})
	h.must(&Command{Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "b3", Data: "old", Now: 4000, ValidTill: 4500, Admin: true, Global: true})

	rows, err := ValidBroadcasts(h.db, app, "", 5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].MID != "b2" || rows[0].CID != "s2" || rows[1].MID != "b1" {
		t.Errorf("valid broadcasts: got %+v, want b2 then b1", rows)
	}
	if rows, _ := ValidBroadcasts(h.db, app, "s1", 4000); len(rows) != 2 || rows[0].MID != "b3" {
		t.Errorf("valid broadcasts of s1 at 4000: got %+v, want b3, b1", rows)
	}

	if _, err := h.apply(&Command{Op: OpSysUnbroadcast, App: app, MID: "nope", Now: 5000, Admin: true}); !errors.Is(err, ErrMsgNotFound) {
		t.Errorf("unknown broadcast: got %v, want ErrMsgNotFound", err)
	}
	h.must(&Command{Op: OpSysUnbroadcast, App: app, MID: "b1", Now: 5000, Admin: true})
	if bs, _ := Broadcasts(h.db, app, "s1", 0, 3000, 0); len(bs) != 1 || bs[0].MID != "b3" {
		t.Errorf("s1's broadcasts after deleting b1: got %+v, want b3 only", bs)
	}
	if m, _ := GetMessage(h.db, app, "s1", "b1"); m == nil {
		t.Error("the deleted broadcast's history row: got none, want it kept")
	}
	if g, ok, _ := LatestGlobalBroadcast(h.db, app, 5000); !ok || g.CID != "s2" || g.MID != "b2" {
		t.Errorf("latest: got %v %+v, want s2 b2", ok, g)
	}
	if gs, _ := GlobalBroadcasts(h.db, app, 0, 3500, 0); len(gs) != 2 || gs[0].MID != "b2" || gs[1].MID != "b3" {
		t.Errorf("global broadcasts valid at 3500 after deleting b1: got %+v, want b2, b3", gs)
	}
	h.must(&Command{Op: OpSysUnbroadcast, App: app, CID: "s2", MID: "b2", Now: 5000, Admin: true})
	if g, ok, _ := LatestGlobalBroadcast(h.db, app, 5000); ok {
		t.Errorf("latest after deleting all valid ones: got %+v, want none", g)
	}
}

// TestGlobalBroadcasts: only global broadcasts are indexed for every user,
// oldest first after a time, expired ones left out; a transient broadcast
// counts against the day's limit but is not stored.
func TestGlobalBroadcasts(t *testing.T) {
	h := sysHarness(t)
	h.must(&Command{Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "sub", Data: "subscribers only", Now: 1000, ValidTill: 10000, Admin: true})
	h.must(&Command{Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "g1", Data: "all", Now: 2000, ValidTill: 10000, Admin: true, Global: true})
	h.must(&Command{Op: OpSysBcast, App: app, CID: "s2", From: "sys", MID: "g2", Data: "all, short", Now: 3000, ValidTill: 3500, Admin: true, Global: true})
	h.must(&Command{Op: OpSysBcast, App: app, CID: "s2", From: "sys", MID: "g3", Data: "all again", Now: 4000, ValidTill: 10000, Admin: true, Global: true})
	tr := h.must(&Command{Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "t1", Data: "typing", Now: 4100, ValidTill: 10000,
		Admin: true, Global: true, Transient: true, DayLimit: 5})
	if tr.Message == nil || tr.Message.T != 4100 {
		t.Errorf("transient broadcast: got %+v, want a message at 4100", tr.Message)
	}
	ids := func(gs []GlobalBroadcast) (out []string) {
		for _, g := range gs {
			out = append(out, g.CID+"/"+g.MID)
		}
		return out
	}
	for _, tc := range []struct {
		after, now int64
		want       string
	}{
		{0, 2500, "[s1/g1 s2/g2 s2/g3]"},
		{0, 3600, "[s1/g1 s2/g3]"},
		{2000, 3600, "[s2/g3]"},
		{4000, 3600, "[]"},
	} {
		gs, err := GlobalBroadcasts(h.db, app, tc.after, tc.now, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(ids(gs)); got != tc.want {
			t.Errorf("after %d valid at %d: got %s, want %s", tc.after, tc.now, got, tc.want)
		}
	}
	if gs, _ := GlobalBroadcasts(h.db, app, 0, 2500, 2); len(gs) != 2 {
		t.Errorf("limit 2: got %d", len(gs))
	}
	if g, ok, _ := LatestGlobalBroadcast(h.db, app, 3600); !ok || g.MID != "g3" {
		t.Errorf("latest: got %+v, want g3", g)
	}
	if m, _ := GetMessage(h.db, app, "s1", "t1"); m != nil {
		t.Errorf("transient broadcast stored: %+v", m)
	}
	// Four broadcasts and the transient one made five today: the sixth is refused.
	if _, err := h.apply(&Command{Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "x", Data: "x", Now: 5000, ValidTill: 10000,
		Admin: true, Global: true, DayLimit: 5}); !errors.Is(err, ErrBroadcastQuota) {
		t.Errorf("sixth broadcast of the day: got %v, want ErrBroadcastQuota", err)
	}
}
