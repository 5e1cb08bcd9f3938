package core

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func (e *env) importJSON(cid string, v any) (*meshpb.ClientReply, importOutcome) {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	rep, _ := e.admin("", &meshpb.AdminRequest{Op: meshpb.AdminRequest_IMPORT, Cid: cid, ImportJson: b}, nil)
	var out importOutcome
	if rep.GetErrorCode() == 0 {
		if err := json.Unmarshal(rep.GetAdmin().GetImportJson(), &out); err != nil {
			e.t.Fatalf("import reply: %v", err)
		}
	}
	return rep, out
}

// TestAdminImport: the server API imports conversations with their ids
// and messages with theirs; ids that name a relaymesh shard, malformed
// clientIds and oversized input are refused before anything is proposed.
func TestAdminImport(t *testing.T) {
	e := newEnv(t)
	const lc = "5f1a2b3c4d5e6f7a8b9c0d1e"
	ours, err := catalog.NewConvID(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep, out := e.importJSON(lc, shard.ImportOp{Convs: []shard.ImportConv{
		{ID: lc, Creator: "alice", Members: []string{"alice", "bob"}, CreatedAt: 1_600_000_000_000},
		{ID: ours, Creator: "alice", CreatedAt: 1},
		{ID: "bad id", CreatedAt: 1},
		{ID: "5f1a2b3c4d5e6f7a8b9c0d1f", Members: []string{"has:colon"}, CreatedAt: 1},
		{ID: "5f1a2b3c4d5e6f7a8b9c0d20", Attr: json.RawMessage(`{"name":"` + strings.Repeat("x", shard.MaxAttrBytes) + `"}`), CreatedAt: 1},
	}})
	wantReplyOK(t, "import conversations", rep)
	if len(out.Created) != 1 || out.Created[0] != lc || len(out.Refused) != 4 {
		t.Fatalf("got %+v, want %s created and 4 refused", out, lc)
	}
	for _, r := range out.Refused {
		if r.Code == 0 || r.Error == "" {
			t.Errorf("refusal without a code or reason: %+v", r)
		}
	}
	msgs := shard.ImportOp{Msgs: []shard.ImportMsg{{ID: "qNkRkFWOeSqP65S9fDyHJw", From: "bob", T: 1_600_000_000_500, Data: "hello"}}}
	rep, out = e.importJSON(lc, msgs)
	wantReplyOK(t, "import messages", rep)
	if out.New != 1 || out.Dup != 0 {
		t.Fatalf("got %+v, want 1 new", out)
	}
	_, out = e.importJSON(lc, msgs)
	if out.New != 0 || out.Dup != 1 {
		t.Fatalf("again: got %+v, want 1 duplicate", out)
	}
	for name, v := range map[string]shard.ImportOp{
		"bad sender": {Msgs: []shard.ImportMsg{{ID: "m", From: "", T: 5}}},
		"no time":    {Msgs: []shard.ImportMsg{{ID: "m", From: "bob"}}},
		"huge":       {Msgs: []shard.ImportMsg{{ID: "m", From: "bob", T: 5, Data: strings.Repeat("x", maxImportData+1)}}},
		"bad msg id": {Msgs: []shard.ImportMsg{{ID: "a b", From: "bob", T: 5}}},
		"both":       {Convs: []shard.ImportConv{{ID: "x", CreatedAt: 1}}, Msgs: []shard.ImportMsg{{ID: "m", From: "bob", T: 5}}},
		"none":       {},
		"many":       {Msgs: make([]shard.ImportMsg, shard.MaxImportMsgs+1)},
	} {
		if rep, _ := e.importJSON(lc, v); rep.GetErrorCode() == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
	if rep, _ := e.importJSON(ours, msgs); rep.GetErrorCode() == 0 {
		t.Error("messages into an id of ours: accepted")
	}
	if rep, _ := e.importJSON("5f1a2b3c4d5e6f7a8b9c0d99", msgs); rep.GetErrorCode() == 0 {
		t.Error("messages into an unknown conversation: accepted")
	}
	rep, _ = e.admin("", &meshpb.AdminRequest{Op: meshpb.AdminRequest_IMPORT, ImportJson: []byte(`{"convs":[`)}, nil)
	if rep.GetErrorCode() == 0 {
		t.Error("malformed JSON: accepted")
	}
}

// TestAdminImportPinnedVersion: a core pinned below shard.Version3 refuses
// an import as bad input (4301, which the REST API answers with 400 and the
// importer does not retry), naming the setting, and proposes nothing.
func TestAdminImportPinnedVersion(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.CommandVersion = shard.Version2 })
	const lc = "5f1a2b3c4d5e6f7a8b9c0d1e"
	rep, _ := e.importJSON(lc, shard.ImportOp{Convs: []shard.ImportConv{{ID: lc, Creator: "alice", Members: []string{"alice"}, CreatedAt: 1}}})
	if rep.GetErrorCode() != 4301 || !strings.Contains(rep.GetErrorReason(), "command_version") {
		t.Fatalf("got code %d %q, want 4301 naming command_version", rep.GetErrorCode(), rep.GetErrorReason())
	}
	// Raised to the current version, the same import goes through.
	e2 := newEnv(t)
	rep, out := e2.importJSON(lc, shard.ImportOp{Convs: []shard.ImportConv{{ID: lc, Creator: "alice", Members: []string{"alice"}, CreatedAt: 1}}})
	wantReplyOK(t, "import at the current version", rep)
	if len(out.Created) != 1 {
		t.Fatalf("got %+v, want one created", out)
	}
}
