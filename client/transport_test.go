package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func delimited(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func TestReadDelimited(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 300) // a two-byte prefix
	br := bufio.NewReader(bytes.NewReader(delimited([]byte("a"), nil, big)))
	for i, want := range [][]byte{[]byte("a"), {}, big} {
		got, err := readDelimited(br, 1<<10)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %q, %v", i, got, err)
		}
	}
	if _, err := readDelimited(br, 1<<10); err != io.EOF {
		t.Fatalf("end between frames: %v, want io.EOF", err)
	}

	tests := []struct {
		name string
		in   []byte
		max  int64
		want error
	}{
		{"over max", delimited(big), 299, errFrameTooBig},
		{"huge prefix, nothing allocated", binary.AppendUvarint(nil, 1<<62), 1 << 20, errFrameTooBig},
		{"ends inside the frame", delimited(big)[:100], 1 << 10, io.ErrUnexpectedEOF},
		{"ends inside the prefix", []byte{0x80}, 1 << 10, io.ErrUnexpectedEOF},
		{"prefix over 64 bits", bytes.Repeat([]byte{0xff}, 11), 1 << 10, nil}, // some error
	}
	for _, tt := range tests {
		_, err := readDelimited(bufio.NewReader(bytes.NewReader(tt.in)), tt.max)
		if err == nil || err == io.EOF || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzReadDelimited(f *testing.F) {
	f.Add(delimited([]byte("hello"), nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x05, 'a'})
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		total := 0
		for {
			b, err := readDelimited(br, 64)
			if err != nil {
				return
			}
			if len(b) > 64 {
				t.Fatalf("frame of %d bytes over the max", len(b))
			}
			if total += len(b); total > len(in) {
				t.Fatal("read more than the input")
			}
		}
	})
}

func TestWTURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/":         "https://127.0.0.1:8080/wt",
		"wss://edge.example.com/":      "https://edge.example.com/wt",
		"ws://h:1/path?lt_group=x&y=1": "https://h:1/wt",
		"wss://[::1]:443/":             "https://[::1]:443/wt",
	} {
		if got, err := wtURL(in); err != nil || got != want {
			t.Errorf("wtURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "not a url", "ws:///nohost", "%zz"} {
		if got, err := wtURL(bad); err == nil {
			t.Errorf("wtURL(%q) = %q, want an error", bad, got)
		}
	}
}
