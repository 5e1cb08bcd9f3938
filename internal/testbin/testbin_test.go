package testbin

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestBuildOnce: concurrent callers get one path, built once, of a binary
// that runs (its usage names its roles); Remove deletes it.
func TestBuildOnce(t *testing.T) {
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Go(func() { paths[i] = Relaymesh(t) })
	}
	wg.Wait()
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Fatalf("paths %q, want one", paths)
		}
	}
	st, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(paths[0], "--help").CombinedOutput()
	for _, want := range []string{"core", "edge", "dev"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("relaymesh --help: %q lacks %q", out, want)
		}
	}
	again, err := Build()
	if err != nil || again != paths[0] {
		t.Errorf("Build again: %q, %v; want %q", again, err, paths[0])
	}
	if st2, err := os.Stat(again); err != nil || !os.SameFile(st, st2) {
		t.Errorf("Build again rebuilt the binary: %v", err)
	}
	Remove()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after Remove: %s: %v, want it gone", dir, err)
	}
}
