package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// servers is a catalog configuration: voters, then non-voters.
func servers(voters []string, nonvoters ...string) []raft.Server {
	var out []raft.Server
	for _, id := range voters {
		out = append(out, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	for _, id := range nonvoters {
		out = append(out, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id), Suffrage: raft.Nonvoter})
	}
	return out
}

// TestNextVoterStep: the catalog leader's decision, one change at a time:
// promotions of settled planned non-voters first, then demotions of
// voters the configuration knows and the plan does not name (never the
// leader: it hands over), nothing while a voter outside the
// configuration votes, unknown non-voters left alone.
func TestNextVoterStep(t *testing.T) {
	// Regions 1 and 2 of two cores each (voters 2+2), region 3 added.
	const r1a, r1b, r2a, r2b, r3a = "r1a", "r1b", "r2a", "r2b", "r3a"
	three := []string{r1a, r2a, r3a}            // the plan with region 3
	known3 := []string{r1a, r1b, r2a, r2b, r3a} // its cores
	two := []string{r1a, r1b, r2a, r2b}         // the plan before, and its cores
	all := func(string) string { return "" }
	none := func(string) string { return "its progress is not in" }
	but := func(id string) func(string) string {
		return func(s string) string {
			if s == id {
				return "its log ends at 3, the commit index is 900"
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name          string
		servers       []raft.Server
		voters, known []string
		self          string
		unsettled     func(string) string
		want          voterStep // reason: a substring
	}{
		{"the voters are the plan's", servers(three, r1b, r2b), three, known3, r1a, all, voterStep{}},
		{"a settled planned non-voter is promoted", servers(two, r3a), three, known3, r1a, all, voterStep{op: voterPromote, id: r3a}},
		{"an unsettled one is waited for, nothing demoted", servers(two, r3a), three, known3, r1a, but(r3a), voterStep{reason: "r3a is not settled yet: its log ends at 3"}},
		{"a planned voter not in the group yet is waited for", servers(two), three, known3, r1a, all, voterStep{reason: "r3a is not in the group"}},
		{"promotions in address order", servers([]string{r1a}, r2a, r3a), three, known3, r1a, all, voterStep{op: voterPromote, id: r2a}},
		{"then a voter not planned is demoted", servers(append(two, r3a)), three, known3, r1a, all, voterStep{op: voterDemote, id: r1b}},
		{"the leader is not demoted while others are", servers(append(two, r3a)), three, known3, r1b, all, voterStep{op: voterDemote, id: r2b}},
		{"the leader, the last extra, hands over", servers([]string{r1a, r1b, r2a, r3a}, r2b), three, known3, r1b, all, voterStep{op: voterTransfer, id: r1a}},
		{"no demotion while a planned voter is unsettled", servers(append(two, r3a)), three, known3, r1a, but(r2a), voterStep{reason: "r2a is not settled: no demotion"}},
		{"the leader need not be settled", servers(append(two, r3a)), three, known3, r1a, but(r1a), voterStep{op: voterDemote, id: r1b}},
		{"nothing settled: nothing changes", servers(append(two, r3a)), three, known3, r1a, none, voterStep{reason: "not settled"}},
		{"an older configuration holds once a voter it does not know votes", servers(three, r1b, r2b), two, two, r1a, all, voterStep{reason: "voter r3a is not in this core's configuration"}},
		{"... even where it would promote", servers([]string{r1a, r2a, r2b, r3a}, r1b), two, two, r2a, all, voterStep{reason: "voter r3a"}},
		{"a non-voter it does not know is left alone", servers(two, r3a), two, two, r1a, all, voterStep{}},
		{"and does not stop a promotion", servers([]string{r1a, r1b, r2a}, r2b, r3a), two, two, r1a, all, voterStep{op: voterPromote, id: r2b}},
		{"an empty plan demotes nobody", servers(two), nil, two, r1a, all, voterStep{reason: "no planned voters"}},
		{"a region grows from one core: promote", servers([]string{r1a}, r1b), []string{r1a, r1b}, []string{r1a, r1b}, r1a, all, voterStep{op: voterPromote, id: r1b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nextVoterStep(tc.servers, tc.voters, tc.known, tc.self, tc.unsettled)
			if got.op != tc.want.op || got.id != tc.want.id || !strings.Contains(got.reason, tc.want.reason) {
				t.Fatalf("got %v %q (%s), want %v %q (%s)", got.op, got.id, got.reason, tc.want.op, tc.want.id, tc.want.reason)
			}
			if got.op != voterNone && got.reason == "" {
				t.Fatalf("%v %s without a reason", got.op, got.id)
			}
		})
	}
}

// TestVoterStepsConverge: applying the leader's steps one by one moves
// 2+2 voters to one per region, never below the plan's count, a leader of
// the older configuration holding at every step after the first, and
// the leader handing over before its own demotion.
func TestVoterStepsConverge(t *testing.T) {
	three := []string{"r1a", "r2a", "r3a"}
	known3 := []string{"r1a", "r1b", "r2a", "r2b", "r3a"}
	two := []string{"r1a", "r1b", "r2a", "r2b"}
	all := func(string) string { return "" }
	for _, leader := range known3 {
		t.Run("leader "+leader, func(t *testing.T) {
			cfg := servers(two, "r3a")
			self := leader
			var ops []voterOp
			for range 10 {
				step := nextVoterStep(cfg, three, known3, self, all)
				if step.op == voterNone {
					if step.reason != "" {
						t.Fatalf("holds: %s", step.reason)
					}
					break
				}
				ops = append(ops, step.op)
				i := slices.IndexFunc(cfg, func(s raft.Server) bool { return string(s.ID) == step.id })
				switch step.op {
				case voterPromote:
					cfg[i].Suffrage = raft.Voter
				case voterDemote:
					if step.id == self {
						t.Fatalf("the leader %s demotes itself", self)
					}
					cfg[i].Suffrage = raft.Nonvoter
				case voterTransfer:
					if cfg[i].Suffrage != raft.Voter {
						t.Fatalf("hands over to %s, not a voter", step.id)
					}
					self = step.id
				}
				var voting []string
				for _, s := range cfg {
					if s.Suffrage == raft.Voter {
						voting = append(voting, string(s.ID))
					}
				}
				if len(voting) < len(three) {
					t.Fatalf("after %v %s: voters %v, fewer than planned", step.op, step.id, voting)
				}
				if old := nextVoterStep(cfg, two, two, "r1a", all); old.op != voterNone {
					t.Fatalf("after %v %s: a leader of the older configuration would %v %s", step.op, step.id, old.op, old.id)
				}
			}
			var voting []string
			for _, s := range cfg {
				if s.Suffrage == raft.Voter {
					voting = append(voting, string(s.ID))
				}
			}
			if !slices.Equal(voting, three) {
				t.Fatalf("voters %v after %v, want %v", voting, ops, three)
			}
			if ops[0] != voterPromote {
				t.Fatalf("steps %v: the first is not a promotion", ops)
			}
		})
	}
}

// voterLog passes the catalog voters' records of the cores to t.Log.
type voterLog struct{ slog.Handler }

func (h voterLog) Handle(ctx context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "catalog voters") {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}
func (h voterLog) WithAttrs(a []slog.Attr) slog.Handler { return voterLog{h.Handler.WithAttrs(a)} }
func (h voterLog) WithGroup(n string) slog.Handler      { return voterLog{h.Handler.WithGroup(n)} }

// tWriter writes each line to t.Log and keeps it for seen.
type tWriter struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string // guarded by mu
}

func (w *tWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	w.t.Log(line)
	w.mu.Lock()
	w.lines = append(w.lines, line)
	w.mu.Unlock()
	return len(p), nil
}

// seen reports whether a line holds every one of parts.
func (w *tWriter) seen(parts ...string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(l, p) }) {
			return true
		}
	}
	return false
}

