package core

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

func TestLimitsDefaults(t *testing.T) {
	got := Limits{}.withDefaults()
	want := Limits{MaxMembers: shard.MaxMembers, MaxOfflinePerConv: 100, MaxUnreadConvs: 50,
		MaxQueryScan: DefaultMaxQueryScan, QueryScanPerSecond: DefaultQueryScanPerSecond}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestLimitMaxMembers(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Limits.MaxMembers = 3 })
	a := e.client("alice")
	a.open("", false, 0)
	wantError(t, a.do(convCmd(lcpb.OpType_start, &lcpb.ConvCommand{M: []string{"b", "c", "d"}})), lcpb.ErrConversationFull)
	cid := mustOK(t, a.start([]string{"b"}, "", false)).ConvMessage.GetCid()
	g := mustOK(t, a.do(convCmd(lcpb.OpType_add, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{"c", "d"}})))
	f := g.ConvMessage.GetFailedPids()
	if fmt.Sprint(g.ConvMessage.GetAllowedPids()) != "[c]" || len(f) != 1 || f[0].GetCode() != lcpb.ErrConversationFull || fmt.Sprint(f[0].GetPids()) != "[d]" {
		t.Fatalf("add past the cap: got allowed %v failed %v, want [c] and d with 4304", g.ConvMessage.GetAllowedPids(), f)
	}
}

func TestLimitOfflinePerConv(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.Limits.MaxOfflinePerConv = 5 })
	a, b := e.client("alice"), e.client("bob")
	b.ver = 1
	a.open("", false, 0)
	cid := a.start([]string{"bob"}, "", false).ConvMessage.GetCid()
	var ids []string
	for i := 0; i < 12; i++ {
		ids = append(ids, mustOK(t, a.sendText(cid, fmt.Sprint(i))).AckMessage.GetUid())
	}
	rep := decodeAll(t, b.open("", false, 0))
	if len(rep) != 5 {
		t.Fatalf("offline pushes: got %d, want 5", len(rep))
	}
	for i, g := range rep { // the newest 5, oldest first
		if got, want := g.GetDirectMessage().GetId(), ids[7+i]; got != want {
			t.Fatalf("offline %d: got %s, want %s", i, got, want)
		}
	}
	if !rep[4].DirectMessage.GetHasMore() {
		t.Fatal("older messages left in history, but no hasMore")
	}
	// The older ones stay in history.
	if logs := a.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)}); len(logs) != 12 {
		t.Fatalf("history: got %d, want 12", len(logs))
	}
}

func TestLimitUnreadConvs(t *testing.T) {
	for _, ver := range []int32{1, 3} {
		t.Run(fmt.Sprintf("v%d", ver), func(t *testing.T) {
			e := newEnvWith(t, func(c *Config) { c.Limits.MaxUnreadConvs = 3 })
			a, b := e.client("alice"), e.client("bob")
			b.ver = ver
			a.open("", false, 0)
			var cids []string
			for i := 0; i < 5; i++ {
				cids = append(cids, a.start([]string{"bob"}, "", false).ConvMessage.GetCid())
			}
			// Activity order: 4, 0, 2, 1, 3 — the newest three are 3, 1, 2.
			for _, i := range []int{4, 0, 2, 1, 3} {
				mustOK(t, a.sendText(cids[i], "x"))
			}
			got := map[string]bool{}
			for _, g := range decodeAll(t, b.open("", false, 0)) {
				if ver == 1 {
					got[g.GetDirectMessage().GetCid()] = true
				} else {
					for _, u := range g.GetUnreadMessage().GetConvs() {
						got[u.GetCid()] = true
					}
				}
			}
			if len(got) != 3 || !got[cids[3]] || !got[cids[1]] || !got[cids[2]] {
				t.Fatalf("notified: got %v, want %s %s %s", got, cids[3], cids[1], cids[2])
			}
		})
	}
}
