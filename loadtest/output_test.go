package loadtest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHistJSONRoundTrip(t *testing.T) {
	h := NewHist()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var g Hist
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	want, got := h.Quantiles(), g.Quantiles()
	if got != want {
		t.Errorf("after round trip got %+v, want %+v", got, want)
	}
	if want.Count != 1000 || want.P50 < 495 || want.P50 > 505 || want.P99 < 985 || want.P99 > 995 {
		t.Errorf("quantiles %+v, want p50≈500 p99≈990 of 1000", want)
	}
	m := NewHist()
	m.Merge(h)
	m.Merge(&g)
	if got := m.Count(); got != 2000 {
		t.Errorf("merged count = %d, want 2000", got)
	}
}

func TestSeriesPoints(t *testing.T) {
	t0 := time.Unix(100, 0)
	s := NewSeries(t0)
	s.Record(t0.Add(100*time.Millisecond), 2*time.Millisecond)
	s.Record(t0.Add(2500*time.Millisecond), 8*time.Millisecond)
	w := s.Windows()
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var back map[int]*Hist
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	merged := map[int]*Hist{}
	mergeWindows(merged, back)
	mergeWindows(merged, w)
	ps := Points(merged)
	if len(ps) != 3 {
		t.Fatalf("got %d points, want 3 (seconds 0..2)", len(ps))
	}
	if ps[0].Count != 2 || ps[1].Count != 0 || ps[2].Count != 2 {
		t.Errorf("counts %d %d %d, want 2 0 2", ps[0].Count, ps[1].Count, ps[2].Count)
	}
	if ps[2].P50 < 7.9 || ps[2].P50 > 8.1 {
		t.Errorf("second 2 p50 = %v ms, want 8", ps[2].P50)
	}
}

// TestSecondsSummary: the p99 of each second with a count, spread: median,
// worst, seconds over SlowSecondMS; empty seconds do not count.
func TestSecondsSummary(t *testing.T) {
	t0 := time.Unix(100, 0)
	s := NewSeries(t0)
	for sec, ms := range []int{5, 7, 0, 80, 6, 300} {
		if ms == 0 {
			continue // a second without sends
		}
		for i := range 100 {
			s.Record(t0.Add(time.Duration(sec)*time.Second+time.Duration(i)*time.Millisecond), time.Duration(ms)*time.Millisecond)
		}
	}
	got := SecondsSummary(Points(s.Windows()))
	if got.Seconds != 5 || got.Slow != 2 {
		t.Fatalf("seconds %d slow %d, want 5 and 2", got.Seconds, got.Slow)
	}
	if got.MedianP99 < 6.8 || got.MedianP99 > 7.2 || got.WorstP99 < 290 || got.WorstP99 > 310 {
		t.Fatalf("median p99 %.1f, worst %.1f; want 7 and 300", got.MedianP99, got.WorstP99)
	}
	if z := SecondsSummary(nil); z != (SecondTail{}) {
		t.Fatalf("empty series: %+v", z)
	}
}

// sampleSummary builds a summary from a worker report with some traffic.
func sampleSummary() *Summary {
	l := NewLedger(0, nil)
	r := &Report{Sessions: 4, Connect: NewHist(), Ack: NewHist(), Deliver: NewHist(), Recover: NewHist(),
		SendSeconds: 2}
	t0 := time.Now()
	ack, del := NewSeries(t0), NewSeries(t0)
	for i := range 50 {
		_, seq := l.Sent("c", 2, []int{1}, t0)
		l.Acked(seq, "u", int64(i), t0)
		if i != 7 {
			l.Delivered(0, seq, "u", 1, false, t0)
		}
		d := time.Duration(i+1) * time.Millisecond
		r.Ack.Record(d)
		r.Deliver.Record(d + time.Millisecond)
		ack.Record(t0.Add(time.Duration(i)*40*time.Millisecond), d)
		del.Record(t0.Add(time.Duration(i)*40*time.Millisecond), d)
	}
	r.Connect.Record(3 * time.Millisecond)
	r.Counts, r.AckSeries, r.DeliverSeries = l.Settle(), ack.Windows(), del.Windows()
	r.Errors = []string{"a <b> & c"}
	cfg := Config{Scenario: ScenarioPairs, Targets: []string{"ws://127.0.0.1:1/"}, Sessions: 4, Rate: 25, Duration: 2 * time.Second}
	s := buildSummary(cfg, 1, []*Report{roundTrip(r)}, 3*time.Second)
	s.Started = "2026-01-01T00:00:00Z"
	return s
}

