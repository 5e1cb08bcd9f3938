package edge

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

func TestTokenRoundTrip(t *testing.T) {
	key := []byte("k")
	now := time.Unix(1_700_000_000, 0)
	cases := []tokenClaims{
		{AppID: "app", ClientID: "alice", Tag: "mobile", Expiry: now.Add(time.Hour), Chain: 0x0123456789abcdef},
		{AppID: "app", ClientID: "é客户", Tag: "", Expiry: now.Add(time.Second)},
		{AppID: strings.Repeat("a", 64), ClientID: strings.Repeat("b", 256), Tag: strings.Repeat("c", 128), Expiry: now.Add(48 * time.Hour)},
	}
	for _, c := range cases {
		st := issueToken(key, c)
		got, err := verifyToken(key, st, now)
		if err != nil {
			t.Fatalf("verify %v: %v", c, err)
		}
		if got.AppID != c.AppID || got.ClientID != c.ClientID || got.Tag != c.Tag || !got.Expiry.Equal(c.Expiry) || got.Chain != c.Chain {
			t.Fatalf("got %v, want %v", got, c)
		}
		if _, err := verifyToken(key, st, c.Expiry); !errors.Is(err, errTokenExpired) {
			t.Fatalf("at expiry: got %v, want expired", err)
		}
		if _, err := verifyToken([]byte("other"), st, now); !errors.Is(err, errTokenBadMAC) {
			t.Fatalf("other key: got %v, want bad mac", err)
		}
		// Flip each byte of the decoded token: never accepted.
		for i := 0; i < len(st); i++ {
			b := []byte(st)
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			if got, err := verifyToken(key, string(b), now); err == nil && got != c {
				t.Fatalf("tampered token at %d accepted: %v", i, got)
			}
		}
	}
}

// TestTokenVersion2: a token of the layout before chains (version 2: no
// chain field) still verifies, with chain 0; one byte short of a version 3
// chain, or a version 3 token relabelled 2, does not.
func TestTokenVersion2(t *testing.T) {
	key := []byte("k")
	now := time.Unix(1_700_000_000, 0)
	c := tokenClaims{AppID: "app", ClientID: "alice", Tag: "mobile", Expiry: now.Add(time.Hour), Login: now, Gen: 7}
	b := []byte{tokenV2}
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expiry.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Login.Unix()))
	b = binary.AppendUvarint(b, c.Gen)
	b = appendField(b, c.AppID)
	b = appendField(b, c.ClientID)
	b = appendField(b, c.Tag)
	b = append(b, tokenMAC(key, b)...)
	got, err := verifyToken(key, base64.RawURLEncoding.EncodeToString(b), now)
	if err != nil || got.Chain != 0 || got.Gen != 7 || got.Tag != "mobile" || !got.Login.Equal(now) {
		t.Fatalf("version 2 token: %+v, %v; want its claims with chain 0", got, err)
	}
	// A version 3 token relabelled 2 (MAC recomputed, as a key holder
	// could): its chain bytes are read as the appId's length: malformed
	// or different claims, never the same ones.
	c.Chain = 0xfeedface
	v3, _ := base64.RawURLEncoding.DecodeString(issueToken(key, c))
	v3 = v3[:len(v3)-tokenMACLen]
	v3[0] = tokenV2
	v3 = append(v3, tokenMAC(key, v3)...)
	if got, err := verifyToken(key, base64.RawURLEncoding.EncodeToString(v3), now); err == nil && got.AppID == c.AppID {
		t.Fatalf("a relabelled token verified as %+v", got)
	}
}

