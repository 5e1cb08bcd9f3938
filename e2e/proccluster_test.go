package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/relaymesh/relaymesh/cluster"
)

// procCluster is a region as an operator runs it (docs/OPERATIONS.md):
// certificates from `relaymesh pki` (a CA of the cluster's own),
// `relaymesh core` processes (each with a metrics listener whose /healthz
// says who leads) and `relaymesh edge` processes, all from TOML files
// that newProcCluster writes.
type procCluster struct {
	t         *testing.T
	o         procOptions
	dir       string     // the files: pki/, NAME.toml; each process's data/ is dir/data
	pki       string     // the CA's directory (relaymesh pki init)
	cores     []*devProc // nil until started
	metrics   []string   // http://host:port of each core's /metrics, /healthz and /readyz
	coreMesh  []string   // each core's mesh address (core-1, core-2, …)
	coreArgs  [][]string // how each core is started, for restartCore
	edges     []*devProc // nil until started
	edgeAddrs []string   // each edge's client listener (edge-1, edge-2, …)
	edgeArgs  [][]string // how each edge is started, for restartEdge
}

// procOptions say what newProcCluster writes. The zero value is three
// cores (one 3-voter shard, a metrics listener each) serving failover-app,
// and no edge.
type procOptions struct {
	Cores      int      // core-1 … core-N, default 3; a lone core has no peers and bootstraps itself
	Edges      int      // edge-1 … edge-N, each knowing every core
	Shards     int      // [core] shards; 0 leaves the key out (one shard)
	NoMetrics  bool     // no metrics_addr: the cores serve no /metrics, /healthz, /readyz
	App        string   // the keys of the one [[apps]] entry; default failoverApp
	EdgeExtra  string   // more [edge] keys, a line each
	EdgeLimits string   // [edge.limits] keys; "" writes no such table
	CoreArgs   []string // more flags for every core
}

// failoverApp is the [[apps]] entry of a procCluster unless its options
// name another.
const failoverApp = `id = "failover-app"
key = "failover-key"
master_key = "failover-master"
`

// startProcCluster writes a procCluster's files, starts its cores and
// its edges and waits until every edge answers /healthz (it reaches a
// shard leader).
func startProcCluster(t *testing.T, o procOptions) *procCluster {
	t.Helper()
	c := newProcCluster(t, o)
	for i := range c.coreArgs {
		c.cores[i] = startProc(t, "", c.coreArgs[i]...)
	}
	for i := range c.edgeArgs {
		c.edges[i] = startProc(t, c.edgeAddrs[i], c.edgeArgs[i]...)
	}
	return c
}

// newProcCluster makes the CA, a certificate per node and the config
// files (core-N.toml, edge-N.toml) in a temporary directory, with free
// addresses chosen; it starts nothing. Every file begins with the same
// data directory, session token key and app.
func newProcCluster(t *testing.T, o procOptions) *procCluster {
	t.Helper()
	if o.Cores == 0 {
		o.Cores = 3
	}
	if o.App == "" {
		o.App = failoverApp
	}
	dir := t.TempDir()
	c := &procCluster{t: t, o: o, dir: dir, pki: filepath.Join(dir, "pki"),
		cores: make([]*devProc, o.Cores), edges: make([]*devProc, o.Edges)}
	c.relaymesh("pki", "init", "--dir", c.pki)
	var peers []string
	for i := 1; i <= o.Cores; i++ {
		name := fmt.Sprintf("core-%d", i)
		c.issue(name, "--hosts", "127.0.0.1")
		c.coreMesh = append(c.coreMesh, freeUDPAddr(t))
		peers = append(peers, fmt.Sprintf("%s = %q", name, c.coreMesh[i-1]))
	}
	for i := 1; i <= o.Cores; i++ {
		name := fmt.Sprintf("core-%d", i)
		var b strings.Builder
		fmt.Fprintf(&b, "%s\n%s\n[core]\nnode_id = %q\nmesh_addr = %q\n", c.common(), tlsTOML(name), name, c.coreMesh[i-1])
		if o.Cores > 1 {
			fmt.Fprintf(&b, "peers = { %s }\n", strings.Join(peers, ", "))
		}
		if !o.NoMetrics {
			m := freeAddr(t)
			fmt.Fprintf(&b, "metrics_addr = %q\n", m)
			c.metrics = append(c.metrics, "http://"+m)
		}
		if o.Shards > 0 {
			fmt.Fprintf(&b, "shards = %d\n", o.Shards)
		}
		cfg := c.write(name+".toml", b.String())
		c.coreArgs = append(c.coreArgs, append([]string{"core", "--config", cfg, "--log-level", "warn"}, o.CoreArgs...))
	}
	for i := 1; i <= o.Edges; i++ {
		listen, args := c.writeEdge(fmt.Sprintf("edge-%d", i), c.coreMesh)
		c.edgeAddrs = append(c.edgeAddrs, listen)
		c.edgeArgs = append(c.edgeArgs, args)
	}
	return c
}

