package lab

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/netem"
)

// Sentinel errors.
var (
	ErrConfig  = errors.New("lab: invalid config")
	ErrUnknown = errors.New("lab: no such region or node")
	ErrClosed  = errors.New("lab: closed")
)

// Defaults.
const (
	DefaultRegions      = 2
	DefaultCores        = 3
	DefaultEdges        = 2
	DefaultLatency      = 80 * time.Millisecond
	DefaultStartTimeout = 2 * time.Minute
	MaxRegions          = 50
	// stopGrace is how long a child gets after SIGTERM before SIGKILL.
	stopGrace = 15 * time.Second
)

// PairLink overrides the link between two regions (both ways).
type PairLink struct {
	A, B string
	Link netem.Link
}

// Config configures a lab. Zero values take the defaults noted.
type Config struct {
	// Dir holds everything the lab writes; it must not exist or be
	// empty. Required.
	Dir string
	// Binary is the relaymesh executable the nodes run. Default: this
	// executable.
	Binary string
	// Regions (default 2), named Names (default r1, r2, …; letters,
	// digits, at most 16 each).
	Regions int
	Names   []string
	// Cores and Edges per region (defaults 3 and 2).
	Cores, Edges int
	// Shards per region (default 1): every core of a region hosts each.
	// Region i (from 0) is region number i+1 in its conversation ids.
	Shards int
	// The link between every two regions, one way: Latency (default
	// 80ms; negative: none), Jitter, Loss. Links overrides pairs.
	Latency time.Duration
	Jitter  time.Duration
	Loss    float64
	Links   []PairLink
	// The app every region serves (defaults lab-app, lab-key, lab-master).
	AppID, AppKey, MasterKey string
	// EdgeLimits is TOML put under every edge's [edge.limits] (default
	// max_conns_per_ip = -1: every lab client comes from loopback).
	EdgeLimits string
	// DrainTimeout is every edge's [edge] drain_timeout (default 5s).
	DrainTimeout time.Duration
	// CoreExtra, when set, returns more TOML for the file of core c
	// (from 0) of region r (from 0), given the whole layout: the place
	// for cross-region keys (other regions' cores as seeds) once cores
	// have them.
	CoreExtra func(l *Lab, r, c int) string
	// LogLevel is the nodes' --log-level (default warn).
	LogLevel string
	// StartTimeout bounds Start (default 2 minutes).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

var nameRE = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

func (c *Config) defaults() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: Dir is required", ErrConfig)
	}
	if c.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("lab: find the relaymesh executable: %w", err)
		}
		c.Binary = exe
	}
	if c.Regions == 0 {
		c.Regions = max(DefaultRegions, len(c.Names))
	}
	if c.Regions < 1 || c.Regions > MaxRegions {
		return fmt.Errorf("%w: regions must be 1..%d", ErrConfig, MaxRegions)
	}
	if len(c.Names) == 0 {
		for i := range c.Regions {
			c.Names = append(c.Names, "r"+strconv.Itoa(i+1))
		}
	}
	if len(c.Names) != c.Regions {
		return fmt.Errorf("%w: %d names for %d regions", ErrConfig, len(c.Names), c.Regions)
	}
	seen := map[string]bool{}
	for _, n := range c.Names {
		if !nameRE.MatchString(n) || seen[n] {
			return fmt.Errorf("%w: region name %q: want 1-16 lowercase letters or digits, each name once", ErrConfig, n)
		}
		seen[n] = true
	}
	if c.Cores == 0 {
		c.Cores = DefaultCores
	}
	if c.Edges == 0 {
		c.Edges = DefaultEdges
	}
	if c.Shards < 0 || c.Shards > 64 {
		return fmt.Errorf("%w: shards must be 1..64", ErrConfig)
	}
	if c.Cores < 1 || c.Cores > 9 || c.Edges < 1 || c.Edges > 9 {
		return fmt.Errorf("%w: cores and edges per region must be 1..9", ErrConfig)
	}
	if c.Latency == 0 {
		c.Latency = DefaultLatency
	}
	c.Latency = max(c.Latency, 0)
	if err := (netem.Link{Latency: c.Latency, Jitter: c.Jitter, Loss: c.Loss}).Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for _, l := range c.Links {
		if !seen[l.A] || !seen[l.B] || l.A == l.B {
			return fmt.Errorf("%w: link %s-%s: want two different regions of the lab", ErrConfig, l.A, l.B)
		}
		if err := l.Link.Check(); err != nil {
			return fmt.Errorf("%w: link %s-%s: %v", ErrConfig, l.A, l.B, err)
		}
	}
	if c.AppID == "" {
		c.AppID = "lab-app"
	}
	if c.AppKey == "" {
		c.AppKey = "lab-key"
	}
	if c.MasterKey == "" {
		c.MasterKey = "lab-master"
	}
	if c.EdgeLimits == "" {
		c.EdgeLimits = "max_conns_per_ip = -1"
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Region is one region of a running lab.
type Region struct {
	Name   string
	Index  int          // from 0
	CIDR   netip.Prefix // 127.B.(Index+1).0/24
	Cores  []*Node
	Edges  []*Node
	Router string // http://host:port of its first edge (serves /v1/route)
}

// EdgeURLs are the region's edges' WebSocket URLs.
func (r *Region) EdgeURLs() []string {
	out := make([]string, len(r.Edges))
	for i, e := range r.Edges {
		out[i] = e.URL
	}
	return out
}

// Addr returns an address of the region for a client to bind (host 200+i
// of its /24), so /v1/route sees a caller in this region.
func (r *Region) Addr(i int) netip.Addr {
	b := r.CIDR.Addr().As4()
	b[3] = byte(200 + i%40)
	return netip.AddrFrom4(b)
}

// Lab is a running lab.
type Lab struct {
	cfg     Config
	dir     string
	log     *slog.Logger
	block   byte // B of 127.B.0.0/16
	regions []*Region
	nodes   map[string]*Node // immutable after Start
	started time.Time
	ready   time.Duration // how long Start took

	netemPath string
	table     *netem.Table // the lab's own probe nodes'

	fileMu  sync.Mutex  // serialises writes of lab.json
	closing atomic.Bool // set first by Close; Node.start refuses from then on

	mu      sync.Mutex
	base    *netem.Rules          // guarded by mu; the configured links
	rules   *netem.Rules          // guarded by mu; in force (base + partitions)
	probes  map[string]*mesh.Node // guarded by mu; by region, started on first Probe
	control string                // guarded by mu; URL of Serve's listener
	ctrl    *http.Server          // guarded by mu; Serve's server
	closed  bool                  // guarded by mu

	ctrlWG sync.WaitGroup // Serve's goroutine
}

// Start lays the lab out under cfg.Dir, starts every node and returns
// once every edge is ready; then it writes DIR/topology.json. On error
// everything started is stopped.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(cfg.Dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s is not empty (a lab lays itself out in a new directory)", ErrConfig, cfg.Dir)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, "logs"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	}
	l := &Lab{cfg: cfg, dir: dir, log: cfg.Logger, nodes: map[string]*Node{}, started: time.Now(),
		netemPath: filepath.Join(dir, "netem.json"), table: new(netem.Table), probes: map[string]*mesh.Node{}}
	if err := l.layout(); err != nil {
		return nil, err
	}
	if err := l.writeFiles(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := l.startAll(ctx); err != nil {
		l.Close()
		return nil, err
	}
	l.ready = time.Since(l.started)
	if err := l.writeTopology(); err != nil {
		l.Close()
		return nil, err
	}
	l.log.Info("lab: ready", "regions", len(l.regions), "took", l.ready.Round(time.Millisecond), "dir", dir)
	return l, nil
}

// layout picks the address block and every node's addresses.
func (l *Lab) layout() error {
	l.block = byte(32 + rand.IntN(192))
	for i, name := range l.cfg.Names {
		r := &Region{Name: name, Index: i, CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{127, l.block, byte(i + 1), 0}), 24)}
		for c := range l.cfg.Cores {
			ip := l.host(i, 11+c)
			mesh, err := freePort("udp", ip)
			if err != nil {
				return err
			}
			metrics, err := freePort("tcp", ip)
			if err != nil {
				return err
			}
			n := &Node{Name: fmt.Sprintf("%s-core-%d", name, c+1), Role: RoleCore, Region: name, IP: ip,
				MeshAddr: mesh, HTTPAddr: metrics}
			r.Cores = append(r.Cores, n)
		}
		for e := range l.cfg.Edges {
			ip := l.host(i, 101+e)
			listen, err := freePort("tcp", ip)
			if err != nil {
				return err
			}
			n := &Node{Name: fmt.Sprintf("%s-edge-%d", name, e+1), Role: RoleEdge, Region: name, IP: ip,
				MeshAddr: net.JoinHostPort(ip.String(), "0"), HTTPAddr: listen, URL: "ws://" + listen + "/"}
			r.Edges = append(r.Edges, n)
		}
		r.Router = "http://" + r.Edges[0].HTTPAddr
		l.regions = append(l.regions, r)
		for _, n := range append(append([]*Node(nil), r.Cores...), r.Edges...) {
			n.lab = l
			l.nodes[n.Name] = n
		}
	}
	var groups []netem.Group
	for _, r := range l.regions {
		groups = append(groups, netem.Group{Name: r.Name, Prefixes: []netip.Prefix{r.CIDR}})
	}
	base := netem.NewRules(groups...)
	for _, a := range l.regions {
		for _, b := range l.regions {
			if a != b {
				base.Set(a.Name, b.Name, netem.Link{Latency: l.cfg.Latency, Jitter: l.cfg.Jitter, Loss: l.cfg.Loss})
			}
		}
	}
	for _, pl := range l.cfg.Links {
		base.SetPair(pl.A, pl.B, pl.Link)
	}
	base.Generation = 1
	l.base, l.rules = base, base
	l.table.Set(base)
	return nil
}

