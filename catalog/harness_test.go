package catalog_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

var (
	_ raftstore.StateMachine    = (*catalog.FSM)(nil)
	_ raftstore.FatalApplyError = (*catalog.FatalError)(nil)
	_ catalog.Proposer          = (*raftstore.Node)(nil)
)

// harness applies commands to one FSM over an in-memory Pebble, as
// raftstore does: one indexed batch per entry, committed unless fatal.
type harness struct {
	t   testing.TB
	db  *pebble.DB
	fsm *catalog.FSM
	idx uint64
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &harness{t: t, db: db, fsm: catalog.New()}
}

// raw applies one entry and returns Apply's answer. A refusal must leave
// the batch empty.
func (h *harness) raw(cmd []byte) any {
	h.t.Helper()
	b := h.db.NewIndexedBatch()
	defer b.Close()
	h.idx++
	v := h.fsm.Apply(b, h.idx, cmd)
	switch v.(type) {
	case *catalog.FatalError:
		return v
	case *catalog.Error:
		if !b.Empty() {
			h.t.Fatalf("refusal %v wrote %d entries", v, b.Count())
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		h.t.Fatal(err)
	}
	return v
}

// do applies cmd and returns its result, or its refusal as the error.
func (h *harness) do(cmd catalog.Command) (*catalog.Result, error) {
	h.t.Helper()
	b, err := catalog.Encode(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	switch v := h.raw(b).(type) {
	case *catalog.Result:
		return v, nil
	case *catalog.Error:
		return nil, v
	case *catalog.FatalError:
		h.t.Fatalf("%s: fatal on healthy storage: %v", cmd.Op(), v)
	default:
		h.t.Fatalf("%s: Apply returned %T %v", cmd.Op(), v, v)
	}
	return nil, nil
}

// ok applies cmd and fails the test on a refusal.
func (h *harness) ok(cmd catalog.Command) *catalog.Result {
	h.t.Helper()
	res, err := h.do(cmd)
	if err != nil {
		h.t.Fatalf("%s %s: %v", cmd.Op(), js(cmd), err)
	}
	return res
}

// refused applies cmd and fails the test unless it is refused with want.
func (h *harness) refused(cmd catalog.Command, want error) {
	h.t.Helper()
	res, err := h.do(cmd)
	var ce *catalog.Error
	if !errors.As(err, &ce) || !errors.Is(err, want) {
		h.t.Fatalf("%s %.200s: got %+v, %v; want a refusal with %v", cmd.Op(), js(cmd), res, err, want)
	}
}

func (h *harness) dump() map[string]string {
	h.t.Helper()
	m, err := raftstoretest.Dump(h.db)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// topo builds a small topology: regions "eu" (1) and "us" (2), cores
// eu-1..3 and us-1..3, an edge eu-e1, shards 1/0, 1/1 and 2/0.
func (h *harness) topo() {
	h.t.Helper()
	h.ok(&catalog.AddRegion{Name: "eu", Seeds: []string{"10.0.0.1:7000"}, CIDRs: []string{"10.0.0.0/8"},
		EdgeURLs: []string{"wss://eu.example.com/"}})
	h.ok(&catalog.AddRegion{Name: "us"})
	for r, name := range []string{"eu", "us"} {
		for i := 1; i <= 3; i++ {
			h.ok(&catalog.PutNode{Node: catalog.Node{ID: fmt.Sprintf("%s-%d", name, i), Region: uint8(r + 1),
				Role: catalog.RoleCore, Mesh: fmt.Sprintf("10.%d.0.%d:7000", r, i)}})
		}
	}
	h.ok(&catalog.PutNode{Node: catalog.Node{ID: "eu-e1", Region: 1, Role: catalog.RoleEdge, Mesh: "10.0.1.1:7000"}})
	h.ok(&catalog.AddShard{Region: 1, Voters: []string{"eu-1", "eu-2", "eu-3"}, Open: true})
	h.ok(&catalog.AddShard{Region: 1, Voters: []string{"eu-1"}, Open: true})
	h.ok(&catalog.AddShard{Region: 2, Voters: []string{"us-1", "us-2", "us-3"}})
}
