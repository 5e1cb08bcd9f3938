package shard

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// dump returns every key and value of the harness's state.
func (h *harness) dump() map[string]string {
	h.t.Helper()
	it, err := h.db.NewIter(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer it.Close()
	m := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	return m
}

// fatalOf applies raw and requires a FatalError wrapping want, with the
// state unchanged.
func (h *harness) fatalOf(raw []byte, want error) {
	h.t.Helper()
	before := h.dump()
	_, err := h.applyRaw(raw)
	var fe *FatalError
	if !errors.As(err, &fe) || !errors.Is(err, want) {
		h.t.Fatalf("%s: got %v, want a FatalError wrapping %v", raw, err, want)
	}
	if after := h.dump(); !maps.Equal(before, after) {
		h.t.Fatalf("%s: the fatal command changed the state", raw)
	}
}

func TestUnknownVersionIsFatal(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1})
	newer := Version + 1
	for _, raw := range []string{
		fmt.Sprintf(`{"v":%d,"op":"append","app":%q,"cid":"c1","from":"a","now":2,"mid":"m1","data":"x"}`, newer, app),
		// A newer format this code cannot even decode: the version decides.
		fmt.Sprintf(`{"v":%d,"op":{"name":"append"},"app":%q}`, newer, app),
		// A batch of this version with a newer entry.
		fmt.Sprintf(`{"v":%d,"op":"batch","batch":[{"v":%d,"op":"ack","app":%q,"cid":"c1","from":"b","now":3}]}`,
			Version, newer, app),
		fmt.Sprintf(`{"v":%d,"op":"batch","batch":[{"op":"ack","app":%q,"cid":"c1","from":"b","now":3}]}`, newer, app),
	} {
		h.fatalOf([]byte(raw), ErrUnknownVersion)
	}
	// What does not decode and names no newer version is an ordinary
	// refusal, the same on every replica.
	if _, err := h.applyRaw([]byte(`{"op":{"name":"append"}}`)); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("undecodable command: got %v, want ErrBadCommand", err)
	}
	if _, err := h.applyRaw([]byte(`not json`)); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("garbage: got %v, want ErrBadCommand", err)
	}
}

func TestUnknownOpIsFatal(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Now: 1})
	h.fatalOf([]byte(`{"v":2,"op":"device_register","app":"app1","cid":"c1","from":"a","now":2}`), ErrUnknownOp)
	h.fatalOf([]byte(`{"v":2,"op":"batch","batch":[{"op":"ack","app":"app1","cid":"c1","from":"a","now":2},`+
		`{"op":"no_such_op","app":"app1","now":2}]}`), ErrUnknownOp)
}

func TestEncodeStampsVersion(t *testing.T) {
	c := &Command{Op: OpAck, App: app}
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ V int }
	if err := json.Unmarshal(b, &v); err != nil || v.V != Version {
		t.Fatalf("encoded %s: v = %d, want %d", b, v.V, Version)
	}
	pinned := &Command{V: Version1, Op: OpAck, App: app}
	if b, _ = pinned.Encode(); !strings.Contains(string(b), `"v":1,`) {
		t.Fatalf("pinned command encoded as %s, want v 1", b)
	}
}

