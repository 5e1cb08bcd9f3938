package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/lab"
	"github.com/relaymesh/relaymesh/netem"
)

// startLab starts a lab of relaymesh processes in a temp dir (package
// lab); it is closed at the end of the test, with its nodes' logs in the
// test log when the test failed.
func startLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	cfg.Binary = relaymeshBin(t)
	cfg.Dir = filepath.Join(t.TempDir(), "lab")
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := lab.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(cfg.Dir, "logs", "*.log"))
			for _, f := range logs {
				b, _ := os.ReadFile(f)
				t.Logf("=== %s\n%s", filepath.Base(f), b)
			}
		}
	})
	t.Logf("lab of %d regions ready in %v", len(l.Regions()), l.StartedIn())
	return l
}

// labClient logs clientID in at url (more servers after it) on the lab's app.
func labClient(t *testing.T, ctx context.Context, l *lab.Lab, id, url string, more ...string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, url, client.Options{AppID: l.AppID(), ClientID: id, Servers: more,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("login %s at %s: %v", id, url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitMessage returns the next message event of c with text, failing
// after 15 s; other events go to other (may be nil).
func waitMessage(t *testing.T, c *client.Client, text string, other func(client.Event)) client.Message {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: events closed waiting for %q", c.ID(), text)
			}
			if m, ok := ev.(client.Message); ok && strings.Contains(m.Text, text) {
				return m
			}
			if other != nil {
				other(ev)
			}
		case <-deadline:
			t.Fatalf("%s: no message %q within 15 s", c.ID(), text)
		}
	}
}

// route asks a router for /v1/route, as a caller at src (a local address
// to bind, invalid: any) with X-Forwarded-For xff ("": none).
func route(t *testing.T, router string, src netip.Addr, xff string) (server, secondary, region string) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, router+"/v1/route?appId=lab-app", nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		Server, Secondary string
		TTL               int
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != 200 || ans.TTL <= 0 {
		t.Fatalf("route: %d %+v %v", resp.StatusCode, ans, err)
	}
	return ans.Server, ans.Secondary, resp.Header.Get("X-Relaymesh-Region")
}

