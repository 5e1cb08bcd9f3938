package catalog_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble"

	"github.com/relaymesh/relaymesh/catalog"
)

// FuzzApply feeds arbitrary bytes to two catalog FSMs, each over its own
// Pebble holding the same state (a topology and a few hundred random
// commands' worth of data). Nothing may panic; the answer is a *Result, a
// refusal (*Error) or, for an entry of a newer version only, a
// *FatalError (the in-memory storage never fails); both FSMs answer alike
// and write exactly the same batch; and what was written reads back.
func FuzzApply(f *testing.F) {
	g := newGen(7)
	for range 300 {
		b, err := catalog.Encode(g.next())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `{"v":99}`, `{"v":1}`, `{"v":1,"op":"add_region"}`, `{"v":1,"op":"add_region","a":null}`,
		`{"v":1,"op":"member_delta","a":{"app":"app","shard":{"r":1,"s":0},"index":18446744073709551615,"adds":["x","x"],"removes":["x"]}}`,
		`{"v":1,"op":"add_shard","a":{"region":1,"voters":["eu-1"],"number":65535}}`,
		`{"v":1,"op":"put_app","a":{"id":"app","settings":{"a":{"b":[1,2,{"c":null}]}}}}`,
		`{"v":1,"op":"import_ids","a":{"app":"app","shard":{"r":1,"s":0},"cids":["f10201020000000000005ba2"]}}`,
	} {
		f.Add([]byte(s))
	}

	hs := [2]*harness{newHarness(f), newHarness(f)}
	for _, h := range hs {
		h.topo()
		g := newGen(11)
		for _, cmd := range g.setup() {
			h.ok(cmd)
		}
		for range 500 {
			b, _ := catalog.Encode(g.next())
			if v, ok := h.raw(b).(*catalog.FatalError); ok {
				f.Fatalf("setup: %v", v)
			}
		}
	}
	if a, b := hs[0].dump(), hs[1].dump(); !maps.Equal(a, b) {
		f.Fatal("the two setups differ")
	}

	var mu sync.Mutex // one input at a time on the shared states
	f.Fuzz(func(t *testing.T, cmd []byte) {
		mu.Lock()
		defer mu.Unlock()
		var out [2]string
		var repr [2][]byte
		for i, h := range hs {
			b := h.db.NewIndexedBatch()
			defer b.Close()
			v := h.fsm.Apply(b, h.idx+1, cmd)
			out[i] = outcome(v)
			repr[i] = b.Repr()
			switch v := v.(type) {
			case *catalog.Result:
			case *catalog.Error:
				if !b.Empty() {
					t.Fatalf("refusal %v wrote %d entries", v, b.Count())
				}
			case *catalog.FatalError:
				if !errors.Is(v, catalog.ErrUnknownVersion) {
					t.Fatalf("fatal error on healthy storage: %v", v)
				}
			default:
				t.Fatalf("Apply returned %T %v", v, v)
			}
			if err := readsBack(b); err != nil {
				t.Fatalf("after %s: %v", out[i], err)
			}
		}
		if out[0] != out[1] {
			t.Fatalf("two FSMs answered %s and %s", out[0], out[1])
		}
		if !bytes.Equal(repr[0], repr[1]) {
			t.Fatalf("two FSMs wrote different batches for %s", out[0])
		}
	})
}

// readsBack reads the whole catalog through its readers: everything
// stored decodes.
func readsBack(r pebble.Reader) error {
	if _, err := catalog.Regions(r); err != nil {
		return err
	}
	if _, err := catalog.Nodes(r); err != nil {
		return err
	}
	if _, err := catalog.Shards(r, 0); err != nil {
		return err
	}
	apps, err := catalog.ListApps(r)
	if err != nil {
		return err
	}
	for _, app := range append(apps, genApps...) {
		if _, _, err := catalog.GetApp(r, app); err != nil {
			return err
		}
		for c := range 8 {
			if _, err := catalog.MemberEntries(r, app, fmt.Sprintf("c%d", c)); err != nil {
				return err
			}
		}
	}
	return nil
}