// TestVersion1Unchanged: commands written before versions existed (no
// "v") still apply, with the behaviour they had: no attribute cap.
func TestVersion1Unchanged(t *testing.T) {
	big := strings.Repeat("x", MaxAttrBytes)
	h := newHarness(t)
	// Bytes exactly as the code before versions encoded them.
	old := fmt.Sprintf(`{"op":"start","app":%q,"cid":"c1","from":"a","now":1000,"m":["b"],"attr":{"name":"n","big":%q}}`, app, big)
	r, err := h.applyRaw([]byte(old))
	if err != nil {
		t.Fatalf("version 1 start over the cap: %v", err)
	}
	if len(r.Conv.Attr) <= MaxAttrBytes {
		t.Fatalf("attr of %d bytes, want over %d", len(r.Conv.Attr), MaxAttrBytes)
	}
	old = fmt.Sprintf(`{"op":"update","app":%q,"cid":"c1","from":"a","now":1001,"upd":{"more":%q}}`, app, big)
	if _, err := h.applyRaw([]byte(old)); err != nil {
		t.Fatalf("version 1 update over the cap: %v", err)
	}
	old = fmt.Sprintf(`{"op":"append","app":%q,"cid":"c1","from":"b","now":1002,"mid":"m1","data":"hi","dt":"d1"}`, app)
	if r, err := h.applyRaw([]byte(old)); err != nil || r.Message.ID != "m1" {
		t.Fatalf("version 1 append: %v, %v", r, err)
	}

	// The same commands at Version2 are refused, and change nothing.
	h2 := newHarness(t)
	h2.refuse(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Now: 1,
		Attr: json.RawMessage(fmt.Sprintf(`{"big":%q}`, big))}, ErrAttrTooLarge)
	h2.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Now: 1, Attr: json.RawMessage(`{"name":"n"}`)})
	half := strings.Repeat("y", MaxAttrBytes/2)
	h2.must(&Command{Op: OpUpdate, App: app, CID: "c1", From: "a", Now: 2, Update: json.RawMessage(fmt.Sprintf(`{"a":%q}`, half))})
	before := h2.dump()
	h2.refuse(&Command{Op: OpUpdate, App: app, CID: "c1", From: "a", Now: 3,
		Update: json.RawMessage(fmt.Sprintf(`{"attr.b":%q}`, half))}, ErrAttrTooLarge)
	if !maps.Equal(before, h2.dump()) {
		t.Fatal("a refused update changed the state")
	}
	// A pinned proposer (Version1) still gets version 1 behaviour.
	h2.must(&Command{V: Version1, Op: OpUpdate, App: app, CID: "c1", From: "a", Now: 4,
		Update: json.RawMessage(fmt.Sprintf(`{"attr.b":%q}`, half))})
}

