package relaymesh_test

// The house (DESIGN.md): which package may depend on which. The rules are
// checked on the whole tree, test files included, and transitively: edge
// importing a package that imports core breaks "edge → core" as much as
// importing core does.

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/relaymesh/relaymesh"

// rule forbids packages under pkg to depend on packages under any of deny,
// except those under allow ("" is the whole module). Paths are relative
// to the module.
type rule struct {
	pkg   string
	deny  []string
	allow []string
	why   string
}

var houseRules = []rule{
	{pkg: "proto", deny: []string{""}, allow: []string{"proto"},
		why: "proto holds wire formats only and imports nothing of ours"},
	{pkg: "raftstore", deny: []string{"core", "edge", "mesh"},
		why: "raftstore is Raft on Pebble, below every role and the fabric"},
	{pkg: "edge", deny: []string{"core", "raftstore"},
		why: "an edge keeps no state and reaches the cores over the mesh only"},
	{pkg: "client", deny: []string{""}, allow: []string{"client", "proto"},
		why: "the Go SDK speaks the public protocol, not server code"},
	{pkg: "relay", deny: []string{"edge", "core", "raftstore", "cluster"},
		why: "the relay serves the core and feeds the edges; neither is below it"},
	{pkg: "relay/pq", deny: []string{""}, allow: []string{"relay/pq"},
		why: "the queue type is shared by the relay and the edge, so it imports nothing of ours"},
	{pkg: "catalog", deny: []string{"edge", "core", "relay", "cluster"},
		why: "roles read the catalog, not the other way round"},
	{pkg: "web", deny: []string{""}, allow: []string{"web"},
		why: "the demo page is static files; cluster wires it into `relaymesh dev`"},
	{pkg: "migrate", deny: []string{""}, allow: []string{"migrate"},
		why: "the import tools talk to LeanCloud and to relaymesh over HTTP only, as any client"},
}

// testOnly are the packages for tests alone: only test files (_test.go)
// and other test-only packages import them, so no binary carries them.
var testOnly = []string{
	"internal/testbin",   // builds cmd/relaymesh for the tests that run it
	"loadtest/devserver", // a `relaymesh dev` process for the load tester's tests
}

