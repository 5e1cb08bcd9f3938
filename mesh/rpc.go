package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
)

// MaxFrameSize bounds one frame's payload, in either direction.
const MaxFrameSize = 16 << 20

// Stream kinds, the first byte of every stream.
const (
	kindRPC    byte = 1
	kindStream byte = 2
	kindRaft   byte = 3
	kindMux    byte = 4 // mux.go
)

// Reply status, the first byte the server sends on rpc and stream streams.
const (
	statusOK        byte = 0
	statusForbidden byte = 4 // the caller's role may not use the method (role.go)
	statusError     byte = 1 // frame: error text
	statusUnknown   byte = 2 // frame: method name
	statusTooLarge  byte = 3 // frame: error text
)

// Call sends req to method on the node at addr and returns its reply. A
// handler's error comes back wrapping ErrRemote; an unregistered method wraps
// ErrRemote and ErrUnknownMethod. When ctx ends Call returns ctx.Err() at
// once and the server's handler sees its context end.
//
// A request of up to muxMaxRequest bytes shares a long-lived mux stream
// with other calls (mux.go); a larger one, or any request to a peer that
// does not know mux streams, takes a stream of its own.
func (n *Node) Call(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	if len(req) > MaxFrameSize {
		return nil, fmt.Errorf("mesh: call %s: request of %d bytes: %w", method, len(req), ErrFrameTooLarge)
	}
	if len(method) > 255 {
		return nil, fmt.Errorf("mesh: call %s: %w: method name of %d bytes, max 255", method, ErrNotSent, len(method))
	}
	// Nothing is sent for a context that has already ended, on any path:
	// a mux call queued now could be written and answered before its
	// select sees the context (TestMuxCancel failed once so in CI).
	select { // not ctx.Err(): that takes the context's lock, Done is a load
	case <-ctx.Done():
		return nil, fmt.Errorf("mesh: call %s: %w: %w", method, ErrNotSent, ctx.Err())
	default:
	}
	if p := n.localPeer(addr); p != nil {
		return n.callLocal(ctx, p, addr, method, req) // local.go
	}
	if len(req) <= muxMaxRequest && !n.noMux.Load() {
		if reply, err, ok := n.callMux(ctx, addr, method, req); ok {
			return reply, err
		}
	}
	return n.callStream(ctx, addr, method, req)
}

// callStream runs a call on a stream of its own (kindRPC).
func (n *Node) callStream(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	n.streamCalls.Add(1)
	s, _, err := n.openStream(ctx, addr, kindRPC, method)
	if err != nil {
		return nil, fmt.Errorf("mesh: call %s: %w: %w", method, ErrNotSent, err)
	}
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(codeCanceled)
		s.CancelWrite(codeCanceled)
	})
	defer stop()
	reply, err := roundTrip(s, req)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		s.CancelRead(codeNoError)
		s.CancelWrite(codeNoError)
		return nil, fmt.Errorf("mesh: call %s on %s: %w", method, addr, err)
	}
	return reply, nil
}

func roundTrip(s *quic.Stream, req []byte) ([]byte, error) {
	err := writeFrame(s, req)
	if err == nil {
		err = s.Close()
	}
	if err != nil {
		// A server that refuses the call before reading the request (a
		// role that may not call the method, serveRPC) stops this side of
		// the stream and answers: the answer says why. Any other failure
		// ends the read side too, so this read does not wait.
		if st, msg, rerr := readStatus(s); rerr == nil && st != statusOK {
			return nil, remoteErr(st, msg)
		}
		return nil, err
	}
	st, reply, err := readStatus(s)
	if err != nil {
		return nil, err
	}
	if st != statusOK {
		return nil, remoteErr(st, reply)
	}
	return reply, expectEOF(s)
}

// readStatus reads a status byte and the frame that follows it (none for an
// OK stream-open, see serveStream).
func readStatus(s *quic.Stream) (byte, []byte, error) {
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return 0, nil, err
	}
	frame, err := readFrame(s)
	return b[0], frame, err
}

