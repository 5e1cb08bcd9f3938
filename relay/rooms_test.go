package relay

import (
	"slices"
	"testing"
	"time"
)

// TestChatroomsMembership drives the in-memory membership through join,
// leave, one-room-per-key, CLOSE and the reconnect grace.
func TestChatroomsMembership(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	a := Member{"app", "alice", ""}
	b := Member{"app", "bob", "web"}
	c1, c2, c3 := ConnKey{"e1", 1}, ConnKey{"e1", 2}, ConnKey{"e2", 3}
	type step struct {
		name string
		do   func(rs *chatrooms)
		// want: online count of r1, r2 and whether alice@c1 is in r1.
		r1, r2 int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"join and quit", []step{
			{"alice joins r1", func(rs *chatrooms) { rs.join(a, c1, "r1", t0) }, 1, 0},
			{"bob joins r1", func(rs *chatrooms) { rs.join(b, c2, "r1", t0) }, 2, 0},
			{"join twice", func(rs *chatrooms) { rs.join(a, c1, "r1", t0) }, 2, 0},
			{"alice quits", func(rs *chatrooms) { rs.leave(a, "r1") }, 1, 0},
			{"quit elsewhere is a no-op", func(rs *chatrooms) { rs.leave(b, "r2") }, 1, 0},
		}},
		{"one room per session", []step{
			{"alice joins r1", func(rs *chatrooms) { rs.join(a, c1, "r1", t0) }, 1, 0},
			{"alice joins r2", func(rs *chatrooms) {
				if prev := rs.join(a, c1, "r2", t0); prev != "r1" {
					t.Errorf("prev: got %q, want r1", prev)
				}
			}, 0, 1},
		}},
		{"close then reconnect within grace", []step{
			{"alice joins r1", func(rs *chatrooms) { rs.join(a, c1, "r1", t0) }, 1, 0},
			{"alice's session ends", func(rs *chatrooms) { rs.closeSession("app", "alice", c1, t0) }, 0, 0},
			{"close twice", func(rs *chatrooms) { rs.closeSession("app", "alice", c1, t0) }, 0, 0},
			{"reopen after 29 min", func(rs *chatrooms) {
				if cid := rs.open(a, c3, false, t0.Add(29*time.Minute)); cid != "r1" {
					t.Errorf("open: got %q, want r1", cid)
				}
				if !rs.joined("app", "alice", c3, "r1") {
					t.Error("the new session is not in r1")
				}
			}, 1, 0},
			{"a sweep later keeps the bound membership", func(rs *chatrooms) { rs.closeSession("app", "x", c2, t0.Add(2*RoomGrace)) }, 1, 0},
		}},
		{"grace expires", []step{
			{"alice joins r1", func(rs *chatrooms) { rs.join(a, c1, "r1", t0) }, 1, 0},
			{"alice's session ends", func(rs *chatrooms) { rs.closeSession("app", "alice", c1, t0) }, 0, 0},
			{"reopen after 30 min", func(rs *chatrooms) {
				if cid := rs.open(a, c3, false, t0.Add(RoomGrace)); cid != "" {
					t.Errorf("open: got %q, want none", cid)
				}
				if n := rs.size(); n != 0 {
					t.Errorf("memberships: got %d, want 0", n)
				}
			}, 0, 0},
		}},
		{"a parallel session does not join, a reconnect does", []step{
			{"alice joins r1", func(rs *chatrooms) { rs.join(a, c1, "r1", t0) }, 1, 0},
			{"second device opens", func(rs *chatrooms) {
				if cid := rs.open(a, c2, false, t0); cid != "" || rs.joined("app", "alice", c2, "r1") {
					t.Errorf("open: got %q, want none", cid)
				}
			}, 1, 0},
			{"reconnect opens", func(rs *chatrooms) { rs.open(a, c3, true, t0) }, 1, 0},
			{"old session ends: still online", func(rs *chatrooms) { rs.closeSession("app", "alice", c1, t0) }, 1, 0},
		}},
		{"edge goes away", []step{
			{"alice joins r1 on e1", func(rs *chatrooms) { rs.join(a, c1, "r1", t0) }, 1, 0},
			{"bob joins r1 on e2", func(rs *chatrooms) { rs.join(b, c3, "r1", t0) }, 2, 0},
			{"e1 detaches", func(rs *chatrooms) { rs.dropEdge("e1", t0) }, 1, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := &chatrooms{}
			for _, s := range tt.steps {
				s.do(rs)
				if got1, got2 := rs.count("app", "r1"), rs.count("app", "r2"); got1 != s.r1 || got2 != s.r2 {
					t.Fatalf("%s: count got r1=%d r2=%d, want r1=%d r2=%d", s.name, got1, got2, s.r1, s.r2)
				}
			}
		})
	}
}

func TestChatroomsTargets(t *testing.T) {
	rs := &chatrooms{}
	now := time.UnixMilli(1)
	rs.join(Member{"app", "alice", ""}, ConnKey{"e1", 1}, "r", now)
	rs.join(Member{"app", "bob", ""}, ConnKey{"e1", 2}, "r", now)
	rs.join(Member{"app", "carol", ""}, ConnKey{"e2", 3}, "r", now)
	rs.join(Member{"other", "dave", ""}, ConnKey{"e2", 4}, "r", now)
	got := rs.targets("app", "r", "alice", nil)
	if len(got["e1"]) != 1 || got["e1"][0].PeerId != "bob" || len(got["e2"]) != 1 || got["e2"][0].PeerId != "carol" {
		t.Fatalf("targets: got %v, want bob on e1 and carol on e2", got)
	}
	if m := rs.online("app", "r", 2); !slices.Equal(m, []string{"alice", "bob"}) {
		t.Fatalf("online: got %v, want [alice bob]", m)
	}
}
