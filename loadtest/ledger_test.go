package loadtest

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// copyOf is one received copy in a ledger test: message seq (of worker 0)
// with server id uid at member position pos.
type copyOf struct {
	seq  uint64
	uid  string
	pos  int
	sync bool
}

func TestLedger(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name   string
		msgs   int      // sent into a 3-member conversation from position 0
		acked  []string // uid per message, "" = send failed
		copies []copyOf
		want   Counts
	}{
		{
			name: "all delivered", msgs: 2, acked: []string{"a", "b"},
			copies: []copyOf{{1, "a", 1, false}, {1, "a", 2, false}, {2, "b", 1, false}, {2, "b", 2, false}},
			want:   Counts{Sent: 2, Acked: 2, Expected: 4, Delivered: 4},
		},
		{
			name: "lost copy", msgs: 1, acked: []string{"a"},
			copies: []copyOf{{1, "a", 1, false}},
			want:   Counts{Sent: 1, Acked: 1, Expected: 2, Delivered: 1, Lost: 1, LostAfterDedup: 1},
		},
		{
			name: "same id twice is a duplicate before dedup only", msgs: 1, acked: []string{"a"},
			copies: []copyOf{{1, "a", 1, false}, {1, "a", 1, false}, {1, "a", 2, false}},
			want:   Counts{Sent: 1, Acked: 1, Expected: 2, Delivered: 2, Duplicates: 1},
		},
		{
			name: "second server id is a duplicate after dedup too", msgs: 1, acked: []string{"a"},
			copies: []copyOf{{1, "a", 1, false}, {1, "a2", 1, false}, {1, "a", 2, false}},
			want:   Counts{Sent: 1, Acked: 1, Expected: 2, Delivered: 2, Duplicates: 1, DuplicatesAfterDedup: 1},
		},
		{
			name: "copy under another id is lost after dedup", msgs: 1, acked: []string{"a"},
			copies: []copyOf{{1, "zz", 1, false}, {1, "a", 2, false}},
			want:   Counts{Sent: 1, Acked: 1, Expected: 2, Delivered: 2, LostAfterDedup: 1},
		},
		{
			name: "late via sync is not lost", msgs: 1, acked: []string{"a"},
			copies: []copyOf{{1, "a", 1, true}, {1, "a", 2, false}},
			want:   Counts{Sent: 1, Acked: 1, Expected: 2, Delivered: 1, Late: 1},
		},
		{
			name: "sync after live is resynced, not duplicate", msgs: 1, acked: []string{"a"},
			copies: []copyOf{{1, "a", 1, false}, {1, "a", 1, true}, {1, "a", 2, false}},
			want:   Counts{Sent: 1, Acked: 1, Expected: 2, Delivered: 2, Resynced: 1},
		},
		{
			name: "failed send is expected nowhere", msgs: 2, acked: []string{"", "b"},
			copies: []copyOf{{1, "x", 1, false}, {2, "b", 1, false}, {2, "b", 2, false}},
			want:   Counts{Sent: 2, Acked: 1, Failed: 1, Expected: 2, Delivered: 2},
		},
		{
			name: "sender's own position and unknown ids are unexpected", msgs: 1, acked: []string{"a"},
			copies: []copyOf{{1, "a", 0, false}, {1, "a", 1, false}, {1, "a", 2, false}, {9, "q", 1, false}},
			want:   Counts{Sent: 1, Acked: 1, Expected: 2, Delivered: 2, Unexpected: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger(0, nil)
			for i := range tt.msgs {
				id, seq := l.Sent("c1", 3, []int{1, 2}, t0)
				if want := LedgerID(0, uint64(i+1)); id != want || seq != uint64(i+1) {
					t.Fatalf("Sent = %s, %d; want %s, %d", id, seq, want, i+1)
				}
			}
			for i, uid := range tt.acked {
				if uid != "" {
					l.Acked(uint64(i+1), uid, int64(i), t0.Add(time.Millisecond))
				}
			}
			for _, c := range tt.copies {
				l.Delivered(0, c.seq, c.uid, c.pos, c.sync, t0.Add(2*time.Millisecond))
			}
			got := l.Settle()
			got.LostSamples = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Settle:\n got %+v\nwant %+v", got, tt.want)
			}
			if got, want := l.Outstanding(), int(tt.want.Lost); got != want {
				t.Errorf("Outstanding = %d, want %d", got, want)
			}
		})
	}
}

