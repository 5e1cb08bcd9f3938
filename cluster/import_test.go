package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// importOutcome is core's IMPORT reply (import_json).
type importOutcome struct {
	Created  []string `json:"created"`
	Existing []string `json:"existing"`
	Refused  []struct {
		ID    string `json:"id"`
		Code  int32  `json:"code"`
		Error string `json:"error"`
	} `json:"refused"`
	New int `json:"new"`
	Dup int `json:"dup"`
}

// TestImportPlacedByCatalog: imported LeanCloud ids are spread over the
// region's shards and found through the catalog's entries; an id the
// legacy shard held before stays there; a re-import changes nothing; two
// importers of the same ids at once leave each on one shard; a shard
// refuses an id registered elsewhere.
func TestImportPlacedByCatalog(t *testing.T) {
	dir := t.TempDir()
	ids, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "core-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCore(CoreConfig{NodeID: "core-1", MeshAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "core-1"),
		Identity: ids["core-1"], Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, func() bool { return c.Ready() && c.CatalogReady() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const app = "import-app"
	conv := func(id string) shard.ImportConv {
		return shard.ImportConv{ID: id, Creator: "alice", Members: []string{"alice", "bob"}, CreatedAt: 1_650_000_000_000}
	}
	lcID := func(i int) string { return fmt.Sprintf("62a1b2c3d4e5f607%08x", i) }
	importReq := func(cid string, body any) *meshpb.ClientRequest {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		return &meshpb.ClientRequest{Kind: meshpb.ClientRequest_ADMIN, AppId: app, Admin: &meshpb.AdminRequest{Op: meshpb.AdminRequest_IMPORT, Cid: cid, ImportJson: b}}
	}
	outcome := func(rep *meshpb.ClientReply, err error) importOutcome {
		t.Helper()
		if err != nil || rep.GetErrorCode() != 0 {
			t.Fatalf("import: %v %v %s", err, rep.GetErrorCode(), rep.GetErrorReason())
		}
		var out importOutcome
		if err := json.Unmarshal(rep.GetAdmin().GetImportJson(), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// holders returns the shards whose state holds cid.
	holders := func(cid string) []int {
		var out []int
		for n, rep := range c.Replicas {
			cv, err := shard.GetConv(rep.State(), app, cid)
			if err != nil {
				t.Fatal(err)
			}
			if cv != nil {
				out = append(out, n)
			}
		}
		return out
	}

	// Imported before imports were placed: on the legacy shard, with no
	// catalog entry.
	old := lcID(0)
	out := outcome(c.Router.HandleShard(ctx, 0, importReq(old, map[string]any{"convs": []shard.ImportConv{conv(old)}})))
	if !slices.Equal(out.Created, []string{old}) {
		t.Fatalf("seeding the legacy shard: %+v", out)
	}
	if _, known, _ := c.Catalog.Lookup(app, old); known {
		t.Fatal("the seeded id is registered")
	}

	var convs []shard.ImportConv
	for i := range 40 {
		convs = append(convs, conv(lcID(i)))
	}
	out = outcome(c.Router.HandleClient(ctx, importReq(convs[0].ID, map[string]any{"convs": convs})))
	if len(out.Created) != 39 || !slices.Equal(out.Existing, []string{old}) || len(out.Refused) != 0 {
		t.Fatalf("import of 40 with one held: %d created, existing %v, refused %v", len(out.Created), out.Existing, out.Refused)
	}
	used := map[int]int{}
	for _, ic := range convs {
		h := holders(ic.ID)
		ref, known, err := c.Catalog.Lookup(app, ic.ID)
		if err != nil || !known {
			t.Fatalf("%s: not registered (%v)", ic.ID, err)
		}
		if len(h) != 1 || ref.Region != 1 || int(ref.Shard) != h[0] {
			t.Fatalf("%s: held by shards %v, registered on %s", ic.ID, h, ref)
		}
		used[h[0]]++
	}
	if h := holders(old); !slices.Equal(h, []int{0}) {
		t.Errorf("the legacy shard's conversation moved: held by %v", h)
	}
	if len(used) < 3 {
		t.Errorf("40 imported conversations on shards %v, want them spread over the 4", used)
	}
	t.Logf("40 imported conversations per shard: %v", used)
	// The member index knows where bob's imported conversations are, so
	// his login asks those shards (the shards' leaders report it).
	waitUntil(t, func() bool {
		refs, err := c.Catalog.MemberShards(app, "bob")
		if err != nil {
			return false
		}
		for n := range used {
			if !slices.Contains(refs, catalog.ShardRef{Region: 1, Shard: uint16(n)}) {
				return false
			}
		}
		return true
	})

	// History goes to the conversation's shard; again, it is all there.
	placed := convs[7].ID
	msgs := []shard.ImportMsg{{ID: "m1", From: "alice", T: 1_650_000_001_000, Data: "one"}, {ID: "m2", From: "bob", T: 1_650_000_002_000, Data: "two"}}
	if out := outcome(c.Router.HandleClient(ctx, importReq(placed, map[string]any{"msgs": msgs}))); out.New != 2 {
		t.Fatalf("history import: %+v", out)
	}
	if out := outcome(c.Router.HandleClient(ctx, importReq(placed, map[string]any{"msgs": msgs}))); out.New != 0 || out.Dup != 2 {
		t.Fatalf("history re-import: %+v", out)
	}

	// A re-import creates nothing anywhere.
	out = outcome(c.Router.HandleClient(ctx, importReq(convs[0].ID, map[string]any{"convs": convs})))
	if len(out.Created) != 0 || len(out.Existing) != 40 {
		t.Fatalf("re-import: %d created, %d existing", len(out.Created), len(out.Existing))
	}

	// Two importers of the same new ids at once: each id ends on one
	// shard (a loser's request fails and its retry finds the entry).
	var race []shard.ImportConv
	for i := 100; i < 120; i++ {
		race = append(race, conv(lcID(i)))
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				rep, err := c.Router.HandleClient(ctx, importReq(race[0].ID, map[string]any{"convs": race}))
				if err == nil && rep.GetErrorCode() == 0 {
					return
				}
				if attempt == 5 {
					t.Errorf("racing import still failing: %v %s", err, rep.GetErrorReason())
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, ic := range race {
		if h := holders(ic.ID); len(h) != 1 {
			t.Errorf("%s held by shards %v after two importers", ic.ID, h)
		}
	}

	// A shard refuses an imported id registered on another.
	ref, _, _ := c.Catalog.Lookup(app, placed)
	other := (int(ref.Shard) + 1) % 4
	out = outcome(c.Router.HandleShard(ctx, other, importReq(lcID(200), map[string]any{"convs": []shard.ImportConv{conv(placed)}})))
	if len(out.Refused) != 1 || out.Refused[0].Code != 4301 {
		t.Errorf("shard %d took an id registered on %s: %+v", other, ref, out)
	}
	// An id that is ours is refused wherever it goes.
	ours, err := catalog.NewConvID(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	out = outcome(c.Router.HandleClient(ctx, importReq(ours, map[string]any{"convs": []shard.ImportConv{conv(ours)}})))
	if len(out.Refused) != 1 || len(out.Created) != 0 {
		t.Errorf("an id of ours was imported: %+v", out)
	}
}
