package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// TestAckFloodThenRead: acks and reads are answered once queued at the
// core (core/cursors.go), yet a client sees its own. Over the raw protocol,
// one socket write floods 2,000 acks (no i) across four conversations,
// mixed with acks the core must drop (a conversation alice is not in, one
// that does not exist, unknown message ids), then a read of all four and
// an echo; the echo is answered, and a login on a new connection right
// after shows nothing unread, where the same login before showed 3 in each.
// With 1 and 3 shards, limits off so every ack reaches the core.
func TestAckFloodThenRead(t *testing.T) { withShards(t, testAckFloodThenRead) }

func testAckFloodThenRead(t *testing.T, shards int) {
	d, addr := startUnlimited(t, shards)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const app = "ackflood"
	owner := dial(t, ctx, d.Edge.URL, app, "owner")
	var cids []string
	var ts []int64 // each conversation's last message
	for i := range 4 {
		cid, err := owner.CreateConversation(ctx, []string{"alice"}, fmt.Sprintf("c%d", i), nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var last client.Sent
		for k := range 3 {
			if last, err = owner.Send(ctx, cid, fmt.Sprintf("m%d", k), client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cids, ts = append(cids, cid), append(ts, last.Timestamp)
	}
	notAlices, err := owner.CreateConversation(ctx, []string{"bob"}, "not alice's", nil, false)
	if err != nil {
		t.Fatal(err)
	}

	// unreadOnLogin logs alice in on a new connection and returns her
	// unread counts by conversation.
	unreadOnLogin := func() map[string]int32 {
		w := dialTCPWS(t, addr)
		defer w.nc.Close()
		w.write(openCmd(app, "alice"))
		var opened, unread bool
		got := map[string]int32{}
		for !opened || !unread {
			c := w.nextAny()
			switch c.GetCmd() {
			case lcpb.CommandType_session:
				if c.GetOp() != lcpb.OpType_opened {
					t.Fatalf("login: got %v/%v %v", c.GetCmd(), c.GetOp(), c.GetErrorMessage())
				}
				opened = true
			case lcpb.CommandType_unread:
				unread = true
				for _, u := range c.GetUnreadMessage().GetConvs() {
					got[u.GetCid()] = u.GetUnread()
				}
			}
		}
		return got
	}
	before := unreadOnLogin()
	for _, cid := range cids {
		if before[cid] != 3 {
			t.Fatalf("before the flood: %d unread in %s, want 3 (%v)", before[cid], cid, before)
		}
	}

	alice := dialTCPWS(t, addr)
	alice.login(app, "alice")
	ack := func(cid, mid string, tots int64) *lcpb.GenericCommand {
		a := &lcpb.AckCommand{Cid: proto.String(cid)}
		if mid != "" {
			a.Mid = proto.String(mid)
		}
		if tots != 0 {
			a.Tots = proto.Int64(tots)
		}
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: a}
	}
	var cmds []*lcpb.GenericCommand
	for i := range 500 {
		for k, cid := range cids {
			cmds = append(cmds, ack(cid, "", ts[k]-int64(i%3)))
		}
		if i%50 == 0 {
			cmds = append(cmds, ack(notAlices, "", ts[0]), ack("no-such-conversation", "", 1),
				ack(cids[0], fmt.Sprintf("no-such-message-%d", i), 0))
		}
	}
	cmds = append(cmds,
		&lcpb.GenericCommand{Cmd: lcpb.CommandType_read.Enum(), ReadMessage: &lcpb.ReadCommand{Cids: cids}},
		&lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(9)})
	alice.write(cmds...)
	if c := alice.next(); c.GetCmd() != lcpb.CommandType_echo || c.GetI() != 9 {
		t.Fatalf("after the flood: got %v %v, want the echo (nothing answers an ack or read)", c.GetCmd(), c.GetErrorMessage())
	}
	after := unreadOnLogin()
	for _, cid := range cids {
		if after[cid] != 0 {
			t.Fatalf("a login right after the read: %d unread in %s, want 0 (%v)", after[cid], cid, after)
		}
	}
	if n := edgeMetric(t, addr, "relaymesh_edge_async_commands_total"); n < float64(len(cmds)-1) {
		t.Fatalf("%v acks and reads went to the core, want %d", n, len(cmds)-1)
	}
}
