package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/hooks"
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
	})

	t.Run("daily limit", func(t *testing.T) {
		// Two broadcasts so far, the limit is 3. The third is global: carol,
		// online and no subscriber, gets it, and so does dave's first login.
		var third sent
		api.must("POST", "/1.2/rtm/broadcasts", map[string]any{"conv_id": cid, "from_client": "sys", "message": "third"}, &third)
		nextEvent(t, carol, func(m client.Message) bool { return m.ID == third.ID })
		dave := dial(t, ctx, p.URL, app, "dave")
		if m := nextEvent(t, dave, func(m client.Message) bool { return m.From == "sys" }); m.ID != third.ID || !m.Offline {
			t.Errorf("dave's first login: got %s %q offline=%v, want the global broadcast %s, offline", m.ID, m.Text, m.Offline, third.ID)
		}
		var e restError
		if status := api.call("POST", "/1.2/rtm/service-conversations/"+cid+"/broadcasts",
			map[string]any{"from_client": "sys", "message": "fourth"}, &e); status != http.StatusTooManyRequests || e.Code != 4318 {
			t.Errorf("over the limit: got %d %+v, want 429 code 4318", status, e)
		}
	})
}

// TestSysWebhookAndStoredMessages drives the service webhook, per-user
// messages, broadcast delete and edit, and the subscription listings
// through a real `relaymesh dev` configured with a sys_webhook_url.
func TestSysWebhookAndStoredMessages(t *testing.T) {
	const app, master = "syshook-app-0001", "sys-master"
	type element struct {
		FromIP string `json:"fromIp"`
		Conv   struct {
			Type      string `json:"__type"`
			ClassName string `json:"className"`
			ObjectID  string `json:"objectId"`
		} `json:"conv"`
		MsgID     string `json:"msgId"`
		From      string `json:"from"`
		Bin       bool   `json:"bin"`
		Data      string `json:"data"`
		CreatedAt struct {
			Type string `json:"__type"`
			ISO  string `json:"iso"`
		} `json:"createdAt"`
		UpdatedAt struct {
			Type string `json:"__type"`
			ISO  string `json:"iso"`
		} `json:"updatedAt"`
		Timestamp int64 `json:"timestamp"`
	}
	got := make(chan element, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := hooks.Verify(r, master); err != nil {
			t.Errorf("webhook signature: %v", err)
		}
		var batch []element
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		for _, e := range batch {
			got <- e
		}
	}))
	defer hook.Close()

	p := startDevConfig(t, "[[apps]]\nid = \""+app+"\"\nmaster_key = \""+master+"\"\nsys_webhook_url = \""+hook.URL+"\"\n")
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: master + ",master"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := "/1.2/rtm/service-conversations/"

	var conv map[string]any
	api.must("POST", "/1.2/rtm/service-conversations", map[string]any{"name": "support"}, &conv)
	cid, _ := conv["objectId"].(string)

	// dialIn logs id in, subscribed to cid.
	dialIn := func(id string) *client.Client {
		c := dial(t, ctx, p.URL, app, id)
		if err := c.Join(ctx, cid); err != nil {
			t.Fatalf("%s subscribe: %v", id, err)
		}
		return c
	}
	type sent struct {
		ID string `json:"msg-id"`
		TS int64  `json:"timestamp"`
	}
	alice, bob := dialIn("alice"), dialIn("bob")

	t.Run("user message goes to the webhook only", func(t *testing.T) {
		out, err := alice.Send(ctx, cid, "help me", client.SendOptions{})
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		select {
		case e := <-got:
			if e.MsgID != out.ID || e.From != "alice" || e.Data != "help me" || e.Bin || e.FromIP != "" ||
				e.Conv.ObjectID != cid || e.Conv.ClassName != "_Conversation" || e.Conv.Type != "Pointer" ||
				e.CreatedAt.Type != "Date" || e.UpdatedAt.ISO != e.CreatedAt.ISO || e.Timestamp != out.Timestamp {
				t.Errorf("webhook element: got %+v, want alice's %s at %d", e, out.ID, out.Timestamp)
			}
			if ts, err := time.Parse(time.RFC3339Nano, e.CreatedAt.ISO); err != nil || ts.UnixMilli() != out.Timestamp {
				t.Errorf("createdAt %q: want the message's time %d", e.CreatedAt.ISO, out.Timestamp)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the webhook got nothing in 10 s")
		}
		var marker sent
		api.must("POST", base+cid+"/messages", map[string]any{"from_client": "svc", "to_clients": []string{"bob"}, "message": "marker"}, &marker)
		if m := nextEvent(t, bob, func(client.Message) bool { return true }); m.ID != marker.ID {
			t.Errorf("bob got %s (%q) before the marker: a user's message was delivered", m.ID, m.Text)
		}
		// Each message once: bob's own message is the positive control. The
		// webhook's workers give no order between posts, so the counters
		// decide: a message is counted when queued (before its ack) and
		// again when its post succeeds, before the next element reaches got.
		// Once both counts are 2 and got holds only bob's, a repeat of
		// alice's would have been counted or seen.
		second, err := bob.Send(ctx, cid, "me too", client.SendOptions{})
		if err != nil {
			t.Fatalf("bob's send: %v", err)
		}
		select {
		case e := <-got:
			if e.MsgID != second.ID || e.From != "bob" {
				t.Errorf("the webhook got %+v, want bob's %s: each message once", e, second.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the webhook did not get bob's message in 10 s")
		}
		metrics := func() string {
			resp, err := http.Get(api.base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		waitFor(t, 10*time.Second, func() bool { return strings.Contains(metrics(), "\nrelaymesh_sys_webhook_sent_total 2\n") })
		select {
		case e := <-got:
			t.Errorf("the webhook got a third element %+v, want each message once", e)
		default:
		}
		b := metrics()
		for _, want := range []string{"\nrelaymesh_sys_webhook_enqueued_total 2\n", "\nrelaymesh_sys_webhook_sent_total 2\n",
			"\nrelaymesh_sys_webhook_lost_total 0\n"} {
			if !strings.Contains(b, want) {
				t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
			}
		}
	})

	t.Run("per-user messages are stored, listed, deleted and delivered on login", func(t *testing.T) {
		var gone, kept sent
		api.must("POST", base+cid+"/messages", map[string]any{"from_client": "svc", "to_clients": []string{"dave"}, "message": "deleted"}, &gone)
		api.must("POST", base+cid+"/messages", map[string]any{"from_client": "svc", "to_clients": []string{"dave"}, "message": "kept"}, &kept)
		var rows []struct {
			MsgID     string `json:"msg-id"`
			ConvID    string `json:"conv-id"`
			From      string `json:"from"`
			Data      string `json:"data"`
			Timestamp int64  `json:"timestamp"`
		}
		api.must("GET", base+cid+"/subscribers/dave/messages", nil, &rows)
		if len(rows) != 2 || rows[0].MsgID != kept.ID || rows[1].MsgID != gone.ID || rows[0].ConvID != cid || rows[0].Data != "kept" || rows[0].From != "svc" {
			t.Fatalf("dave's messages: got %+v, want kept then deleted, newest first", rows)
		}
		var e restError
		if status := api.call("DELETE", base+cid+"/subscribers/dave/messages/"+gone.ID+"?from_client=svc&timestamp="+strconv.FormatInt(gone.TS+1, 10), nil, &e); status == http.StatusOK {
			t.Errorf("delete with a wrong timestamp: got 200, want an error")
		}
		api.must("DELETE", base+cid+"/subscribers/dave/messages/"+gone.ID+"?from_client=svc&timestamp="+strconv.FormatInt(gone.TS, 10), nil, nil)
		api.must("GET", base+cid+"/subscribers/dave/messages", nil, &rows)
		if len(rows) != 1 || rows[0].MsgID != kept.ID {
			t.Errorf("dave's messages after the delete: got %+v, want kept only", rows)
		}
		dave := dial(t, ctx, p.URL, app, "dave")
		m := nextEvent(t, dave, func(m client.Message) bool { return m.From == "svc" })
		if m.ID != kept.ID || m.Text != "kept" || !m.Offline || m.ConvID != cid {
			t.Errorf("dave's first message from svc: got %+v, want the kept one, offline", m)
		}
	})

	t.Run("deleted broadcast is not delivered, edited one is delivered edited", func(t *testing.T) {
		erin := dialIn("erin")
		erin.Close()
		var b1, b2 sent
		api.must("POST", "/1.2/rtm/broadcasts", map[string]any{"conv_id": cid, "from_client": "sys", "message": "withdrawn"}, &b1)
		api.must("DELETE", "/1.2/rtm/broadcasts/"+b1.ID, nil, nil)
		api.must("POST", "/1.2/rtm/broadcasts", map[string]any{"conv_id": cid, "from_client": "sys", "message": "original"}, &b2)
		api.must("PUT", base+cid+"/messages/"+b2.ID, map[string]any{"from_client": "sys", "message": "edited"}, nil)
		var list []struct {
			MsgID  string `json:"msg-id"`
			ConvID string `json:"conv-id"`
			Data   string `json:"data"`
		}
		api.must("GET", "/1.2/rtm/broadcasts?conv_id="+cid, nil, &list)
		if len(list) != 1 || list[0].MsgID != b2.ID || list[0].Data != "edited" || list[0].ConvID != cid {
			t.Errorf("valid broadcasts: got %+v, want the edited one only", list)
		}
		erin2 := dial(t, ctx, p.URL, app, "erin")
		m := nextEvent(t, erin2, func(m client.Message) bool { return m.From == "sys" && m.ConvID == cid })
		if m.ID != b2.ID || m.Text != "edited" {
			t.Errorf("erin's first broadcast: got %s %q, want %s \"edited\"", m.ID, m.Text, b2.ID)
		}
		var e restError
		if status := api.call("DELETE", "/1.2/rtm/broadcasts/nope", nil, &e); status == http.StatusOK {
			t.Error("deleting an unknown broadcast: got 200, want an error")
		}
	})

	t.Run("subscriber and subscription listings", func(t *testing.T) {
		type row struct {
			Timestamp  int64  `json:"timestamp"`
			Subscriber string `json:"subscriber"`
			ConvID     string `json:"conv_id"`
		}
		var all []row
		for after := ""; ; {
			var page []row
			q := "?limit=2"
			if after != "" {
				q += "&client_id=" + after
			}
			api.must("GET", base+cid+"/subscribers"+q, nil, &page)
			if len(page) > 2 {
				t.Fatalf("page of %d, want at most 2", len(page))
			}
			all = append(all, page...)
			if len(page) < 2 {
				break
			}
			after = page[len(page)-1].Subscriber
		}
		var names []string
		for _, r := range all {
			names = append(names, r.Subscriber)
			if r.ConvID != cid || r.Timestamp == 0 {
				t.Errorf("row %+v: want conv_id %s and a timestamp", r, cid)
			}
		}
		slices.Sort(names)
		if want := []string{"alice", "bob", "erin"}; !slices.Equal(names, want) {
			t.Errorf("subscribers: got %v, want %v", names, want)
		}
		var subs []row
		api.must("GET", "/1.2/rtm/clients/alice/service-conversations", nil, &subs)
		if len(subs) != 1 || subs[0].ConvID != cid || subs[0].Subscriber != "alice" {
			t.Errorf("alice's subscriptions: got %+v, want %s", subs, cid)
		}
		api.must("GET", "/1.2/rtm/clients/alice/service-conversations?conv_id="+cid+"&timestamp="+strconv.FormatInt(subs[0].Timestamp, 10), nil, &subs)
		if len(subs) != 0 {
			t.Errorf("after the last row: got %+v, want none", subs)
		}
	})
}
