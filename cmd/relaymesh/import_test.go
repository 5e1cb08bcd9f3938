package main

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

// TestImportCA: with --ca, an https relaymesh signed by a private CA is
// trusted; without it, the import fails on the certificate.
func TestImportCA(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		var body struct {
			Conversations []struct{ ObjectID string }
		}
		json.NewDecoder(r.Body).Decode(&body)
		created := []string{}
		for _, c := range body.Conversations {
			created = append(created, c.ObjectID)
		}
		json.NewEncoder(w).Encode(map[string]any{"created": created, "existing": []string{}, "refused": []any{}})
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(dir, "_Conversation.jsonl")
	os.WriteFile(export, []byte(`{"objectId":"5f1a2b3c4d5e6f7a8b9c0d1e","c":"alice","m":["alice"],"createdAt":"2021-01-01T00:00:00.000Z"}`+"\n"), 0o600)
	args := []string{"leancloud", "--conversations", export, "--server", srv.URL, "--app-id", "a", "--master-key", "k", "--state", "none"}
	if err := runImport(args); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without --ca: got %v, want a certificate error", err)
	}
	if err := runImport(append(args, "--ca", ca)); err != nil {
		t.Fatalf("with --ca: %v", err)
	}
	if posts.Load() != 1 {
		t.Fatalf("%d requests reached the server, want 1", posts.Load())
	}
}
