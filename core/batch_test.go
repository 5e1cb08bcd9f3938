package core

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// runReq is a COMMAND request of c carrying cmds as a run.
func (c *client) runReq(cmds ...*lcpb.GenericCommand) *meshpb.ClientRequest {
	c.e.t.Helper()
	var raws [][]byte
	for _, g := range cmds {
		b, err := proto.Marshal(g)
		if err != nil {
			c.e.t.Fatal(err)
		}
		raws = append(raws, b)
	}
	r := c.req(meshpb.ClientRequest_COMMAND, raws[0])
	r.MoreCommands = raws[1:]
	c.i++
	r.IdempotencyKey = fmt.Sprintf("run-key-%d", c.i) // one per request, as the edge's
	return r
}

func runSend(i int32, cid, text string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(i),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}}
}

// TestCommandRunPrefix: a core answers the prefix of a run that is plain
// sends into the first one's conversation, says how many it answered, and
// stores them in order; a send refused in the middle is answered alone;
// a run that starts with something else is answered as a single command.
func TestCommandRunPrefix(t *testing.T) {
	e := newEnv(t)
	alice := e.client("alice")
	alice.open("", false, 0)
	c1 := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	c2 := alice.start([]string{"carol"}, "", false).GetConvMessage().GetCid()
	transient := runSend(6, c1, "t")
	transient.DirectMessage.Transient = proto.Bool(true)
	badDT := runSend(14, c1, "refused")
	badDT.DirectMessage.Dt = proto.String("a\x00b") // a dt never holds a NUL
	cases := []struct {
		name string
		cmds []*lcpb.GenericCommand
		done int32
		want []string // reply per answered command: ack or the error code
	}{
		{"one conversation", []*lcpb.GenericCommand{runSend(1, c1, "a"), runSend(2, c1, "b"), runSend(3, c1, "c")}, 3,
			[]string{"ack", "ack", "ack"}},
		{"stops at another conversation", []*lcpb.GenericCommand{runSend(4, c1, "d"), runSend(5, c2, "x"), runSend(7, c1, "e")}, 1,
			[]string{"ack"}},
		{"stops at a transient send", []*lcpb.GenericCommand{runSend(8, c1, "f"), transient}, 1, []string{"ack"}},
		{"stops at another command", []*lcpb.GenericCommand{runSend(9, c1, "g"),
			{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(10)}}, 1, []string{"ack"}},
		{"starts with another command", []*lcpb.GenericCommand{{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(11)},
			runSend(12, c1, "h")}, 1, []string{"echo"}},
		{"a refused send answered alone", []*lcpb.GenericCommand{runSend(13, c1, "i"), badDT,
			runSend(15, c1, "j")}, 3, []string{"ack", "error", "ack"}},
	}
	for _, tc := range cases {
		rep, err := e.core.HandleClient(context.Background(), alice.runReq(tc.cmds...))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rep.GetCommandsDone() != tc.done {
			t.Fatalf("%s: commands_done %d, want %d", tc.name, rep.GetCommandsDone(), tc.done)
		}
		out := decodeAll(t, rep)
		var got []string
		for k, g := range out {
			if g.GetI() != tc.cmds[k].GetI() {
				t.Fatalf("%s: reply %d has i=%d, want %d", tc.name, k, g.GetI(), tc.cmds[k].GetI())
			}
			got = append(got, g.GetCmd().String())
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Fatalf("%s: replies %v, want %v", tc.name, got, tc.want)
		}
	}
	var texts []string
	for _, l := range alice.logs(&lcpb.LogsCommand{Cid: proto.String(c1), Limit: proto.Int32(100)}) {
		texts = append(texts, l.GetData())
	}
	if want := "[a b c d f g i j]"; fmt.Sprint(texts) != want {
		t.Fatalf("c1 history %v, want %s", texts, want)
	}
}

// TestCommandRunRetried: a run sent again with the same idempotency key (the
// edge's retry at a new leader) is answered with the first acks, every
// send stored once.
func TestCommandRunRetried(t *testing.T) {
	e := newEnv(t)
	alice := e.client("alice")
	alice.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	req := alice.runReq(runSend(1, cid, "a"), runSend(2, cid, "b"), runSend(3, cid, "c"))
	var ids [2][]string
	for try := range 2 {
		rep, err := e.core.HandleClient(context.Background(), proto.Clone(req).(*meshpb.ClientRequest))
		if err != nil || rep.GetCommandsDone() != 3 {
			t.Fatalf("try %d: done %d, err %v", try, rep.GetCommandsDone(), err)
		}
		for _, g := range decodeAll(t, rep) {
			ids[try] = append(ids[try], g.GetAckMessage().GetUid())
		}
	}
	if fmt.Sprint(ids[0]) != fmt.Sprint(ids[1]) || len(ids[0]) != 3 {
		t.Fatalf("acks %v then %v, want the same three", ids[0], ids[1])
	}
	if n := len(alice.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)})); n != 3 {
		t.Fatalf("%d messages stored, want 3", n)
	}
}

// TestCommandRunBounded: a request carrying more sends than a round takes
// is answered for its first maxRunCommands; the rest are left to be sent
// again.
func TestCommandRunBounded(t *testing.T) {
	e := newEnv(t)
	alice := e.client("alice")
	alice.open("", false, 0)
	cid := alice.start([]string{"bob"}, "", false).GetConvMessage().GetCid()
	var cmds []*lcpb.GenericCommand
	for i := range int32(maxRunCommands + 36) {
		cmds = append(cmds, runSend(i+1, cid, fmt.Sprintf("m%d", i)))
	}
	rep, err := e.core.HandleClient(context.Background(), alice.runReq(cmds...))
	if err != nil {
		t.Fatal(err)
	}
	if d, n := rep.GetCommandsDone(), len(decodeAll(t, rep)); d != maxRunCommands || n != maxRunCommands {
		t.Fatalf("commands_done %d with %d replies, want %d of each", d, n, maxRunCommands)
	}
	if n := len(alice.logs(&lcpb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)})); n != maxRunCommands {
		t.Fatalf("%d messages stored, want %d", n, maxRunCommands)
	}
}
