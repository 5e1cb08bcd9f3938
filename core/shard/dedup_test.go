package shard

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/relaymesh/relaymesh/raftstore"
)

const win = int64(DedupWindowMS)

// send appends a message from a to c1 with dedup token dt at now.
func (h *harness) send(v int, from, cid, mid, dt string, now int64) *Result {
	h.t.Helper()
	return h.must(&Command{V: v, Op: OpAppend, App: app, CID: cid, From: from, MID: mid, Data: "x", DT: dt, Now: now})
}

// countPrefix counts the state's keys with prefix p.
func (h *harness) countPrefix(p []byte) int {
	h.t.Helper()
	n := 0
	if err := scan(h.db, p, func([]byte, []byte) bool { n++; return true }); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) floor() (floor, first int64) {
	h.t.Helper()
	b, ok, err := getRaw(h.db, dedupFloorKey)
	if err != nil || !ok || len(b) != 16 {
		h.t.Fatalf("floor key: %q, %v, %v", b, ok, err)
	}
	floor, rest, _ := readTS(b)
	first, _, _ = readTS(rest)
	return floor, first
}

func wantDup(t *testing.T, r *Result, orig *Result) {
	t.Helper()
	if !r.Dup || r.Message.ID != orig.Message.ID || r.Message.T != orig.Message.T {
		t.Fatalf("got dup=%v %s@%d, want a dup of %s@%d", r.Dup, r.Message.ID, r.Message.T, orig.Message.ID, orig.Message.T)
	}
}

func wantNew(t *testing.T, r *Result, mid string) {
	t.Helper()
	if r.Dup || r.Message.ID != mid {
		t.Fatalf("got dup=%v %s, want the new message %s", r.Dup, r.Message.ID, mid)
	}
}

// TestDedupWindow: a resend is found within the window, in the original's
// bucket and the next; two buckets on, the floor moves, the old bucket is
// deleted by range and the resend is a new message. The token is the
// sender's in one conversation.
func TestDedupWindow(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1})
	h.must(&Command{Op: OpStart, App: app, CID: "c2", From: "a", Members: []string{"b"}, Now: 1})
	base := 100 * win
	orig := h.send(Version, "a", "c1", "m1", "d1", base+5)
	wantNew(t, orig, "m1")
	if f, first := h.floor(); f != 100 || first != 100 {
		t.Fatalf("floor %d, first %d; want 100, 100", f, first)
	}
	wantDup(t, h.send(Version, "a", "c1", "m1b", "d1", base+6), orig)
	wantNew(t, h.send(Version, "b", "c1", "m2", "d1", base+7), "m2") // another sender
	wantNew(t, h.send(Version, "a", "c2", "m3", "d1", base+8), "m3") // another conversation
	wantDup(t, h.send(Version, "a", "c1", "m1c", "d1", base+win+3), orig)
	if n := h.countPrefix(dedupBucketPrefix(100)); n != 3 {
		t.Fatalf("bucket 100 holds %d entries, want 3", n)
	}
	if n := h.countPrefix([]byte{tagDedup}); n != 0 {
		t.Fatalf("%d entries of the earlier form", n)
	}

	// Two windows on: bucket 102. d1 is out of reach and bucket 100 goes.
	wantNew(t, h.send(Version, "a", "c1", "m4", "d1", base+2*win+7), "m4")
	if f, first := h.floor(); f != 102 || first != 100 {
		t.Fatalf("floor %d, first %d; want 102, 100", f, first)
	}
	if n := h.countPrefix(dedupBucketPrefix(100)); n != 0 {
		t.Fatalf("bucket 100 holds %d entries after the floor moved to 102", n)
	}
	if n := h.countPrefix(dedupBucketPrefix(102)); n != 1 {
		t.Fatalf("bucket 102 holds %d entries, want 1", n)
	}

	// A leader whose clock is behind reads and writes the floor's bucket.
	m4 := h.send(Version, "a", "c1", "m4b", "d1", base)
	if !m4.Dup || m4.Message.ID != "m4" {
		t.Fatalf("resend with a clock behind: dup=%v %s", m4.Dup, m4.Message.ID)
	}
	wantNew(t, h.send(Version, "a", "c1", "m5", "d5", base+1), "m5")
	if _, ok, _ := getRaw(h.db, dedupWinKey(102, dedupDigest(app, "a", "c1", "d5"))); !ok {
		t.Fatal("a send with a clock behind did not write the floor's bucket")
	}
	if f, _ := h.floor(); f != 102 {
		t.Fatalf("floor %d after a clock behind, want 102", f)
	}

	// Many tokens in one millisecond, each resent once.
	for i := range 200 {
		wantNew(t, h.send(Version, "a", "c1", fmt.Sprint("n", i), fmt.Sprint("t", i), base+2*win+9), fmt.Sprint("n", i))
	}
	for i := range 200 {
		r := h.send(Version, "a", "c1", fmt.Sprint("r", i), fmt.Sprint("t", i), base+2*win+9)
		if !r.Dup || r.Message.ID != fmt.Sprint("n", i) {
			t.Fatalf("resend %d: dup=%v %s", i, r.Dup, r.Message.ID)
		}
	}
}

