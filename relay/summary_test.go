package relay

import (
	"fmt"
	"slices"
	"testing"
)

func refs[T PeerRef | TaggedRef](ps []T) []string {
	var out []string
	for _, p := range ps {
		var r PeerRef
		switch p := any(p).(type) {
		case PeerRef:
			r = p
		case TaggedRef:
			r = p.PeerRef
		}
		out = append(out, r.App+"/"+r.Peer)
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
	r.CloseSession("a", "y", ConnKey{"e1", 2}) // y still has conn 3: sent again (its tags may have changed)
	r.CloseSession("a", "x", ConnKey{"e1", 1}) // x goes offline
	open("z", 4)
	open("w", 5)
	r.CloseSession("a", "w", ConnKey{"e1", 5}) // on and off: net off
	_, v3, full, adds, rem := r.OnlineSince(ep, v)
	if full || !slices.Equal(refs(adds), []string{"a/y", "a/z"}) || !slices.Equal(refs(rem), []string{"a/w", "a/x"}) {
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

// TestOnlineSinceTags: an add names the tags of the clientId's sessions,
// and a change of them while the clientId stays online is an add again.
func TestOnlineSinceTags(t *testing.T) {
	r := newRelay(t)
	open := func(tag string, conn uint64) {
		if _, _, err := r.Open(&Session{App: "a", Peer: "t", Tag: tag, Edge: "e1", Conn: conn}, false, false); err != nil {
			t.Fatal(err)
		}
	}
	open("pad", 1)
	open("", 2)
	ep, v, _, adds, _ := r.OnlineSince("", 0)
	if len(adds) != 1 || !slices.Equal(adds[0].Tags, []string{"pad"}) {
		t.Fatalf("first read: %v, want t with tags [pad]", adds)
	}
	open("phone", 3)
	ep2, v2, full, adds, rem := r.OnlineSince(ep, v)
	if full || len(rem) != 0 || len(adds) != 1 || !slices.Equal(adds[0].Tags, []string{"pad", "phone"}) {
		t.Fatalf("after a phone session: full %v adds %v removes %v, want t with [pad phone]", full, adds, rem)
	}
	r.CloseSession("a", "t", ConnKey{"e1", 1})
	if _, _, _, adds, _ := r.OnlineSince(ep2, v2); len(adds) != 1 || !slices.Equal(adds[0].Tags, []string{"phone"}) {
		t.Fatalf("after the pad left: %v, want t with [phone]", adds)
	}
	if _, v3, _, adds, _ := r.OnlineSince(ep2, v2); len(adds) != 1 {
		t.Fatalf("a reader at %d: %v", v3, adds)
	}
}
