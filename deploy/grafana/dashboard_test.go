// Package grafana tests the Grafana dashboard under deploy/grafana: it is
// a dashboard Grafana can import (the schema basics), and every series its
// PromQL names is one relaymesh exports, checked against the /metrics of
// a real `relaymesh dev` that has carried some traffic.
package grafana

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/internal/testbin"
	"github.com/relaymesh/relaymesh/loadtest/devserver"
)

// TestMain removes the relaymesh binary devserver built.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Remove()
	os.Exit(code)
}

const dashboardFile = "relaymesh.json"

// dashboard is the part of Grafana's dashboard JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func load(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	d := new(dashboard)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value", dashboardFile)
	}
	return d
}

// allPanels flattens rows (collapsed rows hold their panels).
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// TestDashboardSchema: uid, title, schema version, a Prometheus
// datasource variable every panel uses, unique panel ids, panels inside
// Grafana's 24-column grid without overlaps, and every graph panel with
// targets that each have a refId (unique in the panel) and a PromQL
// expression.
func TestDashboardSchema(t *testing.T) {
	d := load(t)
	if d.UID == "" || len(d.UID) > 40 || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want a uid of at most 40 characters, a title and a schema version of at least 30", d.UID, d.Title, d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("no datasource variable of type prometheus")
	}
	ps := allPanels(d.Panels)
	if len(ps) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	graphs := 0
	for _, p := range ps {
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d is not a unique positive number", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if o, ok := taken[cell{x, y}]; ok {
					t.Fatalf("panel %q overlaps %q at (%d, %d)", p.Title, o, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		graphs++
		if !slices.Contains([]string{"timeseries", "stat", "gauge", "table", "bargauge", "heatmap"}, p.Type) {
			t.Errorf("panel %q: type %q", p.Title, p.Type)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %q with expr %q: want a unique refId and an expression", p.Title, tg.RefID, tg.Expr)
			}
			refs[tg.RefID] = true
			if len(metricNames(tg.Expr)) == 0 {
				t.Errorf("panel %q: %q names no metric", p.Title, tg.Expr)
			}
		}
	}
	if graphs < 10 {
		t.Errorf("%d graph panels, want the dashboard the issue asks for", graphs)
	}
}

// PromQL words that are not metric names.
var promqlWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"offset": true, "bool": true, "and": true, "or": true, "unless": true, "atan2": true, "inf": true, "nan": true,
}

var (
	reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	reRange    = regexp.MustCompile(`\[[^\]]*\]`)
	reOffset   = regexp.MustCompile(`\boffset\s+-?[0-9A-Za-z$_]+`)
	reMatchers = regexp.MustCompile(`\{[^}]*\}`)
	reGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	reNumber   = regexp.MustCompile(`\b\d+(\.\d+)?([eE][+-]?\d+)?\b`)
)

