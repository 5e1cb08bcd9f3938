package loadtest

import (
	"bufio"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParsePriorityMix(t *testing.T) {
	tests := []struct {
		in      string
		want    PriorityMix
		wantErr bool
	}{
		{"high=0.1,normal=0.6,low=0.3", PriorityMix{0.1, 0.6, 0.3}, false},
		{"high=1,low=1", PriorityMix{0.5, 0, 0.5}, false},
		{"normal=1", PriorityMix{0, 1, 0}, false},
		{"urgent=1", PriorityMix{}, true},
		{"high=-1,low=2", PriorityMix{}, true},
		{"high=0", PriorityMix{}, true},
		{"high", PriorityMix{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePriorityMix(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 1e-9 {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestPriorityMixPick(t *testing.T) {
	m := PriorityMix{0.1, 0.6, 0.3}
	var n [numPrio]int
	for seq := uint64(1); seq <= 1000; seq++ {
		n[m.pick(seq)]++
	}
	for i, want := range []int{100, 600, 300} {
		if n[i] < want-10 || n[i] > want+10 {
			t.Errorf("%s picked %d of 1000, want %d±10", prioNames[i], n[i], want)
		}
	}
	if p := (PriorityMix{0, 0, 1}).pick(12345); p != prioLow {
		t.Errorf("low-only mix picked %s, want low", prioNames[p])
	}
}

func TestChatTagRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	for p := range numPrio {
		text := `{"_lctype":-1,"_lctext":"` + LedgerID(3, 42) + chatTag(p, at) + `"}`
		w, seq, ok := parseLedgerID(text)
		if !ok || w != 3 || seq != 42 {
			t.Errorf("ledger id from %q: %d %d %v, want 3 42 true", text, w, seq, ok)
		}
		gp, gt, ok := parseChatTag(text)
		if !ok || gp != p || !gt.Equal(at) {
			t.Errorf("tag from %q: %d %v %v, want %d %v true", text, gp, gt, ok, p, at)
		}
	}
	if _, _, ok := parseChatTag(`{"_lctext":"lt:1:2"}`); ok {
		t.Error("parsed a tag from text without one")
	}
	// Padding (Config.PayloadBytes) keeps the id and tag readable.
	padded := chatText(LedgerID(3, 42), chatTag(prioLow, at), 1000)
	if len(padded) != 1000 {
		t.Errorf("padded text is %d bytes, want 1000", len(padded))
	}
	w, seq, ok1 := parseLedgerID(padded)
	gp, gt, ok2 := parseChatTag(padded)
	if !ok1 || !ok2 || w != 3 || seq != 42 || gp != prioLow || !gt.Equal(at) {
		t.Errorf("from padded text: %d %d %v, %d %v %v; want 3 42, low %v", w, seq, ok1, gp, gt, ok2, at)
	}
	if got := chatText("a", "b", 0); got != "ab" {
		t.Errorf("unpadded text %q, want %q", got, "ab")
	}
}

func TestParseDroppedFrames(t *testing.T) {
	text := `# HELP relaymesh_edge_dropped_frames_total Outbound frames shed by priority class.
# TYPE relaymesh_edge_dropped_frames_total counter
relaymesh_edge_dropped_frames_total{priority="high"} 0
relaymesh_edge_dropped_frames_total{priority="normal"} 12
relaymesh_edge_dropped_frames_total{priority="low"} 3400
relaymesh_edge_connections 5
relaymesh_edge_overflow_closes_total 7
relaymesh_edge_overflow_closes_total_bogus 9
`
	got, err := parseEdgeCounters(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	if want := (edgeCounters{dropped: [numPrio]int64{0, 12, 3400}, overflowCloses: 7}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestMergeChat: two workers, one room of 4 members (2 each); worker 0
// sends a HIGH and a LOW message, worker 1 a NORMAL one that failed. The
// LOW message reached 2 of 3 members (shed), the HIGH one all 3.
func TestMergeChat(t *testing.T) {
	cfg := Config{Scenario: ScenarioChatroom, Rooms: 1, PriorityMix: PriorityMix{0.5, 0, 0.5}}
	l0, l1 := newChatLedger(2), newChatLedger(2)
	l0.noteSent(1, ChatSent{Room: 0, Prio: prioHigh, Acked: true})
	l0.noteSent(2, ChatSent{Room: 0, Prio: prioLow, Acked: true})
	l1.noteSent(1, ChatSent{Room: 0, Prio: prioNormal})
	l0.received(0, 1, 1) // sender is worker 0's session 0
	l1.received(0, 1, 0)
	l1.received(0, 1, 1)
	l1.received(0, 1, 1) // duplicate
	l1.received(0, 2, 0)
	l1.received(0, 2, 1)
	l0.received(1, 1, 1) // a copy of worker 1's failed send
	reports := []*Report{
		{Worker: 0, Chat: l0.report(2, []int{2}, 0, nil)},
		{Worker: 1, Chat: l1.report(1, []int{2}, 0, nil)},
	}
	s := &Summary{}
	s.mergeChat(cfg, reports, 2)
	c := s.Chatroom
	h, n, lo := c.Priorities["high"], c.Priorities["normal"], c.Priorities["low"]
	if h.Expected != 3 || h.Delivered != 3 || h.Missing != 0 || c.HighLost != 0 {
		t.Errorf("high %+v, want 3/3 delivered", h)
	}
	if lo.Expected != 3 || lo.Delivered != 2 || lo.Missing != 1 {
		t.Errorf("low %+v, want 2/3 delivered, 1 missing", lo)
	}
	if n.Sent != 1 || n.Failed != 1 || n.Expected != 0 {
		t.Errorf("normal %+v, want 1 sent, 1 failed, none expected", n)
	}
	if s.Lost != 0 || s.Expected != 6 || s.Delivered != 5 || s.Duplicates != 1 {
		t.Errorf("lost %d expected %d delivered %d duplicates %d, want 0 6 5 1", s.Lost, s.Expected, s.Delivered, s.Duplicates)
	}
	// Every send, acked or not: 3 sends × 3 members but the sender; the
	// failed send's one copy counts there only.
	if c.ExpectedAllSends != 9 || c.DeliveredAllSends != 6 {
		t.Errorf("all sends: expected %d delivered %d, want 9 6", c.ExpectedAllSends, c.DeliveredAllSends)
	}
	// Losing a HIGH copy is a loss.
	reports[1].Chat.Recv[0][0] = 1
	s = &Summary{}
	s.mergeChat(cfg, reports, 2)
	if s.Lost != 1 || s.Chatroom.HighLost != 1 || len(s.LostSamples) != 1 {
		t.Errorf("lost %d high lost %d samples %v, want 1 1 and one sample", s.Lost, s.Chatroom.HighLost, s.LostSamples)
	}
}

// TestMergeChatSlowReaders: one worker, one room of 4 members: session 0
// sends (normal reader), 1 reads normally, 2 is a slow reader, 3 a slow
// reader the edge disconnected. Nothing is expected at 3; copies are split
// between slow and normal readers; a HIGH missing at 2 is lost.
func TestMergeChatSlowReaders(t *testing.T) {
	cfg := Config{Scenario: ScenarioChatroom, Rooms: 1, PriorityMix: PriorityMix{0.5, 0, 0.5},
		SlowReaders: 0.5, SlowReadDelay: 10 * time.Millisecond}
	build := func(highAtSlow bool) *Summary {
		l := newChatLedger(4)
		l.noteSent(1, ChatSent{Room: 0, Prio: prioHigh, Acked: true})
		l.noteSent(2, ChatSent{Room: 0, Prio: prioLow, Acked: true})
		l.received(0, 1, 1)
		if highAtSlow {
			l.received(0, 1, 2)
		}
		l.received(0, 1, 3) // at the disconnected reader: not counted
		l.received(0, 2, 1)
		readers := &chatReaders{kind: []readerKind{readerNormal, readerNormal, readerSlow, readerSlowGone},
			slowJoined: []int{2}, slowGone: []int{1}}
		s := &Summary{}
		s.mergeChat(cfg, []*Report{{Worker: 0, Chat: l.report(2, []int{4}, 0, readers)}}, 2)
		return s
	}
	s := build(true)
	c := s.Chatroom
	sr := c.SlowReaders
	if sr == nil {
		t.Fatal("no slow_readers section")
	}
	if sr.Members != 2 || sr.Disconnected != 1 {
		t.Errorf("slow members %d disconnected %d, want 2 and 1", sr.Members, sr.Disconnected)
	}
	check := func(what string, got *ReaderPrioStats, want ReaderPrioStats) {
		t.Helper()
		if got == nil || got.Expected != want.Expected || got.Delivered != want.Delivered || got.Missing != want.Missing {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
		}
	}
	check("slow high", sr.Slow["high"], ReaderPrioStats{Expected: 1, Delivered: 1})
	check("normal high", sr.Normal["high"], ReaderPrioStats{Expected: 1, Delivered: 1})
	check("slow low", sr.Slow["low"], ReaderPrioStats{Expected: 1, Missing: 1})
	check("normal low", sr.Normal["low"], ReaderPrioStats{Expected: 1, Delivered: 1})
	if h := c.Priorities["high"]; h.Expected != 2 || h.Delivered != 2 || s.Lost != 0 {
		t.Errorf("high %+v lost %d, want 2/2 and nothing lost", h, s.Lost)
	}
	s = build(false)
	if s.Lost != 1 || s.Chatroom.HighLost != 1 || s.Chatroom.SlowReaders.Slow["high"].Missing != 1 {
		t.Errorf("lost %d high lost %d slow high %+v, want a HIGH lost at the connected slow reader",
			s.Lost, s.Chatroom.HighLost, s.Chatroom.SlowReaders.Slow["high"])
	}
}

func TestIsSlowReader(t *testing.T) {
	for _, f := range []float64{0, 0.1, 0.2, 0.5} {
		n := 0
		for g := range 1000 {
			if isSlowReader(g, f) {
				n++
			}
		}
		if want := int(f * 1000); n < want-5 || n > want+5 {
			t.Errorf("share %v: %d of 1000 slow, want %d ± 5", f, n, want)
		}
	}
}
