package loadtest

import (
	"strings"
	"testing"
)

// TestPortWarning: more connections from one address to one target than
// the even local ports is warned of; spread over addresses or targets, not.
func TestPortWarning(t *testing.T) {
	for _, r := range [][3]int{{32768, 60999, 14116}, {32769, 60999, 14115}, {32768, 32768, 1}, {32769, 32769, 0}, {1024, 65535, 32256}} {
		if got := evenPorts(r[0], r[1]); got != r[2] {
			t.Errorf("even ports in %d–%d: %d, want %d", r[0], r[1], got, r[2])
		}
	}
	even := evenPorts(localPortRange())
	two, err := ParseSourceIPs("127.0.0.1-127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	one := []string{"ws://127.0.0.1:8080/"}
	for _, tc := range []struct {
		cfg  Config
		warn bool
	}{
		{Config{Sessions: even, Targets: one}, false},
		{Config{Sessions: even + 1, Targets: one}, true},
		{Config{Sessions: even + 1, Targets: one, SourceIPs: two}, false},
		{Config{Sessions: 2*even + 2, Targets: one, SourceIPs: two}, true},
		{Config{Sessions: even + 1, Targets: []string{"ws://a/", "ws://b/"}}, false},
	} {
		w := PortWarning(tc.cfg)
		if (w != "") != tc.warn {
			t.Errorf("%d sessions, %d addresses, %d targets: warning %q, want one: %v", tc.cfg.Sessions, len(tc.cfg.SourceIPs), len(tc.cfg.Targets), w, tc.warn)
		}
		if tc.warn && !strings.Contains(w, "--source-ips") {
			t.Errorf("warning %q does not name --source-ips", w)
		}
	}
}
