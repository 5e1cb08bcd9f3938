package meshpb

import "testing"

func TestPresenceAfter(t *testing.T) {
	a, b := NewPresenceEpoch(), NewPresenceEpoch()
	for a>>presenceCountBits == b>>presenceCountBits {
		b = NewPresenceEpoch() // two links of one edge id: different epochs
	}
	if a == 0 || a&presenceCountLimit != 0 {
		t.Fatalf("a new epoch %#x: want a non-zero epoch and a count of 0", a)
	}
	for _, c := range []struct {
		name          string
		seq, snapshot uint64
		want          bool
	}{
		{"the next OPEN", a + 1, a, true},
		{"much later", a + 1<<30, a + 5, true},
		{"on the list", a + 5, a + 5, false},
		{"before the list", a + 4, a + 5, false},
		{"another epoch, higher", b + 1<<35, a + 1, false},
		{"another epoch, from a first OPEN", b + 1, a, false},
		{"no seq", 0, a, false},
		{"a list without a number", a + 1, 0, false},
	} {
		if got := PresenceAfter(c.seq, c.snapshot); got != c.want {
			t.Errorf("%s: PresenceAfter(%#x, %#x) = %v, want %v", c.name, c.seq, c.snapshot, got, c.want)
		}
	}
}
