package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/relaymesh/relaymesh/catalog"
)

// TestCatalogVersions: an entry of a version newer than this code is fatal
// (the replica stops rather than guess); an unversioned, malformed or
// unknown-op entry is refused alike on every replica.
func TestCatalogVersions(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, entry string
		fatal       bool
	}{
		{"newer version", `{"v":3,"op":"add_region","a":{"name":"eu"}}`, true},
		{"newer version, unknown op", `{"v":99,"op":"teleport"}`, true},
		{"newer version, args this code cannot read", `{"v":3,"op":"add_region","a":"eu"}`, true},
		{"newer version, envelope this code cannot read", `{"v":4,"op":7}`, true},
		{"a version-2 op in version 1", `{"v":1,"op":"member_set","a":{"shard":{"r":1,"s":0},"index":1}}`, false},
		{"no version", `{"op":"add_region","a":{"name":"eu"}}`, false},
		{"version 0", `{"v":0,"op":"add_region","a":{"name":"eu"}}`, false},
		{"negative version", `{"v":-1,"op":"add_region","a":{"name":"eu"}}`, false},
		{"unknown op", `{"v":1,"op":"teleport","a":{}}`, false},
		{"no op", `{"v":1}`, false},
		{"args of the wrong type", `{"v":1,"op":"add_region","a":{"name":7}}`, false},
		{"args not an object", `{"v":1,"op":"add_region","a":[1]}`, false},
		{"region number out of range", `{"v":1,"op":"add_shard","a":{"region":256,"voters":["x"]}}`, false},
		{"not JSON", `v1 add_region eu`, false},
		{"empty", ``, false},
		{"null", `null`, false},
	} {
		switch v := h.raw([]byte(tc.entry)).(type) {
		case *catalog.FatalError:
			if !tc.fatal || !errors.Is(v, catalog.ErrUnknownVersion) {
				t.Errorf("%s: fatal %v", tc.name, v)
			}
		case *catalog.Error:
			if tc.fatal {
				t.Errorf("%s: refused (%v), want fatal", tc.name, v)
			} else if !errors.Is(v, catalog.ErrBadCommand) && !errors.Is(v, catalog.ErrInvalid) {
				t.Errorf("%s: refused with %v, want ErrBadCommand", tc.name, v)
			}
		default:
			t.Errorf("%s: got %T %v", tc.name, v, v)
		}
	}
	if regions, _ := catalog.Regions(h.db); len(regions) != 0 {
		t.Fatalf("a refused or fatal entry added %v", regions)
	}
	// The current version applies, and an old proposer's version-1 entry too.
	b, err := catalog.EncodeVersion(catalog.Version1, &catalog.AddRegion{Name: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := h.raw(b).(*catalog.Result); !ok || r.Region != 1 {
		t.Fatalf("version 1 entry: %+v", r)
	}
	// A newer proposer's envelope is recognised before the op.
	b, _ = catalog.EncodeVersion(catalog.Version+1, &catalog.AddRegion{Name: "us"})
	if v, ok := h.raw(b).(*catalog.FatalError); !ok || v.Index == 0 {
		t.Fatalf("newer entry: %v", v)
	}
}

// TestCatalogStorageFailure: stored data that does not decode is this
// replica's problem, not a refusal: Apply answers a FatalError wrapping
// ErrStorage (raftstore then stops the replica).
func TestCatalogStorageFailure(t *testing.T) {
	h := newHarness(t)
	h.topo()
	// Corrupt node eu-1 behind the FSM's back.
	key := append([]byte{'N', byte(len("eu-1"))}, "eu-1"...)
	if err := h.db.Set(key, []byte("{not json"), nil); err != nil {
		t.Fatal(err)
	}
	b, _ := catalog.Encode(&catalog.SetShardVoters{Shard: s10, Voters: []string{"eu-1"}})
	v, ok := h.raw(b).(*catalog.FatalError)
	if !ok || !errors.Is(v, catalog.ErrStorage) || v.Op != catalog.OpSetShardVoters {
		t.Fatalf("apply over a corrupt node: %v, want a fatal storage error", v)
	}
	if _, _, err := catalog.GetNode(h.db, "eu-1"); !errors.Is(err, catalog.ErrStorage) {
		t.Fatalf("GetNode of a corrupt node: %v", err)
	}
	if _, err := catalog.Nodes(h.db); !errors.Is(err, catalog.ErrStorage) {
		t.Fatalf("Nodes with a corrupt node: %v", err)
	}
	// RemoveRegion scans the nodes: fatal too, never "in use" or "removed".
	h.ok(&catalog.AddRegion{Name: "empty"})
	b, _ = catalog.Encode(&catalog.RemoveRegion{Name: "empty"})
	if v, ok := h.raw(b).(*catalog.FatalError); !ok || !errors.Is(v, catalog.ErrStorage) {
		t.Fatalf("remove region over a corrupt node: %v", v)
	}
}

// TestCatalogBounds: every input bound, refused with the sentinel callers
// map to a code, and the input at the bound accepted.
func TestCatalogBounds(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	list := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	okAddr := "host.example:7000"
	for _, tc := range []struct {
		name string
		cmd  catalog.Command
		want error // nil: accepted
	}{
		{"region name at bound", &catalog.AddRegion{Name: long(catalog.MaxNameLen)}, nil},
		{"region name too long", &catalog.AddRegion{Name: long(catalog.MaxNameLen + 1)}, catalog.ErrTooLong},
		{"region name empty", &catalog.AddRegion{}, catalog.ErrInvalid},
		{"region name with a space", &catalog.AddRegion{Name: "e u"}, catalog.ErrInvalid},
		{"region name with a slash", &catalog.AddRegion{Name: "e/u"}, catalog.ErrInvalid},
		{"seeds at bound", &catalog.AddRegion{Name: "r", Seeds: list(catalog.MaxAddrs, okAddr)}, nil},
		{"too many seeds", &catalog.AddRegion{Name: "r", Seeds: list(catalog.MaxAddrs+1, okAddr)}, catalog.ErrTooMany},
		{"seed without port", &catalog.AddRegion{Name: "r", Seeds: []string{"host"}}, catalog.ErrInvalid},
		{"seed port 0", &catalog.AddRegion{Name: "r", Seeds: []string{"host:0"}}, catalog.ErrInvalid},
		{"seed port too big", &catalog.AddRegion{Name: "r", Seeds: []string{"host:65536"}}, catalog.ErrInvalid},
		{"seed bare ipv6", &catalog.AddRegion{Name: "r", Seeds: []string{"::1:7000"}}, catalog.ErrInvalid},
		{"seed ipv6", &catalog.AddRegion{Name: "r", Seeds: []string{"[::1]:7000"}}, nil},
		{"seed with a space", &catalog.AddRegion{Name: "r", Seeds: []string{"ho st:1"}}, catalog.ErrInvalid},
		{"seed too long", &catalog.AddRegion{Name: "r", Seeds: []string{long(catalog.MaxAddrLen) + ":1"}}, catalog.ErrTooLong},
		{"cidrs at bound", &catalog.AddRegion{Name: "r", CIDRs: list(catalog.MaxCIDRs, "10.0.0.0/8")}, nil},
		{"too many cidrs", &catalog.AddRegion{Name: "r", CIDRs: list(catalog.MaxCIDRs+1, "10.0.0.0/8")}, catalog.ErrTooMany},
		{"bad cidr", &catalog.AddRegion{Name: "r", CIDRs: []string{"10.0.0.0/33"}}, catalog.ErrInvalid},
		{"cidr without length", &catalog.AddRegion{Name: "r", CIDRs: []string{"10.0.0.1"}}, catalog.ErrInvalid},
		{"edge urls at bound", &catalog.AddRegion{Name: "r", EdgeURLs: list(catalog.MaxAddrs, "https://e.example")}, nil},
		{"too many edge urls", &catalog.AddRegion{Name: "r", EdgeURLs: list(catalog.MaxAddrs+1, "https://e.example")}, catalog.ErrTooMany},
		{"edge url scheme", &catalog.AddRegion{Name: "r", EdgeURLs: []string{"ftp://e.example"}}, catalog.ErrInvalid},
		{"edge url without host", &catalog.AddRegion{Name: "r", EdgeURLs: []string{"wss:///path"}}, catalog.ErrInvalid},
		{"edge url too long", &catalog.AddRegion{Name: "r", EdgeURLs: []string{"https://" + long(catalog.MaxAddrLen)}}, catalog.ErrTooLong},
		{"remove region bad name", &catalog.RemoveRegion{Name: "a b"}, catalog.ErrInvalid},
		{"node id too long", &catalog.PutNode{Node: catalog.Node{ID: long(catalog.MaxNameLen + 1), Region: 1, Role: catalog.RoleCore, Mesh: okAddr}}, catalog.ErrTooLong},
		{"node id at bound", &catalog.PutNode{Node: catalog.Node{ID: long(catalog.MaxNameLen), Region: 1, Role: catalog.RoleCore, Mesh: okAddr}}, nil},
		{"node mesh too long", &catalog.PutNode{Node: catalog.Node{ID: "n", Region: 1, Role: catalog.RoleCore, Mesh: long(catalog.MaxAddrLen) + ":1"}}, catalog.ErrTooLong},
		{"node mesh empty", &catalog.PutNode{Node: catalog.Node{ID: "n", Region: 1, Role: catalog.RoleCore}}, catalog.ErrInvalid},
		{"node role empty", &catalog.PutNode{Node: catalog.Node{ID: "n", Region: 1, Mesh: okAddr}}, catalog.ErrInvalid},
		{"node role long", &catalog.PutNode{Node: catalog.Node{ID: "n", Region: 1, Role: catalog.Role(long(1 << 20)), Mesh: okAddr}}, catalog.ErrInvalid},
		{"remove node bad id", &catalog.RemoveNode{ID: ""}, catalog.ErrInvalid},
		{"voter id too long", &catalog.AddShard{Region: 1, Voters: []string{long(catalog.MaxNameLen + 1)}}, catalog.ErrTooLong},
		{"too many voters", &catalog.SetShardVoters{Shard: s10, Voters: list(catalog.MaxVoters+1, "eu-1")}, catalog.ErrTooMany},
		{"voters at bound (deduplicated)", &catalog.SetShardVoters{Shard: s10, Voters: list(catalog.MaxVoters, "eu-1")}, nil},
		{"app id too long", &catalog.DeleteApp{ID: long(catalog.MaxNameLen + 1)}, catalog.ErrTooLong},
		{"app id at bound", &catalog.DeleteApp{ID: long(catalog.MaxNameLen)}, nil},
		{"app id with a control character", &catalog.DeleteApp{ID: "a\x7fb"}, catalog.ErrInvalid},
		{"settings too big", &catalog.PutApp{ID: "a", Settings: json.RawMessage(`{"a":"` + long(catalog.MaxSettingsBytes) + `"}`)}, catalog.ErrTooLong},
		{"client too long", &catalog.MemberDelta{App: "a", Shard: s10, Index: 1, Adds: []string{long(catalog.MaxClientIDLen + 1)}}, catalog.ErrTooLong},
		{"client at bound", &catalog.MemberDelta{App: "a", Shard: s10, Index: 1, Adds: []string{long(catalog.MaxClientIDLen)}}, nil},
		{"delta at bound", &catalog.MemberDelta{App: "a", Shard: s10, Index: 2, Adds: list(catalog.MaxDeltaClients, "c")}, nil},
		{"delta too big", &catalog.MemberDelta{App: "a", Shard: s10, Index: 3, Adds: list(catalog.MaxDeltaClients+1, "c")}, catalog.ErrTooMany},
		{"import too big", &catalog.ImportIDs{App: "a", Shard: s10, Cids: list(catalog.MaxImportIDs+1, "5f6d0c1e8a3b2c0012345678")}, catalog.ErrTooMany},
		{"import at bound", &catalog.ImportIDs{App: "a", Shard: s10, Cids: list(catalog.MaxImportIDs, "5f6d0c1e8a3b2c0012345678")}, nil},
		{"hash too long", &catalog.ClaimUnique{App: "a", Hash: long(1 << 16), Cid: "5f6d0c1e8a3b2c0012345678"}, catalog.ErrInvalid},
		{"cid too long", &catalog.ReleaseUnique{App: "a", Hash: catalog.UniqueHash([]string{"x"}), Cid: long(1 << 16)}, catalog.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.topo()
			if tc.want == nil {
				h.ok(tc.cmd)
			} else {
				h.refused(tc.cmd, tc.want)
			}
		})
	}
}

