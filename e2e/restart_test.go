package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

func dial(t *testing.T, ctx context.Context, url, app, id string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, url, client.Options{AppID: app, ClientID: id, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestKill9KeepsAckedMessages: every message acked before `kill -9` of a
// relaymesh dev process is in history after it restarts on the same data.
func TestKill9KeepsAckedMessages(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startDev(t, dir, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Two senders, 50 messages each: within LeanCloud's 60 sends/min/client.
	a := dial(t, ctx, p.URL, "kill9-app", "alice")
	b := dial(t, ctx, p.URL, "kill9-app", "bob")
	cid, err := a.CreateConversation(ctx, []string{"bob"}, "durable", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	acked := make([]client.Sent, 0, n)
	for k := range n {
		from := a
		if k%2 == 1 {
			from = b
		}
		s, err := from.Send(ctx, cid, client.TextMessage(fmt.Sprintf("m%03d", k)), client.SendOptions{})
		if err != nil {
			t.Fatalf("send %d: %v", k, err)
		}
		acked = append(acked, s)
	}
	a.Close()
	b.Close()
	p.Kill9()

	p = startDev(t, dir, addr)
	b = dial(t, ctx, p.URL, "kill9-app", "bob")
	got := historyAll(t, ctx, b, cid)
	if len(got) != n {
		t.Fatalf("history after kill -9 has %d messages, want %d", len(got), n)
	}
	for k, m := range got {
		if m.ID != acked[k].ID || m.Timestamp != acked[k].Timestamp {
			t.Fatalf("history[%d] = %s@%d, want %s@%d", k, m.ID, m.Timestamp, acked[k].ID, acked[k].Timestamp)
		}
	}
}

// historyAll pages a conversation's whole history from the newest backwards
// and returns it oldest first.
func historyAll(t *testing.T, ctx context.Context, c *client.Client, cid string) []client.Message {
	t.Helper()
	var all []client.Message
	q := client.HistoryQuery{Limit: 100}
	for {
		page, err := c.History(ctx, cid, q)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		all = append(page, all...)
		if len(page) < q.Limit {
			return all
		}
		q.StartTS, q.StartMID = page[0].Timestamp, page[0].ID
	}
}
