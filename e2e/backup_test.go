package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/client"
)

// startShardedCluster is a procCluster with `shards` shards in the
// region: three cores, each a replica of every shard, and one edge.
func startShardedCluster(t *testing.T, shards int) *procCluster {
	t.Helper()
	return startProcCluster(t, procOptions{Edges: 1, Shards: shards, EdgeLimits: "sends_per_minute = -1"})
}

// waitShards waits until every shard and the catalog have a leader and
// every replica caught up.
func waitShards(t *testing.T, a *adminCLI, shards int) {
	t.Helper()
	waitFor(t, 60*time.Second, func() bool {
		v := a.status()
		for n := range shards {
			if !settled(v, groupOf(v, "shard", n), 3) {
				return false
			}
		}
		return settled(v, groupOf(v, "catalog", 0), 3)
	})
}

// importedShard is the shard of a 2-shard region 1 an imported id is
// placed on (core/importroute.go placeImported).
func importedShard(app, cid string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(app))
	h.Write([]byte{0})
	h.Write([]byte(cid))
	return int(h.Sum32() % uint32(shards))
}

// TestAdminBackupRestore: in cluster A (two shards), alice starts
// conversations with bob spread over both shards and sends to them, and
// a LeanCloud conversation is imported (its id registered in A's catalog
// on shard 1). `admin snapshot` of shard 1 (and of the catalog) writes
// files; a FRESH cluster B (its own CA) refuses misuse (an edge's or a
// core's certificate, an unknown shard, a corrupt or hostile file, the
// wrong shard, a shard with data without --force), then `admin restore`
// puts shard 1 in. Through the public protocol, bob's first login in B
// gets the unread counts of shard 1's conversations, their history and
// the imported conversation's, and finds them by query; a message sent
// in B after the restore is delivered and, after every core of B
// restarts, in history with the restored ones.
func TestAdminBackupRestore(t *testing.T) {
	const app, shards, S = "failover-app", 2, 1
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	a := startShardedCluster(t, shards)
	adminA := newAdminCLI(t, a, "admin-a", "admin")
	waitShards(t, adminA, shards)
	alice := dial(t, ctx, a.edges[0].URL, app, "alice")
	// Conversations alice-bob on both shards (the router places them
	// round-robin), three messages each.
	want := map[string][]string{} // shard S's conversations -> message texts
	others := 0
	for i := 0; len(want) < 2 || others < 1; i++ {
		if i > 12 {
			t.Fatalf("12 conversations and %d on shard %d, %d elsewhere", len(want), S, others)
		}
		cid, err := alice.CreateConversation(ctx, []string{"bob"}, fmt.Sprintf("conv %d", i), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for j := range 3 {
			txt := client.TextMessage(fmt.Sprintf("c%d m%d", i, j))
			if _, err := alice.Send(ctx, cid, txt, client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, txt)
		}
		if int(catalog.HomeOf(cid).Shard) == S {
			want[cid] = texts
		} else {
			others++
		}
	}
	// An imported LeanCloud conversation placed on shard S.
	var lcID string
	for i := range 256 {
		id := fmt.Sprintf("62a1b2c3d4e5f607182930%02x", i)
		if importedShard(app, id, shards) == S {
			lcID = id
			break
		}
	}
	master := restAPI{t: t, base: "http://" + a.edges[0].Addr, app: app, key: "failover-master,master"}
	master.must("POST", "/1.2/rtm/import/conversations", map[string]any{"conversations": []any{
		map[string]any{"objectId": lcID, "c": "alice", "m": []string{"alice", "bob"}, "name": "from leancloud", "createdAt": 1_650_000_000_000}}}, nil)
	// The router finds the id through its local replica of the catalog,
	// which may lag the registration a moment: 404 until then.
	waitFor(t, 10*time.Second, func() bool {
		return master.call("POST", "/1.2/rtm/import/conversations/"+lcID+"/messages", map[string]any{"messages": []any{
			map[string]any{"msg-id": "lcmsg1", "from": "alice", "timestamp": 1_650_000_010_000, "data": "old one"},
			map[string]any{"msg-id": "lcmsg2", "from": "bob", "timestamp": 1_650_000_020_000, "data": "old two"}}}, nil) == 200
	})

	// Snapshots.
	files := t.TempDir()
	file := filepath.Join(files, "shard-1-1.rmbackup")
	out := adminA.ok("snapshot", "--shard", "1/1", "--out", file)
	t.Logf("snapshot: %s", out)
	if !strings.Contains(out, "snapshot of shard 1/1 from core-") || !strings.Contains(out, "(leader,") || !strings.Contains(out, "records") {
		t.Errorf("snapshot output: %q", out)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("snapshot left %s.tmp: %v", file, err)
	}
	var js struct {
		Bytes  int64 `json:"bytes"`
		Header struct {
			Records uint64 `json:"records"`
			Applied uint64 `json:"applied_index"`
			Region  int    `json:"region"`
			Shard   int    `json:"shard"`
		} `json:"header"`
	}
	jfile := filepath.Join(files, "again.rmbackup")
	if err := json.Unmarshal([]byte(adminA.ok("snapshot", "--shard", "1", "--out", jfile, "--json")), &js); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(jfile); js.Header.Records == 0 || js.Header.Applied == 0 || js.Header.Region != 1 || js.Header.Shard != 1 || st == nil || st.Size() != js.Bytes {
		t.Errorf("snapshot --json: %+v (file %v)", js, st)
	}
	if _, errOut, code := adminA.run("snapshot", "--shard", "1", "--out", jfile); code == 0 || !strings.Contains(errOut, "exists") {
		t.Errorf("snapshot over an existing file: exit %d %q", code, errOut)
	}
	// On a caught-up follower, sparing the leader.
	var follower string
	waitFor(t, 10*time.Second, func() bool {
		for _, r := range groupOf(adminA.status(), "shard", S).Replicas {
			if r.State == "Follower" && r.Lag == 0 {
				follower = r.Addr
				return true
			}
		}
		return false
	})
	out = adminA.ok("snapshot", "--shard", "1", "--follower", "--core", follower, "--out", filepath.Join(files, "follower.rmbackup"))
	if !strings.Contains(out, "(follower, "+follower+")") {
		t.Errorf("snapshot --follower on %s: %q", follower, out)
	}
	t.Logf("catalog snapshot: %s", adminA.ok("snapshot", "--catalog", "--out", filepath.Join(files, "catalog.rmbackup")))

	// A fresh cluster B.
	b := startShardedCluster(t, shards)
	adminB := newAdminCLI(t, b, "admin-b", "admin")
	waitShards(t, adminB, shards)
	carol := dial(t, ctx, b.edges[0].URL, app, "carol")
	var carolS string // a conversation of B's own on shard S
	for i := 0; carolS == ""; i++ {
		if i > 6 {
			t.Fatal("no conversation of carol's on shard S")
		}
		cid, err := carol.CreateConversation(ctx, []string{"dave"}, "b's own", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if int(catalog.HomeOf(cid).Shard) == S {
			carolS = cid
		}
	}

	corrupt := filepath.Join(files, "corrupt.rmbackup")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(raw)
	bad[len(bad)/2] ^= 0x01
	write := func(p string, b []byte) {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(corrupt, bad)
	truncated := filepath.Join(files, "truncated.rmbackup")
	write(truncated, raw[:len(raw)-40])
	hugeHdr := filepath.Join(files, "huge-header.rmbackup")
	write(hugeHdr, binary.AppendUvarint([]byte("rmbackup1\n"), 1<<50))
	bigField := filepath.Join(files, "big-field.rmbackup")
	h := `{"format":1,"group":"shard","region":1,"shard":1,"created":"2026-01-01T00:00:00Z","node":"` + strings.Repeat("n", 3000) + `"}`
	write(bigField, append(binary.AppendUvarint([]byte("rmbackup1\n"), uint64(len(h))), h...))
	edgeCLI := newAdminCLI(t, b, "edge-x", "edge")
	coreCLI := newAdminCLI(t, b, "core-x", "core")
	for _, m := range []struct {
		name string
		cli  *adminCLI
		args []string
		want string
	}{
		{"an edge certificate", edgeCLI, []string{"restore", "--shard", "1", "--in", file}, `refused certificate "edge-x" of role edge`},
		{"a core certificate", coreCLI, []string{"snapshot", "--shard", "1", "--out", filepath.Join(files, "x")}, `refused certificate "core-x" of role core`},
		{"unknown shard (snapshot)", adminB, []string{"snapshot", "--shard", "7", "--out", filepath.Join(files, "y")}, "unknown shard 7"},
		{"a file of another shard", adminB, []string{"restore", "--shard", "0", "--in", file}, "backup of shard 1/1, not of 0"},
		{"a corrupt file", adminB, []string{"restore", "--shard", "1", "--in", corrupt}, "bad backup file"},
		{"a truncated file", adminB, []string{"restore", "--shard", "1", "--in", truncated}, "bad backup file"},
		{"a huge header length", adminB, []string{"restore", "--shard", "1", "--in", hugeHdr}, "header length"},
		{"a huge header field", adminB, []string{"restore", "--shard", "1", "--in", bigField}, "header field of 3000 bytes"},
		{"the catalog's file", adminB, []string{"restore", "--shard", "0", "--in", filepath.Join(files, "catalog.rmbackup")}, "not of a shard"},
		{"no file", adminB, []string{"restore", "--shard", "1", "--in", filepath.Join(files, "none")}, "no such file"},
		{"a bad shard", adminB, []string{"restore", "--shard", "x/1", "--in", file}, "region is a number"},
		{"a shard with data", adminB, []string{"restore", "--shard", "1", "--in", file}, "holds conversations or messages already"},
	} {
		out, errOut, code := m.cli.run(m.args...)
		if code != 1 || !strings.Contains(errOut, m.want) {
			t.Errorf("%s: exit %d, stderr %q (stdout %q); want exit 1 and %q", m.name, code, errOut, out, m.want)
		}
	}
	// Nothing of those touched shard S: carol's conversation is there.
	if rows, err := carol.QueryConversations(ctx, map[string]any{"objectId": carolS}, "", 1, 0); err != nil || len(rows) != 1 {
		t.Fatalf("carol's conversation after the refused restores: %v %v", rows, err)
	}

	out = adminB.ok("restore", "--shard", "1/1", "--in", file, "--force")
	t.Logf("restore: %s", out)
	if !strings.Contains(out, "restored shard 1/1") || !strings.Contains(out, "1 imported ids") || !strings.Contains(out, "replicas with the restored state: 3 of 3") {
		t.Errorf("restore output: %q", out)
	}

	// bob's first login in B: the unread counts of shard S's
	// conversations, their history, the imported one's, the query.
	bob := dial(t, ctx, b.edges[0].URL, app, "bob")
	unread := unreadOf(t, bob)
	for cid := range want {
		if unread[cid] != 3 {
			t.Errorf("bob's unread of %s in B: %d, want 3 (all unread: %v)", cid, unread[cid], unread)
		}
	}
	for cid, texts := range want {
		hist, err := bob.History(ctx, cid, client.HistoryQuery{Limit: 10})
		if err != nil {
			t.Fatalf("history of %s in B: %v", cid, err)
		}
		var got []string
		for _, m := range hist {
			got = append(got, m.Text)
		}
		if !slices.Equal(got, texts) {
			t.Errorf("history of %s in B: %q, want %q", cid, got, texts)
		}
	}
	hist, err := bob.History(ctx, lcID, client.HistoryQuery{Limit: 10})
	if err != nil || len(hist) != 2 || hist[0].ID != "lcmsg1" || hist[1].ID != "lcmsg2" {
		t.Errorf("history of the imported %s in B: %+v %v", lcID, hist, err)
	}
	rows, err := bob.QueryConversations(ctx, map[string]any{"m": "bob"}, "", 50, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, r := range rows {
		if id, _ := r["objectId"].(string); id != "" {
			found[id] = true
		}
	}
	for cid := range want {
		if !found[cid] {
			t.Errorf("bob's query in B lacks %s: %v", cid, rows)
		}
	}
	if !found[lcID] {
		t.Errorf("bob's query in B lacks the imported %s", lcID)
	}
	if rows, err := carol.QueryConversations(ctx, map[string]any{"objectId": carolS}, "", 1, 0); err != nil || len(rows) != 0 {
		t.Errorf("carol's conversation on shard S survived the forced restore: %v %v", rows, err)
	}

	// A message sent in B after the restore, to a restored conversation.
	var one string
	for cid := range want {
		one = cid
		break
	}
	aliceB := dial(t, ctx, b.edges[0].URL, app, "alice")
	after := client.TextMessage("sent in B")
	sent, err := aliceB.Send(ctx, one, after, client.SendOptions{})
	if err != nil {
		t.Fatalf("send in B after the restore: %v", err)
	}
	nextEvent(t, bob, func(m client.Message) bool { return m.ID == sent.ID })
	if _, err := aliceB.Send(ctx, lcID, client.TextMessage("to the imported one"), client.SendOptions{}); err != nil {
		t.Errorf("send to the imported conversation in B: %v", err)
	}
	bob.Close()
	aliceB.Close()
	carol.Close()

	// Every core of B restarts; the restored and the new messages stay.
	for i := range b.cores {
		b.cores[i].Stop()
	}
	for i := range b.cores {
		if err := b.restartCore(i); err != nil {
			t.Fatal(err)
		}
	}
	waitShards(t, adminB, shards)
	bob2 := dial(t, ctx, b.edges[0].URL, app, "bob")
	var got []string
	waitFor(t, 30*time.Second, func() bool {
		hist, err := bob2.History(ctx, one, client.HistoryQuery{Limit: 10})
		if err != nil {
			t.Logf("history after the restart: %v", err)
			return false
		}
		got = got[:0]
		for _, m := range hist {
			got = append(got, m.Text)
		}
		return true
	})
	if wantAll := append(slices.Clone(want[one]), after); !slices.Equal(got, wantAll) {
		t.Errorf("history of %s after B's restart: %q, want %q", one, got, wantAll)
	}
	if hist, err := bob2.History(ctx, lcID, client.HistoryQuery{Limit: 10}); err != nil || len(hist) != 3 {
		t.Errorf("history of the imported %s after B's restart: %d messages, %v; want 3", lcID, len(hist), err)
	}
	// And a write after the restart is applied too.
	if _, err := bob2.Send(ctx, one, client.TextMessage("after the restart"), client.SendOptions{}); err != nil {
		t.Errorf("send after B's restart: %v", err)
	}
	if hist, err := bob2.History(ctx, one, client.HistoryQuery{Limit: 10}); err != nil || len(hist) != 5 {
		t.Errorf("history after a send after the restart: %d messages, %v; want 5", len(hist), err)
	}
}
