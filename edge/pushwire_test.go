package edge

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// referencePush is what Deliver did before pushwire.go: decode the command,
// read its fields, drop peerId, set service when unset, encode again.
func referencePush(b []byte) (f cmdFields, shared *lcpb.GenericCommand, ok bool) {
	cmd := new(lcpb.GenericCommand)
	if err := decodeOpts.Unmarshal(b, cmd); err != nil {
		return f, nil, false
	}
	f = cmdFields{cmd: cmd.GetCmd(), peer: cmd.PeerId != nil, service: cmd.Service != nil,
		transient: cmd.GetDirectMessage().GetTransient(), timestamp: cmd.GetDirectMessage().GetTimestamp()}
	if cmd.Service == nil {
		cmd.Service = proto.Int32(lcpb.ServiceIM)
	}
	cmd.PeerId = nil
	return f, cmd, true
}

// checkPushWire compares scanCommand, sharedPush and completeReply with
// decoding and encoding for one input.
func checkPushWire(t *testing.T, b []byte) {
	t.Helper()
	want, wantShared, refOK := referencePush(b)
	got, ok := scanCommand(b)
	if !refOK {
		// Leniency is allowed only below the fields the edge reads: the
		// top level and directMessage must still parse.
		if ok && !skeletonParses(b) {
			t.Fatalf("scanCommand accepted %x, which does not parse", b)
		}
		return
	}
	if !ok {
		t.Fatalf("scanCommand refused %x, which parses", b)
	}
	if got != want {
		t.Fatalf("scanCommand(%x) = %+v, decoding gives %+v", b, got, want)
	}
	sh := new(lcpb.GenericCommand)
	if err := decodeOpts.Unmarshal(sharedPush(b, got), sh); err != nil {
		t.Fatalf("sharedPush(%x) does not parse: %v", b, err)
	}
	if !proto.Equal(sh, wantShared) {
		t.Fatalf("sharedPush(%x) decodes to %v, want %v", b, sh, wantShared)
	}
	withPeer := new(lcpb.GenericCommand)
	if err := decodeOpts.Unmarshal(withPeerID(sharedPush(b, got), "peer-1"), withPeer); err != nil || withPeer.GetPeerId() != "peer-1" {
		t.Fatalf("a copy of %x: peerId %q, err %v", b, withPeer.GetPeerId(), err)
	}
	// A reply keeps its own peerId and service; missing ones are added.
	rep := new(lcpb.GenericCommand)
	orig := bytes.Clone(b)
	if err := decodeOpts.Unmarshal(completeReply(b, got, "me"), rep); err != nil {
		t.Fatalf("completeReply(%x) does not parse: %v", b, err)
	}
	ref := new(lcpb.GenericCommand)
	_ = decodeOpts.Unmarshal(b, ref)
	if ref.PeerId == nil {
		ref.PeerId = proto.String("me")
	}
	if ref.Service == nil {
		ref.Service = proto.Int32(lcpb.ServiceIM)
	}
	if !proto.Equal(rep, ref) {
		t.Fatalf("completeReply(%x) decodes to %v, want %v", b, rep, ref)
	}
	if !bytes.Equal(b, orig) {
		t.Fatalf("the input was changed")
	}
}

// skeletonParses: the top level and directMessage are well-formed fields.
func skeletonParses(b []byte) bool {
	for len(b) > 0 {
		num, typ, v, n := nextField(b)
		if n < 0 {
			return false
		}
		if num == fieldDirect && typ == protowire.BytesType {
			inner, _ := protowire.ConsumeBytes(v)
			for len(inner) > 0 {
				_, _, _, m := nextField(inner)
				if m < 0 {
					return false
				}
				inner = inner[m:]
			}
		}
		b = b[n:]
	}
	return true
}

func pushWireSeeds(t testing.TB) [][]byte {
	enc := func(c *lcpb.GenericCommand) []byte {
		b, err := encodeOpts.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	direct := lcpb.CommandType_direct
	seeds := [][]byte{
		enc(&lcpb.GenericCommand{Cmd: &direct, PeerId: proto.String("bob"), DirectMessage: &lcpb.DirectCommand{
			Msg: proto.String("hi"), Cid: proto.String("c1"), Id: proto.String("m1"), Timestamp: proto.Int64(1700000000123), Transient: proto.Bool(true)}}),
		enc(&lcpb.GenericCommand{Cmd: &direct, Service: proto.Int32(2), DirectMessage: &lcpb.DirectCommand{Timestamp: proto.Int64(-5)}}),
		enc(&lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), I: proto.Int32(7), AckMessage: &lcpb.AckCommand{Uid: proto.String("m1")}}),
		enc(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_joined.Enum(), PeerId: proto.String("x"), Service: proto.Int32(0)}),
	}
	// Wire oddities proto2 allows: a field twice (last wins), directMessage
	// in two parts (merged), a known number with the wrong wire type, an
	// unknown field, a value outside the enum.
	twice := protowire.AppendTag(nil, fieldCmd, protowire.VarintType)
	twice = protowire.AppendVarint(twice, uint64(lcpb.CommandType_ack))
	twice = append(twice, seeds[0]...)
	dm := func(num protowire.Number, v uint64) []byte {
		inner := protowire.AppendTag(nil, num, protowire.VarintType)
		inner = protowire.AppendVarint(inner, v)
		b := protowire.AppendTag(nil, fieldDirect, protowire.BytesType)
		return protowire.AppendBytes(b, inner)
	}
	merged := append(append(bytes.Clone(seeds[1]), dm(fieldDirectTrans, 1)...), dm(fieldDirectTS, 99)...)
	wrongType := protowire.AppendTag(bytes.Clone(seeds[2]), fieldPeerID, protowire.VarintType)
	wrongType = protowire.AppendVarint(wrongType, 3)
	wrongType = protowire.AppendTag(wrongType, fieldService, protowire.BytesType)
	wrongType = protowire.AppendString(wrongType, "two")
	unknown := protowire.AppendTag(bytes.Clone(seeds[0]), 999, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "later")
	oddEnum := protowire.AppendTag(nil, fieldCmd, protowire.VarintType)
	oddEnum = protowire.AppendVarint(oddEnum, 12345)
	return append(seeds, twice, merged, wrongType, unknown, oddEnum, nil)
}

// TestPushWire: reading a command's fields off the wire, and the bytes
// made from it, agree with decoding and encoding it, on commands as the
// core encodes them and on proto2's wire oddities.
func TestPushWire(t *testing.T) {
	for _, b := range pushWireSeeds(t) {
		checkPushWire(t, b)
	}
	// Not protobuf: refused, as decoding refuses it.
	for _, b := range [][]byte{{0x0a}, {0x08}, {0xc2, 0x06, 0x05, 0x08}, {0x07}} {
		if _, ok := scanCommand(b); ok {
			t.Errorf("scanCommand accepted %x", b)
		}
	}
	// Nothing to change: no copy.
	b := pushWireSeeds(t)[1]
	f, _ := scanCommand(b)
	if sh := sharedPush(b, f); &sh[0] != &b[0] {
		t.Error("sharedPush copied a command with service and no peerId")
	}
}

// FuzzPushWire: the same comparison on any bytes.
func FuzzPushWire(f *testing.F) {
	for _, b := range pushWireSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkPushWire(t, b)
	})
}