func remoteErr(st byte, msg []byte) error {
	switch st {
	case statusError:
		return fmt.Errorf("%w: %s", ErrRemote, msg)
	case statusUnknown:
		return fmt.Errorf("%w: %w %q", ErrRemote, ErrUnknownMethod, msg)
	case statusTooLarge:
		return fmt.Errorf("%w: %w: %s", ErrRemote, ErrFrameTooLarge, msg)
	case statusForbidden:
		return fmt.Errorf("%w: %w: %s", ErrRemote, ErrForbidden, msg)
	default:
		return fmt.Errorf("%w: status %d", ErrProtocol, st)
	}
}

// serveStream reads a stream's header and dispatches it by kind.
func (n *Node) serveStream(c *quic.Conn, peer string, s *quic.Stream) {
	defer n.wg.Done()
	s.SetReadDeadline(time.Now().Add(headerTimeout))
	var hdr [2]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		reset(s, codeProtocol)
		return
	}
	method := make([]byte, hdr[1])
	if _, err := io.ReadFull(s, method); err != nil {
		reset(s, codeProtocol)
		return
	}
	role := peerRole(c)
	switch hdr[0] {
	case kindRPC:
		n.serveRPC(peer, role, string(method), s)
	case kindStream:
		n.serveOpen(peer, role, string(method), s)
	case kindMux:
		if n.refuseMux.Load() {
			reset(s, codeProtocol) // as a node from before kindMux answers it
			return
		}
		if len(method) != 0 {
			reset(s, codeProtocol)
			return
		}
		n.serveMux(peer, role, s)
	case kindRaft:
		// Only cores take part in raft (role.go): an edge or admin
		// certificate can never append, vote or install a snapshot.
		if role != RoleCore || n.id.Role != RoleCore {
			n.log.Warn("mesh: refused a raft stream from a peer that is not a core", "peer", peer, "role", role)
			reset(s, codeForbidden)
			return
		}
		s.SetReadDeadline(time.Time{})
		n.deliverRaft(c, s, string(method))
	default:
		reset(s, codeProtocol)
	}
}

func (n *Node) serveRPC(peer string, role Role, method string, s *quic.Stream) {
	// A caller whose role may not use the method is refused before its
	// request is read: it gets the same answer as after reading, and its
	// request costs the node nothing. The caller sees its writes stopped
	// and reads the answer (roundTrip).
	n.mu.Lock()
	h, roles := n.rpcs[method], n.roles[method]
	n.mu.Unlock()
	if h != nil && !n.permit(peer, role, method, roles) {
		forbid(s, role, method)
		return
	}
	s.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := readFrame(s)
	if err == nil {
		err = expectEOF(s)
	}
	s.SetReadDeadline(time.Time{})
	if errors.Is(err, ErrFrameTooLarge) {
		s.CancelRead(codeProtocol)
		writeReply(s, statusTooLarge, []byte(err.Error()))
		return
	}
	if err != nil {
		reset(s, codeProtocol)
		return
	}
	n.mu.Lock()
	h, roles = n.rpcs[method], n.roles[method]
	n.mu.Unlock()
	if h == nil {
		writeReply(s, statusUnknown, []byte(method))
		return
	}
	if !n.permit(peer, role, method, roles) { // registered while the request was read
		forbid(s, role, method)
		return
	}
	ctx, cancel := n.streamContext(s)
	defer cancel()
	reply, err := callRPC(ctx, h, peer, role, req)
	switch {
	case err != nil:
		writeReply(s, statusError, []byte(err.Error()))
	case len(reply) > MaxFrameSize:
		writeReply(s, statusTooLarge, fmt.Appendf(nil, "reply of %d bytes", len(reply)))
	default:
		writeReply(s, statusOK, reply)
	}
}