// TestLabCommand runs `relaymesh lab` as an operator would: it writes
// topology.json in the shape once every region is ready, a Go SDK
// client logs in and chats at each region's edge, each edge's /v1/route
// answers the caller's region (by X-Forwarded-For from a trusted proxy,
// and by source address), and SIGTERM stops every process it started.
func TestLabCommand(t *testing.T) {
	l := startLabProc(t, "--regions", "2", "--cores", "1", "--edges", "1", "--latency", "30ms")
	// topology.json appeared (startLabProc waited) once every region was ready.
	dir, raw, desc := l.dir, l.topJSON, l.desc
	// Exactly {"regions":[{"name","edges","router"}]}.
	var shape map[string][]map[string]any
	if err := json.Unmarshal(raw, &shape); err != nil || len(shape) != 1 || len(shape["regions"]) != 2 {
		t.Fatalf("topology.json %s: %v", raw, err)
	}
	for _, r := range shape["regions"] {
		keys := make([]string, 0, len(r))
		for k := range r {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"edges", "name", "router"}) {
			t.Errorf("region keys %v, want edges, name, router", keys)
		}
	}
	var top lab.Topology
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&top); err != nil {
		t.Fatal(err)
	}
	for i, r := range top.Regions {
		if r.Name != "r"+strconv.Itoa(i+1) || len(r.Edges) != 1 || !strings.HasPrefix(r.Edges[0], "ws://") || !strings.HasPrefix(r.Router, "http://") {
			t.Errorf("region %d: %+v", i, r)
		}
	}

	// A Go SDK client logs in at each region's edge and chats there.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range top.Regions {
		a := client.Options{AppID: "lab-app", ClientID: "alice-" + r.Name}
		ca, err := client.Dial(ctx, r.Edges[0], a)
		if err != nil {
			t.Fatalf("login at %s's edge: %v", r.Name, err)
		}
		defer ca.Close()
		cb, err := client.Dial(ctx, r.Edges[0], client.Options{AppID: "lab-app", ClientID: "bob-" + r.Name})
		if err != nil {
			t.Fatal(err)
		}
		defer cb.Close()
		cid, err := ca.CreateConversation(ctx, []string{"bob-" + r.Name}, "lab", nil, false)
		if err != nil {
			t.Fatalf("%s: create: %v", r.Name, err)
		}
		if _, err := ca.Send(ctx, cid, client.TextMessage("hello "+r.Name), client.SendOptions{}); err != nil {
			t.Fatalf("%s: send: %v", r.Name, err)
		}
		waitMessage(t, cb, "hello "+r.Name, nil)
	}

	// /v1/route by the caller's region.
	r1, r2 := top.Regions[0], top.Regions[1]
	cidr2 := netip.MustParsePrefix(desc.Regions[1].CIDR)
	inR2 := cidr2.Addr().Next().Next() // 127.B.2.2: a client of r2
	if srv, sec, reg := route(t, r1.Router, netip.Addr{}, inR2.String()); reg != "r2" || srv != r2.Edges[0] || sec != r1.Edges[0] {
		t.Errorf("r1's router, X-Forwarded-For %s: %s %s (region %s); want r2's edge, then r1's", inR2, srv, sec, reg)
	}
	if srv, sec, reg := route(t, r1.Router, netip.Addr{}, ""); reg != "r1" || srv != r1.Edges[0] || sec != r2.Edges[0] {
		t.Errorf("r1's router, a caller of no region: %s %s (region %s); want r1's own", srv, sec, reg)
	}
	src := cidr2.Addr().Next().Next().Next() // bind a source address in r2
	if srv, _, reg := route(t, r1.Router, src, ""); reg != "r2" || srv != r2.Edges[0] {
		t.Errorf("r1's router, a caller bound to %s: %s (region %s); want r2's edge", src, srv, reg)
	}

	// SIGTERM stops every process the lab started.
	var pids []int
	for _, r := range desc.Regions {
		for _, n := range r.Nodes {
			if n.PID == 0 || !n.Running {
				t.Errorf("lab.json: %s not running (pid %d)", n.Name, n.PID)
			}
			pids = append(pids, n.PID)
		}
	}
	if len(pids) != 4 || len(processesMentioning(t, dir)) < 4 {
		t.Fatalf("pids %v, processes naming the lab dir %v: want 4 nodes", pids, processesMentioning(t, dir))
	}
	l.terminate(time.Minute)
	l.checkGone(pids)
	// The lab itself stopped and reaped them (not only the kernel's
	// parent-death signal): its last lab.json has none running, and each
	// edge drained on its SIGTERM.
	var after lab.LabFile
	if b, err := os.ReadFile(filepath.Join(dir, "lab.json")); err != nil || json.Unmarshal(b, &after) != nil {
		t.Fatalf("lab.json after exit: %v", err)
	}
	for _, r := range after.Regions {
		for _, n := range r.Nodes {
			if n.Running {
				t.Errorf("lab.json after exit: %s still running", n.Name)
			}
			if n.Role == lab.RoleEdge && !strings.Contains(readFile(n.Log), "drained") {
				t.Errorf("%s did not drain on the lab's SIGTERM", n.Name)
			}
		}
	}
}

// processesMentioning lists the pids whose command line contains s.
func processesMentioning(t *testing.T, s string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}

