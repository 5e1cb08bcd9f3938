package catalog_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/relaymesh/relaymesh/catalog"
)

var (
	s10 = catalog.ShardRef{Region: 1, Shard: 0}
	s11 = catalog.ShardRef{Region: 1, Shard: 1}
	s20 = catalog.ShardRef{Region: 2, Shard: 0}
)

func entries(t *testing.T, h *harness, app, client string) map[catalog.ShardRef]uint64 {
	t.Helper()
	es, err := catalog.MemberEntries(h.db, app, client)
	if err != nil {
		t.Fatal(err)
	}
	m := map[catalog.ShardRef]uint64{}
	for _, e := range es {
		if e.Count == 0 {
			t.Fatalf("entry of %s/%s on %s has count 0", app, client, e.Shard)
		}
		m[e.Shard] = e.Count
	}
	return m
}

func TestCatalogMemberDelta(t *testing.T) {
	h := newHarness(t)
	h.topo()
	d := func(shard catalog.ShardRef, idx uint64, adds, removes []string) *catalog.Result {
		return h.ok(&catalog.MemberDelta{App: "app", Shard: shard, Index: idx, Adds: adds, Removes: removes})
	}
	d(s20, 5, []string{"alice", "bob"}, nil)
	d(s10, 3, []string{"alice", "alice"}, nil) // one entry adding alice to two conversations
	d(s11, 9, []string{"alice"}, nil)
	got, err := catalog.MemberShards(h.db, "app", "alice")
	if err != nil || !slices.Equal(got, []catalog.ShardRef{s10, s11, s20}) {
		t.Fatalf("MemberShards(alice) = %v, %v; want [1/0 1/1 2/0]", got, err)
	}
	if e := entries(t, h, "app", "alice"); e[s10] != 2 || e[s11] != 1 || e[s20] != 1 {
		t.Fatalf("alice's counts: %v", e)
	}
	// A resent delta, or an older one, is ignored.
	if r := d(s10, 3, []string{"alice"}, nil); r.Changed {
		t.Fatalf("resent delta changed something: %+v", r)
	}
	d(s10, 2, nil, []string{"alice", "alice"})
	if e := entries(t, h, "app", "alice"); e[s10] != 2 {
		t.Fatalf("alice on 1/0 after stale deltas: %d, want 2", e[s10])
	}
	// Newer: one conversation left; then more removes than there are.
	d(s10, 4, nil, []string{"alice"})
	if e := entries(t, h, "app", "alice"); e[s10] != 1 {
		t.Fatalf("alice on 1/0: %d, want 1", e[s10])
	}
	d(s10, 6, nil, []string{"alice", "alice", "alice"})
	if e := entries(t, h, "app", "alice"); len(e) != 2 || e[s10] != 0 {
		t.Fatalf("alice after leaving 1/0: %v, want no 1/0 entry", e)
	}
	// Removing someone absent changes nothing and stores nothing.
	before := h.dump()
	if r := d(s10, 7, nil, []string{"carol"}); r.Changed {
		t.Fatalf("removing an absent client: %+v", r)
	}
	after := h.dump()
	delete(before, "\xffraftstore/applied")
	delete(after, "\xffraftstore/applied")
	if len(before) != len(after) {
		t.Fatalf("removing an absent client wrote %d keys", len(after)-len(before))
	}
	// Add and remove in one delta cancel out.
	d(s10, 8, []string{"dave"}, []string{"dave"})
	if got, _ := catalog.MemberShards(h.db, "app", "dave"); len(got) != 0 {
		t.Fatalf("dave: %v", got)
	}
	// Apps are apart.
	if got, _ := catalog.MemberShards(h.db, "other", "alice"); len(got) != 0 {
		t.Fatalf("alice in another app: %v", got)
	}
	// Refusals.
	h.refused(&catalog.MemberDelta{App: "app", Shard: catalog.ShardRef{Region: 1, Shard: 7}, Index: 10, Adds: []string{"a"}}, catalog.ErrNotFound)
	h.refused(&catalog.MemberDelta{App: "app", Shard: s10, Index: 0, Adds: []string{"a"}}, catalog.ErrInvalid)
	h.refused(&catalog.MemberDelta{App: "", Shard: s10, Index: 10, Adds: []string{"a"}}, catalog.ErrInvalid)
	h.refused(&catalog.MemberDelta{App: "app", Shard: s10, Index: 10, Adds: []string{""}}, catalog.ErrInvalid)
	h.refused(&catalog.MemberDelta{App: "app", Shard: s10, Index: 10, Removes: []string{strings.Repeat("x", catalog.MaxClientIDLen+1)}}, catalog.ErrTooLong)
	many := make([]string, catalog.MaxDeltaClients/2+1)
	for i := range many {
		many[i] = fmt.Sprint("c", i)
	}
	h.refused(&catalog.MemberDelta{App: "app", Shard: s10, Index: 10, Adds: many, Removes: many}, catalog.ErrTooMany)
	d(s10, 10, many, many[:len(many)-2]) // MaxDeltaClients - 1 is fine
	d(s10, 11, []string{strings.Repeat("é", catalog.MaxClientIDLen/2)}, nil)
}