// TestDedupWindowReset: the filters are memory only; after a Reset (a
// snapshot restore, a reopened DB), or in a new FSM on the same state,
// every entry is found again, and a token never sent is still new.
func TestDedupWindowReset(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1})
	base := 7 * win
	origs := map[string]*Result{}
	for i := range 50 {
		dt := fmt.Sprint("d", i)
		origs[dt] = h.send(Version, "a", "c1", fmt.Sprint("m", i), dt, base+win-25+int64(i)) // across buckets 7 and 8
	}
	h.fsm.Reset()
	for i := range 50 {
		dt := fmt.Sprint("d", i)
		wantDup(t, h.send(Version, "a", "c1", "again", dt, base+win+30), origs[dt])
	}
	h.fsm = New()
	for i := range 50 {
		dt := fmt.Sprint("d", i)
		wantDup(t, h.send(Version, "a", "c1", "again", dt, base+win+31), origs[dt])
	}
	wantNew(t, h.send(Version, "a", "c1", "fresh", "never", base+win+32), "fresh")
}

// TestDedupWindowUpgrade: a Version6 send keeps its entry in the earlier
// form; Version7 sends still find it for a window after the first Version7
// send, then delete every entry of that form with one range; a Version6
// command still reads and writes the earlier form.
func TestDedupWindowUpgrade(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1})
	base := 100 * win
	old := h.send(Version6, "a", "c1", "m1", "d1", base)
	if n := h.countPrefix([]byte{tagDedup}); n != 1 {
		t.Fatalf("Version6 wrote %d entries of the earlier form", n)
	}
	if _, ok, _ := getRaw(h.db, dedupFloorKey); ok {
		t.Fatal("a Version6 send wrote the window's floor")
	}
	wantDup(t, h.send(Version7, "a", "c1", "m1b", "d1", base+1), old) // before any Version7 send
	wantNew(t, h.send(Version7, "a", "c1", "m2", "d2", base+2), "m2")
	if f, first := h.floor(); f != 100 || first != 100 {
		t.Fatalf("floor %d, first %d", f, first)
	}
	wantDup(t, h.send(Version7, "a", "c1", "m1c", "d1", base+win+1), old) // bucket first+1
	wantNew(t, h.send(Version7, "a", "c1", "m3", "d3", base+win+2), "m3") // the floor moves to 101
	if n := h.countPrefix([]byte{tagDedup}); n != 1 {
		t.Fatalf("%d entries of the earlier form at bucket first+1, want 1", n)
	}
	wantNew(t, h.send(Version7, "a", "c1", "m4", "d4", base+2*win), "m4") // bucket first+2
	if n := h.countPrefix([]byte{tagDedup}); n != 0 {
		t.Fatalf("%d entries of the earlier form past bucket first+1", n)
	}
	wantNew(t, h.send(Version7, "a", "c1", "m5", "d1", base+2*win+1), "m5")
	// A Version6 send after Version7 ones, while the FSM knew of no entry
	// of the earlier form, is found by a Version7 resend in the window's
	// first buckets, from memory and after a Reset.
	h2 := newHarness(t)
	h2.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1})
	wantNew(t, h2.send(Version7, "a", "c1", "m1", "d1", base), "m1")
	pinned := h2.send(Version6, "a", "c1", "m2", "d2", base+1)
	wantDup(t, h2.send(Version7, "a", "c1", "m2b", "d2", base+2), pinned)
	h2.fsm.Reset()
	wantDup(t, h2.send(Version7, "a", "c1", "m2c", "d2", base+3), pinned)

	// A Version6 command (a core pinned back) uses the earlier form only.
	wantNew(t, h.send(Version6, "a", "c1", "m6", "d4", base+2*win+2), "m6")
	r := h.send(Version6, "a", "c1", "m7", "d4", base+2*win+3)
	if !r.Dup || r.Message.ID != "m6" {
		t.Fatalf("Version6 resend: dup=%v %s", r.Dup, r.Message.ID)
	}
}

