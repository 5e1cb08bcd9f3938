package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
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

// TestWSReadReusesBuffer: read returns each frame in one reused buffer, and
// what the conn decodes from it stays intact after later reads: a big frame
// (past maxKeptReadBuf), then small ones, binary and text. A read after
// closeNow ends with an error although its context is never done.
func TestWSReadReusesBuffer(t *testing.T) {
	texts := []string{strings.Repeat("a", maxKeptReadBuf+1000), "b", strings.Repeat("c", 700), "d"}
	frames := make([][]byte, len(texts))
	for i, s := range texts {
		b, err := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
			DirectMessage: &lcpb.DirectCommand{Msg: proto.String(s), BinaryMsg: []byte(s)}})
		if err != nil {
			t.Fatal(err)
		}
		frames[i] = b
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for i, f := range frames {
			typ := websocket.MessageBinary
			if i == 3 { // a base64 subprotocol's text frame
				typ, f = websocket.MessageText, []byte(base64.StdEncoding.EncodeToString(f))
			}
			if err := ws.Write(r.Context(), typ, f); err != nil {
				return
			}
		}
		_, _, _ = ws.Read(r.Context()) // until the client goes
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	tr := newWSTransport(ws)
	var got []*lcpb.GenericCommand
	for i := range frames {
		b, text, err := tr.read(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if text != (i == 3) {
			t.Fatalf("frame %d: text %v", i, text)
		}
		cmd, err := lcpb.Codec{}.Decode(b, text)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got = append(got, cmd)
		if i == 0 && tr.rb.Cap() <= maxKeptReadBuf {
			t.Fatalf("the big frame was read into %d bytes", tr.rb.Cap())
		}
		if i == 1 && tr.rb.Cap() > maxKeptReadBuf {
			t.Fatalf("the buffer of %d bytes was kept after the big frame", tr.rb.Cap())
		}
	}
	for i, cmd := range got {
		if dm := cmd.GetDirectMessage(); dm.GetMsg() != texts[i] || string(dm.GetBinaryMsg()) != texts[i] {
			t.Fatalf("frame %d decoded to %.20q/%.20q after later reads, want %.20q", i, dm.GetMsg(), dm.GetBinaryMsg(), texts[i])
		}
	}
	done := make(chan error, 1)
	go func() { _, _, err := tr.read(context.Background()); done <- err }()
	time.Sleep(50 * time.Millisecond) // let the read block
	_ = tr.closeNow()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a read after closeNow returned a frame")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closeNow did not end a read")
	}
}
