package loadtest_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/loadtest"
	"github.com/relaymesh/relaymesh/loadtest/devserver"
)

// TestCrossRegionPlumbing runs the cross-region scenario against a real
// relaymesh dev: with a one-region topology (every pair inside it, as the
// scenario passes until regions replicate) and with two "regions" that
// are two URLs of the same server (so pairs span them both ways and
// deliver). The ledger is settled per region pair.
func TestCrossRegionPlumbing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t)
	u, _ := url.Parse(srv.URL)
	alias := "ws://localhost:" + u.Port() + "/"
	for _, tc := range []struct {
		name    string
		regions []loadtest.Region
		pairs   []string
	}{
		{"one region", []loadtest.Region{{Name: "dev", Edges: []string{srv.URL}}}, []string{"dev->dev"}},
		{"two regions on one server", []loadtest.Region{{Name: "a", Edges: []string{srv.URL}}, {Name: "b", Edges: []string{alias}}}, []string{"a->b", "b->a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loadtest.Config{Scenario: loadtest.ScenarioCrossRegion, Regions: tc.regions, Sessions: 8, Rate: 20,
				Duration: 2 * time.Second, Drain: 3 * time.Second, Progress: time.Second, RunID: "xr-" + strings.ReplaceAll(tc.name, " ", "-")}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := loadtest.Run(ctx, cfg, logWriter{t})
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			s.WriteText(&text)
			t.Log("\n" + text.String())
			if !s.Passed || s.Lost != 0 || s.Sessions != 8 || s.Acked < 20 {
				t.Fatalf("passed %v lost %d sessions %d acked %d", s.Passed, s.Lost, s.Sessions, s.Acked)
			}
			if len(s.RegionPairs) != len(tc.pairs) {
				t.Fatalf("region pairs %v, want %v", keys(s.RegionPairs), tc.pairs)
			}
			var acked, delivered int64
			for _, p := range tc.pairs {
				x := s.RegionPairs[p]
				if x == nil || x.Acked == 0 || x.Delivered != x.Expected || x.Expected != x.Acked ||
					x.DeliveryLatencyMS.Count != x.Delivered || x.LatencyMS.Count != x.Acked {
					t.Errorf("pair %s: %+v", p, x)
					continue
				}
				acked += x.Acked
				delivered += x.Delivered
			}
			if acked != s.Acked || delivered != s.Delivered {
				t.Errorf("pairs add up to acked %d delivered %d; the run %d and %d", acked, delivered, s.Acked, s.Delivered)
			}
			if !strings.Contains(text.String(), "region pair "+tc.pairs[0]) {
				t.Error("the text summary has no region pair line")
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
