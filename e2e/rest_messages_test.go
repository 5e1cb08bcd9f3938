package e2e

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/hooks"
)

// TestRESTMessages drives message operations of the REST API on a real
// `relaymesh dev` whose app has a _messageReceived hook: a REST send passes
// the hook, a REST edit is filtered, a REST delete removes the server copy
// from REST history and from the Go SDK's history query, and the dev's
// /metrics carries the core's and the hooks' series.
func TestRESTMessages(t *testing.T) {
	const app, masterKey = "rest-msg-app-01", "rest-msg-master"
	hook := dropMeHook(t)
	p := startDevConfig(t, `[[apps]]
id = "`+app+`"
master_key = "`+masterKey+`"
[apps.hooks]
_messageReceived = "`+hook.URL+`"
`)
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: masterKey + ",master"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := dial(t, ctx, p.URL, app, "alice")

	var conv map[string]any
	api.must("POST", "/1.2/rtm/conversations", map[string]any{"name": "group", "m": []string{"alice", "bob", "carol"}}, &conv)
	cid, _ := conv["objectId"].(string)
	if cid == "" {
		t.Fatalf("create: got %v", conv)
	}
	type sent struct {
		ID string `json:"msg-id"`
		TS int64  `json:"timestamp"`
	}
	send := func(text string) sent {
		t.Helper()
		var s sent
		api.must("POST", "/1.2/rtm/conversations/"+cid+"/messages", map[string]any{"from_client": "system", "message": text}, &s)
		return s
	}
	type row struct {
		MsgID string `json:"msg-id"`
		Data  string `json:"data"`
	}
	restHistory := func() map[string]string {
		t.Helper()
		var rows []row
		api.must("GET", "/1.2/rtm/conversations/"+cid+"/messages", nil, &rows)
		out := map[string]string{}
		for _, r := range rows {
			out[r.MsgID] = r.Data
		}
		return out
	}

	one, two, three := send("one"), send("two"), send("three")

	t.Run("delete removes the server copy", func(t *testing.T) {
		var e restError
		path := "/1.2/rtm/conversations/" + cid + "/messages/" + two.ID
		if status := api.call("DELETE", path+"?from_client=system&timestamp="+strconv.FormatInt(two.TS+1, 10), nil, &e); status != 404 || e.Code != 4404 {
			t.Errorf("delete with a wrong timestamp: got %d %+v, want 404 code 4404", status, e)
		}
		var empty map[string]any
		api.must("DELETE", path+"?from_client=system&timestamp="+strconv.FormatInt(two.TS, 10), nil, &empty)
		if len(empty) != 0 {
			t.Errorf("delete: got %v, want {}", empty)
		}
		if h := restHistory(); len(h) != 2 || h[one.ID] != "one" || h[three.ID] != "three" {
			t.Errorf("REST history: got %v, want one and three", h)
		}
		msgs, err := alice.History(ctx, cid, client.HistoryQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].ID != one.ID || msgs[1].ID != three.ID {
			t.Errorf("SDK history: got %+v, want one and three", msgs)
		}
		if status := api.call("DELETE", path, nil, &e); status != 404 || e.Code != 4404 {
			t.Errorf("second delete: got %d %+v, want 404 code 4404", status, e)
		}
	})

	t.Run("send passes _messageReceived", func(t *testing.T) {
		var e restError
		status := api.call("POST", "/1.2/rtm/conversations/"+cid+"/messages", map[string]any{"from_client": "system", "message": "drop me"}, &e)
		if status != 400 || e.Code != hooks.CodeMessageRejected {
			t.Errorf("dropped send: got %d %+v, want 400 code 4402", status, e)
		}
		if h := restHistory(); len(h) != 2 {
			t.Errorf("history after a dropped send: got %v, want 2 messages", h)
		}
	})

	t.Run("edit is filtered", func(t *testing.T) {
		var empty map[string]any
		api.must("PUT", "/1.2/rtm/conversations/"+cid+"/messages/"+one.ID,
			map[string]any{"from_client": "system", "message": "you bastard", "timestamp": one.TS}, &empty)
		if h := restHistory(); h[one.ID] != "you ***" {
			t.Errorf("edited message: got %q, want %q", h[one.ID], "you ***")
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get(api.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		text := string(b)
		for _, re := range []string{
			`(?m)^relaymesh_edge_sessions 1$`,
			`(?m)^# TYPE relaymesh_hook_calls_total counter$`,
			`(?m)^relaymesh_hook_calls_total\{hook="_messageReceived"\} 4$`, // 3 sends + the dropped one
			`(?m)^relaymesh_hook_drops_total\{hook="_messageReceived"\} 1$`,
			`(?m)^relaymesh_core_filtered_messages_total 1$`,
			`(?m)^relaymesh_core_relay_dropped_total\{priority="low"\} 0$`,
			`(?m)^relaymesh_core_deliveries_total [1-9][0-9]*$`,
			`(?m)^relaymesh_push_queue_waiting 0$`,
		} {
			if !regexp.MustCompile(re).MatchString(text) {
				t.Errorf("/metrics lacks %s; got:\n%s", re, text)
			}
		}
	})
}
