package shard_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/relaymesh/relaymesh/core/shard"
)

// FuzzApply feeds arbitrary bytes to the shard's command decoder and
// applies whatever decodes to a state holding conversations of every kind.
// Nothing may panic; the outcome is a *Result, a refusal (*Error) or, for
// a command of a newer version or op only, a *FatalError (the in-memory
// storage never fails, so a storage failure is a bug); and whatever a
// command wrote must read back: every conversation, its messages and
// cursors decode.
func FuzzApply(f *testing.F) {
	g := newGen(1)
	for i := range 300 {
		c := g.next()
		encode := c.Encode
		if i%2 == 1 { // both forms (bincmd.go) seed the corpus
			encode = c.EncodeBinary
		}
		b, err := encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `{"v":99}`, `{"v":-1,"op":"start","app":"app-a","cid":"c"}`,
		`{"op":"batch","batch":[null,{"op":"batch"}]}`,
		`{"op":"update","app":"app-a","cid":"c1","from":"u0","upd":{"a.b.c.d.e":1,"a.b":{"__op":"Delete"}}}`,
		`{"op":"patch","app":"app-a","from":"u0","patches":[{"cid":"c1","mid":"m1"},{"cid":"c1","mid":"m1","recall":true}]}`,
		`{"op":"start","app":"app-a","cid":"_tmp:x","tmp":true,"ttl":-5,"from":"u0"}`,
		`{"op":"shutup","app":"app-a","cid":"c1","from":"u0","m":["u1"],"tmp":true,"ttl":9223372036854775807,"mute":true}`,
	} {
		f.Add([]byte(s))
	}

	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	fsm := shard.New()
	var idx uint64
	setup := []*shard.Command{
		{Op: shard.OpStart, App: "app-a", CID: "c1", From: "u0", Members: []string{"u1", "u2"}, Now: 1000},
		{Op: shard.OpStart, App: "app-a", CID: "room", From: "u0", Transient: true, Now: 1000},
		{Op: shard.OpStart, App: "app-a", CID: shard.TempPrefix + "t1", From: "u0", Members: []string{"u1"}, Temp: true, Now: 1000},
		{Op: shard.OpSysStart, App: "app-a", CID: "s1", Admin: true, Now: 1000},
		{Op: shard.OpAppend, App: "app-a", CID: "c1", From: "u0", MID: "m1", Data: "hi", Receipt: true, Now: 1001},
		{Op: shard.OpAppend, App: "app-a", CID: "c1", From: "u1", MID: "m2", Data: "yo", DT: "d1", Now: 1002},
		{Op: shard.OpWill, App: "app-a", CID: "c1", From: "u2", MID: "w1", Data: "bye", Edge: "e1", Conn: 1, Now: 1003},
		{Op: shard.OpSubscribe, App: "app-a", CID: "s1", From: "u1", Members: []string{"u1"}, Now: 1004},
		{Op: shard.OpSysBcast, App: "app-a", CID: "s1", Admin: true, MID: "b1", Data: "news", ValidTill: 9e12, Now: 1005},
	}
	for _, c := range setup {
		b, _ := c.Encode()
		batch := db.NewIndexedBatch()
		idx++
		if r, ok := fsm.Apply(batch, idx, b).(*shard.Result); !ok {
			f.Fatalf("setup %s: %v", c.Op, r)
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			f.Fatal(err)
		}
		batch.Close()
	}

	var mu sync.Mutex // one input at a time on the shared state
	f.Fuzz(func(t *testing.T, cmd []byte) {
		mu.Lock()
		defer mu.Unlock()
		b := db.NewIndexedBatch()
		defer b.Close()
		defer fsm.Reset() // the batch is discarded: so is what the FSM cached from it
		switch v := fsm.Apply(b, idx+1, cmd).(type) {
		case *shard.Result, *shard.Error:
		case *shard.FatalError:
			if !errors.Is(v, shard.ErrUnknownVersion) && !errors.Is(v, shard.ErrUnknownOp) {
				t.Fatalf("fatal error on healthy storage: %v", v)
			}
			return
		default:
			t.Fatalf("Apply returned %T %v", v, v)
		}
		// Everything stored reads back.
		for _, app := range []string{"app-a", "app-b"} {
			err := shard.ScanConvs(b, app, func(c *shard.Conv) bool {
				if _, err := shard.ListMessages(b, app, c.ID, shard.LogQuery{Limit: 1000}); err != nil {
					t.Fatalf("messages of %s: %v", c.ID, err)
				}
				if _, err := shard.Cursors(b, app, c.ID); err != nil {
					t.Fatalf("cursors of %s: %v", c.ID, err)
				}
				return true
			})
			if err != nil {
				t.Fatalf("conversations of %s: %v", app, err)
			}
		}
		if _, err := shard.SessionWills(b, "app-a", "u2", "e1", 1); err != nil {
			t.Fatalf("wills: %v", err)
		}
	})
}
