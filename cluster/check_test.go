package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadConfigListsEveryProblem: a file that parses gets all its
// problems reported at once, each a config error.
func TestLoadConfigListsEveryProblem(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.toml")
	body := `
[[apps]]
id = "a"
key = "k"

[[apps]]
id = "a"
master_key = "m"

[edge]
drain_timeout = "later"
trusted_proxies = ["not-an-ip"]
admin_addr = "no-port"
`
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(f)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("LoadConfig = %v, want a config error", err)
	}
	for _, want := range []string{"no master_key", "duplicate id", "drain_timeout", "trusted_proxies"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig error does not name %s:\n%v", want, err)
		}
	}
	probs := CheckConfig(f, "edge")
	if len(probs) < 6 { // the four, [edge] without edge_id, and admin_addr
		t.Errorf("CheckConfig found %d problems, want at least 6: %v", len(probs), probs)
	}
	if !strings.Contains(errors.Join(probs...).Error(), "edge.admin_addr") {
		t.Errorf("CheckConfig does not name edge.admin_addr: %v", probs)
	}
	if probs := CheckConfig(f, "admin"); len(probs) != 1 || !strings.Contains(probs[0].Error(), "core or edge") {
		t.Errorf("CheckConfig for role admin: %v, want one refusal", probs)
	}
	if probs := CheckConfig(filepath.Join(t.TempDir(), "none.toml"), "core"); len(probs) != 1 {
		t.Errorf("CheckConfig of a missing file: %v, want one problem", probs)
	}
}
