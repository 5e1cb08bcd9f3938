package edge

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// Buffer sizes of a client connection's socket reader and writer. net/http
// hands a hijacked connection a 4 KiB reader and a 4 KiB writer, which the
// WebSocket library keeps for the connection's life: 8 KiB of an idle
// session's memory. LeanCloud frames are mostly a few hundred bytes; a
// bigger frame is read or written past the buffer, straight to the socket,
// at the cost of one more system call.
const (
	connReadBufSize  = 1 << 10
	connWriteBufSize = 1 << 10
)

// smallBufWriter is the http.ResponseWriter given to websocket.Accept: its
// Hijack swaps net/http's 4 KiB buffers for smaller ones. Everything else is
// the embedded writer's.
type smallBufWriter struct {
	http.ResponseWriter
}

// Hijack takes over the connection and returns it with connReadBufSize and
// connWriteBufSize buffers. Bytes net/http had already read past the
// handshake are kept: they are loaded into the new reader first.
func (w smallBufWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(nc, connReadBufSize)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc), max(n, connReadBufSize))
		if _, err := br.Peek(n); err != nil { // only reads the copied bytes
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, connWriteBufSize)), nil
}