// TestCatalogVotersFollowRegions: regions 1 and 2 of two cores each
// bootstrap the catalog with their four cores as voters (2+2: a region
// lost loses the quorum). The four restart one by one with region 3 in
// their configuration while region 3's core is down: the leader adds it as
// a non-voter and holds (its progress is not in). A core the new plan
// does not name is made the leader, and region 3's core starts: the
// leader promotes it, demotes the other extra voter, hands the leadership
// to a planned voter, which demotes it (counted on /metrics). The voters
// are one per region, the catalog takes writes, and it still does with
// region 1's two cores stopped.
func TestCatalogVotersFollowRegions(t *testing.T) {
	dir := t.TempDir()
	names := []string{"core-1a", "core-1b", "core-2a", "core-2b", "core-3a"}
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), names...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeUDP(t, len(names))
	addr, region := map[string]string{}, map[string]uint8{}
	for i, n := range names {
		addr[n], region[n] = addrs[i], n[5]-'0'
	}
	out := &tWriter{t: t}
	log := slog.New(voterLog{slog.NewTextHandler(out, nil)})
	// config is name's configuration when the mesh has regions 1..regions.
	config := func(name string, regions uint8) CoreConfig {
		peers := map[string]string{}
		var remote []core.RemoteRegion
		for r := uint8(1); r <= regions; r++ {
			var cores []string
			for _, n := range names {
				if region[n] == r {
					cores = append(cores, addr[n])
					if r == region[name] {
						peers[n] = addr[n]
					}
				}
			}
			if r != region[name] {
				remote = append(remote, core.RemoteRegion{Number: r, Cores: cores})
			}
		}
		return CoreConfig{NodeID: name, MeshAddr: addr[name], DataDir: filepath.Join(dir, name), Identity: ids[name],
			Region: region[name], Peers: peers, Remote: remote, Logger: log,
			// Raft timeouts above `relaymesh core`'s: no election on a
			// loaded machine moves the leader the test makes.
			RaftHeartbeatTimeout: time.Second, RaftElectionTimeout: time.Second}
	}
	// plan is the catalog's voters the configurations plan.
	plan := func(regions uint8) []string {
		cfg := config("core-1a", regions)
		var remote []remoteCores
		for _, r := range cfg.Remote {
			remote = append(remote, remoteCores{number: r.Number, cores: r.Cores})
		}
		return planCatalog(1, 1, slices.Collect(maps.Values(cfg.Peers)), remote).voters
	}
	cores := map[string]*Core{}
	start := func(name string, regions uint8) {
		t.Helper()
		c, err := StartCore(config(name, regions))
		if err != nil {
			t.Fatal(err)
		}
		cores[name] = c
	}
	stop := func(name string) {
		t.Helper()
		if err := cores[name].Close(); err != nil {
			t.Logf("close %s: %v", name, err)
		}
		delete(cores, name)
	}
	defer func() {
		for n := range cores {
			stop(n)
		}
	}()
	// voters are the catalog's voters and servers as name's replica holds them.
	voters := func(name string) (voting, all []string) {
		f := cores[name].catalog.rep.Raft().GetConfiguration()
		if f.Error() != nil {
			return nil, nil
		}
		for _, s := range f.Configuration().Servers {
			all = append(all, string(s.ID))
			if s.Suffrage == raft.Voter {
				voting = append(voting, string(s.ID))
			}
		}
		slices.Sort(voting)
		slices.Sort(all)
		return voting, all
	}
	// converged waits until every running core holds want as the voters
	// and servers as every core of the configuration.
	converged := func(want []string, servers int) {
		t.Helper()
		waitUntil(t, func() bool {
			for n, c := range cores {
				if v, all := voters(n); !c.CatalogReady() || !slices.Equal(v, want) || len(all) != servers {
					return false
				}
			}
			return true
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	claims := 0
	write := func(name string) error {
		claims++
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cores[name].Catalog.ClaimUnique(wctx, "app", catalog.UniqueHash([]string{"a", fmt.Sprint(claims)}), fmt.Sprintf("f1010000aaaaaaaaaaaa%04x", claims))
		return err
	}

	for _, n := range names[:4] {
		start(n, 2)
	}
	before := plan(2)
	if len(before) != 4 {
		t.Fatalf("two regions of two: planned voters %v, want the four", before)
	}
	converged(before, 4)
	t.Logf("regions 1 and 2: voters %v", before)

	// Region 3 joins the configuration, its core still down.
	for _, n := range names[:4] {
		stop(n)
		start(n, 3)
		waitUntil(t, cores[n].CatalogReady)
	}
	after := plan(3)
	if len(after) != 3 || !slices.Contains(after, addr["core-3a"]) {
		t.Fatalf("three regions: planned voters %v, want one per region", after)
	}
	waitUntil(t, func() bool {
		return out.seen("catalog voters: holding", "planned voter "+addr["core-3a"]+" is not settled yet: its progress is not in")
	})
	if v, all := voters("core-2a"); !slices.Equal(v, before) || !slices.Contains(all, addr["core-3a"]) {
		t.Fatalf("region 3's core down: voters %v of %v, want %v, and it a non-voter", v, all, before)
	}
	// The leader: a core the plan does not name.
	var leader, extra string
	for n, c := range cores {
		if c.catalog.rep.IsLeader() {
			leader = n
		}
		if !slices.Contains(after, addr[n]) {
			extra = n
		}
	}
	if leader == "" {
		t.Fatal("no catalog leader")
	}
	if slices.Contains(after, addr[leader]) {
		if err := cores[leader].catalog.rep.Raft().LeadershipTransferToServer(raft.ServerID(addr[extra]), raft.ServerAddress(addr[extra])).Error(); err != nil {
			t.Fatal(err)
		}
		leader = extra
	}
	waitUntil(t, cores[leader].catalog.rep.IsLeader)
	t.Logf("%s leads, region 3's core starts", leader)
	start("core-3a", 3)
	converged(after, 5)
	t.Logf("regions 1 to 3: voters %v", after)
	if !out.seen("catalog voters: changed", "node="+leader, "change=transfer") {
		t.Errorf("%s, not a planned voter, did not hand the leadership over", leader)
	}
	if err := write("core-3a"); err != nil {
		t.Fatalf("a catalog write: %v", err)
	}
	// The changes, counted on the cores' /metrics: region 3's core
	// promoted, the two extra voters demoted, one hand-over (by leaders of
	// the new configuration: every core running now).
	changes := map[string]float64{}
	for _, c := range cores {
		var b strings.Builder
		if err := c.WriteMetrics(&b); err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(b.String()) {
			var op string
			var v float64
			if _, err := fmt.Sscanf(line, "relaymesh_catalog_voter_changes_total{change=%q} %g", &op, &v); err == nil {
				changes[op] += v
			}
		}
	}
	if changes["promote"] != 1 || changes["demote"] != 2 || changes["transfer"] != 1 {
		t.Errorf("voter changes on /metrics: %v, want 1 promote, 2 demotes, 1 transfer", changes)
	}

	// Region 1 lost: the voters of regions 2 and 3 are a quorum.
	stop("core-1a")
	stop("core-1b")
	waitUntil(t, func() bool {
		err := write("core-2b")
		if err != nil {
			t.Logf("a write without region 1: %v", err)
		}
		return err == nil
	})
}

// TestCatalogBehind: the leader's question to a planned voter
// (catalog-progress): caught up within catalogMaxLag entries of the
// commit index, behind beyond, unsettled when it does not answer.
func TestCatalogBehind(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "core-2")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	leader, err := mesh.Listen("127.0.0.1:0", ids["core-1"], log)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	peer, err := mesh.Listen("127.0.0.1:0", ids["core-2"], log)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var last atomic.Uint64
	peer.HandleRPC(meshpb.MethodCatalogProgress, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(CatalogProgress{Last: last.Load()})
	}, mesh.RoleCore)
	g := &catalogGroup{node: leader, log: log}
	g.ctx, g.cancel = context.WithCancel(t.Context())
	defer g.cancel()
	for _, tc := range []struct {
		last, commit uint64
		want         string
	}{
		{1000, 1000, ""},
		{1000, 1000 + catalogMaxLag, ""},
		{1000, 1001 + catalogMaxLag, "more than 256 entries before the commit index"},
		{1, 5000, "more than 256 entries"},
	} {
		last.Store(tc.last)
		if got := g.behind(peer.Addr(), tc.commit); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("log at %d, commit %d: %q, want %q", tc.last, tc.commit, got, tc.want)
		}
	}
	if got := g.behind(freeUDP(t, 1)[0], 1); !strings.Contains(got, "its progress is not in") {
		t.Errorf("nobody there: %q, want its progress not in", got)
	}
}
