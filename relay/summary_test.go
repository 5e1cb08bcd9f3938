package relay

import (
	"fmt"
	"slices"
	"testing"
)

func refs(ps []PeerRef) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.App+"/"+p.Peer)
	}
	slices.Sort(out)
	return out
}

// The online summary: a full set for a new reader, then only the net
// changes; a reader of another epoch, or too far behind, gets the set.
func TestOnlineSince(t *testing.T) {
	r := newRelay(t)
	open := func(peer string, conn uint64) {
		if _, _, err := r.Open(&Session{App: "a", Peer: peer, Edge: "e1", Conn: conn}, false, false); err != nil {
			t.Fatal(err)
		}
	}
	open("x", 1)
	open("y", 2)
	open("y", 3) // a second session: no change of the set
	ep, v, full, adds, rem := r.OnlineSince("", 0)
	if !full || !slices.Equal(refs(adds), []string{"a/x", "a/y"}) || len(rem) != 0 {
		t.Fatalf("first read: full %v adds %v removes %v", full, refs(adds), refs(rem))
	}
	if _, v2, _, adds, rem := r.OnlineSince(ep, v); v2 != v || len(adds)+len(rem) != 0 {
		t.Fatalf("nothing changed: v %d->%d adds %v removes %v", v, v2, refs(adds), refs(rem))
	}
	r.CloseSession("a", "y", ConnKey{"e1", 2}) // y still has conn 3
	r.CloseSession("a", "x", ConnKey{"e1", 1}) // x goes offline
	open("z", 4)
	open("w", 5)
	r.CloseSession("a", "w", ConnKey{"e1", 5}) // on and off: net off
	_, v3, full, adds, rem := r.OnlineSince(ep, v)
	if full || !slices.Equal(refs(adds), []string{"a/z"}) || !slices.Equal(refs(rem), []string{"a/w", "a/x"}) {
		t.Fatalf("delta: full %v adds %v removes %v", full, refs(adds), refs(rem))
	}
	if _, _, full, _, _ := r.OnlineSince("another epoch", v3); !full {
		t.Fatal("another epoch: want the full set")
	}
	if _, _, full, _, _ := r.OnlineSince(ep, v3+5); !full {
		t.Fatal("a version from the future: want the full set")
	}
	// Past the log's reach: the full set again.
	for i := range onlineLogLen {
		open(fmt.Sprint("p", i), uint64(100+i))
	}
	_, _, full, adds, _ = r.OnlineSince(ep, v3)
	if !full || len(adds) != onlineLogLen+2 { // y, z and the new ones
		t.Fatalf("too far behind: full %v with %d, want the full set of %d", full, len(adds), onlineLogLen+2)
	}
}