// addEdge starts one more edge of c, as its others but knowing only the
// cores at coreMesh, and waits until it answers /healthz.
func (c *procCluster) addEdge(name string, coreMesh ...string) *devProc {
	c.t.Helper()
	listen, args := c.writeEdge(name, coreMesh)
	return startProc(c.t, listen, args...)
}

// writeEdge issues the certificate and writes the config file of edge
// name on a free address, knowing the cores at coreMesh; it returns the
// address and the edge's command line.
func (c *procCluster) writeEdge(name string, coreMesh []string) (listen string, args []string) {
	c.t.Helper()
	c.issue(name, "--hosts", "127.0.0.1")
	return c.writeEdgeAs(name, name, coreMesh)
}

// writeEdgeAs writes the config file (edgeID.toml) of edge edgeID with
// the certificate cert, which must be issued already, on a free address,
// knowing the cores at coreMesh; it returns the address and the edge's
// command line.
func (c *procCluster) writeEdgeAs(cert, edgeID string, coreMesh []string) (listen string, args []string) {
	c.t.Helper()
	listen = freeAddr(c.t)
	var cores []string
	for _, m := range coreMesh {
		cores = append(cores, fmt.Sprintf("%q", m))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n[edge]\nedge_id = %q\nlisten = %q\nmesh_addr = \"127.0.0.1:0\"\ncores = [%s]\n%s",
		c.common(), tlsTOML(cert), edgeID, listen, strings.Join(cores, ", "), lines(c.o.EdgeExtra))
	if c.o.EdgeLimits != "" {
		fmt.Fprintf(&b, "\n[edge.limits]\n%s", lines(c.o.EdgeLimits))
	}
	cfg := c.write(edgeID+".toml", b.String())
	return listen, []string{"edge", "--config", cfg, "--log-level", "warn"}
}

// common is the top of every node's file: the data directory (relative:
// the file's directory), the session token key `pki init` made, the app.
func (c *procCluster) common() string {
	return "data = \"data\"\nsession_token_key_file = \"pki/session-token.key\"\n\n[[apps]]\n" + lines(c.o.App)
}

