package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// leanCode is the LeanCloud code of a client error, 0 for success or a
// non-LeanCloud error.
func leanCode(err error) int32 {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// TestRESTModeration drives the moderation endpoints of a real `relaymesh
// dev` (permanent-silenceds, temporary-silenceds, member-infos, blacklists,
// /clients/{id}/blacklists) and checks their effect through Go SDK clients.
func TestRESTModeration(t *testing.T) {
	const app = "rest-moderation"
	p := startDev(t, filepath.Join(t.TempDir(), "data"), freeAddr(t))
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: "any,master"} // dev: any master key
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice := dial(t, ctx, p.URL, app, "alice")
	bob := dial(t, ctx, p.URL, app, "bob")
	carol := dial(t, ctx, p.URL, app, "carol")

	var conv map[string]any
	api.must("POST", "/1.2/rtm/conversations", map[string]any{"name": "moderated", "m": []string{"alice", "bob", "carol"}, "c": "alice"}, &conv)
	cid, _ := conv["objectId"].(string)
	if cid == "" {
		t.Fatalf("create: got %v", conv)
	}
	base := "/1.2/rtm/conversations/" + cid
	send := func(c *client.Client) error {
		_, err := c.Send(ctx, cid, client.TextMessage("hello from "+c.ID()), client.SendOptions{})
		return err
	}
	type idPage struct {
		ClientIDs []string `json:"client_ids"`
		Next      string   `json:"next"`
	}

	t.Run("permanent-silenceds", func(t *testing.T) {
		if err := send(bob); err != nil {
			t.Fatalf("bob before the ban: %v", err)
		}
		var empty map[string]any
		api.must("POST", base+"/permanent-silenceds", map[string]any{"client_ids": []string{"bob", "carol"}}, &empty)
		if len(empty) != 0 {
			t.Errorf("POST answer: got %v, want {}", empty)
		}
		if err := send(bob); leanCode(err) != 4563 {
			t.Errorf("bob silenced: send got %v, want code 4563", err)
		}
		if err := send(alice); err != nil {
			t.Errorf("alice is not silenced: %v", err)
		}
		var pg idPage
		api.must("GET", base+"/permanent-silenceds?limit=1", nil, &pg)
		if !slices.Equal(pg.ClientIDs, []string{"bob"}) || pg.Next == "" {
			t.Fatalf("first page: got %+v, want [bob] and a next", pg)
		}
		var pg2 idPage
		api.must("GET", base+"/permanent-silenceds?limit=1&next="+url.QueryEscape(pg.Next), nil, &pg2)
		if !slices.Equal(pg2.ClientIDs, []string{"carol"}) || pg2.Next != "" {
			t.Errorf("second page: got %+v, want [carol] and no next", pg2)
		}
		api.must("DELETE", base+"/permanent-silenceds", map[string]any{"client_ids": []string{"bob", "carol"}}, nil)
		if err := send(bob); err != nil {
			t.Errorf("bob after DELETE: %v", err)
		}
		api.must("GET", base+"/permanent-silenceds", nil, &pg)
		if len(pg.ClientIDs) != 0 {
			t.Errorf("after DELETE: got %+v, want none", pg)
		}
	})

	t.Run("temporary-silenceds", func(t *testing.T) {
		var e restError
		for _, ttl := range []int{0, 86401} {
			if status := api.call("POST", base+"/temporary-silenceds", map[string]any{"client_id": "bob", "ttl": ttl}, &e); status != http.StatusBadRequest {
				t.Errorf("ttl %d: got %d %+v, want 400", ttl, status, e)
			}
		}
		// Lifted by DELETE.
		api.must("POST", base+"/temporary-silenceds", map[string]any{"client_id": "bob", "ttl": 3600}, nil)
		if err := send(bob); leanCode(err) != 4563 {
			t.Errorf("bob temporarily silenced: send got %v, want code 4563", err)
		}
		api.must("DELETE", base+"/temporary-silenceds?client_id=bob", nil, nil)
		if err := send(bob); err != nil {
			t.Errorf("bob after DELETE: %v", err)
		}
		// Ends by itself.
		start := time.Now()
		api.must("POST", base+"/temporary-silenceds", map[string]any{"client_id": "carol", "ttl": 2}, nil)
		if err := send(carol); leanCode(err) != 4563 {
			if time.Since(start) < time.Second { // not explained by a slow machine
				t.Errorf("carol temporarily silenced: send got %v, want code 4563", err)
			}
		}
		waitFor(t, 15*time.Second, func() bool { return send(carol) == nil })
	})

	t.Run("member-infos", func(t *testing.T) {
		var set struct {
			UpdatedAt string `json:"updatedAt"`
			ObjectID  string `json:"objectId"`
		}
		api.must("POST", base+"/member-infos", map[string]any{"clientId": "bob", "role": "Manager"}, &set)
		if set.UpdatedAt == "" || set.ObjectID == "" {
			t.Fatalf("POST: got %+v, want updatedAt and objectId", set)
		}
		nextEvent(t, carol, func(e client.ConvEvent) bool { return e.Op == "member_info_changed" && e.ConvID == cid })
		type row struct {
			ClientID string `json:"clientId"`
			ObjectID string `json:"objectId"`
			Role     string `json:"role"`
		}
		var got struct {
			Results []row `json:"results"`
		}
		api.must("GET", base+"/member-infos", nil, &got)
		want := []row{{"alice", "", "Owner"}, {"bob", set.ObjectID, "Manager"}}
		if len(got.Results) != 2 || got.Results[1] != want[1] || got.Results[0].ClientID != "alice" || got.Results[0].Role != "Owner" {
			t.Errorf("GET: got %+v, want %+v", got.Results, want)
		}
		api.must("GET", base+"/member-infos?role=Manager", nil, &got)
		if len(got.Results) != 1 || got.Results[0] != want[1] {
			t.Errorf("GET role=Manager: got %+v, want only bob", got.Results)
		}
		var classes struct {
			Results []struct {
				ClientID string `json:"clientId"`
				Role     string `json:"role"`
				ObjectID string `json:"objectId"`
			} `json:"results"`
		}
		api.must("GET", "/1.1/classes/_ConversationMemberInfo?where="+url.QueryEscape(`{"cid":"`+cid+`","clientId":"bob"}`), nil, &classes)
		if len(classes.Results) != 1 || classes.Results[0].Role != "Manager" || classes.Results[0].ObjectID != set.ObjectID {
			t.Errorf("_ConversationMemberInfo: got %+v, want bob Manager %s", classes.Results, set.ObjectID)
		}

		var e restError
		if status := api.call("POST", base+"/member-infos", map[string]any{"clientId": "bob", "role": "Owner"}, &e); status != http.StatusBadRequest {
			t.Errorf("role Owner: got %d %+v, want 400", status, e)
		}
		if status := api.call("PUT", base+"/member-infos/nope", map[string]any{"role": "Member"}, &e); status != http.StatusNotFound {
			t.Errorf("unknown info: got %d %+v, want 404", status, e)
		}
		api.must("PUT", base+"/member-infos/"+set.ObjectID, map[string]any{"role": "Member"}, nil)
		api.must("GET", base+"/member-infos?role=Manager", nil, &got)
		if len(got.Results) != 0 {
			t.Errorf("after PUT Member: got %+v, want no Manager", got.Results)
		}
		api.must("POST", base+"/member-infos", map[string]any{"clientId": "carol", "role": "Manager"}, &set)
		api.must("DELETE", base+"/member-infos/"+set.ObjectID, nil, nil)
		api.must("GET", "/1.1/classes/_ConversationMemberInfo?where="+url.QueryEscape(`{"cid":"`+cid+`"}`), nil, &classes)
		if len(classes.Results) != 1 || classes.Results[0].ClientID != "alice" {
			t.Errorf("after DELETE: got %+v, want only the Owner", classes.Results)
		}
	})

	members := func() []string {
		var m struct {
			Result []string `json:"result"`
		}
		api.must("GET", base+"/members", nil, &m)
		return m.Result
	}

	t.Run("blacklists", func(t *testing.T) {
		api.must("POST", base+"/blacklists", map[string]any{"client_ids": []string{"carol"}}, nil)
		if m := members(); slices.Contains(m, "carol") {
			t.Errorf("members after blacklisting carol: %v", m)
		}
		var pg idPage
		api.must("GET", base+"/blacklists", nil, &pg)
		if !slices.Equal(pg.ClientIDs, []string{"carol"}) {
			t.Errorf("GET: got %+v, want [carol]", pg)
		}
		if err := carol.Join(ctx, cid); leanCode(err) != lcpb.ErrConversationBlacklisted {
			t.Errorf("carol joins while blacklisted: got %v, want code %d", err, lcpb.ErrConversationBlacklisted)
		}
		if err := send(carol); err == nil {
			t.Error("carol sent to a conversation she was blacklisted from")
		}
		api.must("DELETE", base+"/blacklists", map[string]any{"client_ids": []string{"carol"}}, nil)
		if err := carol.Join(ctx, cid); err != nil {
			t.Errorf("carol joins after DELETE: %v", err)
		}

		// The same through /clients/{id}/blacklists.
		api.must("POST", "/1.2/rtm/clients/carol/blacklists", map[string]any{"conv_id": cid}, nil)
		if m := members(); slices.Contains(m, "carol") {
			t.Errorf("members after /clients/carol/blacklists: %v", m)
		}
		if err := carol.Join(ctx, cid); leanCode(err) != lcpb.ErrConversationBlacklisted {
			t.Errorf("carol joins while blacklisted: got %v", err)
		}
		api.must("DELETE", "/1.2/rtm/clients/carol/blacklists", map[string]any{"conv_id": cid}, nil)
		if err := carol.Join(ctx, cid); err != nil {
			t.Errorf("carol joins after DELETE: %v", err)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var st struct {
			Result struct {
				Online int `json:"online_user_count"`
				Today  int `json:"user_count_today"`
			} `json:"result"`
		}
		api.must("GET", "/1.2/rtm/stats", nil, &st)
		if st.Result.Online != 3 || st.Result.Today != 3 {
			t.Errorf("with alice, bob and carol online: got %+v, want 3 and 3", st.Result)
		}
		alice.Close()
		waitFor(t, 10*time.Second, func() bool {
			api.must("GET", "/1.2/rtm/stats", nil, &st)
			return st.Result.Online == 2
		})
		if st.Result.Today != 3 {
			t.Errorf("after alice left: got %+v, want 2 online and 3 today", st.Result)
		}
	})

	t.Run("chatroom permanent-silenceds", func(t *testing.T) {
		var room map[string]any
		api.must("POST", "/1.2/rtm/chatrooms", map[string]any{"name": "room"}, &room)
		rid, _ := room["objectId"].(string)
		if err := bob.Join(ctx, rid); err != nil {
			t.Fatal(err)
		}
		api.must("POST", "/1.2/rtm/chatrooms/"+rid+"/permanent-silenceds", map[string]any{"client_ids": []string{"bob"}}, nil)
		if _, err := bob.Send(ctx, rid, "hi", client.SendOptions{}); leanCode(err) != 4563 {
			t.Errorf("bob silenced in the chatroom: got %v, want 4563", err)
		}
		api.must("DELETE", "/1.2/rtm/chatrooms/"+rid+"/permanent-silenceds", map[string]any{"client_ids": []string{"bob"}}, nil)
		if _, err := bob.Send(ctx, rid, "hi", client.SendOptions{}); err != nil {
			t.Errorf("bob after DELETE: %v", err)
		}
	})

	t.Run("chatroom blacklists cut off a session already joined", func(t *testing.T) {
		var room map[string]any
		api.must("POST", "/1.2/rtm/chatrooms", map[string]any{"name": "guarded"}, &room)
		rid, _ := room["objectId"].(string)
		// Fresh clients: the others have used their 60 sends a minute.
		bob, carol := dial(t, ctx, p.URL, app, "erin"), dial(t, ctx, p.URL, app, "frank")
		for _, c := range []*client.Client{bob, carol} {
			if err := c.Join(ctx, rid); err != nil {
				t.Fatal(err)
			}
		}
		api.must("POST", "/1.2/rtm/chatrooms/"+rid+"/blacklists", map[string]any{"client_ids": []string{"erin"}}, nil)
		if _, err := bob.Send(ctx, rid, "let me talk", client.SendOptions{}); leanCode(err) != 4315 {
			t.Errorf("blacklisted erin's send: got %v, want 4315", err)
		}
		if _, err := carol.Send(ctx, rid, "not for bob", client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		api.must("DELETE", "/1.2/rtm/chatrooms/"+rid+"/blacklists", map[string]any{"client_ids": []string{"erin"}}, nil)
		marker, err := carol.Send(ctx, rid, "marker", client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := nextEvent(t, bob, func(m client.Message) bool { return m.ConvID == rid })
		if m.ID != marker.ID {
			t.Errorf("erin got %q while blacklisted; want the first message after the unblock to be the marker", m.Text)
		}
	})
}
