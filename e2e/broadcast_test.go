package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// collectUntil gathers c's messages that match keep until one with id
// stop arrives (kept too), failing after 10 s.
func collectUntil(t *testing.T, c *client.Client, stop string, keep func(client.Message) bool) []client.Message {
	t.Helper()
	var got []client.Message
	for {
		m := nextEvent(t, c, func(m client.Message) bool { return keep(m) || m.ID == stop })
		got = append(got, m)
		if m.ID == stop {
			return got
		}
	}
}

func msgIDs(ms []client.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// TestGlobalBroadcast (issue 8, "Global broadcast reaches only
// subscribers"): POST /1.2/rtm/broadcasts goes to every user of the app,
// online now or at their next login while unexpired; a first login gets
// only the newest valid one; a user online when it was sent does not get it
// again; a subscribers' broadcast stays with the subscribers; a transient
// one reaches the online sessions only, flagged transient.
func TestGlobalBroadcast(t *testing.T) {
	const app = "global-bcast-0001"
	p := startDev(t, filepath.Join(t.TempDir(), "data"), freeAddr(t), "--rest-broadcasts-per-day", "-1")
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: "anything,master"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var conv map[string]any
	api.must("POST", "/1.2/rtm/service-conversations", map[string]any{"name": "news"}, &conv)
	cid := conv["objectId"].(string)
	type sent struct {
		ID string `json:"msg-id"`
		TS int64  `json:"timestamp"`
	}
	global := func(msg string, extra map[string]any) sent {
		body := map[string]any{"conv_id": cid, "from_client": "sys", "message": msg}
		for k, v := range extra {
			body[k] = v
		}
		var s sent
		api.must("POST", "/1.2/rtm/broadcasts", body, &s)
		return s
	}
	marker := func(to, msg string) sent {
		var s sent
		api.must("POST", "/1.2/rtm/service-conversations/"+cid+"/messages",
			map[string]any{"from_client": "sys", "to_clients": []string{to}, "message": msg}, &s)
		return s
	}
	fromSys := func(m client.Message) bool { return m.From == "sys" && m.ConvID == cid }

	sub := dial(t, ctx, p.URL, app, "sub")
	if err := sub.Join(ctx, cid); err != nil {
		t.Fatal(err)
	}
	olive := dial(t, ctx, p.URL, app, "olive") // online, never subscribes
	away := dial(t, ctx, p.URL, app, "away")   // logs in once, then away
	away.Close()

	// A subscribers' broadcast: sub gets it, olive does not.
	var subOnly sent
	api.must("POST", "/1.2/rtm/service-conversations/"+cid+"/broadcasts", map[string]any{"from_client": "sys", "message": "subscribers"}, &subOnly)
	nextEvent(t, sub, func(m client.Message) bool { return m.ID == subOnly.ID })

	// A global broadcast that expires before away comes back.
	short := global("short-lived", map[string]any{"valid_till": time.Now().Add(time.Second).UnixMilli()})
	g1 := global("first for all", nil)
	for _, c := range []*client.Client{sub, olive} {
		if got := collectUntil(t, c, g1.ID, fromSys); c == olive && !slices.Equal(msgIDs(got), []string{short.ID, g1.ID}) {
			t.Errorf("olive live: got %v, want the two global broadcasts %v (not the subscribers' %s)", msgIDs(got), []string{short.ID, g1.ID}, subOnly.ID)
		}
	}
	g2 := global("second for all", nil)
	tr := global("typing…", map[string]any{"transient": true})
	for _, c := range []*client.Client{sub, olive} {
		got := nextEvent(t, c, func(m client.Message) bool { return m.ID == tr.ID })
		if !got.Transient || got.ConvType != 3 {
			t.Errorf("%s: transient global broadcast: got transient=%v convType=%d, want true, 3", c.ID(), got.Transient, got.ConvType)
		}
	}
	var listed []struct {
		MsgID string `json:"msg-id"`
	}
	api.must("GET", "/1.2/rtm/broadcasts?conv_id="+cid, nil, &listed)
	for _, l := range listed {
		if l.MsgID == tr.ID {
			t.Errorf("the transient broadcast is listed as stored: %+v", listed)
		}
	}

	// Wait until the short one has expired, then away logs in: the unexpired
	// global broadcasts it missed, as offline messages, and nothing else.
	for time.Now().UnixMilli() <= short.TS+1000 {
		time.Sleep(50 * time.Millisecond)
	}
	away2 := dial(t, ctx, p.URL, app, "away")
	end := marker("away", "end")
	got := collectUntil(t, away2, end.ID, fromSys)
	if want := []string{g1.ID, g2.ID, end.ID}; !slices.Equal(msgIDs(got), want) {
		t.Errorf("away's login: got %v, want %v (g1, g2, then the marker)", msgIDs(got), want)
	}
	for _, m := range got[:len(got)-1] {
		if !m.Offline || m.Transient {
			t.Errorf("away's login: %s offline=%v transient=%v, want offline, not transient", m.ID, m.Offline, m.Transient)
		}
	}

	// olive was online for all of them: her next login repeats none.
	olive.Close()
	olive2 := dial(t, ctx, p.URL, app, "olive")
	end2 := marker("olive", "end")
	if got := collectUntil(t, olive2, end2.ID, fromSys); !slices.Equal(msgIDs(got), []string{end2.ID}) {
		t.Errorf("olive's second login: got %v, want only the marker %s", msgIDs(got), end2.ID)
	}

	// A brand new user: only the newest valid global broadcast.
	newbie := dial(t, ctx, p.URL, app, "newbie")
	end3 := marker("newbie", "end")
	if got := collectUntil(t, newbie, end3.ID, fromSys); !slices.Equal(msgIDs(got), []string{g2.ID, end3.ID}) {
		t.Errorf("first login: got %v, want the newest global broadcast %s then the marker", msgIDs(got), g2.ID)
	}

	// A deleted global broadcast is not delivered to those who missed it.
	gone := dial(t, ctx, p.URL, app, "gone")
	gone.Close()
	g3 := global("withdrawn", nil)
	api.must("DELETE", "/1.2/rtm/broadcasts/"+g3.ID, nil, nil)
	gone2 := dial(t, ctx, p.URL, app, "gone")
	end4 := marker("gone", "end")
	if got := collectUntil(t, gone2, end4.ID, fromSys); !slices.Equal(msgIDs(got), []string{end4.ID}) {
		t.Errorf("after the delete: got %v, want only the marker", msgIDs(got))
	}
}

// TestTransientFlagOnPushes (issue 8, "Transient messages arrive without
// transient"): every path that pushes a transient message marks it
// transient (Swift's isTransient and Java read the push's flag), and the
// same path without transient does not.
func TestTransientFlagOnPushes(t *testing.T) {
	const app = "transient-flag-0001"
	p := startDev(t, filepath.Join(t.TempDir(), "data"), freeAddr(t))
	api := restAPI{t: t, base: "http://" + p.Addr, app: app, key: "anything,master"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := dial(t, ctx, p.URL, app, "alice")
	bob := dial(t, ctx, p.URL, app, "bob")

	check := func(what, id string, want bool) {
		t.Helper()
		m := nextEvent(t, bob, func(m client.Message) bool { return m.ID == id })
		if m.Transient != want {
			t.Errorf("%s: bob's push transient=%v, want %v", what, m.Transient, want)
		}
	}
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "flags", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []bool{true, false} {
		s, err := alice.Send(ctx, cid, "hi", client.SendOptions{Transient: tr})
		if err != nil {
			t.Fatal(err)
		}
		check("conversation send", s.ID, tr)
	}

	room, err := alice.CreateChatRoom(ctx, "room", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	for _, tr := range []bool{true, false} {
		s, err := alice.Send(ctx, room, "in the room", client.SendOptions{Transient: tr})
		if err != nil {
			t.Fatal(err)
		}
		check("chatroom send", s.ID, tr)
	}

	type sent struct {
		ID string `json:"msg-id"`
	}
	for _, tr := range []bool{true, false} {
		var s sent
		api.must("POST", "/1.2/rtm/conversations/"+cid+"/messages", map[string]any{"from_client": "alice", "message": "rest", "transient": tr}, &s)
		check("REST conversation send", s.ID, tr)
	}

	var conv map[string]any
	api.must("POST", "/1.2/rtm/service-conversations", map[string]any{"name": "svc"}, &conv)
	svc := conv["objectId"].(string)
	var stored []string
	for _, tr := range []bool{true, false} {
		var s sent
		api.must("POST", "/1.2/rtm/service-conversations/"+svc+"/messages",
			map[string]any{"from_client": "sys", "to_clients": []string{"bob"}, "message": "to bob", "transient": tr}, &s)
		check("REST service message to a user", s.ID, tr)
		if !tr {
			stored = append(stored, s.ID)
		}
	}
	var rows []struct {
		MsgID string `json:"msg-id"`
	}
	api.must("GET", "/1.2/rtm/service-conversations/"+svc+"/subscribers/bob/messages", nil, &rows)
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.MsgID)
	}
	if !slices.Equal(ids, stored) {
		t.Errorf("bob's stored service messages: got %v, want only the non-transient %v", ids, stored)
	}
}