func TestLedgerForeignWorker(t *testing.T) {
	l := NewLedger(1, nil)
	_, seq := l.Sent("c", 2, []int{1}, time.Now())
	l.Acked(seq, "u", 1, time.Now())
	l.Delivered(0, seq, "u", 1, false, time.Now()) // another worker's seq 1
	c := l.Settle()
	if c.Lost != 1 || c.Unexpected != 1 {
		t.Errorf("got lost %d unexpected %d, want 1 and 1", c.Lost, c.Unexpected)
	}
	if len(c.LostSamples) != 1 {
		t.Errorf("got %d lost samples, want 1", len(c.LostSamples))
	}
}

func TestLedgerLastAckedAndLatency(t *testing.T) {
	var lat []time.Duration
	l := NewLedger(0, func(d time.Duration) { lat = append(lat, d) })
	t0 := time.Unix(0, 0)
	_, s1 := l.Sent("c", 2, []int{1}, t0)
	_, s2 := l.Sent("c", 2, []int{1}, t0)
	l.Acked(s2, "second", 20, t0)
	l.Acked(s1, "first", 10, t0) // older server timestamp, acked later
	if got := l.LastAcked("c"); got != "second" {
		t.Errorf("LastAcked = %q, want second", got)
	}
	l.Delivered(0, s1, "first", 1, false, t0.Add(5*time.Millisecond))
	l.Delivered(0, s1, "first", 1, false, t0.Add(9*time.Millisecond)) // duplicate: no latency
	l.Delivered(0, s2, "second", 1, true, t0.Add(9*time.Millisecond)) // sync: no latency
	if len(lat) != 1 || lat[0] != 5*time.Millisecond {
		t.Errorf("delivery latencies = %v, want [5ms]", lat)
	}
	if sent, acked := l.Progress(); sent != 2 || acked != 2 {
		t.Errorf("Progress = %d, %d; want 2, 2", sent, acked)
	}
	if got := l.Received(); got != 3 {
		t.Errorf("Received = %d, want 3", got)
	}
}

func TestParseLedgerID(t *testing.T) {
	tests := []struct {
		text   string
		worker int
		seq    uint64
		ok     bool
	}{
		{`{"_lctype":-1,"_lctext":"lt:3:42"}`, 3, 42, true},
		{"lt:0:1", 0, 1, true},
		{"hello", 0, 0, false},
		{"lt:x:1", 0, 0, false},
		{"lt:1:", 0, 0, false},
	}
	for _, tt := range tests {
		w, s, ok := parseLedgerID(tt.text)
		if w != tt.worker || s != tt.seq || ok != tt.ok {
			t.Errorf("parseLedgerID(%q) = %d, %d, %v; want %d, %d, %v", tt.text, w, s, ok, tt.worker, tt.seq, tt.ok)
		}
	}
}

