package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/raftstore"
)

// backupCore starts a one-core cluster of two shards (its own CA) and an
// admin client of it.
func backupCore(t *testing.T) (*Core, *OpsClient, map[string]*mesh.Identity) {
	t.Helper()
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1", "edge-1", "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"),
		Identity: ids["core-1"], Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitUntil(t, c.Ready)
	waitUntil(t, c.Replicas[1].IsLeader)
	waitUntil(t, c.CatalogReady)
	cl, err := DialOps(ids["admin-1"], "127.0.0.1:0", []string{c.Node.Addr()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl, ids
}

func propose(t *testing.T, ctx context.Context, rep *raftstore.Node, cmd *shard.Command) {
	t.Helper()
	b, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Propose(ctx, b); err != nil {
		t.Fatalf("%s: %v", cmd.Op, err)
	}
}

// TestBackupStreams: a snapshot of shard 1 of cluster A (a conversation,
// a unique one, one with a LeanCloud id, messages) restored into shard 1
// of a one-core cluster B through the streams: misuse first (an edge's
// certificate, a bad first frame, the catalog, a transfer cut off, a
// truncated file, more bytes than announced, a second restore while one
// runs) changes nothing; then the restore brings the conversations, and
// B's catalog gets the imported id, the unique claim and the member
// index entries with a mark at or above the restored replica's member
// index (so routers trust the index only once it has the clients).
func TestBackupStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const app = "backup-app"
	a, acl, _ := backupCore(t)
	cid, uniq, lcID := newCID(t, 1, 1), newCID(t, 1, 1), "62a1b2c3d4e5f60718293a01"
	propose(t, ctx, a.Replicas[1], &shard.Command{Op: shard.OpStart, App: app, CID: cid, From: "alice", Members: []string{"alice", "bob"}, Now: 1000})
	propose(t, ctx, a.Replicas[1], &shard.Command{Op: shard.OpStart, App: app, CID: uniq, From: "alice", Members: []string{"alice", "carol"}, Unique: true, Now: 1000})
	propose(t, ctx, a.Replicas[1], &shard.Command{Op: shard.OpStart, App: app, CID: lcID, From: "alice", Members: []string{"alice", "dave"}, Now: 1000})
	for i, c := range []string{cid, uniq, lcID} {
		propose(t, ctx, a.Replicas[1], &shard.Command{Op: shard.OpAppend, App: app, CID: c, From: "alice", MID: "m" + c[:4] + string(rune('a'+i)), Data: "hi", Now: 2000})
	}
	// A round of sends: two messages under one fan-out tail index.
	propose(t, ctx, a.Replicas[1], &shard.Command{Op: shard.OpBatch, Batch: []*shard.Command{
		{Op: shard.OpAppend, App: app, CID: cid, From: "alice", MID: "round-1", Data: "r1", Now: 3000},
		{Op: shard.OpAppend, App: app, CID: cid, From: "bob", MID: "round-2", Data: "r2", Now: 3000},
	}})
	var file bytes.Buffer
	res, err := acl.Snapshot(ctx, &BackupRequest{Shard: 1}, &file, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := raftstore.ReadBackup(bytes.NewReader(file.Bytes()), nil, nil, nil)
	if err != nil {
		t.Fatalf("the snapshot received: %v", err)
	}
	if *h != *res.Header || res.Node != "core-1" || res.Role != "Leader" || h.Region != 1 || h.Shard != 1 || h.Group != "shard" || res.Bytes != int64(file.Len()) {
		t.Fatalf("snapshot %+v, header %+v", res, h)
	}

	b, bcl, ids := backupCore(t)
	rep := b.Replicas[1]
	empty := func() bool {
		has, err := shard.HasData(rep.State())
		return err == nil && !has
	}
	// An edge's certificate.
	ecl, err := DialOps(ids["edge-1"], "127.0.0.1:0", []string{b.Node.Addr()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecl.Restore(ctx, &BackupRequest{Shard: 1}, bytes.NewReader(file.Bytes()), int64(file.Len()), nil); !errors.Is(err, mesh.ErrForbidden) {
		t.Errorf("an edge's restore: %v, want ErrForbidden", err)
	}
	if _, err := ecl.Snapshot(ctx, &BackupRequest{Shard: 1}, &bytes.Buffer{}, nil); !errors.Is(err, mesh.ErrForbidden) {
		t.Errorf("an edge's snapshot: %v, want ErrForbidden", err)
	}
	ecl.Close()

	open := func(req *BackupRequest) (*mesh.Stream, *BackupReply) {
		t.Helper()
		st, err := bcl.node.OpenStream(ctx, b.Node.Addr(), MethodAdminRestore)
		if err != nil {
			t.Fatal(err)
		}
		if err := sendJSON(st, req); err != nil {
			t.Fatal(err)
		}
		rep := new(BackupReply)
		if err := recvJSON(st, rep); err != nil {
			t.Fatal(err)
		}
		return st, rep
	}
	finish := func(st *mesh.Stream) string {
		t.Helper()
		rep := new(BackupReply)
		if err := recvJSON(st, rep); err != nil {
			return err.Error()
		}
		return rep.Err
	}
	sendData := func(st *mesh.Stream, p []byte) {
		for len(p) > 0 {
			n := min(len(p), 1000)
			if err := st.Send(append([]byte{frameData}, p[:n]...)); err != nil {
				return // the core stopped reading: its answer says why
			}
			p = p[n:]
		}
	}
	// A first frame that is not a request.
	st, err := bcl.node.OpenStream(ctx, b.Node.Addr(), MethodAdminRestore)
	if err != nil {
		t.Fatal(err)
	}
	st.Send([]byte("Dgarbage"))
	if msg := finish(st); !strings.Contains(msg, "bad request") {
		t.Errorf("a data frame first: %q", msg)
	}
	st.Close()
	// The catalog, no size, unknown shard.
	for _, m := range []struct {
		req  BackupRequest
		want string
	}{
		{BackupRequest{Group: "catalog", Size: 10}, "catalog is not restored"},
		{BackupRequest{Shard: 1}, "size is needed"},
		{BackupRequest{Shard: 9, Size: 10}, "unknown shard 9"},
		{BackupRequest{Group: "nope", Size: 10}, "unknown group"},
		{BackupRequest{Region: 7, Shard: 1, Size: 10}, "region 7"},
	} {
		st, r := open(&m.req)
		if !strings.Contains(r.Err, m.want) {
			t.Errorf("%+v: %q, want %q", m.req, r.Err, m.want)
		}
		st.Close()
	}
	// Cut off half way: nothing is restored.
	st, r := open(&BackupRequest{Shard: 1, Size: int64(file.Len())})
	if r.Err != "" || r.Role != "Leader" {
		t.Fatalf("restore opening: %+v", r)
	}
	sendData(st, file.Bytes()[:file.Len()/2])
	st.Close()
	// A second restore waits for the first to end (the core notices the
	// cut), then a truncated file is refused.
	waitUntil(t, func() bool {
		st, r := open(&BackupRequest{Shard: 1, Size: int64(file.Len())})
		if strings.Contains(r.Err, "in progress") {
			st.Close()
			return false
		}
		if r.Err != "" {
			t.Fatalf("restore opening: %+v", r)
		}
		sendData(st, file.Bytes()[:file.Len()-10])
		st.Send([]byte{frameEnd})
		if msg := finish(st); !strings.Contains(msg, "bad backup file") {
			t.Errorf("a truncated file: %q", msg)
		}
		st.Close()
		return true
	})
	// More than announced.
	st, r = open(&BackupRequest{Shard: 1, Size: 100})
	if r.Err != "" {
		t.Fatalf("restore opening: %+v", r)
	}
	sendData(st, file.Bytes())
	if msg := finish(st); !strings.Contains(msg, "longer than the size") {
		t.Errorf("more bytes than announced: %q", msg)
	}
	st.Close()
	// One restore at a time.
	held, r := open(&BackupRequest{Shard: 1, Size: int64(file.Len())})
	if r.Err != "" {
		t.Fatalf("restore opening: %+v", r)
	}
	st, r = open(&BackupRequest{Shard: 1, Size: int64(file.Len())})
	if !strings.Contains(r.Err, "in progress") {
		t.Errorf("a second restore at once: %+v", r)
	}
	st.Close()
	held.Close()
	if !empty() {
		t.Fatal("a refused restore wrote to the shard")
	}

	// The restore.
	var out *RestoreResult
	waitUntil(t, func() bool { // the held one may still be winding down
		out, err = bcl.Restore(ctx, &BackupRequest{Shard: 1}, bytes.NewReader(file.Bytes()), int64(file.Len()), nil)
		if err != nil && strings.Contains(err.Error(), "in progress") {
			return false
		}
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		return true
	})
	s := out.Summary
	if s.Imported != 1 || s.Unique != 1 || s.Members != 4 || len(s.Warnings) > 0 || s.Index <= h.Applied || s.Applied <= s.Index || s.Header.Applied != h.Applied {
		t.Errorf("restore summary %+v", s)
	}
	for _, c := range []string{cid, uniq, lcID} {
		if conv, err := shard.GetConv(rep.State(), app, c); err != nil || conv == nil {
			t.Errorf("conversation %s after the restore: %v %v", c, conv, err)
		}
	}
	if ref, ok, err := b.Catalog.Lookup(app, lcID); err != nil || !ok || ref != (catalog.ShardRef{Region: 1, Shard: 1}) {
		t.Errorf("imported id in B's catalog: %v %v %v", ref, ok, err)
	}
	if w, ok, err := b.Catalog.UniqueCid(app, catalog.UniqueHash([]string{"alice", "carol"})); err != nil || !ok || w != uniq {
		t.Errorf("unique claim in B's catalog: %q %v %v", w, ok, err)
	}
	for _, who := range []string{"alice", "bob", "carol", "dave"} {
		refs, err := b.Catalog.MemberShards(app, who)
		if err != nil || !slices.Contains(refs, catalog.ShardRef{Region: 1, Shard: 1}) {
			t.Errorf("member index of %s in B: %v %v", who, refs, err)
		}
	}
	mark, err := b.Catalog.MemberMark(catalog.ShardRef{Region: 1, Shard: 1})
	fsm := rep.StateMachine().(*shard.FSM)
	if err != nil || mark < s.Index || fsm.MemberIndex() < s.Index || mark < fsm.MemberIndex() {
		t.Errorf("mark %d (%v), replica's member index %d, restore index %d: want both at or above the restore, the mark at or above the index",
			mark, err, fsm.MemberIndex(), s.Index)
	}
	if tail, err := shard.FanoutTail(rep.State(), ^uint64(0)-1, 100); err != nil || len(tail) != 0 {
		t.Errorf("fan-out tail after the restore: %d entries (%v), want none", len(tail), err)
	}
	// Not again without --force; with it, yes.
	if _, err := bcl.Restore(ctx, &BackupRequest{Shard: 1}, bytes.NewReader(file.Bytes()), int64(file.Len()), nil); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("a restore over data without force: %v", err)
	}
	// zed's conversation, made in B after the restore, is indexed; a forced
	// restore removes it, and zed's entry for the shard.
	one := catalog.ShardRef{Region: 1, Shard: 1}
	propose(t, ctx, rep, &shard.Command{Op: shard.OpStart, App: app, CID: newCID(t, 1, 1), From: "zed", Members: []string{"zed", "yan"}, Now: 3000})
	waitUntil(t, func() bool { refs, _ := b.Catalog.MemberShards(app, "zed"); return slices.Contains(refs, one) })
	if _, err := bcl.Restore(ctx, &BackupRequest{Shard: 1, Force: true}, bytes.NewReader(file.Bytes()), int64(file.Len()), nil); err != nil {
		t.Errorf("a restore over data with force: %v", err)
	}
	for _, who := range []string{"zed", "yan"} {
		if refs, err := b.Catalog.MemberShards(app, who); err != nil || slices.Contains(refs, one) {
			t.Errorf("member index of %s after a forced restore without them: %v %v", who, refs, err)
		}
	}
	if refs, err := b.Catalog.MemberShards(app, "bob"); err != nil || !slices.Contains(refs, one) {
		t.Errorf("member index of bob after a forced restore: %v %v", refs, err)
	}
	// The summary's JSON is what --json prints.
	if js, err := json.Marshal(s); err != nil || !strings.Contains(string(js), `"imported_ids":1`) {
		t.Errorf("summary JSON %s %v", js, err)
	}
}
