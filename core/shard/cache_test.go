package shard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble"
)

// randomCommands returns a random but valid-looking command sequence over a
// few conversations and clients, with the strings JSON normalises (invalid
// UTF-8, HTML characters) in ids, attributes and message bodies.
func randomCommands(rng *rand.Rand, n int) []*Command {
	pids := []string{"a", "b", "c", "d", "e\xff", "<f>"}
	cids := []string{"c1", "c2", "c3"}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	some := func() []string {
		var out []string
		for range 1 + rng.IntN(3) {
			out = append(out, pick(pids))
		}
		return out
	}
	var out []*Command
	mid := 0
	for i := range n {
		now := int64(1000 + i*rng.IntN(3)) // repeats and stalls: t must still grow
		c := &Command{App: app, CID: pick(cids), From: pick(pids), Now: now}
		switch rng.IntN(17) {
		case 0:
			c.Op, c.Members = OpStart, some()
			c.Attr = json.RawMessage(`{ "name": "<x>\u00e9", "n": 1 }`)
		case 1:
			c.Op, c.Members = OpAdd, some()
		case 2:
			c.Op, c.Members = OpRemove, some()
		case 3:
			c.Op, c.Update = OpUpdate, json.RawMessage(fmt.Sprintf(`{"k":%d, "s":"<&>`+"\xff"+`"}`, i))
		case 4:
			c.Op, c.Mute = OpMute, rng.IntN(2) == 0
		case 5, 6, 7, 8:
			mid++
			c.Op, c.MID, c.Data, c.Receipt = OpAppend, fmt.Sprintf("m%d", mid), fmt.Sprintf("<%d>\xfe", i), rng.IntN(2) == 0
			if rng.IntN(3) == 0 {
				c.DT = fmt.Sprintf("dt%d", rng.IntN(5))
			}
		case 9:
			c.Op, c.Patches = OpPatch, []Patch{{CID: c.CID, MID: fmt.Sprintf("m%d", 1+rng.IntN(mid+1)), Data: "edited\xff", Recall: rng.IntN(2) == 0}}
		case 10:
			c.Op, c.T = OpAck, now
		case 11:
			c.Op = OpRead
		case 12:
			c.Op, c.Members, c.Role = OpRole, []string{pick(pids)}, pick([]string{RoleManager, RoleMember})
		case 13:
			c.Op, c.Members, c.Mute = OpShutup, some(), rng.IntN(2) == 0
		case 14:
			c.Op, c.Members, c.Mute = OpBlock, some(), rng.IntN(3) == 0
		case 15:
			mid++
			c.Op, c.MID, c.Data, c.Edge, c.Conn = OpWill, fmt.Sprintf("m%d", mid), "will", "e", 1
			if rng.IntN(2) == 0 {
				c.Op, c.Fire = OpEndWills, true
			}
		case 16:
			c.Op, c.MID, c.Admin = OpDelMsg, fmt.Sprintf("m%d", 1+rng.IntN(mid+1)), true
		}
		out = append(out, c)
	}
	return out
}

// TestCacheMatchesState applies random commands, several per batch as
// raftstore does, through an FSM with its cache and through one whose
// cache is emptied before every command. Both must return the same results
// and leave the same state, and every cached conversation must equal what
// GetConv decodes from the committed state.
func TestCacheMatchesState(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			hot, cold := newHarness(t), newHarness(t)
			cmds := randomCommands(rng, 400)
			for len(cmds) > 0 {
				n := min(len(cmds), 1+rng.IntN(8))
				var batch []*Command
				batch, cmds = cmds[:n], cmds[n:]
				if rng.IntN(4) == 0 { // also as one batch command
					batch = []*Command{{Op: OpBatch, Batch: batch}}
				}
				rh := applyBatch(t, hot, batch, false)
				rc := applyBatch(t, cold, batch, true)
				if !reflect.DeepEqual(rh, rc) {
					t.Fatalf("results differ:\n cached %s\n   cold %s", dump(rh), dump(rc))
				}
				if !sameState(t, hot.db, cold.db) {
					t.Fatal("state differs between cached and cold FSM")
				}
				checkCache(t, hot)
			}
			if hot.fsm.cache.len() == 0 {
				t.Fatal("nothing was cached")
			}
		})
	}
}