// TestCatalogMemberIndexModel plays the part of several shards: each
// keeps its conversations' members, commits random joins and leaves at
// increasing raft indexes and sends each change as a MemberDelta, and now
// and then resends a suffix of what it sent (a sender that lost its
// acknowledgements). The member index must end up naming, for every
// client, exactly the shards where it is in at least one conversation,
// with that many conversations as its count.
func TestCatalogMemberIndexModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	h := newHarness(t)
	h.topo()
	shards := []catalog.ShardRef{s10, s11, s20}
	type shardModel struct {
		convs map[int]map[string]bool // conversation → members
		index uint64
		log   []catalog.MemberDelta
	}
	models := make([]*shardModel, len(shards))
	for i := range models {
		models[i] = &shardModel{convs: map[int]map[string]bool{}, index: uint64(rng.IntN(100))}
	}
	clients := []string{"c0", "c1", "c2", "c3", "c4", "c5"}
	for range 3000 {
		si := rng.IntN(len(shards))
		m := models[si]
		if rng.IntN(20) == 0 && len(m.log) > 0 { // resend a suffix
			from := rng.IntN(len(m.log))
			for _, d := range m.log[from:] {
				h.ok(&d)
			}
			continue
		}
		m.index += uint64(1 + rng.IntN(3)) // other entries in between
		d := catalog.MemberDelta{App: "app", Shard: shards[si], Index: m.index}
		for range 1 + rng.IntN(3) { // a batch entry: several conversations
			conv := rng.IntN(4)
			if m.convs[conv] == nil {
				m.convs[conv] = map[string]bool{}
			}
			for range 1 + rng.IntN(3) {
				c := clients[rng.IntN(len(clients))]
				switch in := m.convs[conv][c]; {
				case !in && rng.IntN(2) == 0:
					m.convs[conv][c] = true
					d.Adds = append(d.Adds, c)
				case in && rng.IntN(2) == 0:
					delete(m.convs[conv], c)
					d.Removes = append(d.Removes, c)
				}
			}
		}
		if len(d.Adds)+len(d.Removes) == 0 {
			continue
		}
		m.log = append(m.log, d)
		h.ok(&d)
	}
	for _, c := range clients {
		want := map[catalog.ShardRef]uint64{}
		for si, m := range models {
			for _, members := range m.convs {
				if members[c] {
					want[shards[si]]++
				}
			}
		}
		got := entries(t, h, "app", c)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("client %s: index %v, want %v", c, got, want)
		}
	}
}

func TestUniqueHash(t *testing.T) {
	h := catalog.UniqueHash([]string{"b", "a", "c"})
	if len(h) != catalog.UniqueHashLen || strings.ToLower(h) != h {
		t.Fatalf("hash %q: want 64 lowercase hex", h)
	}
	for _, same := range [][]string{{"a", "b", "c"}, {"c", "b", "a"}, {"a", "a", "b", "c", "c"}, {"a", "", "b", "c"}} {
		if got := catalog.UniqueHash(same); got != h {
			t.Errorf("UniqueHash(%q) = %s, want %s", same, got, h)
		}
	}
	for _, pair := range [][2][]string{
		{{"a:b"}, {"a", "b"}},
		{{"ab"}, {"a", "b"}},
		{{"a\x00b"}, {"a", "b"}},
		{{"a", "bc"}, {"ab", "c"}},
		{{"\x01a"}, {"a", "a"}},
	} {
		if a, b := catalog.UniqueHash(pair[0]), catalog.UniqueHash(pair[1]); a == b && !slices.Equal(pair[0], pair[1]) {
			t.Errorf("UniqueHash(%q) == UniqueHash(%q)", pair[0], pair[1])
		}
	}
	if catalog.UniqueHash(nil) != catalog.UniqueHash([]string{""}) {
		t.Errorf("empty members are dropped, so [] and [\"\"] should name the same set")
	}
}

