package shard

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func importConvs(convs ...ImportConv) *Command {
	return &Command{Op: OpImport, App: app, Now: 9_000_000, Admin: true, Import: &ImportOp{Convs: convs}}
}

func importMsgs(cid string, msgs ...ImportMsg) *Command {
	return &Command{Op: OpImport, App: app, CID: cid, Now: 9_000_000, Admin: true, Import: &ImportOp{Msgs: msgs}}
}

// TestImportKeepsIDsAndTimes: imported conversations keep their id,
// creator, members, mutes, managers (members other than the creator),
// attributes and times; messages keep their ids
// and timestamps (older than the command's Now, out of order, several in
// one millisecond) and read back in LeanCloud's order; the newest becomes
// the last message and every member's cursors reach it, so none of it is
// unread; a live send afterwards is stamped after it.
func TestImportKeepsIDsAndTimes(t *testing.T) {
	h := newHarness(t)
	const cid = "5f1a2b3c4d5e6f7a8b9c0d1e"
	r := h.must(importConvs(ImportConv{ID: cid, Creator: "alice", Members: []string{"bob", "alice", "bob"},
		Muted: []string{"bob"}, Managers: []string{"zed", "bob", "alice"}, Attr: json.RawMessage(`{"name":"g","attr":{"k":1}}`), Unique: true,
		CreatedAt: 1_500_000_000_000, UpdatedAt: 1_500_000_100_000}))
	if got := r.Import.Created; !slices.Equal(got, []string{cid}) {
		t.Fatalf("created: got %v, want [%s]", got, cid)
	}
	conv, err := GetConv(h.db, app, cid)
	if err != nil || conv == nil {
		t.Fatalf("GetConv: %v %v", conv, err)
	}
	if conv.Creator != "alice" || !slices.Equal(conv.Members, []string{"alice", "bob"}) || !slices.Equal(conv.Muted, []string{"bob"}) ||
		string(conv.Attr) != `{"name":"g","attr":{"k":1}}` || conv.CreatedAt != 1_500_000_000_000 || conv.UpdatedAt != 1_500_000_100_000 ||
		!conv.Unique || conv.UniqueID == "" || !slices.Equal(conv.Managers, []string{"bob"}) {
		t.Fatalf("conv: got %+v", conv)
	}
	if ids, _ := MemberConvs(h.db, app, "bob", 10); !slices.Equal(ids, []string{cid}) {
		t.Fatalf("bob's conversations: got %v", ids)
	}
	if u, _ := FindUnique(h.db, app, []string{"alice", "bob"}); u != cid {
		t.Fatalf("unique: got %q, want %s", u, cid)
	}

	msgs := []ImportMsg{
		{ID: "m3", From: "bob", T: 1_500_000_300_000, Data: "three"},
		{ID: "m1", From: "alice", T: 1_500_000_100_000, Data: "one"},
		{ID: "m2b", From: "alice", T: 1_500_000_200_000, Data: "two-b"},
		{ID: "m2a", From: "bob", T: 1_500_000_200_000, Data: "dHdv", Bin: true},
	}
	r = h.must(importMsgs(cid, msgs...))
	if r.Import.MsgsNew != 4 || r.Import.MsgsDup != 0 {
		t.Fatalf("messages: got %+v, want 4 new", r.Import)
	}
	got, err := ListMessages(h.db, app, cid, LogQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range got {
		order = append(order, fmt.Sprintf("%s@%d", m.ID, m.T))
	}
	want := []string{"m1@1500000100000", "m2a@1500000200000", "m2b@1500000200000", "m3@1500000300000"}
	if !slices.Equal(order, want) {
		t.Fatalf("history: got %v, want %v", order, want)
	}
	if m, _ := GetMessage(h.db, app, cid, "m2a"); m == nil || !m.Bin || m.Data != "dHdv" || m.From != "bob" {
		t.Fatalf("m2a: got %+v", m)
	}
	conv, _ = GetConv(h.db, app, cid)
	if conv.LastMID != "m3" || conv.LastT != 1_500_000_300_000 || conv.LastData != "three" {
		t.Fatalf("last message: got %+v", conv.last())
	}
	for _, p := range []string{"alice", "bob"} {
		cur, _ := GetCursor(h.db, app, cid, p)
		if cur.Ack != conv.LastT || cur.Read != conv.LastT {
			t.Errorf("%s's cursor: got %+v, want both at %d", p, cur, conv.LastT)
		}
		if u, _ := CountUnread(h.db, app, cid, p, cur.Read); u.Count != 0 {
			t.Errorf("%s: %d unread, want 0", p, u.Count)
		}
	}
	// A live message is stamped after the imported history.
	r = h.must(&Command{Op: OpAppend, App: app, CID: cid, From: "alice", MID: "live", Data: "hi", Now: 1_400_000_000_000})
	if r.Message.T <= 1_500_000_300_000 {
		t.Fatalf("live message at %d, not after the imported ones", r.Message.T)
	}
}

// TestImportIsIdempotent: importing the same conversations and messages
// again, whole or in overlapping parts, changes no byte of the state.
func TestImportIsIdempotent(t *testing.T) {
	h := newHarness(t)
	convs := []ImportConv{
		{ID: "c1", Creator: "a", Members: []string{"a", "b"}, CreatedAt: 1000},
		{ID: "room", Creator: "a", Members: []string{"a", "b"}, Transient: true, CreatedAt: 1000},
		{ID: "sys", Creator: "a", System: true, CreatedAt: 1000, Attr: json.RawMessage(`{"name":"news"}`)},
	}
	var msgs []ImportMsg
	for i := range 30 {
		msgs = append(msgs, ImportMsg{ID: fmt.Sprintf("m%02d", i), From: "a", T: int64(2000 + i/3), Data: "x"})
	}
	h.must(importConvs(convs...))
	h.must(importMsgs("c1", msgs[:20]...))
	h.must(importMsgs("room", msgs...))
	before := dumpDB(t, h.db)

	r := h.must(importConvs(convs...))
	if len(r.Import.Created) != 0 || len(r.Import.Existing) != 3 {
		t.Fatalf("second conversation import: got %+v, want 3 existing", r.Import)
	}
	r = h.must(importMsgs("c1", msgs[:20]...))
	if r.Import.MsgsNew != 0 || r.Import.MsgsDup != 20 {
		t.Fatalf("second message import: got %+v, want 20 duplicates", r.Import)
	}
	if after := dumpDB(t, h.db); after != before {
		t.Fatal("a repeated import changed the state")
	}
	// Overlapping: the rest of c1's messages, with some already there and
	// one twice in the same command.
	r = h.must(importMsgs("c1", append(msgs[15:], msgs[25])...))
	if r.Import.MsgsNew != 10 || r.Import.MsgsDup != 6 {
		t.Fatalf("overlapping import: got %+v, want 10 new, 6 duplicates", r.Import)
	}
	got, _ := ListMessages(h.db, app, "c1", LogQuery{Limit: 100})
	if len(got) != 30 {
		t.Fatalf("c1 holds %d messages, want 30", len(got))
	}
	conv, _ := GetConv(h.db, app, "room")
	if conv.Members != nil || !conv.Transient || conv.LastMID != "m29" {
		t.Fatalf("room: got %+v", conv)
	}
}

// TestImportRefusals: a client cannot import; bad commands are refused
// whole; a conversation the state refuses is reported alone and written
// nowhere, and an existing conversation is never overwritten.
func TestImportRefusals(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpStart, App: app, CID: "live", From: "a", Members: []string{"b"}, Now: 1000})
	before := dumpDB(t, h.db)
	for name, c := range map[string]*Command{
		"not admin":    {Op: OpImport, App: app, Now: 1, Import: &ImportOp{Convs: []ImportConv{{ID: "x", CreatedAt: 1}}}},
		"empty":        {Op: OpImport, App: app, Now: 1, Admin: true, Import: &ImportOp{}},
		"nil":          {Op: OpImport, App: app, Now: 1, Admin: true},
		"both":         {Op: OpImport, App: app, CID: "live", Now: 1, Admin: true, Import: &ImportOp{Convs: []ImportConv{{ID: "x", CreatedAt: 1}}, Msgs: []ImportMsg{{ID: "m", T: 1}}}},
		"msg no id":    importMsgs("live", ImportMsg{From: "a", T: 5}, ImportMsg{ID: "ok", From: "a", T: 6}),
		"msg no t":     importMsgs("live", ImportMsg{ID: "m", From: "a"}),
		"unknown conv": importMsgs("nope", ImportMsg{ID: "m", From: "a", T: 5}),
		"too many":     importMsgs("live", make([]ImportMsg, MaxImportMsgs+1)...),
		"version 2":    {V: Version2, Op: OpImport, App: app, Now: 1, Admin: true, Import: &ImportOp{Convs: []ImportConv{{ID: "x", CreatedAt: 1}}}},
	} {
		if _, err := h.apply(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	big := `{"name":"` + strings.Repeat("x", MaxAttrBytes) + `"}`
	members := make([]string, MaxMembers+1)
	for i := range members {
		members[i] = fmt.Sprintf("u%d", i)
	}
	r := h.must(importConvs(
		ImportConv{ID: "live", Creator: "z", Members: []string{"z"}, CreatedAt: 5},
		ImportConv{ID: "big", Attr: json.RawMessage(big), CreatedAt: 5},
		ImportConv{ID: "full", Members: members, CreatedAt: 5},
		ImportConv{ID: "_tmp:abc", CreatedAt: 5},
		ImportConv{ID: "notime"},
	))
	if !slices.Equal(r.Import.Existing, []string{"live"}) || len(r.Import.Created) != 0 || len(r.Import.Refused) != 4 {
		t.Fatalf("got %+v, want live existing and 4 refused", r.Import)
	}
	if !errors.Is(r.Import.Refused[0].Err, ErrAttrTooLarge) || !errors.Is(r.Import.Refused[1].Err, ErrConvFull) {
		t.Fatalf("refusals: got %v, %v", r.Import.Refused[0].Err, r.Import.Refused[1].Err)
	}
	if after := dumpDB(t, h.db); after != before {
		t.Fatal("refused imports changed the state")
	}
	if NeedsVersion(&Command{Op: OpImport}) != Version3 {
		t.Fatal("OpImport does not need Version3")
	}
}

// dumpDB renders every key and value of db.
func dumpDB(t *testing.T, db Reader) string {
	t.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var b strings.Builder
	for it.First(); it.Valid(); it.Next() {
		fmt.Fprintf(&b, "%q=%q\n", it.Key(), it.Value())
	}
	return b.String()
}
