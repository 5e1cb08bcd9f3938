package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/loadtest"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Issue 9's faults under load, on `relaymesh lab --regions 2 --shards 2`
// (2 regions × (3 cores + 2 edges), 80 ms one way): the load tester's
// cross-region scenario runs across both regions while one fault happens
// in the middle, and its ledger must show zero acknowledged messages lost
// (duplicates are counted and logged). Every run ends with a final sync
// (loadtest.Config.FinalSync): each session reads its conversations'
// history, so a message acked but never pushed (a push lost at a cut
// region hop) counts as late, and lost means acked and nowhere.
//
// One lab serves every fault in turn: a baseline run and login latency
// first (the figures of docs/BENCHMARKS.md), then kill -9 of the core that
// leads the most shards of r1, every edge of r1 killed (clients move
// through the router's secondary), r1 partitioned away and healed, and
// last the whole of r1 killed and restarted. Membership operations
// recorded during the leader kill and the partition are checked for
// linearizability (lab_linearizable_test.go).

const faultOneWay = 80 * time.Millisecond

// metrics reads a node's /metrics: series (name with labels) → value.
func nodeMetrics(httpAddr string) (map[string]float64, error) {
	u := httpAddr
	if !strings.HasPrefix(u, "http") {
		u = "http://" + u
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(u + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// shardsLed returns, per running core of region, relaymesh_router_shards_led.
func (l *labProc) shardsLed(region string) map[string]int {
	out := map[string]int{}
	for _, n := range l.nodes(region, "core") {
		if !n.Running {
			continue
		}
		if m, err := nodeMetrics(n.HTTP); err == nil {
			out[n.Name] = int(m["relaymesh_router_shards_led"])
		}
	}
	return out
}

// dropCounters sums the drop counters of every node of the lab: the
// region hop per class (cores) and the edge → client hop per priority.
func (l *labProc) dropCounters() map[string]float64 {
	out := map[string]float64{}
	for _, r := range l.top.Regions {
		for _, role := range []string{"core", "edge"} {
			for _, n := range l.nodes(r.Name, role) {
				if !n.Running {
					continue
				}
				m, err := nodeMetrics(n.HTTP)
				if err != nil {
					continue
				}
				for k, v := range m {
					if strings.HasPrefix(k, "relaymesh_region_pushes_") || strings.HasPrefix(k, "relaymesh_edge_dropped_frames_total") ||
						strings.HasPrefix(k, "relaymesh_edge_link_replay_dropped_total") || strings.HasPrefix(k, "relaymesh_relay_") && strings.Contains(k, "drop") {
						out[r.Name+" "+k] += v
					}
				}
			}
		}
	}
	return out
}

func logFaultDrops(t *testing.T, what string, before, after map[string]float64) {
	var keys []string
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if d := after[k] - before[k]; d != 0 || strings.Contains(k, "dropped") {
			fmt.Fprintf(&b, "\n  %s +%.0f", k, d)
		}
	}
	t.Logf("FIGURE counters during %s (growth; a restarted process starts from 0):%s", what, b.String())
}

// crossCfg is the cross-region scenario over both regions of the lab.
func (l *labProc) crossCfg(runID string, d time.Duration) loadtest.Config {
	var regions []loadtest.Region
	for _, r := range l.top.Regions {
		regions = append(regions, loadtest.Region{Name: r.Name, Edges: r.Edges, Router: r.Router})
	}
	return loadtest.Config{Scenario: loadtest.ScenarioCrossRegion, AppID: "lab-app", Sessions: 40, Rate: 40,
		Duration: d, Drain: 15 * time.Second, Progress: -1, RunID: runID, Regions: regions, FinalSync: true}
}

// checkLedger fails unless no acked message is lost.
func checkFaultLedger(t *testing.T, what string, s *loadtest.Summary) {
	t.Helper()
	if s.Sessions < 40 || s.Acked == 0 {
		t.Fatalf("%s: %d sessions, %d acked", what, s.Sessions, s.Acked)
	}
	if !s.Passed || s.Lost != 0 {
		t.Errorf("%s: %d acked copies lost (samples %v)", what, s.Lost, s.LostSamples)
	}
	t.Logf("FIGURE %s: sent %d acked %d failed %d; copies expected %d, live %d, late (history only) %d, lost %d, duplicates %d (%d after dedup by id), reconnects %d",
		what, s.Sent, s.Acked, s.Failed, s.Expected, s.Delivered, s.Late, s.Lost, s.Duplicates, s.DuplicatesAfterDedup, s.Reconnects)
	if f := s.Fault; f != nil {
		t.Logf("FIGURE %s: fault %.1f s into the sending; %d sends after it, %d acked, %d failed (%d started %v or more after); first ack of a send after it at %.0f ms; failed sends started between %.0f and %.0f ms around it; slowest ack after it %.0f ms",
			what, f.AfterS, f.SentAfter, f.AckedAfter, f.FailedAfter, f.FailedAfterGrace, loadtest.FaultGrace, f.FirstAckAfterMS, f.FirstFailedStartMS, f.LastFailedStartMS, f.MaxAckAfterMS)
	}
}

// sessionsOf returns how many of the run's sessions log in at region ri's
// edges (cross-region: pair k's first member in R[k mod n], second in
// R[(k+1) mod n]).
func sessionsOf(cfg loadtest.Config, ri int) int {
	n := 0
	for g := range cfg.Sessions {
		if (g/2+g%2)%len(cfg.Regions) == ri {
			n++
		}
	}
	return n
}

func TestLabFaults(t *testing.T) {
	labRun(t)
	const shards = 2
	l := startLabProc(t, "--regions", "2", "--shards", strconv.Itoa(shards), "--latency", faultOneWay.String())
	t.Logf("FIGURE start: 2 regions × (3 cores + 2 edges), %d shards per region, ready in %v", shards, time.Since(l.started).Round(time.Millisecond))
	r1, r2 := l.top.Regions[0], l.top.Regions[1]

	t.Run("baseline", func(t *testing.T) {
		before := l.dropCounters()
		s := runLabLoad(t, l.crossCfg("faults-base", 15*time.Second))
		checkFaultLedger(t, "baseline", s)
		if s.Failed != 0 || s.Late != 0 {
			t.Errorf("baseline: %d failed sends, %d late copies with no fault", s.Failed, s.Late)
		}
		for _, pair := range []string{"r1->r1", "r1->r2", "r2->r1", "r2->r2"} {
			if x := s.RegionPairs[pair]; x != nil {
				t.Logf("FIGURE baseline %s: %d acked, send→ack p50 %.1f p99 %.1f ms, delivery p50 %.1f p99 %.1f ms (one-way %v)",
					pair, x.Acked, x.LatencyMS.P50, x.LatencyMS.P99, x.DeliveryLatencyMS.P50, x.DeliveryLatencyMS.P99, faultOneWay)
			}
		}
		t.Logf("FIGURE baseline: %.1f acked msgs/s, %.1f deliveries/s (%d live copies)", s.ThroughputPerS, s.DeliveriesPerS, s.Delivered)
		logFaultDrops(t, "baseline", before, l.dropCounters())
	})

	t.Run("login", func(t *testing.T) { loginAcrossRegions(t, l) })

	t.Run("leader-kill-9", func(t *testing.T) {
		// Every shard of r1 led (shortly after the start one may not be yet).
		const total = shards
		var led map[string]int
		for t0 := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			led = l.shardsLed("r1")
			sum := 0
			for _, k := range led {
				sum += k
			}
			if sum == total {
				break
			}
			if time.Since(t0) > time.Minute {
				t.Fatalf("r1's %d shards not all led after a minute: %v", total, led)
			}
		}
		victim, most := "", -1
		for n, k := range led {
			if k > most || k == most && n < victim {
				victim, most = n, k
			}
		}
		if victim == "" || most < 1 {
			t.Fatalf("no shard leader in r1: %v", led)
		}
		t.Logf("r1 shards led before: %v; victim %s", led, victim)
		rec := startMembershipRecorder(t, l)
		var failover time.Duration
		cfg := l.crossCfg("faults-leader", 20*time.Second)
		cfg.FaultAfter = 6 * time.Second
		var killed time.Time
		restarted := make(chan struct{})
		cfg.Fault = func() error {
			if _, err := l.ctl("POST", "/kill?node="+victim, nil); err != nil {
				return err
			}
			killed = time.Now()
			go func() {
				defer close(restarted)
				for time.Since(killed) < time.Minute {
					now := l.shardsLed("r1")
					sum := 0
					for _, k := range now {
						sum += k
					}
					if sum == total && now[victim] == 0 {
						failover = time.Since(killed)
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(3 * time.Second)
				if _, err := l.ctl("POST", "/start?node="+victim, nil); err != nil {
					t.Errorf("restart %s: %v", victim, err)
				}
			}()
			return nil
		}
		before := l.dropCounters()
		s := runLabLoad(t, cfg)
		<-restarted
		ops := rec.stop()
		checkFaultLedger(t, "kill -9 of r1's leader of "+strconv.Itoa(most)+" shards", s)
		if failover == 0 {
			t.Errorf("r1's shards did not all have a leader again within a minute of the kill")
		}
		t.Logf("FIGURE kill -9 of %s (leader of %d of r1's %d shards): every shard led again after %v; shards led now %v",
			victim, most, total, failover.Round(time.Millisecond), l.shardsLed("r1"))
		logFaultDrops(t, "the leader kill", before, l.dropCounters())
		checkLinearizable(t, "leader kill", ops)
	})

	t.Run("region-edges", func(t *testing.T) {
		cfg := l.crossCfg("faults-edges", 20*time.Second)
		cfg.ViaRouter = true
		cfg.FaultAfter = 6 * time.Second
		cfg.Fault = func() error {
			var wg sync.WaitGroup
			errs := make(chan error, len(r1.Edges))
			for _, n := range l.nodes("r1", "edge") {
				wg.Go(func() {
					if _, err := l.ctl("POST", "/kill?node="+n.Name, nil); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			return <-errs
		}
		before := l.dropCounters()
		s := runLabLoad(t, cfg)
		for _, n := range l.nodes("r1", "edge") {
			l.mustCtl("POST", "/start?node="+n.Name)
		}
		checkFaultLedger(t, "every edge of r1 killed (clients through the router's secondary)", s)
		moved := sessionsOf(cfg, 0)
		if s.SessionsDisconnected < int64(moved) || s.SessionsDownAtEnd != 0 || s.Reconnects < int64(moved) {
			t.Errorf("r1's %d sessions: %d lost their connection, %d reconnects, %d still down at the end",
				moved, s.SessionsDisconnected, s.Reconnects, s.SessionsDownAtEnd)
		}
		t.Logf("FIGURE every edge of r1 killed: %d sessions moved to r2 through the router's secondary, lost→back p50 %.0f p99 %.0f max %.0f ms",
			s.SessionsDisconnected, s.DownMS.P50, s.DownMS.P99, s.DownMS.Max)
		logFaultDrops(t, "the edges kill", before, l.dropCounters())
	})

	t.Run("partition", func(t *testing.T) {
		// Longer than the edge's backend timeout (10 s): sends across the
		// cut fail rather than wait for the heal.
		const partitionFor = 15 * time.Second
		// A probe pair: a client in r2 sends into a conversation homed in
		// r1 once the partition heals, until the first ack.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		a := dialLabClient(t, ctx, r1.Edges[0], "faults-probe-a")
		b := dialLabClient(t, ctx, r2.Edges[0], "faults-probe-b")
		cid, err := a.CreateConversation(ctx, []string{"faults-probe-b"}, "probe", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		rec := startMembershipRecorder(t, l)
		cfg := l.crossCfg("faults-partition", 30*time.Second)
		cfg.FaultAfter = 6 * time.Second
		var healed time.Time
		var backAfter time.Duration
		done := make(chan struct{})
		cfg.Fault = func() error {
			if _, err := l.ctl("POST", "/partition?a=r1", nil); err != nil {
				return err
			}
			go func() {
				defer close(done)
				time.Sleep(partitionFor)
				if _, err := l.ctl("POST", "/heal?a=r1", nil); err != nil {
					t.Errorf("heal: %v", err)
					return
				}
				healed = time.Now()
				for time.Since(healed) < time.Minute {
					sctx, c := context.WithTimeout(ctx, 5*time.Second)
					_, err := b.Send(sctx, cid, client.TextMessage("after the heal"), client.SendOptions{})
					c()
					if err == nil {
						backAfter = time.Since(healed)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			return nil
		}
		before := l.dropCounters()
		s := runLabLoad(t, cfg)
		<-done
		ops := rec.stop()
		checkFaultLedger(t, "r1 partitioned away for 15 s, then healed", s)
		if s.Failed == 0 {
			t.Errorf("no send failed across a 15 s partition (longer than the edge's 10 s backend timeout)")
		}
		if backAfter == 0 {
			t.Errorf("no send from r2 into a conversation homed in r1 succeeded within a minute of the heal")
		}
		t.Logf("FIGURE partition healed: the first send from r2 into a conversation homed in r1 acked %v after the heal call", backAfter.Round(time.Millisecond))
		logFaultDrops(t, "the partition", before, l.dropCounters())
		checkLinearizable(t, "partition", ops)

		// After the heal everything flows: a run with no fault fails no send.
		after := runLabLoad(t, l.crossCfg("faults-healed", 8*time.Second))
		checkFaultLedger(t, "after the heal", after)
		if after.Failed != 0 || after.Late != 0 {
			t.Errorf("after the heal: %d sends failed, %d copies late", after.Failed, after.Late)
		}
	})

	t.Run("region-restart", func(t *testing.T) {
		cfg := l.crossCfg("faults-region", 30*time.Second)
		cfg.FaultAfter = 6 * time.Second
		var down time.Time
		var leaderBack, edgesBack time.Duration
		var coresStarted, loginAt time.Time
		var loginTook time.Duration
		var loginErr error
		done, outage := make(chan struct{}), make(chan struct{})
		cfg.Fault = func() error {
			var wg sync.WaitGroup
			for _, role := range []string{"edge", "core"} {
				for _, n := range l.nodes("r1", role) {
					wg.Go(func() {
						if _, err := l.ctl("POST", "/kill?node="+n.Name, nil); err != nil {
							t.Errorf("kill %s: %v", n.Name, err)
						}
					})
				}
			}
			wg.Wait()
			down = time.Now()
			go func() { // a login at r2 while r1 is gone
				defer close(outage)
				time.Sleep(time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				t0 := time.Now()
				c, err := client.Dial(ctx, r2.Edges[0], client.Options{AppID: "lab-app", ClientID: "faults-outage-login", RequestTimeout: 30 * time.Second})
				loginAt, loginTook, loginErr = t0, time.Since(t0), err
				if err == nil {
					c.Close()
				}
			}()
			go func() {
				defer close(done)
				time.Sleep(5 * time.Second)
				t0 := time.Now()
				coresStarted = t0
				var wg sync.WaitGroup
				for _, n := range l.nodes("r1", "core") { // together: one alone has no quorum
					wg.Go(func() {
						if _, err := l.ctl("POST", "/start?node="+n.Name, nil); err != nil {
							t.Errorf("start %s: %v", n.Name, err)
						}
					})
				}
				wg.Wait()
				for time.Since(t0) < 2*time.Minute {
					var lead struct{ Node string }
					if l.ctl("GET", "/leader?region=r1", &lead); lead.Node != "" {
						leaderBack = time.Since(t0)
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				for _, n := range l.nodes("r1", "edge") {
					wg.Go(func() {
						if _, err := l.ctl("POST", "/start?node="+n.Name, nil); err != nil {
							t.Errorf("start %s: %v", n.Name, err)
						}
					})
				}
				wg.Wait()
				edgesBack = time.Since(t0)
			}()
			return nil
		}
		before := l.dropCounters()
		s := runLabLoad(t, cfg)
		<-done
		<-outage
		if loginErr != nil {
			t.Errorf("login at r2 while r1 was down: %v", loginErr)
		}
		t.Logf("FIGURE login at r2 (a new client, no conversations) 1 s into r1's outage: %v, done %v before r1's cores were started again (negative: after)",
			loginTook.Round(time.Millisecond), coresStarted.Sub(loginAt.Add(loginTook)).Round(time.Millisecond))
		checkFaultLedger(t, "r1 killed whole (3 cores, 2 edges) and restarted 5 s later", s)
		if s.SessionsDownAtEnd != 0 {
			t.Errorf("%d sessions still down at the end", s.SessionsDownAtEnd)
		}
		t.Logf("FIGURE whole r1 killed at %s: cores started 5 s later, r1's shard 0 led %v after the start, edges ready %v after it",
			down.Format("15:04:05.000"), leaderBack.Round(time.Millisecond), edgesBack.Round(time.Millisecond))
		logFaultDrops(t, "the region restart", before, l.dropCounters())
		after := runLabLoad(t, l.crossCfg("faults-restarted", 8*time.Second))
		checkFaultLedger(t, "after the region restart", after)
		if after.Failed != 0 {
			t.Errorf("after the region restart: %d sends failed", after.Failed)
		}
	})
}

// dialLab logs id in at url, closed with the test.
func dialLabClient(t *testing.T, ctx context.Context, url, id string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, url, client.Options{AppID: "lab-app", ClientID: id, RequestTimeout: 10 * time.Second,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second})
	if err != nil {
		t.Fatalf("dial %s at %s: %v", id, url, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		for range c.Events() {
		}
	}()
	return c
}

// loginAcrossRegions measures logins at r2 of a client with unread
// messages in conversations homed in r1 and in r2: dial → session open,
// and dial → the unread notification naming both.
func loginAcrossRegions(t *testing.T, l *labProc) {
	loginHomedIn(t, l, "faults-login-x", nil)
}

// loginHomedIn measures 20 logins of who at the second region's last edge,
// with 3 unread conversations homed in each region of homes (indexes into
// the topology; nil: every region).
func loginHomedIn(t *testing.T, l *labProc, who string, homesAt []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	at := l.top.Regions[1] // the login's region
	var cids []string
	var homes []string
	for i, r := range l.top.Regions {
		if homesAt != nil && !slices.Contains(homesAt, i) {
			continue
		}
		c := dialLabClient(t, ctx, r.Edges[0], fmt.Sprintf("%s-%d", who, i))
		for k := range 3 {
			cid, err := c.CreateConversation(ctx, []string{who}, fmt.Sprintf("login-%d", k), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Send(ctx, cid, client.TextMessage("unread"), client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
			cids = append(cids, cid)
		}
		homes = append(homes, r.Name)
	}
	var open, unread []float64
	for range 20 {
		t0 := time.Now()
		x, err := client.Dial(ctx, at.Edges[len(at.Edges)-1], client.Options{AppID: "lab-app", ClientID: who, RequestTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, float64(time.Since(t0).Microseconds())/1000)
		seen := map[string]bool{}
		deadline := time.After(10 * time.Second)
	wait:
		for len(seen) < len(cids) {
			select {
			case ev := <-x.Events():
				if u, ok := ev.(client.Unread); ok {
					for _, c := range u.Convs {
						seen[c.ConvID] = true
					}
				}
			case <-deadline:
				break wait
			}
		}
		if len(seen) < len(cids) {
			t.Fatalf("login at %s: unread for %d of %d conversations (3 homed in each of %v)", at.Name, len(seen), len(cids), homes)
		}
		unread = append(unread, float64(time.Since(t0).Microseconds())/1000)
		x.Close()
	}
	sort.Float64s(open)
	sort.Float64s(unread)
	q := func(v []float64, p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
	t.Logf("FIGURE login at %s with unread conversations homed in %v (3 each), 20 logins: dial→open p50 %.1f p99 %.1f ms, dial→unread of all %d p50 %.1f p99 %.1f ms (one-way %v)",
		at.Name, homes, q(open, 0.5), q(open, 0.99), len(cids), q(unread, 0.5), q(unread, 0.99), faultOneWay)
}

// TestLabLoginThreeRegions: a login in the middle region of three (3
// cores and 2 edges each, 80 ms one way between any two) gets the unread
// counts of conversations homed in all three, in two of them, and in its
// own alone; its latency is the figure (make lab). A login waits only for
// the regions the member index names for it (core/loginregions.go).
func TestLabLoginThreeRegions(t *testing.T) {
	labRun(t)
	l := startLabProc(t, "--regions", "3", "--latency", faultOneWay.String())
	loginAcrossRegions(t, l)
	// A login waits only for the regions its member index names
	// (core/loginregions.go): fewer regions, or its own alone.
	loginHomedIn(t, l, "login-r1r2", []int{0, 1})
	loginHomedIn(t, l, "login-r2", []int{1})
}

// TestLabTagReconnect measures what the tag rule's check across regions
// costs a tagged reconnect (make lab): 2 regions of 3 cores and 2 edges,
// 80 ms one way. A client with tag "phone" drops its socket and reopens
// with its session token at r1, 15 times per case: while it is online
// nowhere else (no region asked); right after another device of it (tag
// "pad") logged in at r2 (r2 not asked: the login's mark names "pad";
// before stop 22 marks named no tag and r2 was asked); and once r2's
// presence summary, which names tags, has replaced the mark (r2 not
// asked: it holds only "pad"). Dial → session/opened is the figure; r1's
// cores' relaymesh_region_tag_{checks,skips}_total show who was asked.
func TestLabTagReconnect(t *testing.T) {
	labRun(t)
	l := startLabProc(t, "--regions", "2", "--latency", faultOneWay.String())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const app = "lab-app"
	r1, r2 := l.top.Regions[0].Edges[0], l.top.Regions[1].Edges[0]
	tagCounters := func() (checks, skips float64) {
		for _, n := range l.nodes(l.top.Regions[0].Name, "core") {
			if m, err := nodeMetrics(n.HTTP); err == nil {
				checks += m["relaymesh_region_tag_checks_total"]
				skips += m["relaymesh_region_tag_skips_total"]
			}
		}
		return checks, skips
	}
	const rounds = 15
	// Until each core of r1 has pulled r2's presence summary once (every
	// 500 ms), a tagged reconnect asks r2: no summary says it need not.
	time.Sleep(2 * time.Second)
	measure := func(what, who string, wantChecks, wantSkips float64) []float64 {
		_, o := rawOpenApp(t, ctx, r1, app, who, "phone")
		if o.GetOp() != lcpb.OpType_opened {
			t.Fatalf("%s's login: %v", who, o)
		}
		st := o.GetSessionMessage().GetSt()
		c0, s0 := tagCounters()
		var ms []float64
		for range rounds {
			t0 := time.Now()
			r, got := rawReopenApp(t, ctx, r1, app, st)
			if got.GetOp() != lcpb.OpType_opened {
				t.Fatalf("%s's reopen: %v/%v code %d", who, got.GetCmd(), got.GetOp(), got.GetSessionMessage().GetCode())
			}
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
			st = got.GetSessionMessage().GetSt()
			r.ws.CloseNow()
		}
		c1, s1 := tagCounters()
		if c1-c0 != wantChecks || (wantSkips >= 0 && s1-s0 != wantSkips) {
			t.Errorf("%s: r1 asked r2 %v times and skipped it %v times, want %v and %v", what, c1-c0, s1-s0, wantChecks, wantSkips)
		}
		sort.Float64s(ms)
		return ms
	}
	alone := measure("online nowhere else", "tagre-alone", 0, 0)
	if _, o := rawOpenApp(t, ctx, r2, app, "tagre-both", "pad"); o.GetOp() != lcpb.OpType_opened {
		t.Fatalf("the other device's login in r2: %v", o)
	}
	// The login did not wait for r1 (nothing of the client there:
	// core/loginregions.go); its share request marks it at r1 one way
	// later, or a few round trips later while r2's router first connects
	// to r1's core.
	time.Sleep(time.Second)
	marked := measure("right after a login in r2", "tagre-both", 0, -1) // skipped once r2's summary names "pad" too
	time.Sleep(11 * time.Second)                                        // the login's mark (10 s) gives way to r2's summary
	summary := measure("online in r2 with another tag", "tagre-both", 0, rounds)
	q := func(v []float64, p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
	t.Logf("FIGURE tagged reopen at r1 (one-way %v), dial→session/opened p50 / max: online nowhere else %.1f / %.1f ms; "+
		"right after another device's login in r2 %.1f / %.1f ms; online in r2 with another tag (summary) %.1f / %.1f ms",
		faultOneWay, q(alone, 0.5), alone[len(alone)-1], q(marked, 0.5), marked[len(marked)-1], q(summary, 0.5), summary[len(summary)-1])
}
