package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// loginSigner signs like an app server: HMAC-SHA1(masterKey,
// "appid:clientid::timestamp:nonce"), hex.
func loginSigner(app, masterKey string) client.SignFunc {
	return func(ctx context.Context, clientID string) (string, int64, string, error) {
		ts := time.Now().UnixMilli()
		nonce := fmt.Sprintf("n%d", ts)
		m := hmac.New(sha1.New, []byte(masterKey))
		fmt.Fprintf(m, "%s:%s::%d:%s", app, clientID, ts, nonce)
		return hex.EncodeToString(m.Sum(nil)), ts, nonce, nil
	}
}

// TestProductionRoles runs `relaymesh core` and `relaymesh edge` as separate
// processes from one config file, with certificates from `relaymesh pki`:
// the configured app works (with login signatures), any other appId gets
// LeanCloud's 4100, and an unsigned login 4102.
func TestProductionRoles(t *testing.T) {
	dir := t.TempDir()
	bin := relaymeshBin(t)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("relaymesh %v: %v\n%s", args, err, out)
		}
	}
	pki := filepath.Join(dir, "pki")
	run("pki", "init", "--dir", pki)
	run("pki", "issue", "--dir", pki, "--name", "core-1", "--hosts", "127.0.0.1")
	run("pki", "issue", "--dir", pki, "--name", "edge-1", "--hosts", "127.0.0.1")

	coreAddr := freeUDPAddr(t)
	edgeAddr := freeAddr(t)
	const app, master = "prod-app-0001", "prod-master-key"
	common := fmt.Sprintf(`data = "data"
session_token_key_file = "pki/session-token.key"

[[apps]]
id = %q
key = "prod-app-key"
master_key = %q
signature_required = true
`, app, master)
	writeCfg := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(common+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	coreCfg := writeCfg("core.toml", fmt.Sprintf(`
[tls]
ca = "pki/ca.crt"
cert = "pki/core-1.crt"
key = "pki/core-1.key"

[core]
node_id = "core-1"
mesh_addr = %q
`, coreAddr))
	edgeCfg := writeCfg("edge.toml", fmt.Sprintf(`
[tls]
ca = "pki/ca.crt"
cert = "pki/edge-1.crt"
key = "pki/edge-1.key"

[edge]
edge_id = "edge-1"
listen = %q
mesh_addr = "127.0.0.1:0"
cores = [%q]
`, edgeAddr, coreAddr))

	startProc(t, "", "core", "--config", coreCfg, "--log-level", "warn")
	e := startProc(t, edgeAddr, "edge", "--config", edgeCfg, "--log-level", "warn")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	noRetry := client.Options{NoReconnect: true}
	wantCode := func(what string, err error, code int32) {
		t.Helper()
		var le *client.Error
		if !errors.As(err, &le) || le.Code != code {
			t.Fatalf("%s: err %v, want LeanCloud error %d", what, err, code)
		}
	}
	o := noRetry
	o.AppID, o.ClientID = "some-other-app", "alice"
	_, err := client.Dial(ctx, e.URL, o)
	wantCode("unknown appId", err, lcpb.ErrAppNotAvailable)

	o.AppID = app
	_, err = client.Dial(ctx, e.URL, o)
	wantCode("unsigned login", err, lcpb.ErrSignatureFailed)

	o.Signature = loginSigner(app, "wrong-master-key")
	_, err = client.Dial(ctx, e.URL, o)
	wantCode("badly signed login", err, lcpb.ErrSignatureFailed)

	sign := loginSigner(app, master)
	alice, err := client.Dial(ctx, e.URL, client.Options{AppID: app, ClientID: "alice", Signature: sign})
	if err != nil {
		t.Fatalf("signed login: %v", err)
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, e.URL, client.Options{AppID: app, ClientID: "bob", Signature: sign})
	if err != nil {
		t.Fatalf("signed login: %v", err)
	}
	defer bob.Close()
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "prod", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.Send(ctx, cid, client.TextMessage("over core and edge processes"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-bob.Events():
			if m, ok := ev.(client.Message); ok && m.ID == sent.ID {
				return
			}
		case <-ctx.Done():
			t.Fatal("bob did not receive the message")
		}
	}
}
