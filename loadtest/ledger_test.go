package loadtest

import (
	"fmt"
	"reflect"
	"runtime"
	"runtime/metrics"
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

// TestLedgerRecordPointerFree: a record holds no pointer, so its arena's
// chunks are objects the collector does not scan (the reason for arena).
func TestLedgerRecordPointerFree(t *testing.T) {
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				walk(path+"."+typ.Field(i).Name, typ.Field(i).Type)
			}
		case reflect.Array:
			walk(path+"[]", typ.Elem())
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface,
			reflect.Chan, reflect.Func, reflect.UnsafePointer:
			t.Errorf("%s is a %s: the collector would scan every record", path, typ.Kind())
		}
	}
	walk("msgRec", reflect.TypeFor[msgRec]())
}

// TestArena: runs of values past a chunk's end start the next chunk, a run
// larger than a chunk gets one of its own, and each run reads back what was
// written to it.
func TestArena(t *testing.T) {
	a := arena[uint64]{size: 8}
	type run struct {
		ref aref
		n   int
	}
	var runs []run
	for i, n := range []int{3, 3, 3, 8, 20, 1, 7, 1} {
		ref, s := a.alloc(n)
		if len(s) != n || cap(s) != n {
			t.Fatalf("alloc(%d): len %d cap %d", n, len(s), cap(s))
		}
		for j := range s {
			if s[j] != 0 {
				t.Fatalf("alloc(%d): value %d is %d, not zero", n, j, s[j])
			}
			s[j] = uint64(i*100 + j)
		}
		runs = append(runs, run{ref, n})
	}
	for i, r := range runs {
		for j, v := range a.at(r.ref, r.n) {
			if v != uint64(i*100+j) {
				t.Fatalf("run %d (%d at %+v): value %d is %d", i, r.n, r.ref, j, v)
			}
		}
	}
	// 3+3 fill chunk 0 to 6; the third 3 starts chunk 1; 8 takes chunk 2;
	// 20 its own chunk 3; 1+7 fill chunk 4; the last 1 starts chunk 5.
	wantChunks := []uint32{0, 0, 1, 2, 3, 4, 4, 5}
	for i, r := range runs {
		if r.ref.chunk != wantChunks[i] {
			t.Errorf("run %d in chunk %d, want %d", i, r.ref.chunk, wantChunks[i])
		}
	}
}

// TestLedgerManyChunks: 10,000 messages (records, sets and server ids
// over several chunks each) in conversations of 2 to 150 members settle
// as they were sent, acked and received; copies before the ack count.
func TestLedgerManyChunks(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewLedger(0, nil)
	l.bytes.size = 64 // a few server ids a chunk
	var want Counts
	const msgs = 10000
	for i := range msgs {
		n := 2 + i%149
		expect := []int{1, n - 1}
		if n == 2 {
			expect = expect[:1]
		}
		cid := fmt.Sprintf("c%d", i%7)
		_, seq := l.Sent(cid, n, expect, t0.Add(time.Duration(i)*time.Microsecond))
		uid := fmt.Sprintf("uid-%d", i)
		want.Sent++
		if i%10 == 9 {
			want.Failed++
			continue
		}
		early := i%3 == 0 // the copy at position 1 comes before the ack
		if early {
			l.Delivered(0, seq, uid, 1, false, t0.Add(time.Second))
		}
		l.Acked(seq, uid, int64(i), t0.Add(time.Second))
		if !early {
			l.Delivered(0, seq, uid, 1, false, t0.Add(time.Second))
		}
		want.Acked++
		want.Expected += int64(len(expect))
		want.Delivered++
		if len(expect) == 2 {
			if i%11 == 0 {
				want.Lost++
				want.LostAfterDedup++
			} else {
				l.Delivered(0, seq, uid, n-1, i%5 == 0, t0.Add(time.Second))
				if i%5 == 0 {
					want.Late++
				} else {
					want.Delivered++
				}
			}
		}
		if l.LastAcked(cid) != uid {
			t.Fatalf("message %d: LastAcked(%s) = %q", i, cid, l.LastAcked(cid))
		}
	}
	got := l.Settle()
	if len(got.LostSamples) != maxLostSamples || !strings.Contains(got.LostSamples[0], "uid=uid-11 cid=c4 positions=[12]") {
		t.Errorf("lost samples %d, first %q", len(got.LostSamples), got.LostSamples[0])
	}
	got.LostSamples = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("settled %+v\nwant    %+v", got, want)
	}
	if len(l.recs.chunks) < 3 || len(l.words.chunks) < 2 || len(l.bytes.chunks) < 100 {
		t.Fatalf("chunks: %d of records, %d of words, %d of bytes: the test does not cross chunks",
			len(l.recs.chunks), len(l.words.chunks), len(l.bytes.chunks))
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
// (sent, acked, its copy received): heap objects, bytes, and the bytes the
// collector must scan, a record.
func BenchmarkLedgerRecord(b *testing.B) {
	l := NewLedger(0, nil)
	t0 := time.Now()
	uids := make([]string, b.N)
	for i := range uids {
		uids[i] = fmt.Sprintf("uid-%020d", i)
	}
	scan := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	metrics.Read(scan)
	scan0 := scan[0].Value.Uint64()
	b.ResetTimer()
	for i := range b.N {
		_, seq := l.Sent("conv", 2, []int{1}, t0)
		l.Acked(seq, uids[i], int64(i), t0)
		l.Delivered(0, seq, strings.Clone(uids[i]), 1, false, t0)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	metrics.Read(scan)
	n := float64(b.N)
	b.ReportMetric((float64(after.HeapObjects)-float64(before.HeapObjects))/n, "objects/msg")
	b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/n, "B/msg")
	b.ReportMetric((float64(scan[0].Value.Uint64())-float64(scan0))/n, "scanB/msg")
	runtime.KeepAlive(l)
	runtime.KeepAlive(uids)
}
