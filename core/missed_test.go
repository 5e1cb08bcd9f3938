package core

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

func missedMsg(t *testing.T, id string, size int) []byte {
	t.Helper()
	b, err := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Id: proto.String(id), Msg: proto.String(string(make([]byte, size)))}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// takenIDs decodes what take returned: message ids, and checks peerId.
func takenIDs(t *testing.T, bs [][]byte, peer string) []string {
	t.Helper()
	var ids []string
	for _, b := range bs {
		g := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(b, g); err != nil {
			t.Fatal(err)
		}
		if g.GetPeerId() != peer {
			t.Fatalf("peerId %q, want %q", g.GetPeerId(), peer)
		}
		ids = append(ids, g.GetDirectMessage().GetId())
	}
	return ids
}

// TestMissedLog: a login takes its own pushes made since it began, in
// order, once; older ones, other clients' and the
// share's offline messages stay out; the log forgets by age, count and
// bytes.
func TestMissedLog(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var m missedLog
	add := func(at time.Duration, peer, id string) {
		m.add(missedEvent{at: t0.Add(at), key: missedKey{"app", peer}, cmd: missedMsg(t, id, 10)})
	}
	add(0, "amy", "before")
	add(time.Second-time.Millisecond, "amy", "just before") // an offline message
	add(time.Second, "amy", "m1")
	add(time.Second, "bob", "other")
	add(1100*time.Millisecond, "amy", "offline-too")
	add(1200*time.Millisecond, "amy", "m2")
	login := t0.Add(time.Second)
	got := takenIDs(t, m.take("app", "amy", t0.Add(1300*time.Millisecond), login, map[string]bool{"offline-too": true}), "amy")
	if want := []string{"m1", "m2"}; !slices.Equal(got, want) {
		t.Fatalf("amy's: %v, want %v", got, want)
	}
	if got := m.take("app", "amy", t0.Add(1300*time.Millisecond), login, nil); len(got) != 0 {
		t.Fatalf("taken twice: %d", len(got))
	}
	if got := takenIDs(t, m.take("app", "bob", t0.Add(1300*time.Millisecond), login, nil), "bob"); !slices.Equal(got, []string{"other"}) {
		t.Fatalf("bob's: %v", got)
	}
	if m.bytes != 0 || len(m.fifo) != 0 {
		t.Fatalf("left: %d pushes, %d bytes", len(m.fifo), m.bytes)
	}

	// Age: older than missedKeep is gone.
	add(0, "amy", "old")
	add(missedKeep, "amy", "young")
	if got := takenIDs(t, m.take("app", "amy", t0.Add(missedKeep+time.Millisecond), t0, nil), "amy"); !slices.Equal(got, []string{"young"}) {
		t.Fatalf("after %v: %v, want [young]", missedKeep, got)
	}

	// Count: the oldest go first.
	for i := range missedMax + 5 {
		add(0, fmt.Sprintf("p%d", i), "x")
	}
	if len(m.fifo) != missedMax || m.fifo[0].key.peer != "p5" {
		t.Fatalf("%d kept, oldest %s; want %d, p5", len(m.fifo), m.fifo[0].key.peer, missedMax)
	}
	m.take("app", "none", t0, t0, nil)
	for len(m.fifo) > 0 { // empty it
		m.dropLocked(len(m.fifo))
	}
	// Bytes: never over missedMaxBytes.
	big := missedMsg(t, "big", 1<<20)
	for i := range 20 {
		m.add(missedEvent{at: t0, key: missedKey{"app", fmt.Sprint(i)}, cmd: big})
		if m.bytes > missedMaxBytes {
			t.Fatalf("%d bytes kept after %d adds, bound %d", m.bytes, i+1, missedMaxBytes)
		}
	}
	if n := len(m.fifo); n != missedMaxBytes/len(big) {
		t.Fatalf("%d big pushes kept, want %d", n, missedMaxBytes/len(big))
	}
}