// roundTrip sends r through JSON as a worker process would.
func roundTrip(r *Report) *Report {
	b, err := json.Marshal(workerLine{Report: r})
	if err != nil {
		panic(err)
	}
	var l workerLine
	if err := json.Unmarshal(b, &l); err != nil {
		panic(err)
	}
	return l.Report
}

func TestSummaryJSON(t *testing.T) {
	s := sampleSummary()
	if s.Passed || s.Lost != 1 || s.Acked != 50 || s.Delivered != 49 {
		t.Errorf("got passed %v lost %d acked %d delivered %d, want false 1 50 49", s.Passed, s.Lost, s.Acked, s.Delivered)
	}
	path := filepath.Join(t.TempDir(), "run.json")
	htmlPath, err := s.WriteFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSuffix(path, ".json") + ".html"; htmlPath != want {
		t.Errorf("html path %s, want %s", htmlPath, want)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkSummaryJSON(t, b)
	var text bytes.Buffer
	s.WriteText(&text)
	if !strings.Contains(text.String(), "FAIL: 1 acked") || !strings.Contains(text.String(), "lost: lt:0:8") {
		t.Errorf("human summary lacks the failure or the lost sample:\n%s", text.String())
	}
}

// checkSummaryJSON checks b is a JSON object with the fields operators
// rely on, and returns it decoded.
func checkSummaryJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, b)
	}
	for _, k := range []string{"scenario", "sessions", "sent", "acked", "delivered", "expected", "lost",
		"duplicates", "duplicates_after_dedup", "lost_after_dedup", "late", "latency_ms",
		"delivery_latency_ms", "throughput_per_s", "passed"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary has no %q", k)
		}
	}
	for _, k := range []string{"latency_ms", "delivery_latency_ms"} {
		q, _ := m[k].(map[string]any)
		for _, p := range []string{"p50", "p90", "p99", "max"} {
			if _, ok := q[p].(float64); !ok {
				t.Errorf("summary %s has no number %s", k, p)
			}
		}
	}
	return m
}

func TestHTMLWellFormed(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, sampleSummary()); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, b.String())
	// An empty run still renders.
	b.Reset()
	if err := WriteHTML(&b, buildSummary(Config{Scenario: "connect"}, 1, nil, 0)); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, b.String())
}

