package edge

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// FuzzDecodeFrame drives the inbound path (decode → handle) with arbitrary
// frames on binary and base64 subprotocols, before and after login. It must
// never panic, and everything it queues must be a decodable GenericCommand.
func FuzzDecodeFrame(f *testing.F) {
	seeds := []*lcpb.GenericCommand{
		openCmd(1, "alice"),
		echoCmd(2),
		directCmd(3, "hello"),
		{Cmd: lcpb.CommandType_login.Enum()},
		{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), I: proto.Int32(4)},
		{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refresh.Enum(), I: proto.Int32(5)},
		{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), SessionMessage: &lcpb.SessionCommand{R: proto.Bool(true), St: proto.String("AQ")}},
		{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(), PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{{Data: proto.String("x")}}}},
		{Cmd: lcpb.CommandType_ack.Enum(), AckMessage: &lcpb.AckCommand{Cid: proto.String("c"), Mid: proto.String("m")}},
	}
	b64, _ := lcpb.CodecFor(lcpb.SubprotocolBase64v3)
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		e, _ := b64.Encode(s)
		for _, login := range []bool{false, true} {
			f.Add(b, false, false, login)
			f.Add(e, true, true, login)
			f.Add(e, true, false, login)
		}
	}
	f.Add([]byte{0xff, 0x01}, false, false, true)
	f.Add([]byte("====="), true, true, false)
	f.Add([]byte{}, false, false, false)

	f.Fuzz(func(t *testing.T, frame []byte, text, base64Proto, login bool) {
		be := &fakeBackend{fn: func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
			// Echo the request back, exercising the reply fix-up path.
			return &meshpb.ClientReply{Commands: [][]byte{req.GetCommand(), {0xff}}}, nil
		}}
		s := New(Config{Backend: be, Apps: apps.NewDev(), TokenKey: []byte("k"), Limits: Limits{QueueLen: 64}})
		sp := lcpb.SubprotocolBinary3
		if base64Proto {
			sp = lcpb.SubprotocolBase64v1
		}
		codec, _ := lcpb.CodecFor(sp)
		c := newConn(s, codec, nil)
		defer c.cancel()
		if login {
			b, _ := codec.Encode(openCmd(1, "alice"))
			c.handleFrame(context.Background(), codec.Base64, b)
			if c.sessionFor("") == nil {
				t.Fatal("login did not bind a session")
			}
		}
		c.handleFrame(context.Background(), text, frame)
		for {
			of, _, st := c.q.Pop()
			if st != pq.PopItem {
				break
			}
			if err := decodeOpts.Unmarshal(of.b, new(lcpb.GenericCommand)); err != nil {
				t.Fatalf("queued an undecodable frame: %v", err)
			}
		}
		c.teardown()
	})
}

// FuzzVerifyToken: any string given as a session token is refused or
// yields claims; a version 3 token that verifies is exactly the token its
// claims issue (nothing in it is ignored), and a version 2 one verifies
// with chain 0.
func FuzzVerifyToken(f *testing.F) {
	key := []byte("fuzz-key")
	now := time.Unix(1_700_000_000, 0)
	c := tokenClaims{AppID: "app", ClientID: "alice", Tag: "mobile", Expiry: now.Add(time.Hour), Login: now, Gen: 1 << 56, Chain: 42}
	f.Add(issueToken(key, c))
	v2 := []byte{tokenV2}
	v2 = binary.BigEndian.AppendUint64(v2, uint64(c.Expiry.Unix()))
	v2 = binary.BigEndian.AppendUint64(v2, uint64(c.Login.Unix()))
	v2 = binary.AppendUvarint(v2, c.Gen)
	v2 = appendField(appendField(appendField(v2, c.AppID), c.ClientID), c.Tag)
	v2 = append(v2, tokenMAC(key, v2)...)
	f.Add(base64.RawURLEncoding.EncodeToString(v2))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, st string) {
		got, err := verifyToken(key, st, now)
		if err != nil {
			return
		}
		b, _ := base64.RawURLEncoding.DecodeString(st)
		switch b[0] {
		case tokenVersion:
			if again := issueToken(key, got); again != st {
				t.Fatalf("verified %q, but its claims %+v issue %q", st, got, again)
			}
		case tokenV2:
			if got.Chain != 0 {
				t.Fatalf("version 2 token %q verified with chain %d", st, got.Chain)
			}
		default:
			t.Fatalf("token %q of version %d verified", st, b[0])
		}
	})
}
