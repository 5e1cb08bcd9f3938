package loadtest

import (
	"slices"
	"testing"
)

// TestRegionSessions: pair k's members are in regions k and k+1 (mod n),
// each at an edge of its region, with its region's other edges and then
// the other regions' edges behind it.
func TestRegionSessions(t *testing.T) {
	w := &worker{cfg: Config{RunID: "t", Regions: []Region{
		{Name: "a", Edges: []string{"a1", "a2"}},
		{Name: "b", Edges: []string{"b1"}},
		{Name: "c", Edges: []string{"c1", "c2"}},
	}}}
	ss := w.newRegionSessions("x", 0, 8)
	var pairs []string
	for i := 0; i < len(ss); i += 2 {
		pairs = append(pairs, pairLabel(ss[i].region, ss[i+1].region))
	}
	if want := []string{"a->b", "b->c", "c->a", "a->b"}; !slices.Equal(pairs, want) {
		t.Errorf("pairs %v, want %v", pairs, want)
	}
	for _, s := range ss {
		if s.target[0] != s.region[0] {
			t.Errorf("%s in region %s logs in at %s", s.id, s.region, s.target)
		}
		if len(s.servers) != 4 || slices.Contains(s.servers, s.target) {
			t.Errorf("%s: servers %v (target %s), want the 4 other edges", s.id, s.servers, s.target)
		}
	}
	// Session 0 (pair 0, a): a1, then a2, then b, then c.
	if s := ss[0]; s.target != "a1" || !slices.Equal(s.servers, []string{"a2", "b1", "c1", "c2"}) {
		t.Errorf("session 0: %s %v", s.target, s.servers)
	}
	// Pair 1's first member in b spreads to the next edge of a region of two: pair 3 (a) uses a2.
	if s := ss[6]; s.target != "a2" {
		t.Errorf("session 6 (pair 3, a): at %s, want a2", s.target)
	}
	// One region: every pair is inside it.
	one := &worker{cfg: Config{RunID: "t", Regions: []Region{{Name: "dev", Edges: []string{"e"}}}}}
	for _, s := range one.newRegionSessions("x", 3, 4) {
		if s.region != "dev" || s.target != "e" || len(s.servers) != 0 {
			t.Errorf("one region: %+v", s)
		}
	}
}

// TestRegionSessionsViaRouter: with ViaRouter a session knows its
// region's router and only its own region's edges: another region only
// through the router's secondary.
func TestRegionSessionsViaRouter(t *testing.T) {
	w := &worker{cfg: Config{RunID: "t", ViaRouter: true, Regions: []Region{
		{Name: "a", Edges: []string{"a1", "a2"}, Router: "http://ra"},
		{Name: "b", Edges: []string{"b1"}, Router: "http://rb"},
	}}}
	for _, s := range w.newRegionSessions("x", 0, 4) {
		want := map[string]string{"a": "http://ra", "b": "http://rb"}[s.region]
		if s.router != want || s.target[0] != s.region[0] {
			t.Errorf("%s in %s: router %q target %s", s.id, s.region, s.router, s.target)
		}
		for _, u := range s.servers {
			if u[0] != s.region[0] {
				t.Errorf("%s in %s knows %s of another region", s.id, s.region, u)
			}
		}
		if o := w.options(s); o.Router != want {
			t.Errorf("%s: client options router %q", s.id, o.Router)
		}
	}
	bad := Config{Scenario: ScenarioCrossRegion, Sessions: 2, ViaRouter: true, Regions: []Region{{Name: "a", Edges: []string{"ws://a/"}}}}
	bad.Defaults()
	if err := bad.Validate(); err == nil {
		t.Error("ViaRouter without a router in the topology was accepted")
	}
}
