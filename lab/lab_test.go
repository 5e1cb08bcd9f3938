package lab

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/netem"
)

func TestParsePairLink(t *testing.T) {
	for in, want := range map[string]PairLink{
		"r1:r2=latency=120ms":                  {A: "r1", B: "r2", Link: netem.Link{Latency: 120 * time.Millisecond}},
		"a:b=latency=5ms,jitter=1ms,loss=0.01": {A: "a", B: "b", Link: netem.Link{Latency: 5 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.01}},
		"a:b=loss=2.5%":                        {A: "a", B: "b", Link: netem.Link{Loss: 0.025}},
		"eu:us= latency=80ms , jitter=0s":      {A: "eu", B: "us", Link: netem.Link{Latency: 80 * time.Millisecond}},
	} {
		got, err := ParsePairLink(in)
		if err != nil || got != want {
			t.Errorf("ParsePairLink(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"r1-r2=latency=1ms", "r1:=latency=1ms", "r1:r2", "r1:r2=latency=fast", "r1:r2=loss=2", "r1:r2=speed=1"} {
		if _, err := ParsePairLink(in); !errors.Is(err, ErrConfig) {
			t.Errorf("ParsePairLink(%q): got %v, want ErrConfig", in, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Dir: "x", Binary: "/bin/true"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c.Regions != 2 || !slices.Equal(c.Names, []string{"r1", "r2"}) || c.Cores != 3 || c.Edges != 2 || c.Latency != 80*time.Millisecond {
		t.Errorf("defaults: %+v", c)
	}
	for name, bad := range map[string]Config{
		"no dir":          {Binary: "x"},
		"too many":        {Dir: "x", Binary: "x", Regions: MaxRegions + 1},
		"bad name":        {Dir: "x", Binary: "x", Names: []string{"R-1", "r2"}},
		"same name":       {Dir: "x", Binary: "x", Names: []string{"a", "a"}},
		"names != count":  {Dir: "x", Binary: "x", Regions: 3, Names: []string{"a", "b"}},
		"ten cores":       {Dir: "x", Binary: "x", Cores: 10},
		"loss over one":   {Dir: "x", Binary: "x", Loss: 2},
		"link to itself":  {Dir: "x", Binary: "x", Links: []PairLink{{A: "r1", B: "r1"}}},
		"link to nowhere": {Dir: "x", Binary: "x", Links: []PairLink{{A: "r1", B: "mars"}}},
	} {
		if err := bad.defaults(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
}

// TestLayoutFiles lays a lab out without starting it: every node's file
// loads as the roles load it, edges list every region for /v1/route with
// the others nearest first, and the rules file holds the links.
func TestLayoutFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Binary: "/bin/false", Names: []string{"eu", "us", "ap"}, Cores: 3, Edges: 2,
		Links:     []PairLink{{A: "eu", B: "ap", Link: netem.Link{Latency: 200 * time.Millisecond}}},
		CoreExtra: func(l *Lab, r, c int) string { return "# extra for " + l.Regions()[r].Cores[c].Name },
	}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	l := &Lab{cfg: cfg, dir: dir, log: cfg.Logger, nodes: map[string]*Node{}, netemPath: filepath.Join(dir, "netem.json"),
		table: new(netem.Table), probes: nil}
	if err := l.layout(); err != nil {
		t.Fatal(err)
	}
	if err := l.writeFiles(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range l.Regions() {
		if !r.CIDR.Contains(r.Addr(3)) || r.CIDR.Bits() != 24 {
			t.Errorf("%s: CIDR %s, client address %s", r.Name, r.CIDR, r.Addr(3))
		}
		for _, c := range r.Cores {
			if seen[c.MeshAddr] {
				t.Errorf("address %s used twice", c.MeshAddr)
			}
			seen[c.MeshAddr] = true
			cfg, err := cluster.LoadConfig(c.configPath())
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			cc, err := cfg.CoreConfig()
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if cc.MeshAddr != c.MeshAddr || len(cc.Peers) != 3 || cc.MetricsAddr != c.HTTPAddr {
				t.Errorf("%s: %+v", c.Name, cc)
			}
			b, _ := os.ReadFile(c.configPath())
			if !strings.Contains(string(b), "# extra for "+c.Name) {
				t.Errorf("%s: CoreExtra missing from its file", c.Name)
			}
			ap, _ := netip.ParseAddrPort(c.MeshAddr)
			if !r.CIDR.Contains(ap.Addr()) {
				t.Errorf("%s at %s, outside its region %s", c.Name, c.MeshAddr, r.CIDR)
			}
		}
		for _, e := range r.Edges {
			cfg, err := cluster.LoadConfig(e.configPath())
			if err != nil {
				t.Fatalf("%s: %v", e.Name, err)
			}
			ec, err := cfg.EdgeConfig()
			if err != nil {
				t.Fatalf("%s: %v", e.Name, err)
			}
			if ec.Routes == nil || len(ec.Cores) != 3 || ec.DrainTimeout != 5*time.Second {
				t.Fatalf("%s: %+v", e.Name, ec)
			}
			// A caller in each region gets that region's edges.
			for _, o := range l.Regions() {
				srv, sec, reg := ec.Routes.Route(o.Addr(1))
				if reg != o.Name || !slices.Contains(o.EdgeURLs(), srv) || slices.Contains(o.EdgeURLs(), sec) {
					t.Errorf("%s routes a caller of %s to %s (%s, %s)", e.Name, o.Name, reg, srv, sec)
				}
			}
		}
	}
	// eu's nearest is us (80ms), then ap (200ms).
	if got := l.nearest(l.regions[0]); !slices.Equal(got, []string{"us", "ap"}) {
		t.Errorf("nearest to eu: %v, want [us ap]", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "netem.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := new(netem.Rules)
	if err := json.Unmarshal(b, r); err != nil {
		t.Fatal(err)
	}
	if got := r.Link("ap", "eu"); got.Latency != 200*time.Millisecond {
		t.Errorf("ap→eu %v, want 200ms", got)
	}
	if got := r.Link("us", "ap"); got.Latency != 80*time.Millisecond {
		t.Errorf("us→ap %v, want the default 80ms", got)
	}
	if got := r.Link("eu", "eu"); !got.Zero() {
		t.Errorf("eu→eu %v, want nothing inside a region", got)
	}
	if g := r.GroupOf(l.regions[2].Addr(0)); g != "ap" {
		t.Errorf("group of an ap address: %q", g)
	}
}

func TestStartRefusesUsedDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "something"), nil, 0o644)
	if _, err := Start(t.Context(), Config{Dir: dir, Binary: "/bin/false"}); !errors.Is(err, ErrConfig) {
		t.Errorf("Start in a used directory: %v, want ErrConfig", err)
	}
}

// TestStartFailsWhenANodeExits: a node that exits while the lab starts
// fails Start with its log, and every other node is stopped.
func TestStartFailsWhenANodeExits(t *testing.T) {
	_, err := Start(t.Context(), Config{Dir: t.TempDir(), Binary: "/bin/false", Regions: 1, Cores: 1, Edges: 1, StartTimeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited while starting") {
		t.Errorf("Start with a binary that exits: %v", err)
	}
}