// TestCatalogCommandSize: an entry over MaxCommandBytes is refused before
// it is decoded (a newer version's stays fatal); the Store does not
// propose one.
func TestCatalogCommandSize(t *testing.T) {
	h := newHarness(t)
	h.topo()
	huge := []byte(`{"v":1,"op":"delete_app","a":{"id":"x"},"pad":"` + strings.Repeat(" ", catalog.MaxCommandBytes) + `"}`)
	if v, ok := h.raw(huge).(*catalog.Error); !ok || !errors.Is(v, catalog.ErrTooLong) {
		t.Fatalf("huge entry: %v, want ErrTooLong", v)
	}
	huge = []byte(`{"v":3,"pad":"` + strings.Repeat(" ", catalog.MaxCommandBytes) + `"}`)
	if v, ok := h.raw(huge).(*catalog.FatalError); !ok || !errors.Is(v, catalog.ErrUnknownVersion) {
		t.Fatalf("huge entry of a newer version: %v, want fatal", v)
	}
	// Within the per-field bounds, yet over the entry bound once escaped.
	ctl := strings.Repeat("\x01", catalog.MaxClientIDLen)
	adds := make([]string, catalog.MaxDeltaClients)
	for i := range adds {
		adds[i] = ctl[:catalog.MaxClientIDLen-8] + fmt.Sprintf("%08d", i)
	}
	s := catalog.NewStore(h.db, proposerFunc(func(context.Context, []byte) (any, error) {
		t.Fatal("proposed a command over MaxCommandBytes")
		return nil, nil
	}))
	_, err := s.Apply(t.Context(), &catalog.MemberDelta{App: "app", Shard: s10, Index: 1, Adds: adds})
	if !errors.Is(err, catalog.ErrTooLong) {
		t.Fatalf("Store.Apply of a huge delta: %v, want ErrTooLong", err)
	}
}

type proposerFunc func(context.Context, []byte) (any, error)

func (f proposerFunc) Propose(ctx context.Context, b []byte) (any, error) { return f(ctx, b) }
