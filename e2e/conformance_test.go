package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestConformanceJS runs the official leancloud-realtime@4.3.1 SDK in Node
// (conformance/js/*.test.js) against a real `relaymesh dev` process. The
// core suite, im.test.js, runs in the three modes an app can pick: binary
// .3, noBinary (base64) and pushOfflineMessages (.1).
func TestConformanceJS(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance runs Node and a relaymesh process; skipped in -short mode")
	}
	js, err := filepath.Abs("../conformance/js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(js, "node_modules", "leancloud-realtime")); err != nil {
		t.Fatalf("the SDK is not installed: run `npm ci --prefix conformance/js` (make test does): %v", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is required for the conformance suite: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(js, "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance test files in %s (%v)", js, err)
	}
	p := startDev(t, t.TempDir(), freeAddr(t))
	args := append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)
	cmd := exec.Command("node", args...)
	cmd.Dir = js
	cmd.Env = append(os.Environ(), "RELAYMESH_URL="+p.URL, "NO_COLOR=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("conformance suite failed: %v", err)
	}
}