// applyBatch applies cmds to one indexed batch and commits it; cold resets
// the cache before each command.
func applyBatch(t *testing.T, h *harness, cmds []*Command, cold bool) []any {
	t.Helper()
	b := h.db.NewIndexedBatch()
	var out []any
	for _, c := range cmds {
		enc, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if cold {
			h.fsm.Reset()
		}
		h.idx++
		out = append(out, h.fsm.Apply(b, h.idx, enc))
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	return out
}

func dump(v any) string { b, _ := json.Marshal(v); return string(b) }

func sameState(t *testing.T, a, b *pebble.DB) bool {
	t.Helper()
	kv := func(db *pebble.DB) [][2][]byte {
		it, err := db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		var out [][2][]byte
		for ok := it.First(); ok; ok = it.Next() {
			out = append(out, [2][]byte{append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)})
		}
		return out
	}
	ka, kb := kv(a), kv(b)
	if len(ka) != len(kb) {
		return false
	}
	for i := range ka {
		if !bytes.Equal(ka[i][0], kb[i][0]) || !bytes.Equal(ka[i][1], kb[i][1]) {
			t.Logf("key %q: %q vs %q", ka[i][0], ka[i][1], kb[i][1])
			return false
		}
	}
	return true
}

// checkCache compares every cached conversation with the committed state.
func checkCache(t *testing.T, h *harness) {
	t.Helper()
	h.fsm.cache.mu.RLock()
	defer h.fsm.cache.mu.RUnlock()
	for k, v := range h.fsm.cache.m {
		got, err := GetConv(h.db, k.app, k.cid)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("cache of %s: got %+v, state has %+v", k.cid, v, got)
		}
	}
}

func TestCacheReset(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m1", Now: 2})
	if v, _ := h.fsm.Conv(h.db, app, "c"); v == nil || v.LastMID != "m1" {
		t.Fatalf("Conv before restore: got %+v", v)
	}
	// A restore replaces the state behind the FSM: here, with another
	// store's conversation of the same id.
	other := newHarness(t)
	other.must(&Command{Op: OpStart, App: app, CID: "c", From: "x", Members: []string{"y"}, Now: 1})
	b := h.db.NewBatch()
	if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
		t.Fatal(err)
	}
	it, _ := other.db.NewIter(nil)
	for ok := it.First(); ok; ok = it.Next() {
		if err := b.Set(it.Key(), it.Value(), nil); err != nil {
			t.Fatal(err)
		}
	}
	it.Close()
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	h.fsm.Reset()
	v, err := h.fsm.Conv(h.db, app, "c")
	if err != nil || v == nil || v.Creator != "x" || v.LastMID != "" {
		t.Fatalf("Conv after Reset: got %+v, %v; want the restored conversation", v, err)
	}
	if _, err := h.apply(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m2", Now: 3}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("append by a member of the old state: got %v, want ErrNotMember", err)
	}
}

func TestCacheBounded(t *testing.T) {
	h := newHarness(t)
	for i := range MaxCachedConvs + 10 {
		h.must(&Command{Op: OpStart, App: app, CID: fmt.Sprint("c", i), From: "a", Now: 1})
	}
	if n := h.fsm.cache.len(); n > MaxCachedConvs {
		t.Fatalf("cache holds %d conversations, want at most %d", n, MaxCachedConvs)
	}
	checkCache(t, h)
}

// TestLegacyLastMessage reads a conversation stored before the last
// message had its own key.
func TestLegacyLastMessage(t *testing.T) {
	h := newHarness(t)
	conv := &Conv{ID: "c", Creator: "a", Members: []string{"a", "b"}, LastT: 50, LastMID: "old", LastFrom: "a", LastData: "hi"}
	b, _ := json.Marshal(conv)
	if err := h.db.Set(convKey(app, "c"), b, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if v, _ := GetConv(h.db, app, "c"); v.LastMID != "old" || v.LastT != 50 {
		t.Fatalf("legacy last message: got %+v", v)
	}
	r := h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "b", MID: "new", Now: 10})
	if r.Message.T != 51 {
		t.Fatalf("append after legacy last t=50: got t=%d, want 51", r.Message.T)
	}
	if v, _ := GetConv(h.db, app, "c"); v.LastMID != "new" || v.LastT != 51 {
		t.Fatalf("after append: got %+v", v)
	}
	checkCache(t, h)
}

