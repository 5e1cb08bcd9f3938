package cluster

import (
	"strings"
	"testing"
)

// TestCatchUp: a replica is caught up once it has applied both what its
// log held at start and what the shard had committed when it first saw
// a leader; the gate stays open afterwards.
func TestCatchUp(t *testing.T) {
	p := &catchUp{start: 10}
	steps := []struct {
		leader          bool
		commit, applied uint64
		ok              bool
		why             string
	}{
		{false, 0, 4, false, "no leader"},
		{true, 25, 4, false, "applied 4 of 25"}, // target fixed at max(10, 25)
		{true, 40, 24, false, "applied 24 of 25"},
		{true, 60, 25, true, ""},
		{false, 90, 26, true, ""}, // open for good
	}
	for i, s := range steps {
		ok, why := p.check(s.leader, s.commit, s.applied)
		if ok != s.ok || !strings.Contains(why, s.why) {
			t.Errorf("step %d: got (%v, %q), want (%v, %q)", i, ok, why, s.ok, s.why)
		}
	}
	// A restarted replica whose log is ahead of the commit it first sees
	// waits for its own log.
	p = &catchUp{start: 50}
	if ok, why := p.check(true, 30, 30); ok || !strings.Contains(why, "applied 30 of 50") {
		t.Errorf("log ahead of commit: got (%v, %q), want to wait for index 50", ok, why)
	}
	if ok, _ := p.check(true, 51, 50); !ok {
		t.Error("applied the start log: not caught up")
	}
}
