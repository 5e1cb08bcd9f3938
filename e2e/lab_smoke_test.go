package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/loadtest"
)

// TestLabSmoke is make lab's smoke of `relaymesh lab` at full size: two
// regions of 3 cores and 2 edges (10 processes) 80 ms apart. It measures
// the start, the round trip between regions through real cores, a
// partition and its healing, a leader killed under the lab, the load
// tester's cross-region scenario on each region (pairs inside it: regions
// do not replicate yet), and a SIGTERM that must leave nothing behind.
// The figures go to docs/BENCHMARKS.md.
func TestLabSmoke(t *testing.T) {
	labRun(t)
	const oneWay = 80 * time.Millisecond
	l := startLabProc(t, "--regions", "2", "--latency", oneWay.String())
	top := l.top
	t.Logf("FIGURE start: 2 regions × (3 cores + 2 edges) ready in %v (lab's own count %d ms)", l.ready.Round(time.Millisecond), l.desc.StartedMS)
	if len(top.Regions) != 2 || len(top.Regions[0].Edges) != 2 {
		t.Fatalf("topology %+v", top)
	}
	// ctl calls the control API and returns the status; only no answer at
	// all fails the test.
	ctl := func(method, path string, v any) int {
		t.Helper()
		code, err := l.ctl(method, path, v)
		if code == 0 {
			t.Fatal(err)
		}
		return code
	}
	probe := func(from, to string, n int) []float64 {
		var r struct {
			RTT   []float64 `json:"rtt_ms"`
			Error string
		}
		ctl("GET", fmt.Sprintf("/probe?from=%s&to=%s&n=%d&timeout=%s", from, to, n, time.Duration(n)*time.Second), &r)
		slices.Sort(r.RTT)
		return r.RTT
	}
	q := func(v []float64, p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }

	// The network between regions.
	for _, pair := range [][2]string{{"r1", "r2"}, {"r2", "r1"}} {
		rtt := probe(pair[0], pair[1], 50)
		if len(rtt) != 50 || rtt[0] < 2*float64(oneWay.Milliseconds()) {
			t.Fatalf("%s→%s: %v", pair[0], pair[1], rtt)
		}
		t.Logf("FIGURE rtt %s→%s (one-way %v, PING over QUIC to a core process): min %.1f p50 %.1f p99 %.1f max %.1f ms",
			pair[0], pair[1], oneWay, rtt[0], q(rtt, 0.5), q(rtt, 0.99), rtt[len(rtt)-1])
	}
	local := probe("r1", "r1", 50)
	t.Logf("FIGURE rtt inside r1: p50 %.2f p99 %.2f ms", q(local, 0.5), q(local, 0.99))
	if ctl("POST", "/link?a=r1&b=r2&latency=80ms&jitter=10ms", nil) != 200 {
		t.Fatal("link")
	}
	jit := probe("r1", "r2", 100)
	t.Logf("FIGURE rtt r1→r2 with 80ms ± 10ms each way: min %.1f p50 %.1f p99 %.1f max %.1f ms", jit[0], q(jit, 0.5), q(jit, 0.99), jit[len(jit)-1])
	ctl("POST", "/link?a=r1&b=r2&latency=80ms", nil)

	// A partition, then healing.
	t1 := time.Now()
	if ctl("POST", "/partition?a=r1&b=r2", nil) != 200 {
		t.Fatal("partition")
	}
	t.Logf("FIGURE partition in force in every process after %v", time.Since(t1).Round(time.Millisecond))
	if rtt := probe("r1", "r2", 1); len(rtt) != 0 {
		t.Fatalf("a probe crossed the partition: %v", rtt)
	}
	t1 = time.Now()
	ctl("POST", "/heal?a=r1", nil)
	if rtt := probe("r1", "r2", 3); len(rtt) != 3 {
		t.Fatal("no probe after healing")
	}
	t.Logf("FIGURE healed: a PING across again %v after the heal call", time.Since(t1).Round(time.Millisecond))

	// Kill r1's leader: the region serves again once another core leads.
	var lead struct{ Node string }
	ctl("GET", "/leader?region=r1", &lead)
	if lead.Node == "" {
		t.Fatal("r1 has no leader")
	}
	t1 = time.Now()
	if ctl("POST", "/kill?node="+lead.Node, nil) != 200 {
		t.Fatal("kill")
	}
	for {
		var now struct{ Node string }
		ctl("GET", "/leader?region=r1", &now)
		if now.Node != "" && now.Node != lead.Node {
			t.Logf("FIGURE kill -9 of r1's leader %s: %s leads after %v", lead.Node, now.Node, time.Since(t1).Round(time.Millisecond))
			break
		}
		if time.Since(t1) > time.Minute {
			t.Fatal("no new leader in r1 after a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ctl("POST", "/start?node="+lead.Node, nil) != 200 {
		t.Fatal("restart")
	}

	// The load tester's cross-region scenario, on each region alone (pairs
	// inside it): until regions replicate, a pair across them cannot work.
	for _, r := range top.Regions {
		cfg := loadtest.Config{Scenario: loadtest.ScenarioCrossRegion, AppID: "lab-app", Sessions: 40, Rate: 40,
			Duration: 5 * time.Second, Drain: 5 * time.Second, Progress: -1, RunID: "labsmoke-" + r.Name,
			Regions: []loadtest.Region{{Name: r.Name, Edges: r.Edges}}}
		s := runLabLoad(t, cfg)
		x := s.RegionPairs[r.Name+"->"+r.Name]
		if !s.Passed || x == nil || x.Lost != 0 {
			t.Fatalf("cross-region in %s: passed %v lost %d", r.Name, s.Passed, s.Lost)
		}
		t.Logf("FIGURE cross-region scenario inside %s: %d acked, delivery p50 %.1f p99 %.1f ms, send→ack p99 %.1f ms",
			r.Name, x.Acked, x.DeliveryLatencyMS.P50, x.DeliveryLatencyMS.P99, x.LatencyMS.P99)
	}

	// And across the regions (issue 9 step 4): senders in one region,
	// receivers in the other, conversations homed in either.
	{
		var regions []loadtest.Region
		for _, r := range top.Regions {
			regions = append(regions, loadtest.Region{Name: r.Name, Edges: r.Edges})
		}
		cfg := loadtest.Config{Scenario: loadtest.ScenarioCrossRegion, AppID: "lab-app", Sessions: 40, Rate: 40,
			Duration: 10 * time.Second, Drain: 5 * time.Second, Progress: -1, RunID: "labsmoke-across", Regions: regions}
		s := runLabLoad(t, cfg)
		if !s.Passed || s.Lost != 0 {
			t.Fatalf("cross-region across regions: passed %v lost %d", s.Passed, s.Lost)
		}
		for pair, x := range s.RegionPairs {
			t.Logf("FIGURE cross-region %s: %d acked, delivery p50 %.1f p99 %.1f ms, send→ack p99 %.1f ms (one-way %v)",
				pair, x.Acked, x.DeliveryLatencyMS.P50, x.DeliveryLatencyMS.P99, x.LatencyMS.P99, oneWay)
		}
	}

	// SIGTERM: every process stops, nothing stays behind.
	var pids []int
	b, _ := os.ReadFile(filepath.Join(l.dir, "lab.json"))
	json.Unmarshal(b, &l.desc)
	for _, r := range l.desc.Regions {
		for _, n := range r.Nodes {
			pids = append(pids, n.PID)
		}
	}
	t1 = time.Now()
	l.terminate(2 * time.Minute)
	t.Logf("FIGURE stop: SIGTERM to exit %v (edges drain, then cores)", time.Since(t1).Round(time.Millisecond))
	l.checkGone(pids)
}
