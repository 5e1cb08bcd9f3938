package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
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
	const app, master = "prod-app-0001", "prod-master-key"
	c := startProcCluster(t, procOptions{Cores: 1, Edges: 1, NoMetrics: true,
		App: fmt.Sprintf("id = %q\nkey = \"prod-app-key\"\nmaster_key = %q\nsignature_required = true\n", app, master)})
	e := c.edges[0]

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
