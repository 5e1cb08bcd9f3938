package netem

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { verifyNoLeaks(m) }

func twoGroups() *Rules {
	return NewRules(
		Group{Name: "r1", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24")}},
		Group{Name: "r2", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.2.0/24"), netip.MustParsePrefix("10.2.0.0/16")}},
	)
}

func TestRulesLookup(t *testing.T) {
	r := twoGroups()
	r.SetPair("r1", "r2", Link{Latency: 80 * time.Millisecond})
	r.Set("r2", Any, Link{Loss: 0.5})
	r.Set(Any, Any, Link{Latency: time.Millisecond})
	for _, tc := range []struct {
		from, to string
		want     Link
	}{
		{"r1", "r2", Link{Latency: 80 * time.Millisecond}},
		{"r2", "r1", Link{Latency: 80 * time.Millisecond}},
		{"r2", "r2", Link{Loss: 0.5}},                 // (from, Any)
		{"r1", "r1", Link{Latency: time.Millisecond}}, // (Any, Any)
		{"", "r1", Link{Latency: time.Millisecond}},
	} {
		if got := r.Link(tc.from, tc.to); got != tc.want {
			t.Errorf("Link(%q, %q) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	for ip, want := range map[string]string{"127.0.1.9": "r1", "127.0.2.1": "r2", "10.2.3.4": "r2", "127.0.3.1": "", "::ffff:127.0.1.1": "r1"} {
		if got := r.GroupOf(netip.MustParseAddr(ip)); got != want {
			t.Errorf("GroupOf(%s) = %q, want %q", ip, got, want)
		}
	}
	r.SetPair("r1", "r2", Link{}) // zero removes
	if got := r.Link("r1", "r2"); got != (Link{Latency: time.Millisecond}) {
		t.Errorf("after removal Link(r1, r2) = %v, want the (Any, Any) link", got)
	}
}

func TestRulesJSONRoundTrip(t *testing.T) {
	r := twoGroups()
	r.Generation = 7
	r.Set("r1", "r2", Link{Latency: 80 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.01})
	r.Set("r2", "r1", Link{Down: true})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got := new(Rules)
	if err := json.Unmarshal(b, got); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if got.Generation != 7 || got.Link("r1", "r2") != r.Link("r1", "r2") || got.Link("r2", "r1") != r.Link("r2", "r1") {
		t.Errorf("round trip of %s: generation %d, r1→r2 %v, r2→r1 %v", b, got.Generation, got.Link("r1", "r2"), got.Link("r2", "r1"))
	}
	if got.GroupOf(netip.MustParseAddr("10.2.9.9")) != "r2" {
		t.Errorf("round trip lost r2's second prefix: %s", b)
	}
}

func TestRulesJSONRefused(t *testing.T) {
	for name, in := range map[string]string{
		"unknown group":    `{"groups":[{"name":"a","cidrs":[]}],"links":[{"from":"a","to":"b","latency":"1ms"}]}`,
		"repeated group":   `{"groups":[{"name":"a"},{"name":"a"}]}`,
		"bad cidr":         `{"groups":[{"name":"a","cidrs":["300.0.0.0/8"]}]}`,
		"bad latency":      `{"groups":[{"name":"a"}],"links":[{"from":"a","to":"a","latency":"fast"}]}`,
		"negative latency": `{"groups":[{"name":"a"}],"links":[{"from":"a","to":"a","latency":"-1ms"}]}`,
		"loss over one":    `{"groups":[{"name":"a"}],"links":[{"from":"a","to":"*","loss":1.5}]}`,
	} {
		err := json.Unmarshal([]byte(in), new(Rules))
		if !errors.Is(err, ErrRules) {
			t.Errorf("%s: got %v, want ErrRules", name, err)
		}
	}
	if err := json.Unmarshal([]byte(`{`), new(Rules)); err == nil {
		t.Error("truncated JSON accepted")
	}
	// Any is always known.
	if err := json.Unmarshal([]byte(`{"links":[{"from":"*","to":"*","loss":0.5}]}`), new(Rules)); err != nil {
		t.Errorf("wildcard link refused: %v", err)
	}
	if s := (Link{Latency: time.Second, Down: true}).String(); !strings.Contains(s, "DOWN") {
		t.Errorf("Link.String() = %q, want DOWN in it", s)
	}
}