// metricNames returns the metric names a PromQL expression selects:
// identifiers outside strings, label matchers, ranges and grouping
// clauses, that are neither functions (followed by "(") nor keywords.
func metricNames(expr string) []string {
	s := reString.ReplaceAllString(expr, `""`)
	s = reRange.ReplaceAllString(s, " ")
	s = reOffset.ReplaceAllString(s, " ")
	s = reMatchers.ReplaceAllString(s, " ")
	s = reGrouping.ReplaceAllString(s, " ")
	s = reNumber.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range reIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promqlWords[strings.ToLower(name)] || strings.HasPrefix(name, "$") {
			continue
		}
		if loc[0] > 0 && s[loc[0]-1] == '$' { // a Grafana variable
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// exposition is what a scrape declares: every family's type (# TYPE) and
// every sample's name.
type exposition struct {
	types   map[string]string
	samples map[string]bool
}

func parseExposition(r io.Reader) (*exposition, error) {
	e := &exposition{types: map[string]string{}, samples: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 {
				return nil, fmt.Errorf("bad TYPE line %q", line)
			}
			e.types[f[2]] = f[3]
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			name := line
			if i := strings.IndexAny(line, "{ "); i >= 0 {
				name = line[:i]
			}
			e.samples[name] = true
		}
	}
	return e, sc.Err()
}

// exports reports whether the scrape exports the series name: a sample of
// that name, a family declared with no sample yet (a labelled counter
// before its first event), or a histogram's or summary's _bucket, _sum or
// _count of a family of that type.
func (e *exposition) exports(name string) bool {
	if e.samples[name] {
		return true
	}
	if _, ok := e.types[name]; ok {
		return e.types[name] != "histogram" // a histogram is queried by its parts
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		switch e.types[base] {
		case "histogram":
			return true
		case "summary":
			return suf != "_bucket"
		}
	}
	return false
}

// TestMetricNames: the extraction and the check catch what they must —
// names inside functions, binary operators and aggregations; not label
// names, values, functions, durations or Grafana variables; and a
// histogram's parts only for a histogram.
func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`sum by (shard, instance) (rate(a_total{x="b_total",y=~"c|d"}[$__rate_interval]))`, []string{"a_total"}},
		{`max by (shard) (x_index - y_index) / on(shard) group_left count(z)`, []string{"x_index", "y_index", "z"}},
		{`histogram_quantile(0.99, sum by (le) (rate(lat_seconds_bucket[5m]))) > bool 1e3`, []string{"lat_seconds_bucket"}},
		{`sum without(instance)(m:recorded) offset 5m or vector(0)`, []string{"m:recorded"}},
		{`label_replace(up, "dst", "$1", 'src', "(.*)")`, []string{"up"}},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
	e, err := parseExposition(strings.NewReader(`# TYPE c_total counter
c_total 3
# TYPE l counter
# TYPE h_seconds histogram
h_seconds_bucket{le="+Inf"} 1
h_seconds_sum 1
h_seconds_count 1
# TYPE s summary
s{quantile="0.5"} 1
s_sum 1
s_count 1
g{a="b"} 2
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"c_total": true, "l": true, "g": true, "h_seconds_bucket": true, "h_seconds_count": true, "s_sum": true, "s": true,
		"c": false, "c_total_count": false, "h_seconds": false, "s_bucket": false, "nope": false, "l_bucket": false,
	} {
		if got := e.exports(name); got != want {
			t.Errorf("exports(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestDashboardMetricsExported starts a real `relaymesh dev`, has two
// clients talk through it, scrapes /metrics (in dev the edge's series and
// the core's together, as an edge's /metrics and a core's admin listener
// give them in production) and checks that every metric the dashboard
// names is there.
func TestDashboardMetricsExported(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs relaymesh dev")
	}
	d := load(t)
	// Over QUIC, as separate edge and core processes talk: the dashboard's
	// mesh panels read QUIC's round-trip times, which dev in memory has not.
	srv := devserver.Start(t, "--mesh-over-quic")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(id string) *client.Client {
		c, err := client.Dial(ctx, srv.URL, client.Options{AppID: "grafana-app", ClientID: id})
		if err != nil {
			t.Fatalf("dial %s: %v", id, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	cid, err := alice.CreateConversation(ctx, []string{"alice", "bob"}, "grafana", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := alice.Send(ctx, cid, fmt.Sprintf("hello %d", i), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for got := 0; got < 3; {
		select {
		case ev := <-bob.Events():
			if _, ok := ev.(client.Message); ok {
				got++
			}
		case <-ctx.Done():
			t.Fatalf("bob got %d of 3 messages", got)
		}
	}

	scrape := func() []byte {
		t.Helper()
		resp, err := http.Get("http://" + srv.Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d", resp.StatusCode)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	// The three copies bob read are timed once their writes return (just
	// after bob may have read them): poll for them.
	body := scrape()
	for deadline := time.Now().Add(5 * time.Second); sumSamples(string(body), "relaymesh_delivery_seconds_count") < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("relaymesh_delivery_seconds_count: %v in all, want the 3 copies bob read", sumSamples(string(body), "relaymesh_delivery_seconds_count"))
		}
		time.Sleep(20 * time.Millisecond)
		body = scrape()
	}
	e, err := parseExposition(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	// The traffic shows: three sends counted, and their acks timed.
	for _, want := range []string{`relaymesh_edge_commands_total{cmd="direct"} 3`, `relaymesh_edge_backend_seconds_count{cmd="direct"} 3`,
		`relaymesh_edge_transport_sessions{transport="websocket"} 2`} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("the scrape lacks %s", want)
		}
	}
	if !e.samples["relaymesh_edge_sessions"] || !e.samples["relaymesh_raft_leader"] {
		t.Fatalf("the scrape lacks the edge's or the core's series: %d families", len(e.types))
	}
	// The other latency series carry the traffic too: the sends' raft
	// proposals, the edge's and the core's mesh connection to each other.
	if n := sumSamples(string(body), "relaymesh_raft_apply_seconds_count"); n < 3 {
		t.Errorf("relaymesh_raft_apply_seconds_count: %v in all, want at least the 3 sends", n)
	}
	for _, want := range []string{`node="edge-1",peer="core-1"`, `node="core-1",peer="edge-1"`} {
		if !strings.Contains(string(body), "relaymesh_mesh_rtt_seconds{") || !strings.Contains(string(body), want) {
			t.Errorf("the scrape has no relaymesh_mesh_rtt_seconds{…%s}", want)
		}
	}
	var used []string
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			for _, name := range metricNames(tg.Expr) {
				if !e.exports(name) {
					t.Errorf("panel %q: %s is not exported (expr %s)", p.Title, name, tg.Expr)
				}
				if !slices.Contains(used, name) {
					used = append(used, name)
				}
			}
		}
	}
	t.Logf("the dashboard uses %d of the %d exported families", len(used), len(e.types))
}

// sumSamples adds up the values of every sample of name (any labels) in
// a scrape's text.
func sumSamples(text, name string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum
}
