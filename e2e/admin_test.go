package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// adminCLI runs `relaymesh admin` against a procCluster with a
// certificate from its CA.
type adminCLI struct {
	t    *testing.T
	bin  string
	cred []string // --ca --cert --key
	core string   // --core
}

func newAdminCLI(t *testing.T, c *procCluster, name, role string) *adminCLI {
	t.Helper()
	c.issue(name, "--role", role)
	return &adminCLI{t: t, bin: relaymeshBin(t), core: c.coreMesh[0], cred: []string{
		"--ca", filepath.Join(c.pki, "ca.crt"), "--cert", filepath.Join(c.pki, name+".crt"), "--key", filepath.Join(c.pki, name+".key")}}
}

// run runs `relaymesh admin args... --ca … --core …`; code is the exit
// status.
func (a *adminCLI) run(args ...string) (stdout, stderr string, code int) {
	a.t.Helper()
	full := append([]string{"admin"}, args...)
	full = append(full, a.cred...)
	if !hasFlag(args, "--core") {
		full = append(full, "--core", a.core)
	}
	cmd := exec.Command(a.bin, full...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		a.t.Fatalf("relaymesh %v: %v", full, err)
	}
	return o.String(), e.String(), code
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f {
			return true
		}
	}
	return false
}

// ok runs the command and fails the test unless it exits 0.
func (a *adminCLI) ok(args ...string) string {
	a.t.Helper()
	out, errOut, code := a.run(args...)
	if code != 0 {
		a.t.Fatalf("relaymesh admin %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// status is `admin status --json`, decoded.
func (a *adminCLI) status() *cluster.ClusterView {
	a.t.Helper()
	var v cluster.ClusterView
	out := a.ok("status", "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		a.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return &v
}

func groupOf(v *cluster.ClusterView, group string, n int) *cluster.GroupView {
	for _, g := range v.Groups {
		if g.Group == group && g.Shard == n {
			return g
		}
	}
	return nil
}

// settled: every core answered, the group has a leader, and each of the
// group's servers has applied all the leader committed.
func settled(v *cluster.ClusterView, g *cluster.GroupView, servers int) bool {
	if g == nil || g.Leader == "" || len(g.Servers) != servers {
		return false
	}
	for _, n := range v.Nodes {
		if n.Status == nil {
			return false
		}
	}
	in := map[string]bool{}
	for _, s := range g.Servers {
		in[s.Addr] = true
	}
	for _, r := range g.Replicas {
		if in[r.Addr] && (r.Lag != 0 || r.Applied == 0) {
			return false
		}
	}
	return true
}

// TestAdminOps runs the built binary's `relaymesh admin` against three
// `relaymesh core` processes and an edge: status names the leader the
// cores' /healthz names, with indexes caught up; a leadership transfer to
// a named core while a client keeps sending (every send acked, every
// message delivered), after which status names the new leader; a
// conversation's home and metadata; a follower removed and added back;
// and misuse: an edge's certificate, an unknown shard, the last voter,
// bad flags, a core that does not answer.
func TestAdminOps(t *testing.T) {
	c := startProcCluster(t, procOptions{Edges: 1, EdgeLimits: "sends_per_minute = -1"})
	a := newAdminCLI(t, c, "admin-1", "admin")
	names := []string{"core-1", "core-2", "core-3"}

	// Status: the shard's leader is the core whose /healthz says so.
	var v *cluster.ClusterView
	waitFor(t, 30*time.Second, func() bool {
		v = a.status()
		return settled(v, groupOf(v, "shard", 0), 3) && settled(v, groupOf(v, "catalog", 0), 3)
	})
	leader := c.waitLeader()
	if g := groupOf(v, "shard", 0); g.Leader != names[leader] || g.Term == 0 || len(g.Replicas) != 3 {
		t.Fatalf("status: shard 0 %+v, want leader %s (healthz)", g, names[leader])
	}
	// The same from a config file: [tls] and [admin] cores (one core;
	// the others are learnt from its answer).
	cfg := c.write("admin.toml", fmt.Sprintf("%s\n[admin]\ncores = [%q]\n", tlsTOML("admin-1"), c.coreMesh[2]))
	if out, err := exec.Command(a.bin, "admin", "status", "--config", cfg).CombinedOutput(); err != nil || strings.Count(string(out), " ok\n") != 3 {
		t.Errorf("status --config: %v\n%s", err, out)
	}
	text := a.ok("status")
	for _, want := range []string{"NODE", "shard 0", "catalog", names[leader], "Leader", "Follower"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	t.Logf("status:\n%s", text)

	// A transfer under load: alice sends without pause; every send is
	// acked and bob gets every message.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice := dial(t, ctx, c.edges[0].URL, "failover-app", "alice")
	bob := dial(t, ctx, c.edges[0].URL, "failover-app", "bob")
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "admin", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	sent := startSender(ctx, alice, cid) // sends before the transfer too
	to := names[(leader+1)%3]
	out := a.ok("shard", "transfer-leader", "--shard", "0", "--to", to)
	if !strings.Contains(out, "-> "+to) {
		t.Errorf("transfer-leader said %q, want -> %s", out, to)
	}
	t.Logf("transfer-leader: %s", out)
	acked, failed := sent.stop() // and after it
	if len(failed) > 0 {
		t.Errorf("%d of %d sends failed during the transfer: %v", len(failed), len(failed)+len(acked), failed)
	}
	waitDelivered(t, bob, cid, acked, 20*time.Second)
	t.Logf("%d sends acked across the transfer", len(acked))
	v = a.status()
	if g := groupOf(v, "shard", 0); g.Leader != to {
		t.Fatalf("after the transfer: shard 0 led by %q, want %s", g.Leader, to)
	}
	if l := c.waitLeader(); names[l] != to {
		t.Errorf("after the transfer /healthz names %s, want %s", names[l], to)
	}
	// The catalog moves too.
	a.ok("shard", "transfer-leader", "--shard", "catalog")

	// The conversation: home, leader and metadata.
	var ci struct {
		Region, Shard int
		LeaderID      string `json:"leader_id"`
		Found         bool
		Creator       string
		Members       int
		LastMessageAt int64 `json:"last_message_at"`
	}
	out = a.ok("conversation", "show", "--app", "failover-app", cid, "--json")
	if err := json.Unmarshal([]byte(out), &ci); err != nil {
		t.Fatal(err)
	}
	if !ci.Found || ci.Region != 1 || ci.Shard != 0 || ci.LeaderID != to || ci.Creator != "alice" || ci.Members != 2 || ci.LastMessageAt == 0 {
		t.Errorf("conversation show: %s", out)
	}
	text = a.ok("conversation", "show", "--app", "failover-app", cid)
	t.Logf("conversation show:\n%s", text)
	for _, re := range []string{`(?m)^shard\s+0$`, `(?m)^leader\s+` + to + ` `, `(?m)^creator\s+alice$`, `(?m)^members\s+2$`, `(?m)^last message\s+20\d\d-.* from alice$`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("conversation show text does not match %s:\n%s", re, text)
		}
	}
	if _, errOut, code := a.run("conversation", "show", "--app", "other-app", cid); code != 1 || !strings.Contains(errOut, "has no conversation") {
		t.Errorf("conversation show of another app: exit %d, %q; want 1 and not found", code, errOut)
	}

	// A follower removed, then added back; it catches up.
	f := (leader + 2) % 3 // neither the old leader nor the new one
	t.Logf("remove-replica: %s", a.ok("shard", "remove-replica", "--shard", "0", "--node", names[f]))
	if g := groupOf(a.status(), "shard", 0); len(g.Servers) != 2 {
		t.Fatalf("after removing %s: servers %+v", names[f], g.Servers)
	}
	t.Logf("add-replica: %s", a.ok("shard", "add-replica", "--shard", "0", "--node", names[f], "--addr", c.coreMesh[f]))
	waitFor(t, 30*time.Second, func() bool { v = a.status(); return settled(v, groupOf(v, "shard", 0), 3) })
	if s, err := alice.Send(ctx, cid, client.TextMessage("after re-adding"), client.SendOptions{}); err != nil {
		t.Fatalf("a send after re-adding %s: %v", names[f], err)
	} else {
		t.Logf("sent %s", s.ID)
	}

	// A move of the leader's replica to the core just removed, under
	// load: added as a non-voter, caught up, promoted, handed the
	// leadership, the old replica removed; every send acked and delivered.
	t.Logf("remove-replica: %s", a.ok("shard", "remove-replica", "--shard", "0", "--node", names[f]))
	sent = startSender(ctx, alice, cid)
	out, errOut, code := a.run("shard", "move", "--shard", "0", "--from", to, "--to", names[f], "--addr", c.coreMesh[f])
	acked2, failed2 := sent.stop()
	if code != 0 || !strings.Contains(out, "moved from "+to+" to "+names[f]) {
		t.Fatalf("shard move: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"as a non-voter", "caught up", names[f] + " is a voter", "leader " + to + " -> " + names[f]} {
		if !strings.Contains(errOut, want) {
			t.Errorf("shard move's progress lacks %q:\n%s", want, errOut)
		}
	}
	t.Logf("shard move:\n%s%s", errOut, out)
	if len(failed2) > 0 {
		t.Errorf("%d of %d sends failed during the move: %v", len(failed2), len(failed2)+len(acked2), failed2)
	}
	waitDelivered(t, bob, cid, acked2, 20*time.Second)
	t.Logf("%d sends acked across the move", len(acked2))
	v = a.status()
	g := groupOf(v, "shard", 0)
	if g.Leader != names[f] || len(g.Servers) != 2 || server(g, to) != nil || server(g, names[f]) == nil || !server(g, names[f]).Voter {
		t.Fatalf("after the move: leader %q, servers %+v; want %s leading, %s gone", g.Leader, g.Servers, names[f], to)
	}
	// Run again: nothing left to do.
	if out := a.ok("shard", "move", "--shard", "0", "--from", to, "--to", names[f], "--addr", c.coreMesh[f]); !strings.Contains(out, "moved already") {
		t.Errorf("a second run of the move said %q", out)
	}
	// Back to three voters, led by names[f]: the misuse below needs a leader and two followers.
	a.ok("shard", "add-replica", "--shard", "0", "--node", to, "--addr", c.coreMesh[slices.Index(names, to)])
	waitFor(t, 30*time.Second, func() bool { v = a.status(); return settled(v, groupOf(v, "shard", 0), 3) })
	to = names[f]

	// Misuse: each exits 1 with a one-line reason.
	edgeCLI := newAdminCLI(t, c, "edge-x", "edge")
	coreCLI := newAdminCLI(t, c, "core-x", "core")
	misuse := []struct {
		name string
		cli  *adminCLI
		args []string
		want string
	}{
		{"an edge certificate", edgeCLI, []string{"status"}, `refused certificate "edge-x" of role edge`},
		{"a core certificate", coreCLI, []string{"shard", "transfer-leader", "--shard", "0"}, `refused certificate "core-x" of role core`},
		{"unknown shard", a, []string{"shard", "transfer-leader", "--shard", "9"}, "unknown shard 9"},
		{"no shard", a, []string{"shard", "transfer-leader"}, "--shard is required"},
		{"a bad shard", a, []string{"shard", "remove-replica", "--shard", "-1", "--node", "core-1"}, "a shard number"},
		{"an unknown flag", a, []string{"status", "--bogus"}, "flag provided but not defined"},
		{"add without --addr", a, []string{"shard", "add-replica", "--shard", "0", "--node", "core-9"}, "--addr is required"},
		{"add a core that does not answer", a, []string{"shard", "add-replica", "--shard", "0", "--node", "core-9", "--addr", freeUDPAddr(t), "--timeout", "3s"}, "does not answer"},
		{"add as the wrong node", a, []string{"shard", "add-replica", "--shard", "0", "--node", "core-9", "--addr", c.coreMesh[0]}, "is core-1, not core-9"},
		{"remove a stranger", a, []string{"shard", "remove-replica", "--shard", "0", "--node", "core-9"}, "has no replica"},
		{"remove the leader", a, []string{"shard", "remove-replica", "--shard", "0", "--node", to}, "--force"},
		{"a conversation without id", a, []string{"conversation", "show", "--app", "failover-app"}, "one conversation id"},
		{"an unknown subcommand", a, []string{"shard", "split"}, "unknown subcommand"},
		{"move without --addr", a, []string{"shard", "move", "--shard", "0", "--from", "core-1", "--to", "core-9"}, "--addr"},
		{"move to itself", a, []string{"shard", "move", "--shard", "0", "--from", "core-1", "--to", "core-1", "--addr", c.coreMesh[0]}, "both core-1"},
		{"move the catalog", a, []string{"shard", "move", "--shard", "catalog", "--from", "core-1", "--to", "core-9", "--addr", c.coreMesh[0]}, "only shards move"},
		{"move a stranger", a, []string{"shard", "move", "--shard", "0", "--from", "core-9", "--to", "core-8", "--addr", freeUDPAddr(t)}, "has no replica"},
		{"move to a core that does not answer", a, []string{"shard", "move", "--shard", "0", "--from", "core-1", "--to", "core-9", "--addr", freeUDPAddr(t), "--timeout", "4s"}, "does not answer"},
		{"move to the wrong node", a, []string{"shard", "move", "--shard", "0", "--from", "core-1", "--to", "core-9", "--addr", c.coreMesh[1]}, "is core-2, not core-9"},
		{"no core answers", a, []string{"status", "--core", freeUDPAddr(t), "--timeout", "2s"}, "no core answered"},
	}
	for _, m := range misuse {
		out, errOut, code := m.cli.run(m.args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code != 1 || !strings.Contains(errOut, m.want) || len(lines) != 1 || !strings.HasPrefix(lines[0], "relaymesh: ") {
			t.Errorf("%s: exit %d, stderr %q (stdout %q); want exit 1 and one line with %q", m.name, code, errOut, out, m.want)
		}
	}
	// A core that does not answer is shown, the command still succeeds.
	out, _, code = a.run("status", "--core", freeUDPAddr(t)+","+c.coreMesh[0], "--timeout", "10s")
	if code != 0 || !strings.Contains(out, "unreachable") {
		t.Errorf("status with a dead core among the seeds: exit %d\n%s", code, out)
	}

	// The last voter: remove the two followers, then the leader is the
	// last voter and is refused even with --force.
	for _, n := range names {
		if n != to {
			a.ok("shard", "remove-replica", "--shard", "0", "--node", n)
		}
	}
	_, errOut, code = a.run("shard", "remove-replica", "--shard", "0", "--node", to, "--force")
	if code != 1 || !strings.Contains(errOut, "last voter") {
		t.Errorf("removing the last voter: exit %d, %q", code, errOut)
	}
	if g := groupOf(a.status(), "shard", 0); g.Leader != to || len(g.Servers) != 1 {
		t.Errorf("after refusing the last voter: %+v", g)
	}
}

// sender sends to a conversation without pause until stopped.
type sender struct {
	stopc  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []string
	failed []error
}

func startSender(ctx context.Context, c *client.Client, cid string) *sender {
	s := &sender{stopc: make(chan struct{})}
	s.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-s.stopc:
				return
			default:
			}
			ack, err := c.Send(ctx, cid, client.TextMessage(fmt.Sprintf("m%d", i)), client.SendOptions{})
			s.mu.Lock()
			if err != nil {
				s.failed = append(s.failed, err)
			} else {
				s.acked = append(s.acked, ack.ID)
			}
			s.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(300 * time.Millisecond) // sends before what the test does next
	return s
}

// stop ends the sends (after a few more) and returns the acked ids and the failures.
func (s *sender) stop() ([]string, []error) {
	time.Sleep(300 * time.Millisecond)
	close(s.stopc)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked, s.failed
}

// waitDelivered waits until c received every message of ids in cid.
func waitDelivered(t *testing.T, c *client.Client, cid string, ids []string, d time.Duration) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.After(d)
	for len(want) > 0 {
		select {
		case ev := <-c.Events():
			if m, ok := ev.(client.Message); ok && m.ConvID == cid {
				delete(want, m.ID)
			}
		case <-deadline:
			t.Fatalf("%d of %d acked messages not delivered within %v", len(want), len(ids), d)
		}
	}
}

// server is g's configured server id, or nil.
func server(g *cluster.GroupView, id string) *meshpb.ServerStatus {
	for i := range g.Servers {
		if g.Servers[i].ID == id {
			return &g.Servers[i]
		}
	}
	return nil
}
