package cluster

import (
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/mesh"
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

// TestCoreReadyz: a single-node core's admin /readyz is 503 naming the
// shard until it has elected itself and applied its log, then 200; after
// a restart on the same data it catches up again (its log's last index
// at start is the bar); the raft series say the same; a closed core
// says it is closing.
func TestCoreReadyz(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1")
	if err != nil {
		t.Fatal(err)
	}
	// The restart keeps the mesh address: the catalog's raft group names
	// its servers by it.
	meshAddr := "127.0.0.1:0"
	start := func() *Core {
		t.Helper()
		c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: meshAddr, DataDir: filepath.Join(dir, "core-1"),
			Identity: ids["core-1"], MetricsAddr: "127.0.0.1:0", Shards: 2})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady := func(c *Core) {
		t.Helper()
		seen503 := false
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			code, body := get(c.MetricsURL + "/readyz")
			if code == 200 && body == "ok\n" {
				break
			}
			if code != 503 || !(strings.Contains(body, "shard ") || strings.Contains(body, "catalog: ")) {
				t.Fatalf("/readyz before ready: %d %q, want 503 naming a shard or the catalog", code, body)
			}
			seen503 = true
			if time.Now().After(deadline) {
				t.Fatalf("/readyz: %d %q after 15 s", code, body)
			}
		}
		t.Logf("503 seen before 200: %v", seen503)
		if got := c.NotReady(); len(got) != 0 {
			t.Fatalf("NotReady after /readyz 200: %q", got)
		}
		_, m := get(c.MetricsURL + "/metrics")
		for _, want := range []string{`relaymesh_raft_leader{shard="0"} 1`, `relaymesh_raft_leader{shard="1"} 1`, "relaymesh_core_ready 1"} {
			if !strings.Contains(m, want+"\n") {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		// Pebble per database: each group's state DB, the raft log DB the
		// shards share (once), and the catalog's own.
		for _, re := range []string{`relaymesh_pebble_disk_bytes\{db="state",shard="0"\} [1-9]`, `relaymesh_pebble_disk_bytes\{db="state",shard="1"\} [1-9]`,
			`relaymesh_pebble_disk_bytes\{db="state",shard="catalog"\} [1-9]`, `relaymesh_pebble_wal_bytes\{db="raft",shard="shared"\} [1-9]`,
			`relaymesh_pebble_block_cache_misses_total\{db="state",shard="shared"\} `, `relaymesh_pebble_l0_files\{db="raft",shard="catalog"\} `,
			`relaymesh_pebble_compacted_bytes_total\{db="state",shard="0"\} `, `relaymesh_pebble_flushed_bytes_total\{db="raft",shard="shared"\} `} {
			if !regexp.MustCompile(re).MatchString(m) {
				t.Errorf("/metrics does not match %s", re)
			}
		}
		if n := strings.Count(m, "relaymesh_pebble_l0_files{db=\"raft\""); n != 2 {
			t.Errorf("%d raft log DB series, want 2 (the shards' shared DB once, the catalog's)", n)
		}
		// One block cache for the core's state DBs (both shards and the
		// catalog), counted once.
		if n := strings.Count(m, "relaymesh_pebble_block_cache_hits_total{db=\"state\""); n != 1 {
			t.Errorf("%d state block cache series, want 1 (one cache shared by the core's state DBs)", n)
		}
	}
	c := start()
	meshAddr = c.Node.Addr()
	waitReady(c)
	before := c.Replicas[0].Raft().LastIndex()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := c.NotReady(); len(got) != 1 || got[0] != "core: closing" {
		t.Errorf("NotReady after Close: %q, want core: closing", got)
	}
	c = start()
	defer c.Close()
	if p := c.progress[0]; p.start < before {
		t.Errorf("restart: catch-up bar %d, want at least the log's last index %d", p.start, before)
	}
	waitReady(c)
	if applied := c.Replicas[0].Raft().AppliedIndex(); applied < before {
		t.Errorf("ready with applied index %d below the log at start %d", applied, before)
	}
}
