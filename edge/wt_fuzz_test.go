package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// FuzzReadFrame drives the WebTransport delimited-frame reader with
// arbitrary stream bytes and a frame limit. Checked against protowire's
// varint decoder: every frame read is exactly the bytes its prefix names,
// frames are never over the limit, and the reader stops with the error the
// bytes call for (clean end, truncation, bad prefix, over the limit).
func FuzzReadFrame(f *testing.F) {
	var stream []byte
	for _, c := range []*lcpb.GenericCommand{openCmd(1, "alice"), echoCmd(2), directCmd(3, "hello"), transientCmd("typing")} {
		b, _ := proto.Marshal(c)
		stream = appendDelimited(stream, b)
	}
	f.Add(stream, uint32(64<<10))
	f.Add(stream, uint32(10))
	f.Add([]byte{}, uint32(0))
	f.Add([]byte{0}, uint32(0))
	f.Add([]byte{0x81, 0x80, 0x04}, uint32(64<<10))                                      // 64 KiB + 1
	f.Add([]byte{0x80, 0x00}, uint32(1))                                                 // non-minimal zero
	f.Add(bytes.Repeat([]byte{0xff}, 11), uint32(1<<16))                                 // no varint
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, uint32(1)) // 2^64-1
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, uint32(1)) // over 64 bits
	f.Add([]byte{100, 1, 2, 3}, uint32(1000))                                            // cut mid-frame
	f.Add([]byte{0x80}, uint32(1000))                                                    // cut mid-prefix

	f.Fuzz(func(t *testing.T, data []byte, limit uint32) {
		max := int64(limit % (1 << 17))
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		pos := 0
		for {
			frame, err := readDelimited(r, max)
			rest := data[pos:]
			v, n := protowire.ConsumeVarint(rest)
			if err != nil {
				switch {
				case errors.Is(err, io.EOF):
					if len(rest) != 0 {
						t.Fatalf("EOF with %d bytes left", len(rest))
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					truncatedPrefix := n < 0 && protowire.ParseError(n) == io.ErrUnexpectedEOF
					truncatedBody := n > 0 && v <= uint64(max) && uint64(len(rest)-n) < v
					if !truncatedPrefix && !truncatedBody {
						t.Fatalf("ErrUnexpectedEOF on %x (varint %d, %d)", rest, v, n)
					}
				case errors.Is(err, errWTBadPrefix):
					if n >= 0 || protowire.ParseError(n) == io.ErrUnexpectedEOF {
						t.Fatalf("bad prefix reported on %x (varint %d, %d)", rest, v, n)
					}
				case errors.Is(err, errWTFrameTooLarge):
					if n < 0 || v <= uint64(max) {
						t.Fatalf("too large reported for length %d, limit %d", v, max)
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if n < 0 || v != uint64(len(frame)) || int64(len(frame)) > max {
				t.Fatalf("frame of %d bytes; protowire reads length %d (%d); limit %d", len(frame), v, n, max)
			}
			if !bytes.Equal(frame, rest[n:n+len(frame)]) {
				t.Fatalf("frame %x is not the bytes after its prefix", frame)
			}
			pos += n + len(frame)
		}
	})
}

// FuzzBufferedFrame: a frame bufferedFrame hands over is the next frame of
// the stream, whole (what readDelimited would return); it never takes a
// frame readDelimited would refuse, and with it the stream reads to the
// same frames as readDelimited alone.
func FuzzBufferedFrame(f *testing.F) {
	var stream []byte
	for _, c := range []*lcpb.GenericCommand{openCmd(1, "alice"), echoCmd(2), directCmd(3, "hello"), transientCmd("typing")} {
		b, _ := proto.Marshal(c)
		stream = appendDelimited(stream, b)
	}
	f.Add(stream, uint32(64<<10), uint8(16))
	f.Add(stream, uint32(10), uint8(40))
	f.Add([]byte{0x81, 0x80, 0x04}, uint32(64<<10), uint8(16))
	f.Add([]byte{3, 1, 2, 3, 0x80}, uint32(1000), uint8(16))
	f.Add(bytes.Repeat([]byte{0xff}, 11), uint32(1<<16), uint8(32))
	f.Fuzz(func(t *testing.T, data []byte, limit uint32, size uint8) {
		max := int64(limit % (1 << 17))
		want := bufio.NewReaderSize(bytes.NewReader(data), 16)
		tr := &wtTransport{br: bufio.NewReaderSize(bytes.NewReader(data), 16+int(size)), max: max}
		for {
			got, ok := tr.bufferedFrame()
			if !ok {
				var err error
				if got, err = readDelimited(tr.br, max); err != nil {
					if _, werr := readDelimited(want, max); werr == nil || !errors.Is(werr, err) && !errors.Is(err, werr) {
						t.Fatalf("the stream ended with %v, readDelimited alone with %v", err, werr)
					}
					return
				}
			}
			w, err := readDelimited(want, max)
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("got frame %x (buffered %v), readDelimited alone %x, %v", got, ok, w, err)
			}
		}
	})
}