func TestCatalogUnique(t *testing.T) {
	h := newHarness(t)
	hash := catalog.UniqueHash([]string{"alice", "bob"})
	cidA, _ := catalog.NewConvID(1, 0)
	cidB, _ := catalog.NewConvID(2, 0)
	if r := h.ok(&catalog.ClaimUnique{App: "app", Hash: hash, Cid: cidA}); !r.Won || r.Cid != cidA {
		t.Fatalf("first claim: %+v", r)
	}
	if r := h.ok(&catalog.ClaimUnique{App: "app", Hash: hash, Cid: cidB}); r.Won || r.Cid != cidA {
		t.Fatalf("second claim: %+v, want the first cid", r)
	}
	if r := h.ok(&catalog.ClaimUnique{App: "app", Hash: hash, Cid: cidA}); !r.Won || r.Cid != cidA {
		t.Fatalf("the winner claiming again: %+v", r)
	}
	if r := h.ok(&catalog.ClaimUnique{App: "other", Hash: hash, Cid: cidB}); !r.Won {
		t.Fatalf("other app: %+v", r)
	}
	if r := h.ok(&catalog.ReleaseUnique{App: "app", Hash: hash, Cid: cidB}); r.Changed {
		t.Fatalf("release by the loser: %+v", r)
	}
	if c, ok, _ := catalog.UniqueCid(h.db, "app", hash); !ok || c != cidA {
		t.Fatalf("after the loser's release: %q %v", c, ok)
	}
	if r := h.ok(&catalog.ReleaseUnique{App: "app", Hash: hash, Cid: cidA}); !r.Changed {
		t.Fatalf("release by the winner: %+v", r)
	}
	if _, ok, _ := catalog.UniqueCid(h.db, "app", hash); ok {
		t.Fatal("still claimed after release")
	}
	if r := h.ok(&catalog.ClaimUnique{App: "app", Hash: hash, Cid: cidB}); !r.Won {
		t.Fatalf("claim after release: %+v", r)
	}
	for _, c := range []catalog.ClaimUnique{
		{App: "app", Hash: hash[:63], Cid: cidA},
		{App: "app", Hash: strings.ToUpper(hash), Cid: cidA},
		{App: "app", Hash: hash + "0", Cid: cidA},
		{App: "app", Hash: hash, Cid: "_tmp:" + cidA},
		{App: "app", Hash: hash, Cid: strings.ToUpper(cidA)},
		{App: "app", Hash: hash, Cid: ""},
		{App: "a:b", Hash: hash, Cid: cidA},
	} {
		h.refused(&c, catalog.ErrInvalid)
		h.refused(&catalog.ReleaseUnique{App: c.App, Hash: c.Hash, Cid: c.Cid}, catalog.ErrInvalid)
	}
	h.refused(&catalog.ClaimUnique{App: strings.Repeat("a", catalog.MaxNameLen+1), Hash: hash, Cid: cidA}, catalog.ErrTooLong)
}

func TestCatalogImportAndLookup(t *testing.T) {
	h := newHarness(t)
	h.topo()
	lc := "5f6d0c1e8a3b2c0012345678"   // a LeanCloud ObjectId
	lc2 := "5f6d0c1e8a3b2c0012345679"  // another, not imported
	ours, _ := catalog.NewConvID(2, 0) // a pre-mesh id that parses as ours
	if r := h.ok(&catalog.ImportIDs{App: "app", Shard: s11, Cids: []string{lc, lc}}); r.Added != 1 {
		t.Fatalf("import: %+v, want 1 added", r)
	}
	h.ok(&catalog.ImportIDs{App: "app", Shard: s10, Cids: []string{ours}})
	for _, tc := range []struct {
		app, cid string
		want     catalog.ShardRef
		known    bool
	}{
		{"app", lc, s11, true},
		{"app", catalog.TempPrefix + lc, s11, true},
		{"app", ours, s10, true}, // the imported entry wins over the id
		{"other", ours, s20, true},
		{"other", lc, catalog.LegacyShard, false},
		{"app", lc2, catalog.LegacyShard, false},
		{"app", "not-an-id", catalog.LegacyShard, false},
		{"app", "", catalog.LegacyShard, false},
	} {
		got, known, err := catalog.Lookup(h.db, tc.app, tc.cid)
		if err != nil || got != tc.want || known != tc.known {
			t.Errorf("Lookup(%s, %q) = %v, %v, %v; want %v, %v", tc.app, tc.cid, got, known, err, tc.want, tc.known)
		}
	}
	fresh, _ := catalog.NewConvID(1, 1)
	if got, known, _ := catalog.Lookup(h.db, "app", catalog.TempPrefix+fresh); got != s11 || !known {
		t.Errorf("Lookup of a temporary id: %v %v", got, known)
	}
	// Idempotent on the same shard; a conflict refuses the whole command.
	if r := h.ok(&catalog.ImportIDs{App: "app", Shard: s11, Cids: []string{lc}}); r.Added != 0 {
		t.Fatalf("re-import: %+v", r)
	}
	h.refused(&catalog.ImportIDs{App: "app", Shard: s20, Cids: []string{lc2, lc}}, catalog.ErrConflict)
	if _, ok, _ := catalog.Imported(h.db, "app", lc2); ok {
		t.Fatal("a refused import registered an id")
	}
	// Malformed ids refuse the whole command.
	for _, bad := range []string{"", "5F6D0C1E8A3B2C0012345678", lc[:23], lc + "0", catalog.TempPrefix + lc, "zz6d0c1e8a3b2c0012345678", strings.Repeat("a", 1<<16)} {
		h.refused(&catalog.ImportIDs{App: "app", Shard: s11, Cids: []string{lc2, bad}}, catalog.ErrInvalid)
	}
	h.refused(&catalog.ImportIDs{App: "app", Shard: catalog.ShardRef{Region: 9}, Cids: []string{lc2}}, catalog.ErrNotFound)
	// MaxImportIDs per command.
	ids := make([]string, catalog.MaxImportIDs+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("5f6d0c1e8a3b2c%010x", i)
	}
	h.refused(&catalog.ImportIDs{App: "app", Shard: s11, Cids: ids}, catalog.ErrTooMany)
	if r := h.ok(&catalog.ImportIDs{App: "app", Shard: s20, Cids: ids[1:]}); r.Added != catalog.MaxImportIDs {
		t.Fatalf("import of %d: %+v", catalog.MaxImportIDs, r)
	}
}