func TestSettleFault(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := t0.Add(10 * time.Second)
	l := NewLedger(0, nil)
	send := func(start time.Duration, ack time.Duration) {
		_, seq := l.Sent("c", 2, []int{1}, t0.Add(start))
		if ack >= 0 {
			l.Acked(seq, "u", 0, t0.Add(start+ack))
		}
	}
	send(9*time.Second, 10*time.Millisecond)           // before the fault, acked
	send(9500*time.Millisecond, -1)                    // before, failed: −500 ms
	send(10*time.Second, 1500*time.Millisecond)        // at the fault, acked 1500 ms later
	send(10200*time.Millisecond, 900*time.Millisecond) // first ack after: 200+900 = 1100 ms
	send(11*time.Second, -1)                           // failed within the grace
	send(13*time.Second, -1)                           // failed after the grace
	got := l.SettleFault(at)
	want := FaultCounts{SentAfter: 4, AckedAfter: 2, FailedAfter: 2, FirstAckAfterMS: 1100, FailedAfterGrace: 1,
		FirstFailedStartMS: -500, LastFailedStartMS: 3000, MaxAckAfterMS: 1500}
	if got != want {
		t.Errorf("SettleFault:\n got %+v\nwant %+v", got, want)
	}
	var m FaultCounts
	m.FirstAckAfterMS = -1
	m.merge(got)
	m.merge(FaultCounts{FirstAckAfterMS: -1})
	if m != want {
		t.Errorf("merge with an empty report:\n got %+v\nwant %+v", m, want)
	}
}

// TestPosSet: positions inline and past 64, as bitset holds them.
func TestPosSet(t *testing.T) {
	for _, n := range []int{1, 2, 63, 64, 65, 128, 129, 1000} {
		s, b := newPosSet(n), newBitset(n)
		if s.words() != len(b) {
			t.Fatalf("n=%d: %d words, bitset %d", n, s.words(), len(b))
		}
		for i := 0; i < n; i += 3 {
			s.set(i)
			b.set(i)
		}
		for i := range s.words() * 64 {
			if s.has(i) != b.has(i) {
				t.Fatalf("n=%d: position %d: %v, bitset %v", n, i, s.has(i), b.has(i))
			}
		}
		for i := range s.words() {
			if s.word(i) != b[i] {
				t.Fatalf("n=%d: word %d = %x, bitset %x", n, i, s.word(i), b[i])
			}
		}
	}
}

// TestLedgerLargeGroup: in a conversation of 200 members, copies past
// position 64 are counted, a missing one is lost and outstanding, and a
// second server id is a duplicate after dedup.
func TestLedgerLargeGroup(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewLedger(0, nil)
	expect := []int{1, 63, 64, 65, 130, 199}
	_, seq := l.Sent("big", 200, expect, t0)
	l.Acked(seq, "u", 1, t0.Add(time.Millisecond))
	for _, p := range []int{1, 63, 64, 130, 199} {
		if lat, _ := l.Delivered(0, seq, "u", p, false, t0.Add(2*time.Millisecond)); lat != 2*time.Millisecond {
			t.Fatalf("position %d: latency %v", p, lat)
		}
	}
	if n := l.Outstanding(); n != 1 {
		t.Fatalf("outstanding %d, want 1 (position 65)", n)
	}
	l.Delivered(0, seq, "u2", 130, false, t0.Add(3*time.Millisecond))
	l.Delivered(0, seq, "u", 150, false, t0.Add(3*time.Millisecond)) // not expected
	c := l.Settle()
	c.LostSamples = nil
	want := Counts{Sent: 1, Acked: 1, Expected: 6, Delivered: 5, Lost: 1, LostAfterDedup: 1, Duplicates: 1, DuplicatesAfterDedup: 1, Unexpected: 1}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("settled %+v\nwant    %+v", c, want)
	}
}

// BenchmarkLedgerRecord: what the ledger keeps a one-to-one message
// (sent, acked, its copy received): heap objects and bytes a record.
func BenchmarkLedgerRecord(b *testing.B) {
	l := NewLedger(0, nil)
	t0 := time.Now()
	uids := make([]string, b.N)
	for i := range uids {
		uids[i] = fmt.Sprintf("uid-%020d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		_, seq := l.Sent("conv", 2, []int{1}, t0)
		l.Acked(seq, uids[i], int64(i), t0)
		l.Delivered(0, seq, strings.Clone(uids[i]), 1, false, t0)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/float64(b.N), "objects/msg")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "B/msg")
	runtime.KeepAlive(l)
}