func TestBatchCommand(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m1", Now: 10, Receipt: true})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m2", Now: 20, Receipt: true})
	r := h.must(&Command{Op: OpBatch, Batch: []*Command{
		{Op: OpAck, App: app, CID: "c", From: "b", T: 10, Now: 30},
		{Op: OpAck, App: app, CID: "c", From: "z", T: 20, Now: 30}, // not a member
		{Op: OpBatch},
		{Op: OpRead, App: app, CID: "c", From: "b", T: 20, Now: 31},
	}})
	if len(r.Batch) != 4 {
		t.Fatalf("got %d batch results, want 4", len(r.Batch))
	}
	if it := r.Batch[0]; it.Err != nil || len(it.Result.Receipts) != 1 || it.Result.Receipts[0].MID != "m1" || it.Result.Receipts[0].Read {
		t.Fatalf("ack: got %+v", it)
	}
	if it := r.Batch[1]; !errors.Is(it.Err, ErrNotMember) {
		t.Fatalf("non-member ack: got %+v, want ErrNotMember", it)
	}
	if it := r.Batch[2]; !errors.Is(it.Err, ErrBadCommand) {
		t.Fatalf("nested batch: got %+v, want ErrBadCommand", it)
	}
	// The read moves delivered to m2 (one receipt) and read over both.
	if it := r.Batch[3]; it.Err != nil || len(it.Result.Receipts) != 3 {
		t.Fatalf("read: got %+v, want 3 receipts", it)
	}
	if cur, _ := GetCursor(h.db, app, "c", "b"); cur.Ack != 20 || cur.Read != 20 {
		t.Fatalf("cursor: got %+v", cur)
	}
	if _, err := h.apply(&Command{Op: OpBatch}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("empty batch: got %v", err)
	}
}

// TestReceiptsHint: a cursor move in a conversation without receipt keys
// remembers that it has none, and a message asking for receipts (in a
// later entry or in the same batch) ends that, so its receipt is still
// due; Reset forgets it.
func TestReceiptsHint(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m1", Now: 10})
	if r := h.must(&Command{Op: OpAck, App: app, CID: "c", From: "b", T: 10, Now: 11}); len(r.Receipts) != 0 {
		t.Fatalf("ack without receipts asked: got %+v", r.Receipts)
	}
	if !h.fsm.cache.noReceipts(app, "c") {
		t.Fatal("after a move in a conversation without receipt keys: not remembered")
	}
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m2", Now: 20, Receipt: true})
	if h.fsm.cache.noReceipts(app, "c") {
		t.Fatal("a receipt key was written: still remembered as none")
	}
	r := h.must(&Command{Op: OpAck, App: app, CID: "c", From: "b", T: 20, Now: 21})
	if len(r.Receipts) != 1 || r.Receipts[0].MID != "m2" || r.Receipts[0].To != "a" {
		t.Fatalf("ack of a message asking for receipts: got %+v", r.Receipts)
	}

	// The same within one batch: the first move learns "none", the
	// append in the next entry writes a key, the second move finds it.
	h.must(&Command{Op: OpStart, App: app, CID: "d", From: "a", Members: []string{"b"}, Now: 1})
	r = h.must(&Command{Op: OpBatch, Batch: []*Command{
		{Op: OpAppend, App: app, CID: "d", From: "a", MID: "d1", Now: 30},
		{Op: OpAck, App: app, CID: "d", From: "b", T: 30, Now: 31},
		{Op: OpAppend, App: app, CID: "d", From: "a", MID: "d2", Now: 40, Receipt: true},
		{Op: OpRead, App: app, CID: "d", From: "b", T: 40, Now: 41},
	}})
	for i, it := range r.Batch {
		if it.Err != nil {
			t.Fatalf("entry %d: %v", i, it.Err)
		}
	}
	if got := r.Batch[1].Result.Receipts; len(got) != 0 {
		t.Fatalf("first ack: got %+v", got)
	}
	if got := r.Batch[3].Result.Receipts; len(got) != 2 || got[0].MID != "d2" || got[0].Read || got[1].MID != "d2" || !got[1].Read {
		t.Fatalf("read after the receipt message: got %+v, want d2 delivered and read", got)
	}

	// Reset (a discarded batch, a restore) forgets what it learnt.
	h.must(&Command{Op: OpAppend, App: app, CID: "c", From: "a", MID: "m3", Now: 50})
	h.fsm.Reset()
	if h.fsm.cache.noReceipts(app, "c") || h.fsm.cache.noReceipts(app, "d") {
		t.Fatal("Reset kept the receipts hint")
	}
}

// TestReceiptsHintBounded: the hint set starts over past maxNoRcp entries.
func TestReceiptsHintBounded(t *testing.T) {
	var c convCache
	for i := range maxNoRcp + 10 {
		c.setNoReceipts(app, fmt.Sprint("c", i), true)
	}
	c.mu.RLock()
	n := len(c.noRcp)
	c.mu.RUnlock()
	if n > maxNoRcp {
		t.Fatalf("hint holds %d conversations, bound %d", n, maxNoRcp)
	}
	if !c.noReceipts(app, fmt.Sprint("c", maxNoRcp+9)) {
		t.Fatal("the latest entry is missing")
	}
}