func TestCatalogApps(t *testing.T) {
	h := newHarness(t)
	if r := h.ok(&catalog.PutApp{ID: "app-b", Settings: json.RawMessage(` { "key" : "k1" } `)}); r.Existing {
		t.Fatalf("new app: %+v", r)
	}
	h.ok(&catalog.PutApp{ID: "app-a", Settings: json.RawMessage(`{}`)})
	got, ok, err := catalog.GetApp(h.db, "app-b")
	if err != nil || !ok || string(got) != `{"key":"k1"}` {
		t.Fatalf("GetApp = %s %v %v; want the settings compacted", got, ok, err)
	}
	if r := h.ok(&catalog.PutApp{ID: "app-b", Settings: json.RawMessage(`{"key":"k2"}`), IfAbsent: true}); !r.Existing || r.Changed {
		t.Fatalf("IfAbsent: %+v", r)
	}
	h.ok(&catalog.PutApp{ID: "app-b", Settings: json.RawMessage(`{"key":"k3"}`)})
	if got, _, _ := catalog.GetApp(h.db, "app-b"); string(got) != `{"key":"k3"}` {
		t.Fatalf("after put: %s", got)
	}
	if ids, err := catalog.ListApps(h.db); err != nil || !slices.Equal(ids, []string{"app-a", "app-b"}) {
		t.Fatalf("ListApps = %v, %v", ids, err)
	}
	if r := h.ok(&catalog.DeleteApp{ID: "app-a"}); !r.Changed {
		t.Fatalf("delete: %+v", r)
	}
	if r := h.ok(&catalog.DeleteApp{ID: "app-a"}); r.Changed {
		t.Fatalf("delete twice: %+v", r)
	}
	if _, ok, _ := catalog.GetApp(h.db, "app-a"); ok {
		t.Fatal("deleted app still there")
	}
	// Bounds.
	big := `{"k":"` + strings.Repeat("x", catalog.MaxSettingsBytes-8) + `"}`
	h.ok(&catalog.PutApp{ID: "big", Settings: json.RawMessage(big)})
	h.refused(&catalog.PutApp{ID: "big", Settings: json.RawMessage(big[:len(big)-2] + `x"}`)}, catalog.ErrTooLong)
	for _, bad := range []string{`[]`, `"s"`, `1`, `null`, `true`} {
		h.refused(&catalog.PutApp{ID: "x", Settings: json.RawMessage(bad)}, catalog.ErrInvalid)
	}
	h.refused(&catalog.PutApp{ID: "", Settings: json.RawMessage(`{}`)}, catalog.ErrInvalid)
	h.refused(&catalog.PutApp{ID: "a:b", Settings: json.RawMessage(`{}`)}, catalog.ErrInvalid)
	h.refused(&catalog.PutApp{ID: "a\nb", Settings: json.RawMessage(`{}`)}, catalog.ErrInvalid)
	h.refused(&catalog.PutApp{ID: strings.Repeat("a", catalog.MaxNameLen+1), Settings: json.RawMessage(`{}`)}, catalog.ErrTooLong)
	h.refused(&catalog.DeleteApp{ID: "a:b"}, catalog.ErrInvalid)
}