func TestLoginSignature(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	// Reference value: HMAC-SHA1("master", "app:alice::1700000000000:n1").
	s := loginSignature("master", "app", "alice", now.UnixMilli(), "n1")
	if len(s) != 40 {
		t.Fatalf("signature %q is not 40 hex chars", s)
	}
	cases := []struct {
		name string
		sig  string
		ts   int64
		want error
	}{
		{"good", s, now.UnixMilli(), nil},
		{"5h old", loginSignature("master", "app", "alice", now.Add(-5*time.Hour).UnixMilli(), "n1"), now.Add(-5 * time.Hour).UnixMilli(), nil},
		{"7h old", loginSignature("master", "app", "alice", now.Add(-7*time.Hour).UnixMilli(), "n1"), now.Add(-7 * time.Hour).UnixMilli(), errSignatureExpired},
		{"other nonce", loginSignature("master", "app", "alice", now.UnixMilli(), "n2"), now.UnixMilli(), errSignatureMismatch},
		{"empty", "", now.UnixMilli(), errSignatureMissing},
	}
	for _, c := range cases {
		if err := verifyLoginSignature("master", "app", "alice", c.sig, c.ts, "n1", now); !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if err := verifyLoginSignature("", "app", "alice", s, now.UnixMilli(), "n1", now); err == nil {
		t.Error("empty master key accepted")
	}
}

func TestConvSignatureStrings(t *testing.T) {
	str := proto.String
	for _, tc := range []struct {
		name string
		cmd  *lcpb.GenericCommand
		want string
		code int32
	}{
		{"start signs the sorted members", &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_start.Enum(),
			ConvMessage: &lcpb.ConvCommand{M: []string{"tom", "alice"}, T: proto.Int64(1700000000000), N: str("n")}},
			"app:alice:alice:tom:1700000000000:n", lcpb.ErrConversationSignature},
		{"add is invite", &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_add.Enum(),
			ConvMessage: &lcpb.ConvCommand{Cid: str("c1"), M: []string{"z", "b"}, T: proto.Int64(5), N: str("n")}},
			"app:alice:c1:b:z:5:n:invite", lcpb.ErrConversationSignature},
		{"remove is kick", &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_remove.Enum(),
			ConvMessage: &lcpb.ConvCommand{Cid: str("c1"), M: []string{"b"}, T: proto.Int64(5), N: str("n")}},
			"app:alice:c1:b:5:n:kick", lcpb.ErrConversationSignature},
		{"blacklist block", &lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: lcpb.OpType_block.Enum(),
			BlacklistMessage: &lcpb.BlacklistCommand{SrcCid: str("c1"), ToPids: []string{"y", "x"}, T: proto.Int64(5), N: str("n")}},
			"app:alice:c1:x:y:5:n:conversation-block-clients", lcpb.ErrBlacklistSignature},
		{"blacklist unblock", &lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: lcpb.OpType_unblock.Enum(),
			BlacklistMessage: &lcpb.BlacklistCommand{SrcCid: str("c1"), ToPids: []string{"x"}, T: proto.Int64(5), N: str("n")}},
			"app:alice:c1:x:5:n:conversation-unblock-clients", lcpb.ErrBlacklistSignature},
		{"join without m invites the client itself", &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_join.Enum(),
			ConvMessage: &lcpb.ConvCommand{Cid: str("c1"), T: proto.Int64(5), N: str("n")}},
			"app:alice:c1:alice:5:n:invite", lcpb.ErrConversationSignature},
		{"leave without m kicks the client itself", &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_leave.Enum(),
			ConvMessage: &lcpb.ConvCommand{Cid: str("c1"), T: proto.Int64(5), N: str("n")}},
			"app:alice:c1:alice:5:n:kick", lcpb.ErrConversationSignature},
		{"add without m (the SDK's join shape) is the client itself", &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_add.Enum(),
			ConvMessage: &lcpb.ConvCommand{Cid: str("c1"), T: proto.Int64(5), N: str("n")}},
			"app:alice:c1:alice:5:n:invite", lcpb.ErrConversationSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, ok := convSignature("app", "alice", tc.cmd)
			if !ok || op.msg != tc.want || op.code != tc.code {
				t.Fatalf("got %q code %d ok %v, want %q code %d", op.msg, op.code, ok, tc.want, tc.code)
			}
		})
	}
	for _, c := range []*lcpb.GenericCommand{
		{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_update.Enum()},
		{Cmd: lcpb.CommandType_direct.Enum()},
		{Cmd: lcpb.CommandType_blacklist.Enum(), Op: lcpb.OpType_query.Enum()},
	} {
		if _, ok := convSignature("app", "alice", c); ok {
			t.Errorf("%v/%v must not need a signature", c.GetCmd(), c.GetOp())
		}
	}
}

func TestSignatureSecondsAndCase(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	msg := "app:alice::1700000000:n"
	sig := hmacHex("master", msg)
	if err := verifySignature("master", strings.ToUpper(sig), 1_700_000_000, now, msg); err != nil {
		t.Fatalf("seconds timestamp, upper-case hex: %v", err)
	}
	if err := verifySignature("master", sig, 1_700_000_000-7*3600, now, "app:alice::1699974800:n"); !errors.Is(err, errSignatureExpired) {
		t.Fatalf("7 h old seconds timestamp: err %v, want expired", err)
	}
}

// TestSignedFieldsRejectSeparators: a ':' or control character in a signed
// id or nonce would let one signature stand for another list ("a:b" signs
// like "a","b"); such ops are refused before the HMAC is even compared.
func TestSignedFieldsRejectSeparators(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	ts := now.UnixMilli()
	conv := func(m []string, nonce string) *lcpb.GenericCommand {
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_add.Enum(),
			ConvMessage: &lcpb.ConvCommand{Cid: proto.String("c1"), M: m, T: proto.Int64(ts), N: proto.String(nonce)}}
	}
	// The honest op with two members verifies.
	good, _ := convSignature("app", "alice", conv([]string{"a", "b"}, "n"))
	good.sig = hmacHex("master", good.msg)
	if err := good.verify("master", now); err != nil {
		t.Fatalf("honest op: %v", err)
	}
	// ["a:b"] signs the same string as ["a", "b"]: refused.
	forged, _ := convSignature("app", "alice", conv([]string{"a:b"}, "n"))
	if forged.msg != good.msg {
		t.Fatalf("test premise: %q != %q", forged.msg, good.msg)
	}
	forged.sig = good.sig
	if err := forged.verify("master", now); !errors.Is(err, errSignatureAmbiguous) {
		t.Fatalf("member with ':': got %v, want %v", err, errSignatureAmbiguous)
	}
	for _, bad := range []struct {
		m []string
		n string
	}{
		{[]string{"a\x00"}, "n"}, {[]string{"a\nb"}, "n"}, {[]string{"a"}, "n:1"}, {[]string{"a"}, "n\x7f"},
	} {
		op, _ := convSignature("app", "alice", conv(bad.m, bad.n))
		op.sig = hmacHex("master", op.msg)
		if err := op.verify("master", now); !errors.Is(err, errSignatureAmbiguous) {
			t.Errorf("m=%q n=%q: got %v, want %v", bad.m, bad.n, err, errSignatureAmbiguous)
		}
	}
	// Login: a nonce with ':' is refused even with a matching HMAC.
	sig := loginSignature("master", "app", "alice", ts, "x:y")
	if err := verifyLoginSignature("master", "app", "alice", sig, ts, "x:y", now); !errors.Is(err, errSignatureAmbiguous) {
		t.Fatalf("login nonce with ':': got %v", err)
	}
}
