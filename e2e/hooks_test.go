package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/push"
)

// dropMeHook is an app's _messageReceived hook, closed with the test: it
// drops a message whose text is "drop me" (code 42, "dropped by test") and
// passes any other unchanged.
func dropMeHook(t *testing.T) *httptest.Server {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev hooks.MessageReceived
		json.NewDecoder(r.Body).Decode(&ev)
		if ev.Content == "drop me" {
			json.NewEncoder(w).Encode(map[string]any{"drop": true, "code": 42, "detail": "dropped by test"})
			return
		}
		io.WriteString(w, "{}")
	}))
	t.Cleanup(hook.Close)
	return hook
}

// TestHooksFilterPush runs a relaymesh dev whose app has a _messageReceived
// hook and a push webhook: the shipped word list filters a group message, the
// hook's drop reaches the sender as 4402, and an offline member's push
// carries the message's pushData.
func TestHooksFilterPush(t *testing.T) {
	const app = "hooks-app-0001"
	hook := dropMeHook(t)
	pushes := make(chan push.Request, 16)
	var once sync.Once
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req push.Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			once.Do(func() { t.Errorf("push webhook body: %v", err) })
		}
		pushes <- req
	}))
	defer gw.Close()

	p := startDevConfig(t, `[[apps]]
id = "`+app+`"
master_key = "hooks-master"
push_webhook_url = "`+gw.URL+`"
[apps.hooks]
_messageReceived = "`+hook.URL+`"
`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := dial(t, ctx, p.URL, app, "alice")
	bob := dial(t, ctx, p.URL, app, "bob")
	// carol never logs in: she is offline.
	cid, err := alice.CreateConversation(ctx, []string{"bob", "carol"}, "group", nil, false)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := alice.Send(ctx, cid, "you bastard", client.SendOptions{PushData: `{"alert":"pushed by test"}`}); err != nil {
		t.Fatal(err)
	}
	for got := false; !got; {
		select {
		case ev := <-bob.Events():
			if m, ok := ev.(client.Message); ok && m.ConvID == cid {
				if m.Text != "you ***" {
					t.Errorf("bob got %q, want %q", m.Text, "you ***")
				}
				got = true
			}
		case <-ctx.Done():
			t.Fatal("bob got no message")
		}
	}

	select {
	case req := <-pushes:
		if req.AppID != app || req.ConvID != cid || len(req.To) != 1 || req.To[0] != "carol" || string(req.Payload) != `{"alert":"pushed by test"}` {
			t.Errorf("push: got %+v payload %s, want to [carol] with the pushData", req, req.Payload)
		}
	case <-ctx.Done():
		t.Fatal("no push webhook call")
	}

	_, err = alice.Send(ctx, cid, "drop me", client.SendOptions{})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != hooks.CodeMessageRejected || ce.AppCode != 42 {
		t.Fatalf("dropped send: got %v, want error 4402 with appCode 42", err)
	}
}