// permit reports whether a peer of role may use method, logging a refusal.
func (n *Node) permit(peer string, role Role, method string, roles []Role) bool {
	if allowed(roles, role) {
		return true
	}
	n.log.Warn("mesh: refused a method to a peer of another role", "peer", peer, "role", role, "method", method)
	return false
}

// forbid answers an rpc whose caller's role may not call method, and stops
// reading its request.
func forbid(s *quic.Stream, role Role, method string) {
	s.SetReadDeadline(time.Time{})
	writeReply(s, statusForbidden, fmt.Appendf(nil, "role %q may not call %q", role, method))
	s.CancelRead(codeForbidden)
}

// callRPC runs a handler, turning a panic into an error for the caller.
func callRPC(ctx context.Context, h RPCHandler, peer string, role Role, req []byte) (reply []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h(context.WithValue(ctx, callerRoleKey{}, role), peer, req)
}

type callerRoleKey struct{}

// CallerRole is the role of the peer whose call an RPC handler runs (its
// certificate's), "" outside a handler.
func CallerRole(ctx context.Context) Role {
	r, _ := ctx.Value(callerRoleKey{}).(Role)
	return r
}

// streamContext is a handler's context: it ends when the node closes or the
// caller stops reading the stream (reset, or connection lost).
func (n *Node) streamContext(s *quic.Stream) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(n.ctx)
	stop := context.AfterFunc(s.Context(), cancel)
	return ctx, func() { stop(); cancel() }
}

// writeReply sends status and frame and closes the send side; a caller
// that does not read it within replyTimeout gets its stream reset.
func writeReply(s *quic.Stream, st byte, payload []byte) {
	s.SetWriteDeadline(time.Now().Add(replyTimeout))
	var hdr [5]byte
	hdr[0] = st
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := s.Write(hdr[:]); err != nil {
		reset(s, codeNoError)
		return
	}
	if _, err := s.Write(payload); err != nil {
		reset(s, codeNoError)
		return
	}
	s.Close()
}

func writeFrame(w io.Writer, payload []byte) error {
	if len(payload) > MaxFrameSize {
		return fmt.Errorf("frame of %d bytes: %w", len(payload), ErrFrameTooLarge)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one length-prefixed frame. A length over MaxFrameSize is
// an error before anything is allocated.
func readFrame(r io.Reader) ([]byte, error) {
	return readFrameMax(r, MaxFrameSize)
}

// readFrameMax is readFrame with a limit of max bytes.
func readFrameMax(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if uint64(size) > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes: %w", size, ErrFrameTooLarge)
	}
	return readBody(r, int(size))
}

// frameChunk bounds what reading a frame commits ahead of the bytes that
// have arrived. The length prefix is the peer's word, not bytes: a frame of
// up to frameChunk is read into one buffer of its size (the hot path, one
// allocation), a longer one into a buffer that starts at frameChunk and
// doubles only once it is full. So a frame holds at most
// max(frameChunk, 2 × bytes arrived), and a peer that declares 16 MiB on
// each of its 4,096 streams and sends nothing costs frameChunk per stream,
// not 64 GiB.
const frameChunk = 64 << 10

// readBody reads a frame's payload of size bytes (<= MaxFrameSize). A
// stream that ends before size bytes is io.ErrUnexpectedEOF.
func readBody(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, min(size, frameChunk))
	for got := 0; ; {
		n, err := io.ReadFull(r, b[got:])
		got += n
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if got == size {
			return b, nil
		}
		nb := make([]byte, min(size, 2*len(b)))
		copy(nb, b)
		b = nb
	}
}

// expectEOF reads the end of the stream, so quic-go can release it, and
// rejects trailing bytes.
func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := r.Read(b[:])
	for n == 0 && err == nil {
		n, err = r.Read(b[:])
	}
	if n > 0 {
		return fmt.Errorf("%w: trailing bytes after frame", ErrProtocol)
	}
	if err == io.EOF {
		return nil
	}
	return err
}

func reset(s *quic.Stream, code quic.StreamErrorCode) {
	s.CancelRead(code)
	s.CancelWrite(code)
}
