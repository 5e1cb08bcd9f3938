package shard

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestTableTagsDistinct: every key of the state starts with a one-byte
// table tag (keys.go and each feature's file); two tables sharing a letter
// would read and overwrite each other's keys. Reads the package's sources,
// so a tag added anywhere in the package is checked.
func TestTableTagsDistinct(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\s*(?:const\s+)?(tag[A-Za-z0-9]*)\s*=\s*'(.)'`)
	seen := map[string]string{}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			n++
			if prev, ok := seen[m[2]]; ok {
				t.Errorf("tag %q: %s and %s (%s)", m[2], prev, m[1], f)
			}
			seen[m[2]] = m[1] + " in " + f
		}
	}
	if n < 20 {
		t.Fatalf("found %d table tags, want the 20+ the package declares: is the pattern stale?", n)
	}
}