// TestDedupWindowDamaged: a window entry or floor that does not decode is
// a storage failure, never a made-up answer.
func TestDedupWindowDamaged(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    int // the first send's
		key  []byte
	}{
		{"entry", Version7, dedupWinKey(3, dedupDigest(app, "a", "c1", "d1"))},
		{"floor", Version7, dedupFloorKey},
		{"earlier form", Version6, dedupKey(app, "a", "c1", "d1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1})
			h.send(tc.v, "a", "c1", "m1", "d1", 3*win+1)
			if err := h.db.Set(tc.key, []byte("\x01{"), nil); err != nil {
				t.Fatal(err)
			}
			h.fsm.Reset()
			b, _ := (&Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m2", DT: "d1", Now: 3*win + 2}).Encode()
			h.fatalOf(b, ErrStorage)
		})
	}
}

// TestDedupKeys: window keys sort by bucket first, and the floor key
// before every bucket, so the range deletions take exactly the buckets.
func TestDedupKeys(t *testing.T) {
	k0, k1 := dedupWinKey(0, [16]byte{0: 0xff, 15: 0xff}), dedupWinKey(1, [16]byte{})
	if bytes.Compare(dedupFloorKey, dedupBucketPrefix(0)) >= 0 || bytes.Compare(k0, k1) >= 0 ||
		bytes.Compare(k1, dedupBucketPrefix(2)) >= 0 || !bytes.HasPrefix(k1, dedupBucketPrefix(1)) {
		t.Fatalf("order: floor %q, %q, %q", dedupFloorKey, k0, k1)
	}
	// The digest names all four parts, unambiguously.
	d := dedupDigest("a", "b", "c", "d")
	for _, o := range [][4]string{{"a", "b", "c", "e"}, {"a", "b", "d", "d"}, {"a", "c", "c", "d"}, {"b", "b", "c", "d"},
		{"ab", "", "c", "d"}, {"a", "bc", "", "d"}, {"", "a", "b", "cd"}} {
		if dedupDigest(o[0], o[1], o[2], o[3]) == d {
			t.Fatalf("%q has the digest of a/b/c/d", o)
		}
	}
	if dedupDigest("a", "b", "c", "d") != d {
		t.Fatal("the digest is not a function of its parts")
	}
}