// host is 127.B.(region+1).h.
func (l *Lab) host(region, h int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, l.block, byte(region + 1), byte(h)})
}

// freePort returns ip:port with a port free for network now.
func freePort(network string, ip netip.Addr) (string, error) {
	addr := net.JoinHostPort(ip.String(), "0")
	if network == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return "", fmt.Errorf("lab: %w", err)
		}
		defer c.Close()
		return c.LocalAddr().String(), nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Regions returns the regions, in order.
func (l *Lab) Regions() []*Region { return l.regions }

// Region returns the region named name.
func (l *Lab) Region(name string) (*Region, error) {
	for _, r := range l.regions {
		if r.Name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: region %q", ErrUnknown, name)
}

// Node returns the node named name (e.g. r1-core-2, r2-edge-1).
func (l *Lab) Node(name string) (*Node, error) {
	if n, ok := l.nodes[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("%w: node %q", ErrUnknown, name)
}

// Dir is the lab's directory.
func (l *Lab) Dir() string { return l.dir }

// StartedIn is how long Start took, from laying out to every edge ready.
func (l *Lab) StartedIn() time.Duration { return l.ready }

// AppID, AppKey and MasterKey are the app the lab serves.
func (l *Lab) AppID() string     { return l.cfg.AppID }
func (l *Lab) AppKey() string    { return l.cfg.AppKey }
func (l *Lab) MasterKey() string { return l.cfg.MasterKey }

// allNodes returns every node: cores first, then edges, by region.
func (l *Lab) allNodes() []*Node {
	var out []*Node
	for _, r := range l.regions {
		out = append(out, r.Cores...)
	}
	for _, r := range l.regions {
		out = append(out, r.Edges...)
	}
	return out
}

// startAll starts every node and waits until every edge is ready and
// every core answers on its metrics listener.
func (l *Lab) startAll(ctx context.Context) error {
	for _, n := range l.allNodes() {
		if err := n.start(); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(l.nodes))
	for i, n := range l.allNodes() {
		wg.Go(func() { errs[i] = n.waitReady(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every node (edges first, so they drain while their cores
// still answer), waits for each, closes the probe nodes and the control
// listener. Every child is reaped when it returns.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.closing.Store(true)
	probes := l.probes
	l.probes = nil
	ctrl := l.ctrl
	l.mu.Unlock()
	var errs []error
	if ctrl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, ctrl.Shutdown(ctx))
		cancel()
		l.ctrlWG.Wait()
	}
	for _, group := range [][]*Node{l.edges(), l.cores()} {
		var wg sync.WaitGroup
		for _, n := range group {
			wg.Go(func() { n.stop(stopGrace) })
		}
		wg.Wait()
	}
	for _, p := range probes {
		errs = append(errs, ignoreClosed(p.Close()))
	}
	l.writeLabFile()
	return errors.Join(errs...)
}

func ignoreClosed(err error) error {
	if errors.Is(err, mesh.ErrClosed) {
		return nil
	}
	return err
}

func (l *Lab) edges() []*Node {
	var out []*Node
	for _, r := range l.regions {
		out = append(out, r.Edges...)
	}
	return out
}

func (l *Lab) cores() []*Node {
	var out []*Node
	for _, r := range l.regions {
		out = append(out, r.Cores...)
	}
	return out
}

// Topology is DIR/topology.json, exactly the shape of issue 9.
type Topology struct {
	Regions []TopologyRegion `json:"regions"`
}

// TopologyRegion is one region in topology.json.
type TopologyRegion struct {
	Name   string   `json:"name"`
	Edges  []string `json:"edges"`
	Router string   `json:"router"`
}

// Topology returns what topology.json holds.
func (l *Lab) Topology() Topology {
	t := Topology{Regions: []TopologyRegion{}}
	for _, r := range l.regions {
		t.Regions = append(t.Regions, TopologyRegion{Name: r.Name, Edges: r.EdgeURLs(), Router: r.Router})
	}
	return t
}

func (l *Lab) writeTopology() error {
	b, err := json.MarshalIndent(l.Topology(), "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(l.dir, "topology.json"), append(b, '\n')); err != nil {
		return fmt.Errorf("lab: write topology: %w", err)
	}
	return l.writeLabFile()
}

// LabFile is DIR/lab.json: the lab's own description, for tools and tests
// in other processes.
type LabFile struct {
	Control   string       `json:"control,omitempty"` // http://… of Serve
	Block     string       `json:"block"`             // 127.B.0.0/16
	StartedMS int64        `json:"started_in_ms"`
	Netem     string       `json:"netem"`
	Regions   []LabRegion  `json:"regions"`
	Links     []LinkStatus `json:"links"`
}

// LabRegion is a region in lab.json.
type LabRegion struct {
	Name   string     `json:"name"`
	CIDR   string     `json:"cidr"`
	Router string     `json:"router"`
	Nodes  []NodeInfo `json:"nodes"`
}

// LinkStatus is the link from one region to another now.
type LinkStatus struct {
	From    string  `json:"from"`
	To      string  `json:"to"`
	Latency string  `json:"latency"`
	Jitter  string  `json:"jitter"`
	Loss    float64 `json:"loss"`
	Down    bool    `json:"down"`
}

// Describe returns what lab.json holds now.
func (l *Lab) Describe() LabFile {
	l.mu.Lock()
	control, rules := l.control, l.rules
	l.mu.Unlock()
	f := LabFile{Control: control, Block: fmt.Sprintf("127.%d.0.0/16", l.block), StartedMS: l.ready.Milliseconds(), Netem: l.netemPath}
	for _, r := range l.regions {
		lr := LabRegion{Name: r.Name, CIDR: r.CIDR.String(), Router: r.Router}
		for _, n := range append(append([]*Node(nil), r.Cores...), r.Edges...) {
			lr.Nodes = append(lr.Nodes, n.Info())
		}
		f.Regions = append(f.Regions, lr)
		for _, o := range l.regions {
			if o != r {
				k := rules.Link(r.Name, o.Name)
				f.Links = append(f.Links, LinkStatus{From: r.Name, To: o.Name, Latency: k.Latency.String(), Jitter: k.Jitter.String(), Loss: k.Loss, Down: k.Down})
			}
		}
	}
	return f
}

func (l *Lab) writeLabFile() error {
	b, err := json.MarshalIndent(l.Describe(), "", "  ")
	if err != nil {
		return err
	}
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	return writeAtomic(filepath.Join(l.dir, "lab.json"), append(b, '\n'))
}

func (l *Lab) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// writeFiles writes the PKI, the session-token key, the netem rules and
// every node's TOML file.
func (l *Lab) writeFiles() error {
	pki := filepath.Join(l.dir, "pki")
	if _, err := mesh.EnsureDevPKI(pki); err != nil {
		return fmt.Errorf("lab: pki: %w", err)
	}
	key := make([]byte, 32)
	if _, err := cryptoRead(key); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "session-token.key"), key, 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, n := range l.allNodes() {
		role := mesh.RoleCore
		if n.Role == RoleEdge {
			role = mesh.RoleEdge
		}
		if _, err := mesh.IssueNodeRole(pki, n.Name, role, []string{n.IP.String()}); err != nil {
			return fmt.Errorf("lab: pki: %w", err)
		}
	}
	for _, r := range l.regions {
		if _, err := mesh.IssueNodeRole(pki, "lab-probe-"+r.Name, mesh.RoleAdmin, []string{l.host(r.Index, 250).String()}); err != nil {
			return fmt.Errorf("lab: pki: %w", err)
		}
	}
	if err := netem.WriteFile(l.netemPath, l.base); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for ri, r := range l.regions {
		for ci, n := range r.Cores {
			if err := os.WriteFile(n.configPath(), []byte(l.coreTOML(ri, ci)), 0o600); err != nil {
				return fmt.Errorf("lab: %w", err)
			}
		}
		for _, n := range r.Edges {
			if err := os.WriteFile(n.configPath(), []byte(l.edgeTOML(r, n)), 0o600); err != nil {
				return fmt.Errorf("lab: %w", err)
			}
		}
	}
	return nil
}

var cryptoRead = crand.Read

func (l *Lab) commonTOML() string {
	return fmt.Sprintf(`# written by relaymesh lab (package lab); docs/OPERATIONS.md "The lab"
data = "data"
session_token_key_file = "pki/session-token.key"

[[apps]]
id = %q
key = %q
master_key = %q
`, l.cfg.AppID, l.cfg.AppKey, l.cfg.MasterKey)
}

func tlsTOML(name string) string {
	return fmt.Sprintf(`
[tls]
ca = "pki/ca.crt"
cert = "pki/%[1]s.crt"
key = "pki/%[1]s.key"
`, name)
}

// coreTOML is the file of core ci of region ri.
func (l *Lab) coreTOML(ri, ci int) string {
	r := l.regions[ri]
	n := r.Cores[ci]
	var peers []string
	for _, c := range r.Cores {
		peers = append(peers, fmt.Sprintf("%q = %q", c.Name, c.MeshAddr))
	}
	s := l.commonTOML() + tlsTOML(n.Name) + fmt.Sprintf(`
[core]
node_id = %q
mesh_addr = %q
peers = { %s }
metrics_addr = %q
region = %d
shards = %d
`, n.Name, n.MeshAddr, strings.Join(peers, ", "), n.HTTPAddr, ri+1, max(l.cfg.Shards, 1))
	if l.cfg.CoreExtra != nil {
		s += "\n" + l.cfg.CoreExtra(l, ri, ci) + "\n"
	}
	// Every other region: its number and cores (issue 9 step 4).
	for rj, other := range l.regions {
		if rj == ri {
			continue
		}
		var addrs []string
		for _, c := range other.Cores {
			addrs = append(addrs, strconv.Quote(c.MeshAddr))
		}
		s += fmt.Sprintf("\n[[core.remote_regions]]\nnumber = %d\ncores = [%s]\n", rj+1, strings.Join(addrs, ", "))
	}
	return s
}

// edgeTOML is the file of edge n of region r: its cores, and every region
// for /v1/route, the others nearest first by configured latency.
func (l *Lab) edgeTOML(r *Region, n *Node) string {
	var cores []string
	for _, c := range r.Cores {
		cores = append(cores, strconv.Quote(c.MeshAddr))
	}
	s := l.commonTOML() + tlsTOML(n.Name) + fmt.Sprintf(`
[edge]
edge_id = %q
region = %q
listen = %q
mesh_addr = %q
cores = [%s]
trusted_proxies = ["127.0.0.0/8"]
drain_timeout = %q

[edge.limits]
%s
`, n.Name, r.Name, n.HTTPAddr, n.MeshAddr, strings.Join(cores, ", "), l.cfg.DrainTimeout.String(), l.cfg.EdgeLimits)
	for _, o := range l.regions {
		var urls []string
		for _, e := range o.Edges {
			urls = append(urls, strconv.Quote(e.URL))
		}
		s += fmt.Sprintf(`
[[regions]]
name = %q
cidrs = [%q]
public_urls = [%s]
nearest = [%s]
`, o.Name, o.CIDR.String(), strings.Join(urls, ", "), quoteAll(l.nearest(o)))
	}
	return s
}

// nearest lists the other regions by the configured latency from r,
// nearest first (ties in lab order).
func (l *Lab) nearest(r *Region) []string {
	var others []*Region
	for _, o := range l.regions {
		if o != r {
			others = append(others, o)
		}
	}
	sort.SliceStable(others, func(i, j int) bool {
		return l.base.Link(r.Name, others[i].Name).Latency < l.base.Link(r.Name, others[j].Name).Latency
	})
	out := make([]string, len(others))
	for i, o := range others {
		out[i] = o.Name
	}
	return out
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// httpClient is for readiness and leader checks.
var httpClient = &http.Client{Timeout: time.Second}

// drainBody reads and closes a response body.
func drainBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
}

// ParsePairLink parses a --link flag: "A:B=latency=120ms,jitter=5ms,loss=0.01"
// (any of the three; loss also as a percentage, "1%").
func ParsePairLink(s string) (PairLink, error) {
	pairS, spec, ok := strings.Cut(s, "=")
	a, b, ok2 := strings.Cut(pairS, ":")
	if !ok || !ok2 || a == "" || b == "" {
		return PairLink{}, fmt.Errorf("%w: link %q: want A:B=latency=D,jitter=D,loss=F", ErrConfig, s)
	}
	pl := PairLink{A: a, B: b}
	for kv := range strings.SplitSeq(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return PairLink{}, fmt.Errorf("%w: link %q: %q is not key=value", ErrConfig, s, kv)
		}
		var err error
		switch k {
		case "latency":
			pl.Link.Latency, err = time.ParseDuration(v)
		case "jitter":
			pl.Link.Jitter, err = time.ParseDuration(v)
		case "loss":
			if p, isPct := strings.CutSuffix(v, "%"); isPct {
				pl.Link.Loss, err = strconv.ParseFloat(p, 64)
				pl.Link.Loss /= 100
			} else {
				pl.Link.Loss, err = strconv.ParseFloat(v, 64)
			}
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return PairLink{}, fmt.Errorf("%w: link %q: %v", ErrConfig, s, err)
		}
	}
	if err := pl.Link.Check(); err != nil {
		return PairLink{}, fmt.Errorf("%w: link %q: %v", ErrConfig, s, err)
	}
	return pl, nil
}
