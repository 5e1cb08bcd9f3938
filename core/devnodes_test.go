package core

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/relaymesh/relaymesh/mesh"
)

// devNodes makes a dev PKI with an identity for each of names (its role
// from its name, mesh.EnsureDevPKI) and starts a mesh node for each on a
// loopback port, closed at the end of the test. The identities are
// returned too, for tests that speak to a node by hand.
func devNodes(t *testing.T, names ...string) (map[string]*mesh.Node, map[string]*mesh.Identity) {
	t.Helper()
	ids, err := mesh.EnsureDevPKI(filepath.Join(t.TempDir(), "pki"), names...)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make(map[string]*mesh.Node, len(names))
	for _, name := range names {
		n, err := mesh.Listen("127.0.0.1:0", ids[name], slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes[name] = n
	}
	return nodes, ids
}