// TestBloom: no false negatives, ever; false positives near the design's
// rate at every size the chain grows through.
func TestBloom(t *testing.T) {
	var f bloom
	hash := func(s string) uint64 { d := dedupDigest(app, "a", "c", s); return digestHash(d[:]) }
	n := 300_000
	for i := range n {
		f.add(hash(fmt.Sprint("key-", i)))
	}
	if f.keys() != n {
		t.Fatalf("keys %d, want %d", f.keys(), n)
	}
	for i := range n {
		if !f.has(hash(fmt.Sprint("key-", i))) {
			t.Fatalf("key %d added and not found", i)
		}
	}
	fp := 0
	for i := range n {
		if f.has(hash(fmt.Sprint("other-", i))) {
			fp++
		}
	}
	// A part is at ~0.1 % when full; the chain's parts add up (three
	// here: 16k and 64k keys full, 256k ones most of it).
	if rate := float64(fp) / float64(n); rate > 0.01 {
		t.Fatalf("false positives %.2f %%", 100*rate)
	} else {
		t.Logf("%d parts, false positives %.3f %%", len(f.parts), 100*rate)
	}
	var empty bloom
	if empty.has(hash("x")) {
		t.Fatal("an empty filter has a key")
	}
}

// BenchmarkDedupFilterBuild: what the first send after a restart or a
// restore pays to build a bucket's filter, per key of the bucket (a
// bucket of 200,000 keys: 10 minutes at ~330 sends/s).
func BenchmarkDedupFilterBuild(b *testing.B) {
	h := newHarness(b)
	batch := h.db.NewBatch()
	const n = 200_000
	for i := range n {
		k := dedupWinKey(9, dedupDigest(app, fmt.Sprint("user-", i%5000), fmt.Sprint("conv-", i%2000), fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)))
		if err := batch.Set(k, append(make([]byte, 8), "message-id-0123456789"...), nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := batch.Commit(nil); err != nil {
		b.Fatal(err)
	}
	if err := h.db.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		var w dedupWindow
		if err := w.load(h.db); err != nil {
			b.Fatal(err)
		}
		f, err := w.filter(h.db, 9)
		if err != nil || f.keys() != n {
			b.Fatalf("%v, %d keys", err, f.keys())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}

// BenchmarkDedupState applies one-to-one sends, each with a uuid dt as the
// SDKs send, 200 a second of command time (so 600,000 of them span 50
// minutes, five windows), at Version6 (entries kept forever) and Version7
// (the window), and reports what the state holds after: dedup entries
// left, and the state's bytes a message once flushed and compacted (a
// message of 35 bytes of content, 24-character conversation ids).
//
//	go test -run '^$' -bench DedupState -benchtime 600000x ./core/shard
func BenchmarkDedupState(b *testing.B) {
	for _, v := range []int{Version6, Version7} {
		b.Run(fmt.Sprint("v", v), func(b *testing.B) {
			o := &pebble.Options{FS: vfs.NewMem(), MemTableSize: 16 << 20, DisableWAL: true}
			raftstore.TuneStateDB(o)
			o.Cache = pebble.NewCache(raftstore.StateCacheSize)
			db, err := pebble.Open("", o)
			o.Cache.Unref()
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			h := &harness{t: b, db: db, fsm: New()}
			cid := func(i int) string { return fmt.Sprintf("%024x", i%pairsConvs) }
			for i := range pairsConvs {
				h.must(&Command{V: v, Op: OpStart, App: app, CID: cid(i), From: cid(i) + "-a", Members: []string{cid(i) + "-b"}, Now: 1})
			}
			b.ReportAllocs()
			b.ResetTimer()
			base := 100 * win
			for i := range b.N {
				h.must(&Command{V: v, Op: OpAppend, App: app, CID: cid(i), From: cid(i) + "-a", MID: fmt.Sprintf("m%019d", i),
					Data: `{"_lctype":-1,"_lctext":"hello"}`, DT: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), Now: base + int64(i)*5})
			}
			b.StopTimer()
			if err := db.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := db.Compact([]byte{0}, []byte{0xff}, true); err != nil {
				b.Fatal(err)
			}
			m := db.Metrics()
			b.ReportMetric(float64(h.countPrefix([]byte{tagDedup})+h.countPrefix([]byte{tagDedupWin})), "dedup-keys")
			// The live tables: DiskSpaceUsage counts obsolete ones too until
			// Pebble deletes them.
			b.ReportMetric(float64(m.Total().Size)/float64(b.N), "state-B/msg")
		})
	}
}
