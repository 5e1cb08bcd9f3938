package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportFlags: `relaymesh import leancloud` refuses incomplete command
// lines with a message naming what is missing, and runs a dry run on a
// small export (docs/MIGRATING-FROM-LEANCLOUD.md has the full flow; the
// e2e tests run it against a relaymesh).
func TestImportFlags(t *testing.T) {
	t.Setenv("LEANCLOUD_MASTER_KEY", "")
	t.Setenv("RELAYMESH_MASTER_KEY", "")
	export := filepath.Join(t.TempDir(), "_Conversation.jsonl")
	if err := os.WriteFile(export, []byte(`{"objectId":"5f1a2b3c4d5e6f7a8b9c0d1e","c":"alice","m":["alice","bob"],"createdAt":"2021-01-01T00:00:00.000Z"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string // in the error; "" succeeds
	}{
		{nil, "usage: relaymesh import leancloud"},
		{[]string{"parse"}, "usage: relaymesh import leancloud"},
		{[]string{"leancloud"}, "--conversations is required"},
		{[]string{"leancloud", "--conversations", export}, "writing needs --server, --app-id and --master-key"},
		{[]string{"leancloud", "--conversations", export, "--server", "http://127.0.0.1:1", "--app-id", "a"}, "--master-key"},
		{[]string{"leancloud", "--conversations", export, "--dry-run", "--leancloud-server", "http://127.0.0.1:1", "--app-id", "a"}, "--leancloud-master-key"},
		{[]string{"leancloud", "--conversations", export, "--dry-run", "--history", "x", "--leancloud-server", "http://127.0.0.1:1", "--app-id", "a", "--leancloud-master-key", "k"}, "not both"},
		{[]string{"leancloud", "--conversations", export, "--dry-run", "--save", "x"}, "--save needs"},
		{[]string{"leancloud", "--conversations", filepath.Join(t.TempDir(), "missing.jsonl"), "--dry-run"}, "no such file"},
		{[]string{"leancloud", "--conversations", export, "--server", "https://127.0.0.1:1", "--app-id", "a", "--master-key", "k", "--ca", export}, "no PEM certificates"},
		{[]string{"leancloud", "--conversations", export, "--dry-run"}, ""},
	} {
		err := runImport(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
