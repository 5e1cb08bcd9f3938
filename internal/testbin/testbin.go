// Package testbin builds the relaymesh binary for tests that run it as an
// operator does (its exit codes, its stderr, several processes from
// config files). It is for tests only: house_test.go lets only test files
// and the test-helper packages import it.
//
// The binary is built once per test binary, into a temporary directory;
// a package's TestMain removes that directory after m.Run with Remove.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// pkg is built by import path, so a test builds the same binary from any
// directory of the module.
const pkg = "github.com/relaymesh/relaymesh/cmd/relaymesh"

var (
	once     sync.Once // the build; path, dir and buildErr are set under it
	path     string
	dir      string
	buildErr error
)

// Build builds cmd/relaymesh on its first call and returns the binary's
// path, or why it could not be built (every later call returns the same).
func Build() (string, error) {
	once.Do(func() {
		d, err := os.MkdirTemp("", "relaymesh-testbin-")
		if err != nil {
			buildErr = fmt.Errorf("testbin: %w", err)
			return
		}
		dir = d
		p := filepath.Join(d, "relaymesh")
		if out, err := exec.Command("go", "build", "-o", p, pkg).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("testbin: go build %s: %w\n%s", pkg, err, out)
			return
		}
		path = p
	})
	return path, buildErr
}

// Relaymesh is Build for a test: it fails t when the binary cannot be
// built.
func Relaymesh(t testing.TB) string {
	t.Helper()
	p, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Remove deletes the built binary and its directory, if any. TestMain
// calls it after m.Run, when no test builds or runs the binary any more.
func Remove() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}
