package query

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relaymesh/relaymesh/metric"
)

func mustWhere(t *testing.T, s string) map[string]any {
	t.Helper()
	w, err := Decode([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	if err := Check(w); err != nil {
		t.Fatalf("check %s: %v", s, err)
	}
	return w
}

// TestMatch: each operator against a conversation-like row.
func TestMatch(t *testing.T) {
	row := map[string]any{
		"objectId": "c1", "name": "Tom & Jerry", "m": []string{"tom", "jerry"}, "tr": false,
		"attr":          map[string]any{"level": 3},
		"lm":            map[string]any{"__type": "Date", "iso": "2026-01-02T00:00:00.000Z"},
		"msg_timestamp": int64(1700000000000),
	}
	for _, tt := range []struct {
		where string
		want  bool
	}{
		{`{}`, true},
		{`{"name":"Tom & Jerry"}`, true},
		{`{"name":"Tom"}`, false},
		{`{"m":"tom"}`, true}, // array field: membership
		{`{"m":{"$all":["tom","jerry"]}}`, true},
		{`{"m":{"$all":["tom","spike"]}}`, false},
		{`{"m":{"$size":2}}`, true},
		{`{"name":{"$in":["x","Tom & Jerry"]}}`, true},
		{`{"name":{"$nin":["Tom & Jerry"]}}`, false},
		{`{"name":{"$ne":"x"},"tr":false}`, true},
		{`{"gone":{"$exists":false}}`, true},
		{`{"name":{"$exists":false}}`, false},
		{`{"attr.level":{"$gte":3,"$lt":4}}`, true},
		{`{"attr.level":{"$gt":3}}`, false},
		{`{"lm":{"$gt":{"__type":"Date","iso":"2026-01-01T00:00:00.000Z"}}}`, true},
		{`{"msg_timestamp":{"$lte":1700000000000}}`, true},
		{`{"name":{"$regex":"^tom","$options":"i"}}`, true},
		{`{"name":{"$regex":"^tom"}}`, false},
		{`{"$or":[{"name":"x"},{"m":"jerry"}]}`, true},
		{`{"$and":[{"name":"Tom & Jerry"},{"m":"spike"}]}`, false},
		{`{"name":{"$near":1}}`, false}, // unsupported operator: nothing
	} {
		m := &Matcher{Where: mustWhere(t, tt.where)}
		if got := m.Match(row); got != tt.want || m.Err() != nil {
			t.Errorf("%s: got %v (err %v), want %v", tt.where, got, m.Err(), tt.want)
		}
	}
}

// TestCheckBounds: clauses past a bound are refused with the reason the
// client reads; the clause at the bound passes.
func TestCheckBounds(t *testing.T) {
	ids := func(n int) string {
		var in []string
		for i := range n {
			in = append(in, fmt.Sprintf("%q", fmt.Sprint("id", i)))
		}
		return `{"objectId":{"$in":[` + strings.Join(in, ",") + `]}}`
	}
	deep := func(n int) string { return strings.Repeat(`{"$or":[`, n) + `{"a":1}` + strings.Repeat(`]}`, n) }
	for _, tt := range []struct{ name, where, err string }{
		{"terms at the bound", ids(MaxWhereTerms - 2), ""},
		{"too many terms", ids(MaxWhereTerms), "where has more than 256 terms"},
		{"nested at the bound", deep(4), ""},
		{"nested too deep", deep(5), "where nests deeper than 10"},
		{"long regex", fmt.Sprintf(`{"a":{"$regex":%q}}`, strings.Repeat("a", MaxRegexBytes+1)), "$regex over 256 bytes"},
		{"complex regex", `{"a":{"$regex":"a{200}b{200}"}}`, "$regex too complex"},
		{"bad options", `{"a":{"$regex":"a","$options":"x"}}`, "$options may only hold i, m and s"},
		{"not a string", `{"a":{"$regex":5}}`, "$regex must be a string"},
	} {
		w, err := Decode([]byte(tt.where))
		if err != nil {
			t.Fatal(err)
		}
		err = Check(w)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: got %v, want it accepted", tt.name, err)
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.err)
		}
	}
}

// TestRegexInputBudget: once a query's regexes have read MaxRegexInput
// bytes nothing more matches and Err says why.
func TestRegexInputBudget(t *testing.T) {
	m := &Matcher{Where: mustWhere(t, `{"s":{"$regex":"x"}}`)}
	row := map[string]any{"s": strings.Repeat("x", MaxRegexInput/4)}
	for i := range 4 {
		if !m.Match(row) {
			t.Fatalf("row %d within the budget did not match", i)
		}
	}
	if m.Match(row) || m.Err() == nil || m.Err().Error() != "$regex would read more than 1048576 bytes" {
		t.Fatalf("past the budget: err %v, want the regex input refusal", m.Err())
	}
}

func TestSort(t *testing.T) {
	if _, err := ParseSort("a,b,c,d,e,f,g,h,i"); err == nil || err.Error() != "sort by more than 8 keys" {
		t.Fatalf("nine keys: got %v", err)
	}
	rows := []map[string]any{
		{"objectId": "c", "n": 1},
		{"objectId": "a", "n": 2},
		{"objectId": "b"},
		{"objectId": "d", "n": 2},
	}
	order := func() []string {
		var out []string
		for _, r := range rows {
			out = append(out, r["objectId"].(string))
		}
		return out
	}
	keys, err := ParseSort("-n")
	if err != nil {
		t.Fatal(err)
	}
	Sort(rows, keys)
	if got, want := order(), []string{"a", "d", "c", "b"}; !slices.Equal(got, want) {
		t.Fatalf("-n: got %v, want %v (missing last, ties by objectId)", got, want)
	}
	keys, _ = ParseSort(" n ")
	Sort(rows, keys)
	if got, want := order(), []string{"b", "c", "a", "d"}; !slices.Equal(got, want) {
		t.Fatalf("n: got %v, want %v (missing first)", got, want)
	}
	if keys, _ := ParseSort(""); len(keys) != 1 || keys[0] != (SortKey{"lm", true}) {
		t.Fatalf("default sort: got %v, want -lm", keys)
	}
}

// TestMeter: a new app starts with the burst; a query past the bucket is
// admitted, the next waits for the refill; examined counts everything.
func TestMeter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := NewMeter(10, 20)
	if !m.Admit("a", t0) {
		t.Fatal("a new app was refused")
	}
	m.Charge("a", 25, t0)
	if m.Admit("a", t0) {
		t.Fatal("admitted with the bucket below zero")
	}
	if !m.Admit("a", t0.Add(time.Second)) { // -5 + 10
		t.Fatal("refused after the refill")
	}
	if !m.Admit("b", t0) {
		t.Fatal("another app's budget was spent")
	}
	if got := m.Examined("a"); got != 25 {
		t.Fatalf("examined: got %d, want 25", got)
	}
	m.Refuse(RefusedScan)
	text, err := metric.Text(m.Collector())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`relaymesh_core_query_examined_total{app="a"} 25`,
		`relaymesh_core_queries_refused_total{reason="scan"} 1`,
		`relaymesh_core_queries_refused_total{reason="where"} 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	if problems, err := testutil.CollectAndLint(m.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if n := testutil.CollectAndCount(m.Collector(), "relaymesh_core_query_examined_total"); n != 2 {
		t.Errorf("examined series: got %d, want one per app (a, b)", n)
	}
}