func TestCatalogMaxApps(t *testing.T) {
	h := newHarness(t)
	for i := range catalog.MaxApps {
		h.ok(&catalog.PutApp{ID: fmt.Sprint("app", i), Settings: json.RawMessage(`{}`)})
	}
	h.refused(&catalog.PutApp{ID: "one-more", Settings: json.RawMessage(`{}`)}, catalog.ErrTooMany)
	h.ok(&catalog.PutApp{ID: "app0", Settings: json.RawMessage(`{"a":1}`)}) // replacing is fine
	h.ok(&catalog.DeleteApp{ID: "app1"})
	h.ok(&catalog.PutApp{ID: "one-more", Settings: json.RawMessage(`{}`)})
}

// TestCatalogMemberSet: absolute counts, ignored at or below the index of
// the entry's last change, in any order; Complete moves the shard's mark
// only up; bad input refused whole.
func TestCatalogMemberSet(t *testing.T) {
	h := newHarness(t)
	h.topo()
	set := func(idx uint64, complete bool, counts ...catalog.MemberCount) *catalog.Result {
		return h.ok(&catalog.MemberSet{Shard: s10, Index: idx, Counts: counts, Complete: complete})
	}
	mc := func(client string, n uint64) catalog.MemberCount {
		return catalog.MemberCount{App: "app", Client: client, Count: n}
	}
	set(10, true, mc("alice", 3), mc("bob", 1))
	if e := entries(t, h, "app", "alice"); e[s10] != 3 {
		t.Fatalf("alice: %v, want 3 on 1/0", e)
	}
	if m, err := catalog.MemberMark(h.db, s10); err != nil || m != 10 {
		t.Fatalf("mark: %d, %v; want 10", m, err)
	}
	// An older set (a resend, a deposed leader's) changes nothing, not even the mark.
	if r := set(7, true, mc("alice", 0), mc("bob", 5)); r.Changed {
		t.Fatalf("older set changed something: %+v", r)
	}
	if e := entries(t, h, "app", "bob"); e[s10] != 1 {
		t.Fatalf("bob after a stale set: %v", e)
	}
	if m, _ := catalog.MemberMark(h.db, s10); m != 10 {
		t.Fatalf("mark went back to %d", m)
	}
	// A delta after a set, then a set of 0 removes the entry.
	h.ok(&catalog.MemberDelta{App: "app", Shard: s10, Index: 11, Adds: []string{"bob"}})
	if e := entries(t, h, "app", "bob"); e[s10] != 2 {
		t.Fatalf("bob after a delta: %v, want 2", e)
	}
	set(12, false, mc("bob", 0))
	if e := entries(t, h, "app", "bob"); len(e) != 0 {
		t.Fatalf("bob after a set of 0: %v, want none", e)
	}
	if m, _ := catalog.MemberMark(h.db, s10); m != 10 {
		t.Fatalf("an incomplete set moved the mark to %d", m)
	}
	set(20, true)
	if m, _ := catalog.MemberMark(h.db, s10); m != 20 {
		t.Fatalf("mark: %d, want 20", m)
	}
	n := 0
	if err := catalog.MemberCounts(h.db, s10, func(app, client string, c uint64) { n++ }); err != nil || n != 1 {
		t.Fatalf("MemberCounts: %d entries, %v; want alice alone", n, err)
	}
	// Refusals.
	h.refused(&catalog.MemberSet{Shard: s10, Index: 0}, catalog.ErrInvalid)
	h.refused(&catalog.MemberSet{Shard: catalog.ShardRef{Region: 9, Shard: 9}, Index: 30}, catalog.ErrNotFound)
	h.refused(&catalog.MemberSet{Shard: s10, Index: 30, Counts: []catalog.MemberCount{mc("", 1)}}, catalog.ErrInvalid)
	h.refused(&catalog.MemberSet{Shard: s10, Index: 30, Counts: []catalog.MemberCount{{App: "a:b", Client: "x", Count: 1}}}, catalog.ErrInvalid)
	h.refused(&catalog.MemberSet{Shard: s10, Index: 30, Counts: make([]catalog.MemberCount, catalog.MaxDeltaClients+1)}, catalog.ErrTooMany)
	if m, _ := catalog.MemberMark(h.db, s10); m != 20 {
		t.Fatalf("a refused set moved the mark to %d", m)
	}
}
