package core

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// FuzzHandleClient feeds arbitrary command bytes to a logged-in session:
// the core must answer without panicking, and every reply must decode.
func FuzzHandleClient(f *testing.F) {
	seeds := []*lcpb.GenericCommand{
		{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: &lcpb.DirectCommand{Cid: proto.String("c"), Msg: proto.String("x")}},
		{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: &lcpb.LogsCommand{Cid: proto.String("c"), T: proto.Int64(-5)}},
		{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_query.Enum(), ConvMessage: &lcpb.ConvCommand{
			Where: &lcpb.JsonObjectMessage{Data: proto.String(`{"$or":[{"m":{"$size":"x"}}],"lm":{"$gt":{"__type":"Date"}}}`)}}},
		{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_update.Enum(), ConvMessage: &lcpb.ConvCommand{
			Cid: proto.String("c"), Attr: &lcpb.JsonObjectMessage{Data: proto.String(`{"a..b":1}`)}}},
		{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(), PatchMessage: &lcpb.PatchCommand{}},
	}
	for _, s := range seeds {
		b, _ := proto.Marshal(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e := newEnv(t)
		a := e.client("alice")
		a.open("", false, 0)
		cid := a.start([]string{"bob"}, `{"name":"n"}`, false).GetConvMessage().GetCid()
		rep, err := e.core.HandleClient(context.Background(), a.req(meshpb.ClientRequest_COMMAND, b))
		if err != nil {
			t.Fatal(err)
		}
		decodeAll(t, rep)
		// The same input in a run behind a plain send (core/batch.go):
		// answered as a prefix, each answer decodable.
		first, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(1),
			DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("first")}})
		run := a.req(meshpb.ClientRequest_COMMAND, first)
		run.MoreCommands, run.IdempotencyKey = [][]byte{b, b}, "fuzz-run"
		rep, err = e.core.HandleClient(context.Background(), run)
		if err != nil {
			t.Fatal(err)
		}
		if d := rep.GetCommandsDone(); d < 1 || d > 3 || len(rep.GetCommands()) > int(d) {
			t.Fatalf("a run of 3 answered with commands_done %d and %d replies", d, len(rep.GetCommands()))
		}
		decodeAll(t, rep)
	})
}
