package shard

import (
	"errors"
	"testing"
)

// TestRevokeTokens: each revoke bumps one client's generation and no
// other's; a revoke without a clientId is refused and changes nothing.
func TestRevokeTokens(t *testing.T) {
	h := newHarness(t)
	gen := func(client string) uint64 {
		t.Helper()
		g, err := TokenGeneration(h.db, app, client)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := gen("alice"); g != 0 {
		t.Fatalf("new client: generation %d", g)
	}
	h.must(&Command{Op: OpRevokeTokens, App: app, From: "alice", Now: 1})
	h.must(&Command{Op: OpRevokeTokens, App: app, From: "alice", Now: 2})
	if g, b := gen("alice"), gen("bob"); g != 2 || b != 0 {
		t.Fatalf("after two revokes of alice: alice %d bob %d, want 2 0", g, b)
	}
	if _, err := h.apply(&Command{Op: OpRevokeTokens, App: app, Now: 3}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("revoke without clientId: %v", err)
	}
	if g := gen("alice"); g != 2 {
		t.Fatalf("refused revoke changed alice to %d", g)
	}
	if g, _ := TokenGeneration(h.db, "other-app", "alice"); g != 0 {
		t.Fatalf("another app's alice: %d", g)
	}
}
