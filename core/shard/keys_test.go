package shard

import (
	"strings"
	"testing"
)

// TestKeyOneAllocation: key builds the bytes that appending part by part
// builds, with the room it promised, for parts whose length prefix takes
// one, two and three bytes.
func TestKeyOneAllocation(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 300, 16383, 16384, 20000} {
		long := strings.Repeat("x", n)
		want := newKey(tagMsg).str("app").str(long).ts(42).str("mid-" + long)
		got := msgKey("app", long, 42, "mid-"+long)
		if string(got) != string(want) {
			t.Fatalf("len %d: msgKey differs from the part-by-part key", n)
		}
		if cap(got) != len(got) {
			t.Errorf("len %d: msgKey cap %d, len %d: its size was not computed exactly", n, cap(got), len(got))
		}
		if d := dedupKey("a", long, "c", "dt"); string(d) != string(newKey(tagDedup).str("a").str(long).str("c").str("dt")) || cap(d) != len(d) {
			t.Errorf("len %d: dedupKey differs or was grown", n)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = cursorKey("app", "conv-id-0123456789", "peer-0123") }); a != 1 {
		t.Errorf("cursorKey: %v allocations, want 1", a)
	}
}
