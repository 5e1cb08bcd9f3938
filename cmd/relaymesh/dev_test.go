package main

import (
	"os"
	"strings"
	"testing"
)

// TestDevFlagMisuse: --tls without the WebTransport certificate and a
// --pprof address that cannot be listened on are refused before anything
// starts (no data directory is written).
func TestDevFlagMisuse(t *testing.T) {
	dir := t.TempDir() + "/data"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls", "--no-webtransport"}, "--tls"},
		{[]string{"--pprof", "256.0.0.1:1"}, "--pprof"},
	} {
		err := runDev(append([]string{"--data", dir, "--addr", "127.0.0.1:1", "--log-level", "error"}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("relaymesh dev %v: %v, want an error naming %s", c.args, err, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("relaymesh dev %v wrote its data directory before refusing: %v", c.args, err)
		}
	}
}
