package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// DefaultSendTimeout bounds one Stream.Send unless SetSendTimeout says
// otherwise: a peer that stops reading (stuck, or killed and not yet
// detected) cannot hold a sender for longer.
const DefaultSendTimeout = 10 * time.Second

// Stream is a long-lived, two-way sequence of frames between two nodes.
// Send may be called from many goroutines; Recv from one at a time.
type Stream struct {
	s      *quic.Stream
	lp     *localEnd // instead of s: an in-process stream (local.go)
	closed atomic.Bool
	sendTO atomic.Int64 // Send's deadline in ns; 0: DefaultSendTimeout, <0: none

	wmu  sync.Mutex // guards Send's writes and whdr
	whdr [4]byte
	rhdr [4]byte // owned by the Recv goroutine
}

// SetSendTimeout sets how long one Send may wait for the peer's flow
// control before it fails and resets the stream; d < 0 means no limit.
func (st *Stream) SetSendTimeout(d time.Duration) {
	if d == 0 {
		d = -1
	}
	st.sendTO.Store(int64(d))
}

// OpenStream opens a stream to method on the node at addr. ctx bounds the
// opening only; the stream lives until Close or until the connection fails.
func (n *Node) OpenStream(ctx context.Context, addr, method string) (*Stream, error) {
	if p := n.localPeer(addr); p != nil {
		return n.openLocal(ctx, p, addr, method) // local.go
	}
	s, _, err := n.openStream(ctx, addr, kindStream, method)
	if err != nil {
		return nil, fmt.Errorf("mesh: open stream %s: %w", method, err)
	}
	stop := context.AfterFunc(ctx, func() { reset(s, codeCanceled) })
	var st [1]byte
	_, err = io.ReadFull(s, st[:])
	if !stop() || err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		reset(s, codeNoError)
		return nil, fmt.Errorf("mesh: open stream %s on %s: %w", method, addr, err)
	}
	if st[0] != statusOK {
		msg, _ := readFrame(s)
		reset(s, codeNoError)
		return nil, fmt.Errorf("mesh: open stream %s on %s: %w", method, addr, remoteErr(st[0], msg))
	}
	return &Stream{s: s}, nil
}

// serveOpen answers a stream open and runs its handler.
func (n *Node) serveOpen(peer string, role Role, method string, s *quic.Stream) {
	n.mu.Lock()
	h, roles := n.streams[method], n.roles[method]
	n.mu.Unlock()
	if h == nil {
		writeReply(s, statusUnknown, []byte(method))
		s.CancelRead(codeNoError)
		return
	}
	if !n.permit(peer, role, method, roles) {
		writeReply(s, statusForbidden, fmt.Appendf(nil, "role %q may not open %q", role, method))
		s.CancelRead(codeNoError)
		return
	}
	s.SetReadDeadline(time.Time{})
	if _, err := s.Write([]byte{statusOK}); err != nil {
		reset(s, codeNoError)
		return
	}
	ctx, cancel := n.streamContext(s)
	defer cancel()
	st := &Stream{s: s}
	defer st.Close()
	h(ctx, peer, st)
}

// Send writes one frame. It is safe for concurrent use. A Send that the
// peer's flow control holds up for longer than the send timeout
// (SetSendTimeout, DefaultSendTimeout) fails with an error wrapping
// os.ErrDeadlineExceeded and resets the stream: a frame may be half
// written, so the stream cannot go on.
func (st *Stream) Send(msg []byte) error {
	if len(msg) > MaxFrameSize {
		return fmt.Errorf("mesh: send: %d bytes: %w", len(msg), ErrFrameTooLarge)
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if st.closed.Load() {
		return fmt.Errorf("mesh: send: %w", ErrClosed)
	}
	to := time.Duration(st.sendTO.Load())
	if to == 0 {
		to = DefaultSendTimeout
	}
	if st.lp != nil {
		var deadline time.Time
		if to > 0 {
			deadline = time.Now().Add(to)
		}
		if err := st.lp.send(msg, deadline); err != nil {
			return st.err("send", err)
		}
		return nil
	}
	if to > 0 {
		st.s.SetWriteDeadline(time.Now().Add(to))
	} else {
		st.s.SetWriteDeadline(time.Time{})
	}
	binary.BigEndian.PutUint32(st.whdr[:], uint32(len(msg)))
	_, err := st.s.Write(st.whdr[:])
	if err == nil {
		_, err = st.s.Write(msg)
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			reset(st.s, codeCanceled)
		}
		return st.err("send", err)
	}
	return nil
}

// Recv reads the next frame. It returns io.EOF once the peer has closed the
// stream cleanly, and an error wrapping ErrClosed after Close.
func (st *Stream) Recv() ([]byte, error) {
	if st.lp != nil {
		b, err := st.lp.recv()
		if err != nil {
			if err == io.EOF && !st.closed.Load() {
				return nil, io.EOF
			}
			return nil, st.err("recv", err)
		}
		return b, nil
	}
	if _, err := io.ReadFull(st.s, st.rhdr[:]); err != nil {
		if err == io.EOF && !st.closed.Load() {
			return nil, io.EOF
		}
		return nil, st.err("recv", err)
	}
	size := binary.BigEndian.Uint32(st.rhdr[:])
	if size > MaxFrameSize {
		reset(st.s, codeProtocol)
		return nil, fmt.Errorf("mesh: recv: frame of %d bytes: %w", size, ErrFrameTooLarge)
	}
	b, err := readBody(st.s, int(size))
	if err != nil {
		return nil, st.err("recv", err)
	}
	return b, nil
}

// Close ends both directions: the peer's Recv sees io.EOF once it has read
// what was sent, and its Send fails.
func (st *Stream) Close() error {
	if st.closed.Swap(true) {
		return nil
	}
	if st.lp != nil {
		if !st.wmu.TryLock() {
			st.lp.close(true) // a Send is blocked: abort it
			return nil
		}
		st.lp.close(false)
		st.wmu.Unlock()
		return nil
	}
	st.s.CancelRead(codeNoError)
	if !st.wmu.TryLock() {
		// A Send is blocked (peer not reading): abort rather than wait.
		st.s.CancelWrite(codeClosed)
		return nil
	}
	defer st.wmu.Unlock()
	return st.s.Close()
}

func (st *Stream) err(op string, err error) error {
	if st.closed.Load() {
		return fmt.Errorf("mesh: %s: %w", op, ErrClosed)
	}
	return fmt.Errorf("mesh: %s: %w", op, err)
}