// checkHTML checks the report's tags balance, it has two SVG plots that
// parse as XML, and it loads nothing from elsewhere.
func checkHTML(t *testing.T, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	d.Strict, d.AutoClose, d.Entity = false, xml.HTMLAutoClose, xml.HTMLEntity
	var stack []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report does not parse: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			stack = append(stack, x.Name.Local)
			for _, a := range x.Attr {
				if (a.Name.Local == "src" || a.Name.Local == "href") && a.Value != "" {
					t.Errorf("report references %s=%q", a.Name.Local, a.Value)
				}
			}
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1] != x.Name.Local {
				t.Fatalf("unbalanced </%s>, open %v", x.Name.Local, stack)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements %v", stack)
	}
	if n := strings.Count(doc, "<svg "); n != 2 {
		t.Errorf("got %d svg plots, want 2", n)
	}
	for _, bad := range []string{"<script", "<link", "@import", "url("} {
		if strings.Contains(doc, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	rest := doc
	for {
		i := strings.Index(rest, "<svg ")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if err := xml.Unmarshal([]byte(rest[i:i+j+len("</svg>")]), new(struct{})); err != nil {
			t.Errorf("svg is not XML: %v", err)
		}
		rest = rest[i+j:]
	}
}

func TestParseSourceIPs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"127.0.0.1-127.0.0.3", []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, false},
		{"10.0.0.1, 10.0.0.9", []string{"10.0.0.1", "10.0.0.9"}, false},
		{"127.0.0.3-127.0.0.1", nil, true},
		{"nope", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseSourceIPs(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseSourceIPs(%q) error %v, want error %v", tt.in, err, tt.err)
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if strings.Join(s, ",") != strings.Join(tt.want, ",") {
			t.Errorf("ParseSourceIPs(%q) = %v, want %v", tt.in, s, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Scenario: ScenarioPairs, Targets: []string{"ws://127.0.0.1:8080/"}, Sessions: 10}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr bool
		notAv   bool
	}{
		{"ok", func(*Config) {}, false, false},
		{"chatroom", func(c *Config) { c.Scenario = ScenarioChatroom }, false, false},
		{"chatroom rooms > sessions", func(c *Config) { c.Scenario, c.Rooms = ScenarioChatroom, 11 }, true, false},
		{"chatroom ids ≠ rooms", func(c *Config) {
			c.Scenario, c.Rooms, c.ChatRoomIDs = ScenarioChatroom, 2, []string{"a"}
		}, true, false},
		{"cross-region without regions", func(c *Config) { c.Scenario = ScenarioCrossRegion }, true, false},
		{"cross-region", func(c *Config) {
			c.Scenario, c.Regions = ScenarioCrossRegion, []Region{{Name: "a", Edges: c.Targets}}
		}, false, false},
		{"cross-region, a region without edges", func(c *Config) {
			c.Scenario, c.Regions = ScenarioCrossRegion, []Region{{Name: "a", Edges: c.Targets}, {Name: "b"}}
		}, true, false},
		{"unknown", func(c *Config) { c.Scenario = "x" }, true, false},
		{"no target", func(c *Config) { c.Targets = nil }, true, false},
		{"http target", func(c *Config) { c.Targets = []string{"http://x/"} }, true, false},
		{"fallback", func(c *Config) { c.Fallbacks = []string{"ws://127.0.0.1:8081/"} }, false, false},
		{"http fallback", func(c *Config) { c.Fallbacks = []string{"http://x/"} }, true, false},
		{"one pair member", func(c *Config) { c.Sessions = 1 }, true, false},
		{"webtransport", func(c *Config) { c.Transport = TransportWebTransport }, false, false},
		{"websocket", func(c *Config) { c.Transport = TransportWebSocket }, false, false},
		{"unknown transport", func(c *Config) { c.Transport = "tcp" }, true, false},
		{"webtransport with loss", func(c *Config) { c.Transport, c.Loss = TransportWebTransport, 0.05 }, false, false},
		{"loss on websocket", func(c *Config) { c.Loss = 0.01 }, true, false},
		{"loss 1", func(c *Config) { c.Transport, c.Loss = TransportWebTransport, 1 }, true, false},
		{"negative loss", func(c *Config) { c.Transport, c.Loss = TransportWebTransport, -0.1 }, true, false},
		{"NaN loss", func(c *Config) { c.Transport, c.Loss = TransportWebTransport, math.NaN() }, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			if (err != nil) != tt.wantErr || errors.Is(err, ErrNotAvailable) != tt.notAv {
				t.Errorf("got %v, want error %v (not available %v)", err, tt.wantErr, tt.notAv)
			}
		})
	}
}

func TestSliceAndWorkerArg(t *testing.T) {
	total := 0
	for i := range 3 {
		first, n := slice(10, i, 3)
		if first != total {
			t.Errorf("worker %d starts at %d, want %d", i, first, total)
		}
		total += n
	}
	if total != 10 {
		t.Errorf("slices cover %d sessions, want 10", total)
	}
	if i, n, err := ParseWorkerArg(workerArg(2, 4)); i != 2 || n != 4 || err != nil {
		t.Errorf("ParseWorkerArg = %d, %d, %v; want 2, 4, nil", i, n, err)
	}
	if _, _, err := ParseWorkerArg("4/4"); err == nil {
		t.Error("ParseWorkerArg(4/4) succeeded, want error")
	}
}

func TestLoadTopology(t *testing.T) {
	p := filepath.Join(t.TempDir(), "topo.json")
	os.WriteFile(p, []byte(`{"regions":[{"name":"a","edges":["ws://127.0.0.1:1/"]},{"name":"b","edges":["ws://127.0.0.1:2/"]}]}`), 0o644)
	got, err := LoadTopology(p)
	if err != nil || len(got) != 2 || got[1] != "ws://127.0.0.1:2/" {
		t.Errorf("LoadTopology = %v, %v; want both edges", got, err)
	}
}

func TestWithGroup(t *testing.T) {
	if got := withGroup("ws://h/", "d"); got != "ws://h/?lt_group=d" {
		t.Errorf("got %s", got)
	}
	if got := withGroup("ws://h/?a=1", "d"); got != "ws://h/?a=1&lt_group=d" {
		t.Errorf("got %s", got)
	}
}
