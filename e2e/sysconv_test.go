package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// TestSystemConversations drives service conversations through the REST
// API of a real `relaymesh dev` and Go SDK clients.
func TestSystemConversations(t *testing.T) {
	const app = "sysconv-app-0001"
	dir := t.TempDir()
	p := startDev(t, filepath.Join(dir, "data"), freeAddr(t), "--rest-broadcasts-per-day", "3")
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: "anything,master"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var conv map[string]any
	api.must("POST", "/1.2/rtm/service-conversations", map[string]any{"name": "news"}, &conv)
	cid, _ := conv["objectId"].(string)
	if cid == "" || conv["sys"] != true || conv["name"] != "news" {
		t.Fatalf("create: got %v, want a row with sys:true", conv)
	}

	alice := dial(t, ctx, p.URL, app, "alice")
	bob := dial(t, ctx, p.URL, app, "bob")
	carol := dial(t, ctx, p.URL, app, "carol") // never subscribes
	for _, c := range []*client.Client{alice, bob} {
		if err := c.Join(ctx, cid); err != nil {
			t.Fatalf("%s subscribe: %v", c.ID(), err)
		}
	}
	var count struct {
		Count int `json:"count"`
	}
	api.must("GET", "/1.2/rtm/service-conversations/"+cid+"/subscribers/count", nil, &count)
	if count.Count != 2 {
		t.Errorf("subscribers: got %d, want 2", count.Count)
	}

	type sent struct {
		ID string `json:"msg-id"`
		TS int64  `json:"timestamp"`
	}
	t.Run("broadcast reaches subscribers", func(t *testing.T) {
		var s sent
		api.must("POST", "/1.2/rtm/service-conversations/"+cid+"/broadcasts", map[string]any{"from_client": "sys", "message": "hello all"}, &s)
		for _, c := range []*client.Client{alice, bob} {
			m := nextEvent(t, c, func(m client.Message) bool { return m.ID == s.ID })
			if m.Text != "hello all" || m.From != "sys" || m.ConvID != cid {
				t.Errorf("%s got %+v", c.ID(), m)
			}
		}
	})

	t.Run("targeted send reaches a non-subscriber", func(t *testing.T) {
		var s sent
		api.must("POST", "/1.2/rtm/service-conversations/"+cid+"/messages",
			map[string]any{"from_client": "sys", "to_clients": []string{"carol"}, "message": "just you"}, &s)
		m := nextEvent(t, carol, func(m client.Message) bool { return m.ID == s.ID })
		if m.Text != "just you" {
			t.Errorf("carol got %+v", m)
		}
	})

	t.Run("user message is stored for the server only", func(t *testing.T) {
		out, err := alice.Send(ctx, cid, "to the service", client.SendOptions{})
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		var rows []struct {
			MsgID string `json:"msg-id"`
			From  string `json:"from"`
			Data  string `json:"data"`
		}
		api.must("GET", "/1.2/rtm/service-conversations/"+cid+"/messages", nil, &rows)
		if len(rows) != 1 || rows[0].MsgID != out.ID || rows[0].From != "alice" || rows[0].Data != "to the service" {
			t.Errorf("stored: got %+v, want alice's message %s", rows, out.ID)
		}
		// bob must not get it: the next message bob sees is the marker.
		var marker sent
		api.must("POST", "/1.2/rtm/service-conversations/"+cid+"/messages",
			map[string]any{"from_client": "sys", "to_clients": []string{"bob"}, "message": "marker"}, &marker)
		if m := nextEvent(t, bob, func(client.Message) bool { return true }); m.ID != marker.ID {
			t.Errorf("bob got %s (%q) before the marker: a user's message was delivered", m.ID, m.Text)
		}
	})

	t.Run("offline subscriber gets the broadcast on login", func(t *testing.T) {
		bob.Close()
		var s sent
		api.must("POST", "/1.2/rtm/service-conversations/"+cid+"/broadcasts", map[string]any{"from_client": "sys", "message": "while away"}, &s)
		bob2 := dial(t, ctx, p.URL, app, "bob")
		nextEvent(t, bob2, func(m client.Message) bool { return m.ID == s.ID })
		dave := dial(t, ctx, p.URL, app, "dave") // first login: the latest unexpired broadcast
		nextEvent(t, dave, func(m client.Message) bool { return m.ID == s.ID })
	})

	t.Run("daily limit", func(t *testing.T) {
		// Two broadcasts so far, the limit is 3.
		api.must("POST", "/1.2/rtm/broadcasts", map[string]any{"conv_id": cid, "from_client": "sys", "message": "third"}, nil)
		var e restError
		if status := api.call("POST", "/1.2/rtm/service-conversations/"+cid+"/broadcasts",
			map[string]any{"from_client": "sys", "message": "fourth"}, &e); status != http.StatusTooManyRequests || e.Code != 4318 {
			t.Errorf("over the limit: got %d %+v, want 429 code 4318", status, e)
		}
	})
}
