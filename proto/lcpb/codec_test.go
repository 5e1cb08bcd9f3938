package lcpb

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

func sample() *GenericCommand {
	return &GenericCommand{
		Cmd:    CommandType_direct.Enum(),
		PeerId: proto.String("Tom"),
		I:      proto.Int32(-7), // Java ids go negative
		DirectMessage: &DirectCommand{
			Cid: proto.String("5f0c"), Msg: proto.String(`{"_lctype":-1,"_lctext":"hi"}`),
			MentionPids: []string{"Jerry"},
		},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, name := range Subprotocols {
		t.Run(name, func(t *testing.T) {
			c, err := CodecFor(name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Encode(sample())
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Decode(b, c.Base64)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, sample()) {
				t.Fatalf("got %v, want %v", got, sample())
			}
		})
	}
}

func TestCodecFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int
		base64  bool
	}{
		{"lc.protobuf2.3", 3, false},
		{"lc.protobuf2.1", 1, false},
		{"lc.proto2base64.3", 3, true},
		{"lc.proto2base64.1", 1, true},
	} {
		c, err := CodecFor(tc.name)
		if err != nil || c.Version != tc.version || c.Base64 != tc.base64 {
			t.Errorf("CodecFor(%q) = %+v, %v; want version %d base64 %v", tc.name, c, err, tc.version, tc.base64)
		}
	}
	for _, bad := range []string{"", "lc.json.3", "lc.protobuf2.2", "LC.PROTOBUF2.3"} {
		if _, err := CodecFor(bad); !errors.Is(err, ErrUnknownSubprotocol) {
			t.Errorf("CodecFor(%q) err = %v, want ErrUnknownSubprotocol", bad, err)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	bin, _ := CodecFor(SubprotocolBinary3)
	b64, _ := CodecFor(SubprotocolBase64v3)
	for _, tc := range []struct {
		name  string
		c     Codec
		frame []byte
		text  bool
	}{
		{"truncated varint", bin, []byte{0x08}, false},
		{"bad wire type", bin, []byte{0x0f, 0x01}, false},
		{"bad base64", b64, []byte("!!notbase64"), true},
		{"missing required error reason", bin, mustMarshalPartial(&GenericCommand{ErrorMessage: &ErrorCommand{Code: proto.Int32(1)}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.Decode(tc.frame, tc.text); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func mustMarshalPartial(m proto.Message) []byte {
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestNewErrorFillsRequired(t *testing.T) {
	c := NewError(proto.Int32(0), "Tom", ErrSessionRequired, "")
	if c.I == nil || *c.I != 0 {
		t.Fatalf("i = %v, want 0 present", c.I)
	}
	if got := c.GetErrorMessage().GetReason(); got != "SESSION_REQUIRED" {
		t.Fatalf("reason = %q, want SESSION_REQUIRED", got)
	}
	if _, err := proto.Marshal(c); err != nil {
		t.Fatalf("error command must marshal with required fields: %v", err)
	}
}

// FuzzDecode: no input may panic a decoder, and whatever decodes must
// re-encode and decode to an equal command.
func FuzzDecode(f *testing.F) {
	bin, _ := CodecFor(SubprotocolBinary3)
	b64, _ := CodecFor(SubprotocolBase64v3)
	good, _ := bin.Encode(sample())
	f.Add(good, false)
	f.Add([]byte{}, false)
	f.Add([]byte("CAIQAQ=="), true)
	f.Add([]byte{0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, false)
	f.Fuzz(func(t *testing.T, frame []byte, text bool) {
		c := bin
		if text {
			c = b64
		}
		cmd, err := c.Decode(frame, text)
		if err != nil {
			return
		}
		b, err := c.Encode(cmd)
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		again, err := c.Decode(b, text)
		if err != nil || !proto.Equal(cmd, again) {
			t.Fatalf("round trip changed the command: %v", err)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	for _, name := range []string{SubprotocolBinary3, SubprotocolBase64v3} {
		c, _ := CodecFor(name)
		cmd := sample()
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Encode(cmd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{SubprotocolBinary3, SubprotocolBase64v3} {
		c, _ := CodecFor(name)
		frame, _ := c.Encode(sample())
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := c.Decode(frame, c.Base64); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