// lines is TOML keys s ending in a newline ("" stays "").
func lines(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// tlsTOML is the [tls] table of the node whose certificate is name's
// from the cluster's pki directory.
func tlsTOML(name string) string {
	return fmt.Sprintf("[tls]\nca = \"pki/ca.crt\"\ncert = \"pki/%[1]s.crt\"\nkey = \"pki/%[1]s.key\"\n", name)
}

// issue signs a certificate for name (relaymesh pki issue) with flags
// (--hosts, --role).
func (c *procCluster) issue(name string, flags ...string) {
	c.t.Helper()
	c.relaymesh(append([]string{"pki", "issue", "--dir", c.pki, "--name", name}, flags...)...)
}

// relaymesh runs the binary to its end and fails the test unless it
// succeeds.
func (c *procCluster) relaymesh(args ...string) {
	c.t.Helper()
	if out, err := exec.Command(relaymeshBin(c.t), args...).CombinedOutput(); err != nil {
		c.t.Fatalf("relaymesh %v: %v\n%s", args, err, out)
	}
}

// write writes a file of the cluster's directory and returns its path.
func (c *procCluster) write(name, body string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// TestProcClusterConfigs is the builder's own control, without starting
// a process: every file it writes passes the binary's --check-config,
// and each option shows in the parsed file as the tests that use it rely
// on (a lone core without peers, no metrics listener, shards, the app's
// keys, the edges' extra keys and limits, an added edge's cores), while
// two clusters share no CA.
func TestProcClusterConfigs(t *testing.T) {
	const prod = "id = \"prod-app-0001\"\nkey = \"k\"\nmaster_key = \"m\"\nsignature_required = true" // no final newline
	for _, tc := range []struct {
		name, app string
		o         procOptions
	}{
		{"default", "failover-app", procOptions{Edges: 2}},
		{"sharded with limits", "failover-app", procOptions{Edges: 1, Shards: 2, EdgeLimits: "sends_per_minute = -1\nmax_conns_per_ip = -1"}},
		{"readiness", "ready-app", procOptions{Edges: 1, Shards: 2, EdgeExtra: `drain_timeout = "1s"`, App: "id = \"ready-app\"\nkey = \"ready-key\"\nmaster_key = \"ready-master\"\n"}},
		{"lone core", "prod-app-0001", procOptions{Cores: 1, Edges: 1, NoMetrics: true, App: prod}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			c := newProcCluster(t, o)
			if o.Cores == 0 {
				o.Cores = 3
			}
			if len(c.coreArgs) != o.Cores || len(c.cores) != o.Cores || len(c.edgeArgs) != o.Edges || len(c.edgeAddrs) != o.Edges {
				t.Fatalf("got %d core and %d edge command lines, want %d and %d", len(c.coreArgs), len(c.edgeArgs), o.Cores, o.Edges)
			}
			if o.NoMetrics != (len(c.metrics) == 0) {
				t.Errorf("metrics %v with NoMetrics %v", c.metrics, o.NoMetrics)
			}
			check := func(role string, args []string) *cluster.Config {
				t.Helper()
				file := args[2]
				if out, err := exec.Command(relaymeshBin(t), role, "--config", file, "--check-config").CombinedOutput(); err != nil || string(out) != "ok\n" {
					b, _ := os.ReadFile(file)
					t.Fatalf("%s --check-config %s: %v %q\n%s", role, file, err, out, b)
				}
				cfg, err := cluster.LoadConfig(file)
				if err != nil {
					t.Fatal(err)
				}
				if len(cfg.Apps) != 1 || cfg.Apps[0].ID != tc.app || cfg.Apps[0].SignatureRequired != strings.Contains(o.App, "signature_required = true") {
					t.Errorf("%s: apps %+v, want only %s", file, cfg.Apps, tc.app)
				}
				return cfg
			}
			for i, args := range c.coreArgs {
				cfg := check("core", args)
				want := fmt.Sprintf("core-%d", i+1)
				if cfg.Core.NodeID != want || cfg.Core.MeshAddr != c.coreMesh[i] || cfg.TLS.Cert != "pki/"+want+".crt" {
					t.Errorf("%s: node %q mesh %q cert %q, want %s at %s", args[2], cfg.Core.NodeID, cfg.Core.MeshAddr, cfg.TLS.Cert, want, c.coreMesh[i])
				}
				wantPeers := o.Cores
				if o.Cores == 1 {
					wantPeers = 0 // it bootstraps itself
				}
				if len(cfg.Core.Peers) != wantPeers {
					t.Errorf("%s: peers %v with %d cores", args[2], cfg.Core.Peers, o.Cores)
				}
				if o.NoMetrics && cfg.Core.MetricsAddr != "" || !o.NoMetrics && "http://"+cfg.Core.MetricsAddr != c.metrics[i] {
					t.Errorf("%s: metrics_addr %q, want %v (NoMetrics %v)", args[2], cfg.Core.MetricsAddr, c.metrics, o.NoMetrics)
				}
				if cfg.Core.Shards != o.Shards {
					t.Errorf("%s: shards %d, want %d", args[2], cfg.Core.Shards, o.Shards)
				}
			}
			for i, args := range c.edgeArgs {
				cfg := check("edge", args)
				if cfg.Edge.EdgeID != fmt.Sprintf("edge-%d", i+1) || cfg.Edge.Listen != c.edgeAddrs[i] || !slices.Equal(cfg.Edge.Cores, c.coreMesh) {
					t.Errorf("%s: edge %q on %q to %v, want edge-%d on %s to %v", args[2], cfg.Edge.EdgeID, cfg.Edge.Listen, cfg.Edge.Cores, i+1, c.edgeAddrs[i], c.coreMesh)
				}
				if want := strings.Contains(o.EdgeExtra, "drain_timeout"); (cfg.Edge.DrainTimeout == "1s") != want {
					t.Errorf("%s: drain_timeout %q with extra %q", args[2], cfg.Edge.DrainTimeout, o.EdgeExtra)
				}
				if want := strings.Contains(o.EdgeLimits, "sends_per_minute = -1"); (cfg.Edge.Limits.SendsPerMinute == -1) != want {
					t.Errorf("%s: sends_per_minute %d with limits %q", args[2], cfg.Edge.Limits.SendsPerMinute, o.EdgeLimits)
				}
				if want := strings.Contains(o.EdgeLimits, "max_conns_per_ip = -1"); (cfg.Edge.Limits.MaxConnsPerIP == -1) != want {
					t.Errorf("%s: max_conns_per_ip %d with limits %q", args[2], cfg.Edge.Limits.MaxConnsPerIP, o.EdgeLimits)
				}
			}
			// One more edge, as addEdge writes it (without starting it).
			_, args := c.writeEdge("edge-far", c.coreMesh[:1])
			if cfg := check("edge", args); !slices.Equal(cfg.Edge.Cores, c.coreMesh[:1]) {
				t.Errorf("edge-far: cores %v, want %v", cfg.Edge.Cores, c.coreMesh[:1])
			}
		})
	}
	// Two clusters, two CAs: a certificate of one is not signed by the
	// other's CA.
	a, b := newProcCluster(t, procOptions{}), newProcCluster(t, procOptions{})
	ca, err := os.ReadFile(filepath.Join(a.pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := os.ReadFile(filepath.Join(b.pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(ca) == string(cb) {
		t.Error("two procClusters share a CA")
	}
}
