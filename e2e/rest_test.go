package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// restAPI calls the REST API of a relaymesh process.
type restAPI struct {
	t         *testing.T
	base, app string
	key       string // X-LC-Key
}

// call sends method path with body (JSON-encoded unless nil) and decodes
// the JSON answer into out (when not nil); it returns the status.
func (a restAPI) call(method, path string, body, out any) int {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("X-LC-Id", a.app)
	if a.key != "" {
		req.Header.Set("X-LC-Key", a.key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	a.t.Logf("%s %s -> %d %s", method, path, resp.StatusCode, raw)
	return resp.StatusCode
}

// must is call that fails the test unless the answer is 200.
func (a restAPI) must(method, path string, body, out any) {
	a.t.Helper()
	if status := a.call(method, path, body, out); status != http.StatusOK {
		a.t.Fatalf("%s %s: status %d, want 200", method, path, status)
	}
}

type restError struct {
	Code  int    `json:"code"`
	Error string `json:"error"`
}

// nextEvent returns the first event of type T from c, skipping others.
func nextEvent[T client.Event](t *testing.T, c *client.Client, pred func(T) bool) T {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: events closed", c.ID())
			}
			if v, ok := ev.(T); ok && pred(v) {
				return v
			}
		case <-timeout:
			var zero T
			t.Fatalf("%s: no %T in 10 s", c.ID(), zero)
		}
	}
}

