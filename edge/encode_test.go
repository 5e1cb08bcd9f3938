package edge

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func pushCmd(peer *string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{
		Cmd:     lcpb.CommandType_direct.Enum(),
		PeerId:  peer,
		Service: proto.Int32(lcpb.ServiceIM),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String("5f0c2b7de1a3b94c0a1b2c3d"), Id: proto.String("m1"),
			Msg: proto.String(`{"_lctype":-1,"_lctext":"hello everyone in the room"}`), Timestamp: proto.Int64(1764720000000),
			FromPeerId: proto.String("host"), Transient: proto.Bool(true)},
	}
}

// TestWithPeerID: the shared encoding plus the appended field decodes to
// the command with that peerId, for empty, ASCII, CJK and long clientIds.
func TestWithPeerID(t *testing.T) {
	shared, err := proto.Marshal(pushCmd(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"", "alice", "用户-42", string(make([]byte, 300))} {
		got := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(withPeerID(shared, peer), got); err != nil {
			t.Fatalf("%q: %v", peer, err)
		}
		if want := pushCmd(proto.String(peer)); !proto.Equal(got, want) {
			t.Errorf("%q: got %v, want %v", peer, got, want)
		}
	}
	// The shared bytes are not changed by an append (each copy is its own).
	a, b := withPeerID(shared, "a"), withPeerID(shared, "b")
	if string(a[:len(shared)]) != string(shared) || string(b[:len(shared)]) != string(shared) || a[len(a)-1] != 'a' {
		t.Fatal("withPeerID shares or changes its input")
	}
}

// TestDeliverReplacesPeerID: a command that reaches the edge with a peerId
// (a core must not set it, but one might) goes out with the target's, once.
func TestDeliverReplacesPeerID(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial(t, lcpb.SubprotocolBinary3)
	c.login(1, "alice")
	push, _ := proto.Marshal(pushCmd(proto.String("mallory")))
	env.srv.Deliver(&meshpb.Delivery{AppId: testApp, Targets: []*meshpb.Target{{PeerId: "alice"}}, Command: push})
	raw := c.recvFrame().b
	r := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(raw, r); err != nil {
		t.Fatal(err)
	}
	if r.GetPeerId() != "alice" || r.GetDirectMessage().GetId() != "m1" {
		t.Fatalf("got peerId %q message %q, want alice m1", r.GetPeerId(), r.GetDirectMessage().GetId())
	}
	// Strict decoders (a native SDK's) see the field once, not "mallory"
	// then "alice".
	n := 0
	for b := raw; len(b) > 0; {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			t.Fatal("bad tag")
		}
		b = b[l:]
		if num == 4 {
			n++
		}
		fl := protowire.ConsumeFieldValue(num, typ, b)
		if fl < 0 {
			t.Fatal("bad field")
		}
		b = b[fl:]
	}
	if n != 1 {
		t.Fatalf("peerId appears %d times in the frame, want once", n)
	}
}

// BenchmarkDeliverEncode compares the two ways to make 10,000 copies of a
// chatroom push, one per member: Marshal per member (before) and one
// Marshal plus an append per member (now).
func BenchmarkDeliverEncode(b *testing.B) {
	peers := make([]string, 10000)
	for i := range peers {
		peers[i] = fmt.Sprintf("member-%05d", i)
	}
	b.Run("marshal-per-member", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cmd := pushCmd(nil)
			for _, p := range peers {
				cmd.PeerId = proto.String(p)
				if _, err := (proto.MarshalOptions{AllowPartial: true}).Marshal(cmd); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("append-per-member", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			shared, err := (proto.MarshalOptions{AllowPartial: true}).Marshal(pushCmd(nil))
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range peers {
				_ = withPeerID(shared, p)
			}
		}
	})
}