// faultyDB opens an in-memory state whose table reads fail while *broken
// is set; its block cache is empty, so every read of a table reaches the
// file.
func faultyDB(t *testing.T, broken *atomic.Bool) *pebble.DB {
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
		if broken.Load() && op.OpKind() == errorfs.OpKindRead && strings.HasSuffix(path, ".sst") {
			return errors.New("injected read error")
		}
		return nil
	}))
	cache := pebble.NewCache(0)
	defer cache.Unref()
	db, err := pebble.Open("", &pebble.Options{FS: fs, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStorageErrorsAreFatal: when reading the state fails, every command
// that reads it answers with a FatalError, never with a refusal or a
// result computed from what could not be read, and writes nothing.
func TestStorageErrorsAreFatal(t *testing.T) {
	cmds := []*Command{
		{Op: OpStart, App: app, CID: "new", From: "a", Now: 10},
		{Op: OpStart, App: app, CID: "new", From: "a", Members: []string{"b"}, Unique: true, Now: 10},
		{Op: OpAdd, App: app, CID: "c1", From: "a", Members: []string{"d"}, Now: 10},
		{Op: OpRemove, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 10},
		{Op: OpUpdate, App: app, CID: "c1", From: "a", Update: json.RawMessage(`{"name":"x"}`), Now: 10},
		{Op: OpMute, App: app, CID: "c1", From: "b", Mute: true, Now: 10},
		{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m9", Data: "x", DT: "d1", Now: 10},
		{Op: OpAppend, App: app, CID: "c1", From: "zz", MID: "m9", Data: "x", Now: 10}, // would be "not a member"
		{Op: OpPatch, App: app, From: "a", Now: 10, Patches: []Patch{{CID: "c1", MID: "m1", Data: "y"}}},
		{Op: OpAck, App: app, CID: "c1", From: "b", MID: "m1", Now: 10},
		{Op: OpRead, App: app, CID: "c1", From: "b", Now: 10},
		{Op: OpRole, App: app, CID: "c1", From: "a", Members: []string{"b"}, Role: RoleManager, Now: 10},
		{Op: OpShutup, App: app, CID: "c1", From: "a", Members: []string{"b"}, Mute: true, Now: 10},
		{Op: OpBlock, App: app, CID: "c1", From: "a", Members: []string{"b"}, Mute: true, Now: 10},
		{Op: OpWill, App: app, CID: "c1", From: "a", MID: "w1", Data: "bye", Edge: "e", Conn: 1, Now: 10},
		{Op: OpEndWills, App: app, From: "a", Edge: "e", Conn: 1, Fire: true, Now: 10},
		{Op: OpDelete, App: app, CID: "c1", Admin: true, Now: 10},
		{Op: OpDelMsg, App: app, CID: "c1", MID: "m1", Admin: true, Now: 10},
		{Op: OpSetWords, App: app, Words: []string{"w"}, Now: 10},
		{Op: OpSysStart, App: app, CID: "s2", Admin: true, Now: 10},
		{Op: OpSubscribe, App: app, CID: "s1", From: "a", Members: []string{"a"}, Now: 10},
		{Op: OpSysBcast, App: app, CID: "s1", Admin: true, MID: "b1", Data: "x", Now: 10},
		{Op: OpSysSeen, App: app, From: "a", Now: 10},
		{Op: OpBatch, Batch: []*Command{{Op: OpAck, App: app, CID: "c1", From: "b", T: 5, Now: 10}}},
	}
	for _, c := range cmds {
		t.Run(string(c.Op), func(t *testing.T) {
			var broken atomic.Bool
			h := &harness{t: t, db: faultyDB(t, &broken), fsm: New()}
			h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b", "c"}, Now: 1})
			h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m1", Data: "hi", Now: 2})
			h.must(&Command{Op: OpWill, App: app, CID: "c1", From: "a", MID: "w0", Data: "bye", Edge: "e", Conn: 1, Now: 3})
			h.must(&Command{Op: OpSysStart, App: app, CID: "s1", Admin: true, Now: 4})
			h.must(&Command{Op: OpSysSeen, App: app, From: "a", Now: 4})
			h.must(&Command{Op: OpSetWords, App: app, Words: []string{"v"}, Now: 4})
			if err := h.db.Flush(); err != nil {
				t.Fatal(err)
			}
			h.fsm.Reset() // as after a restart: nothing decoded in memory
			broken.Store(true)
			b, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.applyRaw(b)
			var fe *FatalError
			if !errors.As(err, &fe) || !errors.Is(err, ErrStorage) {
				t.Fatalf("got %v, want a FatalError wrapping ErrStorage", err)
			}
			broken.Store(false)
			// The storage is back: the same command now applies (or is
			// refused) as usual, showing nothing was half-written.
			if _, err := h.applyRaw(b); errors.As(err, &fe) {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
}

// TestCorruptStateIsFatal: stored values that do not decode are storage
// failures, never refusals.
func TestCorruptStateIsFatal(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
		cmd  *Command
	}{
		{"conversation", convKey(app, "c1"), &Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m2", Now: 5}},
		{"last message", lastKey(app, "c1"), &Command{Op: OpRead, App: app, CID: "c1", From: "b", Now: 5}},
		{"message index", msgIDKey(app, "c1", "m1"), &Command{Op: OpAck, App: app, CID: "c1", From: "b", MID: "m1", Now: 5}},
		{"cursor", cursorKey(app, "c1", "b"), &Command{Op: OpRead, App: app, CID: "c1", From: "b", Now: 5}},
		{"dedup", dedupWinKey(0, dedupDigest(app, "a", "c1", "d1")), &Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m3", DT: "d1", Now: 5}},
		{"will", willKey(app, "a", "c1"), &Command{Op: OpEndWills, App: app, From: "a", Edge: "e", Conn: 1, Fire: true, Now: 5}},
		{"words version", wordsVersionKey(app), &Command{Op: OpSetWords, App: app, Reset: true, Now: 5}},
		{"last seen", seenKey(app, "a"), &Command{Op: OpSysSeen, App: app, From: "a", Now: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(&Command{Op: OpStart, App: app, CID: "c1", From: "a", Members: []string{"b"}, Now: 1})
			h.must(&Command{Op: OpAppend, App: app, CID: "c1", From: "a", MID: "m1", Data: "hi", DT: "d1", Now: 2})
			h.must(&Command{Op: OpRead, App: app, CID: "c1", From: "b", Now: 2})
			h.must(&Command{Op: OpWill, App: app, CID: "c1", From: "a", MID: "w0", Data: "bye", Edge: "e", Conn: 1, Now: 3})
			h.must(&Command{Op: OpSetWords, App: app, Words: []string{"v"}, Now: 3})
			h.must(&Command{Op: OpSysSeen, App: app, From: "a", Now: 3})
			if err := h.db.Set(tc.key, []byte("\x01{"), nil); err != nil {
				t.Fatal(err)
			}
			h.fsm.Reset()
			b, _ := tc.cmd.Encode()
			h.fatalOf(b, ErrStorage)
		})
	}
}