// TestLabNetwork drives the lab's network through real processes: a PING
// over QUIC between regions pays twice the one-way latency, a partition
// stops it (while the region itself keeps answering), healing restores it,
// a changed link takes effect, and a core killed and started again brings
// its region back.
func TestLabNetwork(t *testing.T) {
	const oneWay = 25 * time.Millisecond
	l := startLab(t, lab.Config{Regions: 2, Cores: 1, Edges: 1, Latency: oneWay})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	probe := func(from, to string, n int, d time.Duration) ([]time.Duration, error) {
		pctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		rtts, err := l.Probe(pctx, from, to, n)
		slices.Sort(rtts)
		return rtts, err
	}
	rtts, err := probe("r1", "r2", 10, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rtts[0] < 2*oneWay {
		t.Errorf("fastest r1→r2 round trip %v, below twice the one-way %v", rtts[0], oneWay)
	}
	local, err := probe("r1", "r1", 10, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one-way %v: r1→r2 RTT min %v median %v max %v; inside r1 min %v", oneWay, rtts[0], rtts[len(rtts)/2], rtts[len(rtts)-1], local[0])

	if err := l.Partition(ctx, "r1", "r2"); err != nil {
		t.Fatal(err)
	}
	if _, err := probe("r2", "r1", 1, 1500*time.Millisecond); err == nil {
		t.Fatal("a PING crossed the partition")
	}
	if _, err := probe("r2", "r2", 1, 10*time.Second); err != nil {
		t.Errorf("inside r2 during the partition: %v", err)
	}
	if !l.Link("r2", "r1").Down {
		t.Error("Link(r2, r1) not down during the partition")
	}
	if err := l.Heal(ctx, "r1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := probe("r2", "r1", 3, 30*time.Second); err != nil {
		t.Fatalf("after healing: %v", err)
	}
	if err := l.SetLink(ctx, "r1", "r2", netem.Link{Latency: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	slow, err := probe("r1", "r2", 3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if slow[0] < 200*time.Millisecond {
		t.Errorf("after SetLink 100ms: fastest round trip %v, below 200ms", slow[0])
	}

	// Kill a region's only core: its edge loses its leader; starting the
	// core again brings it back.
	r2, _ := l.Region("r2")
	core, edge := r2.Cores[0], r2.Edges[0]
	if err := core.Kill(); err != nil {
		t.Fatal(err)
	}
	if core.Running() {
		t.Fatal("core still running after Kill")
	}
	waitHealth(t, edge.HTTPAddr, http.StatusServiceUnavailable)
	if err := core.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, edge.HTTPAddr, http.StatusOK)
	if r2.Leader() != core {
		t.Errorf("leader of r2 after the restart: %v", r2.Leader())
	}
}

func waitHealth(t *testing.T, addr string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/healthz not %d after 30 s (err %v)", addr, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLabControl drives a lab over its HTTP control endpoint, as a test in
// another process would.
func TestLabControl(t *testing.T) {
	l := startLab(t, lab.Config{Regions: 2, Cores: 1, Edges: 1, Latency: 10 * time.Millisecond})
	base, err := l.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Serve("0.0.0.0:0"); err == nil {
		t.Error("a second control endpoint, on a public address, was started")
	}
	call := func(method, path string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, resp.StatusCode, v, want)
		}
		return v
	}
	if v := call("GET", "/lab", 200); v["control"] != base {
		t.Errorf("/lab control %v, want %s", v["control"], base)
	}
	if v := call("GET", "/probe?from=r1&to=r2&n=3", 200); len(v["rtt_ms"].([]any)) != 3 {
		t.Errorf("/probe: %v", v)
	}
	call("POST", "/partition?a=r2", 200)
	if !l.Link("r1", "r2").Down {
		t.Error("partition over HTTP not in force")
	}
	call("POST", "/heal?a=r1&b=r2", 200)
	call("POST", "/link?a=r1&b=r2&latency=40ms&loss=0.5", 200)
	if k := l.Link("r2", "r1"); k.Latency != 40*time.Millisecond || k.Loss != 0.5 {
		t.Errorf("link after /link: %v", k)
	}
	call("POST", "/link?a=r1&b=r2&latency=fast", 400)
	call("POST", "/partition?a=mars", 404)
	call("POST", "/kill?node=r1-edge-1", 200)
	call("POST", "/kill?node=r1-edge-1", 409)
	if v := call("POST", "/start?node=r1-edge-1", 200); v["running"] != true {
		t.Errorf("/start: %v", v)
	}
	if v := call("GET", "/leader?region=r1", 200); v["node"] != "r1-core-1" {
		t.Errorf("/leader: %v", v)
	}
	call("POST", "/stop?node=r2-core-1", 200)
	if v := call("GET", "/leader?region=r2", 200); v["node"] != "" {
		t.Errorf("/leader with the core stopped: %v", v)
	}
}