// testOnlyViolations returns the chains (importer, test-only package) of
// the direct imports in prod (package → module packages its non-test
// files import) of a test-only package by a package that is not one.
// Direct imports suffice: whatever imports such an importer is checked in
// its turn only if it is test code, which may.
func testOnlyViolations(prod map[string][]string, only []string) [][]string {
	isOnly := func(p string) bool {
		return slices.ContainsFunc(only, func(o string) bool { return under(p, o) })
	}
	var out [][]string
	pkgs := make([]string, 0, len(prod))
	for p := range prod {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, p := range pkgs {
		if isOnly(p) {
			continue
		}
		for _, d := range prod[p] {
			if isOnly(d) {
				out = append(out, []string{p, d})
			}
		}
	}
	return out
}

// under reports whether package p is prefix or below it.
func under(p, prefix string) bool {
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

// violation is a forbidden dependency and the import chain that makes it.
type violation struct {
	rule  rule
	chain []string // from the package to the forbidden one
}

// violations checks graph (package → the module packages it imports
// directly; for tests, their imports too) against rules.
func violations(graph map[string][]string, rules []rule) []violation {
	var out []violation
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, r := range rules {
		forbidden := func(q string) bool {
			for _, a := range r.allow {
				if under(q, a) {
					return false
				}
			}
			for _, d := range r.deny {
				if under(q, d) {
					return true
				}
			}
			return false
		}
		for _, p := range pkgs {
			if !under(p, r.pkg) {
				continue
			}
			// Breadth first from p, remembering how each package was reached.
			from := map[string]string{p: ""}
			queue := []string{p}
			for len(queue) > 0 {
				q := queue[0]
				queue = queue[1:]
				for _, next := range graph[q] {
					if _, seen := from[next]; seen {
						continue
					}
					from[next] = q
					if forbidden(next) {
						chain := []string{next}
						for at := q; at != ""; at = from[at] {
							chain = append([]string{at}, chain...)
						}
						out = append(out, violation{r, chain})
						continue
					}
					queue = append(queue, next)
				}
			}
		}
	}
	return out
}

// importGraph parses the imports of every Go file of the module (tests
// included) and returns package → module packages imported, relative to
// the module. A package's external test (package x_test) counts as the
// package. prod is the same for the packages' non-test files alone.
func importGraph(t *testing.T, root string) (graph, prod map[string][]string) {
	t.Helper()
	graph, prod = map[string][]string{}, map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		if pkg == "." {
			pkg = ""
		}
		test := strings.HasSuffix(path, "_test.go")
		for _, imp := range f.Imports {
			ip, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if ip != module && !strings.HasPrefix(ip, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(ip, module), "/")
			if dep != pkg && !slices.Contains(graph[pkg], dep) {
				graph[pkg] = append(graph[pkg], dep)
			}
			if dep != pkg && !test && !slices.Contains(prod[pkg], dep) {
				prod[pkg] = append(prod[pkg], dep)
			}
		}
		if _, ok := graph[pkg]; !ok {
			graph[pkg] = nil
		}
		if _, ok := prod[pkg]; !ok && !test {
			prod[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph, prod
}

// TestHouseImports fails when a package depends on one the house forbids
// (DESIGN.md, "the house"; docs/ARCHITECTURE.md, "Layout").
func TestHouseImports(t *testing.T) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	graph, prod := importGraph(t, root)
	for _, must := range []string{"proto/meshpb", "edge", "edge/corelink", "core", "relay", "relay/pq", "catalog", "raftstore", "client"} {
		if _, ok := graph[must]; !ok {
			t.Fatalf("package %s not found: the walk is broken", must)
		}
	}
	for _, v := range violations(graph, houseRules) {
		t.Errorf("%s must not depend on %s (%s): %s", v.chain[0], v.chain[len(v.chain)-1], v.rule.why, strings.Join(v.chain, " → "))
	}
	for _, o := range testOnly {
		if _, ok := prod[o]; !ok {
			t.Fatalf("test-only package %s not found: the walk is broken", o)
		}
	}
	if !slices.Contains(graph["e2e"], "internal/testbin") || slices.Contains(prod["e2e"], "internal/testbin") {
		t.Fatalf("e2e's tests import internal/testbin, its doc.go does not; the walk says %v and %v", graph["e2e"], prod["e2e"])
	}
	for _, c := range testOnlyViolations(prod, testOnly) {
		t.Errorf("%s imports %s outside its tests; only tests and test-only packages may", c[0], c[1])
	}
}

// TestHouseTestOnlyCatch is the test-only check's own control: code that
// imports a test-only package is found, directly or below it; tests
// (absent from prod) and test-only packages importing each other are not.
func TestHouseTestOnlyCatch(t *testing.T) {
	prod := map[string][]string{
		"cluster":            {"internal/testbin", "catalog"},
		"cmd/relaymesh":      {"cluster"},
		"loadtest/devserver": {"internal/testbin"},
		"loadtest":           {"loadtest/devserver/sub"},
		"e2e":                nil, // test files only: nothing in prod
	}
	got := testOnlyViolations(prod, []string{"internal/testbin", "loadtest/devserver"})
	want := [][]string{{"cluster", "internal/testbin"}, {"loadtest", "loadtest/devserver/sub"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestHouseRulesCatch is the checker's own control: forbidden imports,
// direct and through another package, are found with their chain; allowed
// ones are not.
func TestHouseRulesCatch(t *testing.T) {
	graph := map[string][]string{
		"edge":          {"edge/corelink", "relay/pq", "proto/meshpb"},
		"edge/corelink": {"mesh", "helper"},
		"helper":        {"core/shard"},
		"proto/lcpb":    {"proto/meshpb"},
		"proto/meshpb":  {"apps"},
		"client":        {"proto/lcpb"},
		"relay/pq":      nil,
	}
	got := violations(graph, houseRules)
	want := [][]string{
		{"proto/meshpb", "apps"},                          // proto → ours
		{"proto/lcpb", "proto/meshpb", "apps"},            // the same, through proto
		{"edge", "edge/corelink", "helper", "core/shard"}, // edge → core, two hops away
		{"edge/corelink", "helper", "core/shard"},
		{"client", "proto/lcpb", "proto/meshpb", "apps"}, // client → server code, through proto
	}
	var chains [][]string
	for _, v := range got {
		chains = append(chains, v.chain)
	}
	for _, w := range want {
		if !slices.ContainsFunc(chains, func(c []string) bool { return slices.Equal(c, w) }) {
			t.Errorf("missing violation %v; got %v", w, chains)
		}
	}
	if len(chains) != len(want) {
		t.Errorf("got %d violations %v, want %d", len(chains), chains, len(want))
	}
}