// TestRESTAPI drives the REST API of a real `relaymesh dev` serving one app
// with keys, next to Go SDK clients on the same edge.
func TestRESTAPI(t *testing.T) {
	const app, key, masterKey = "rest-app-0001", "rest-app-key", "rest-master-key"
	p := startDevConfig(t, `[[apps]]
id = "`+app+`"
key = "`+key+`"
master_key = "`+masterKey+`"
`)
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: masterKey + ",master"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := dial(t, ctx, p.URL, app, "alice")
	bob := dial(t, ctx, p.URL, app, "bob")

	t.Run("auth errors", func(t *testing.T) {
		var e restError
		bad := restAPI{t: t, base: api.base, app: app, key: "wrong,master"}
		if status := bad.call("GET", "/1.2/rtm/conversations", nil, &e); status != 401 || e.Code != 401 || e.Error == "" {
			t.Errorf("wrong master key: got %d %+v, want 401 code 401", status, e)
		}
		appKey := restAPI{t: t, base: api.base, app: app, key: key}
		if status := appKey.call("GET", "/1.2/rtm/conversations", nil, &e); status != 403 || e.Code != 119 {
			t.Errorf("app key on a master route: got %d %+v, want 403 code 119", status, e)
		}
		unknown := restAPI{t: t, base: api.base, app: "no-such-app", key: masterKey + ",master"}
		if status := unknown.call("GET", "/1.2/rtm/conversations", nil, &e); status != 401 || e.Code != 401 {
			t.Errorf("unknown app: got %d %+v, want 401 code 401", status, e)
		}
	})

	// Create over REST; the Go SDK clients are members.
	var conv map[string]any
	api.must("POST", "/1.2/rtm/conversations", map[string]any{"name": "rest room", "m": []string{"alice", "bob"}, "c": "alice", "topic": "e2e"}, &conv)
	cid, _ := conv["objectId"].(string)
	if cid == "" || conv["name"] != "rest room" || conv["topic"] != "e2e" || conv["c"] != "alice" {
		t.Fatalf("create: got %v", conv)
	}
	var found struct {
		Results []map[string]any `json:"results"`
	}
	api.must("GET", "/1.2/rtm/conversations?where="+url.QueryEscape(`{"m":"bob","topic":"e2e"}`), nil, &found)
	if len(found.Results) != 1 || found.Results[0]["objectId"] != cid {
		t.Fatalf("query: got %v, want the created conversation", found.Results)
	}

	t.Run("send reaches online members", func(t *testing.T) {
		var sent struct {
			ID string `json:"msg-id"`
			TS int64  `json:"timestamp"`
		}
		text := client.TextMessage("from the server")
		api.must("POST", "/1.2/rtm/conversations/"+cid+"/messages", map[string]any{"from_client": "system", "message": text}, &sent)
		if sent.ID == "" || sent.TS == 0 {
			t.Fatalf("send: got %+v", sent)
		}
		for _, c := range []*client.Client{alice, bob} {
			m := nextEvent(t, c, func(m client.Message) bool { return m.ID == sent.ID })
			if m.From != "system" || m.Text != text || m.Timestamp != sent.TS || m.ConvID != cid {
				t.Errorf("%s got %+v, want %s from system at %d", c.ID(), m, text, sent.TS)
			}
		}
		// no_sync: alice's own sessions do not get what is sent as alice.
		api.must("POST", "/1.2/rtm/conversations/"+cid+"/messages", map[string]any{"from_client": "alice", "message": "quiet", "no_sync": true}, &sent)
		nextEvent(t, bob, func(m client.Message) bool { return m.ID == sent.ID })
		var marker struct {
			ID string `json:"msg-id"`
		}
		api.must("POST", "/1.2/rtm/conversations/"+cid+"/messages", map[string]any{"from_client": "system", "message": "marker"}, &marker)
		if m := nextEvent(t, alice, func(client.Message) bool { return true }); m.ID != marker.ID {
			t.Errorf("alice got %s (%q) before the marker: no_sync leaked to the sender", m.ID, m.Text)
		}
	})

	t.Run("history matches what the SDK sent", func(t *testing.T) {
		var acked []client.Sent
		for _, s := range []string{"one", "two", "three"} {
			sent, err := bob.Send(ctx, cid, client.TextMessage(s), client.SendOptions{})
			if err != nil {
				t.Fatal(err)
			}
			acked = append(acked, sent)
		}
		type row struct {
			Timestamp int64  `json:"timestamp"`
			ConvID    string `json:"conv-id"`
			Data      string `json:"data"`
			From      string `json:"from"`
			MsgID     string `json:"msg-id"`
			IsConv    bool   `json:"is-conv"`
			To        string `json:"to"`
			Bin       *bool  `json:"bin"`
		}
		var rows []row
		api.must("GET", "/1.2/rtm/conversations/"+cid+"/messages?limit=3", nil, &rows)
		if len(rows) != 3 {
			t.Fatalf("history: %d rows, want 3", len(rows))
		}
		for i, r := range rows { // newest first
			want := acked[2-i]
			if r.MsgID != want.ID || r.Timestamp != want.Timestamp || r.From != "bob" || r.ConvID != cid || r.To != cid || !r.IsConv || r.Bin == nil || *r.Bin {
				t.Errorf("history[%d] = %+v, want %s@%d from bob", i, r, want.ID, want.Timestamp)
			}
		}
		var older []row
		api.must("GET", "/1.2/rtm/conversations/"+cid+"/messages?limit=2&msgid="+rows[1].MsgID+"&timestamp="+strconv.FormatInt(rows[1].Timestamp, 10), nil, &older)
		if len(older) != 2 || older[0].MsgID != acked[0].ID {
			t.Errorf("page before %s: got %+v, want %s first", rows[1].MsgID, older, acked[0].ID)
		}
		var oldest []row
		api.must("GET", "/1.2/rtm/conversations/"+cid+"/messages?reversed=true&limit=1", nil, &oldest)
		if len(oldest) != 1 || oldest[0].From != "system" {
			t.Errorf("reversed: got %+v, want the first message (from system)", oldest)
		}
	})

	t.Run("edit and recall reach members", func(t *testing.T) {
		sent, err := bob.Send(ctx, cid, client.TextMessage("typo"), client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		api.must("PUT", "/1.2/rtm/conversations/"+cid+"/messages/"+sent.ID, map[string]any{"from_client": "bob", "message": client.TextMessage("fixed"), "timestamp": sent.Timestamp}, nil)
		if p := nextEvent(t, alice, func(p client.Patch) bool { return p.ID == sent.ID }); p.Text != client.TextMessage("fixed") || p.Recall {
			t.Errorf("edit: alice got %+v", p)
		}
		api.must("PUT", "/1.2/rtm/conversations/"+cid+"/messages/"+sent.ID+"/recall", map[string]any{"from_client": "bob", "timestamp": sent.Timestamp}, nil)
		if p := nextEvent(t, alice, func(p client.Patch) bool { return p.ID == sent.ID && p.Recall }); p.From != "bob" {
			t.Errorf("recall: alice got %+v", p)
		}
	})

	t.Run("members, update, unread", func(t *testing.T) {
		carol := dial(t, ctx, p.URL, app, "carol")
		api.must("POST", "/1.2/rtm/conversations/"+cid+"/members", map[string]any{"client_ids": []string{"carol"}}, nil)
		nextEvent(t, carol, func(e client.ConvEvent) bool { return e.Op == "joined" && e.ConvID == cid })
		var members struct {
			Result []string `json:"result"`
		}
		api.must("GET", "/1.2/rtm/conversations/"+cid+"/members", nil, &members)
		if len(members.Result) != 3 {
			t.Errorf("members: got %v, want alice, bob, carol", members.Result)
		}
		var upd map[string]any
		api.must("PUT", "/1.2/rtm/conversations/"+cid, map[string]any{"name": "renamed"}, &upd)
		if upd["objectId"] != cid || upd["updatedAt"] == nil {
			t.Errorf("update: got %v", upd)
		}
		nextEvent(t, bob, func(e client.ConvEvent) bool { return e.Op == "updated" && e.ConvID == cid })
		api.must("DELETE", "/1.2/rtm/conversations/"+cid+"/members", map[string]any{"client_ids": []string{"carol"}}, nil)
		nextEvent(t, carol, func(e client.ConvEvent) bool { return e.Op == "left" && e.ConvID == cid })

		// bob has read nothing: everyone else's messages are unread (app key).
		var unread struct {
			Count int `json:"count"`
		}
		appKey := restAPI{t: t, base: api.base, app: app, key: key}
		appKey.must("GET", "/1.2/rtm/clients/bob/unread-count?conv_id="+cid, nil, &unread)
		if unread.Count != 3 { // system twice, alice once (no_sync)
			t.Errorf("bob's unread: got %d, want 3", unread.Count)
		}
	})

	t.Run("check-online and kick", func(t *testing.T) {
		var online struct {
			Results []string `json:"results"`
		}
		api.must("POST", "/1.2/rtm/clients/check-online", map[string]any{"client_ids": []string{"alice", "bob", "nobody"}}, &online)
		if len(online.Results) != 2 || online.Results[0] != "alice" || online.Results[1] != "bob" {
			t.Errorf("check-online: got %v, want [alice bob]", online.Results)
		}
		api.must("POST", "/1.2/rtm/clients/bob/kick", map[string]any{"reason": "bye"}, nil)
		if ev := nextEvent(t, bob, func(client.Closed) bool { return true }); ev.Code != 4115 {
			t.Errorf("kicked bob: got %+v, want code 4115", ev)
		}
		waitFor(t, 5*time.Second, func() bool {
			api.must("POST", "/1.2/rtm/clients/check-online", map[string]any{"client_ids": []string{"alice", "bob"}}, &online)
			return len(online.Results) == 1 && online.Results[0] == "alice"
		})
	})

	t.Run("delete", func(t *testing.T) {
		api.must("DELETE", "/1.2/rtm/conversations/"+cid, nil, nil)
		var e restError
		if status := api.call("GET", "/1.2/rtm/conversations/"+cid+"/messages", nil, &e); status != 404 || e.Code != 4303 {
			t.Errorf("history after delete: got %d %+v, want 404 code 4303", status, e)
		}
		if _, err := alice.Send(ctx, cid, "late", client.SendOptions{}); err == nil {
			t.Error("send to a deleted conversation succeeded")
		}
	})
}
