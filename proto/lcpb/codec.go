package lcpb

import (
	"encoding/base64"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Subprotocols offered by the official SDKs (leancloud-realtime 4.3.1
// src/connection.js builds "lc.${format}.${version}"). The .3 variants get
// an unread notification on login; the .1 variants get offline messages
// pushed as direct{offline:true}. proto2base64 carries the same protobuf as
// base64 in text frames (the SDK's noBinary option).
const (
	SubprotocolBinary3  = "lc.protobuf2.3"
	SubprotocolBinary1  = "lc.protobuf2.1"
	SubprotocolBase64v3 = "lc.proto2base64.3"
	SubprotocolBase64v1 = "lc.proto2base64.1"
)

// Subprotocols lists every subprotocol the server accepts, in preference order.
var Subprotocols = []string{SubprotocolBinary3, SubprotocolBinary1, SubprotocolBase64v3, SubprotocolBase64v1}

// Codec encodes and decodes GenericCommands for one subprotocol.
type Codec struct {
	Name    string
	Base64  bool // frames are base64 text, not binary
	Version int  // 3 or 1
}

// ErrUnknownSubprotocol is returned by CodecFor for a name no SDK offers.
var ErrUnknownSubprotocol = errors.New("lcpb: unknown subprotocol")

// CodecFor returns the codec for a subprotocol name.
func CodecFor(name string) (Codec, error) {
	switch name {
	case SubprotocolBinary3:
		return Codec{Name: name, Version: 3}, nil
	case SubprotocolBinary1:
		return Codec{Name: name, Version: 1}, nil
	case SubprotocolBase64v3:
		return Codec{Name: name, Base64: true, Version: 3}, nil
	case SubprotocolBase64v1:
		return Codec{Name: name, Base64: true, Version: 1}, nil
	}
	return Codec{}, fmt.Errorf("%w: %q", ErrUnknownSubprotocol, name)
}

// Encode marshals cmd into one frame payload.
func (c Codec) Encode(cmd *GenericCommand) ([]byte, error) {
	b, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("lcpb: encode: %w", err)
	}
	if !c.Base64 {
		return b, nil
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(b)))
	base64.StdEncoding.Encode(out, b)
	return out, nil
}

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("lcpb: malformed command")

// Decode parses one frame payload. Like the SDK's GenericCommand.decode it
// accepts a base64 text frame on a binary subprotocol too, when text is set.
func (c Codec) Decode(frame []byte, text bool) (*GenericCommand, error) {
	b := frame
	if c.Base64 || text {
		d := make([]byte, base64.StdEncoding.DecodedLen(len(frame)))
		n, err := base64.StdEncoding.Decode(d, frame)
		if err != nil {
			return nil, fmt.Errorf("%w: base64: %v", ErrMalformed, err)
		}
		b = d[:n]
	}
	cmd := new(GenericCommand)
	if err := proto.Unmarshal(b, cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return cmd, nil
}
