package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"
)

// RaftLayer returns a raft.StreamLayer carrying hashicorp/raft traffic on
// kind-3 streams of the mesh's connections, for raft.NewNetworkTransport. The
// newest layer receives inbound raft streams; closing it (as
// NetworkTransport.Close does) rejects them until RaftLayer is called again.
// It is the layer of the unnamed group, RaftLayerFor("").
func (n *Node) RaftLayer() raft.StreamLayer { return n.RaftLayerFor("") }

// RaftLayerFor returns the raft.StreamLayer of one raft group among the
// many a node hosts (issue 9: many shards per core). A raft stream names
// its group in the stream header (where an rpc names its method), and the
// node hands it to that group's newest layer; a stream for a group with no
// layer is reset. The unnamed group "" is the region's first shard, whose
// streams carried no name before groups existed, so nodes of either
// version keep talking to each other about it.
func (n *Node) RaftLayerFor(group string) raft.StreamLayer {
	l := &raftLayer{n: n, group: group, accept: make(chan net.Conn)}
	l.ctx, l.cancel = context.WithCancel(n.ctx)
	n.mu.Lock()
	if n.raft == nil {
		n.raft = make(map[string]*raftLayer)
	}
	n.raft[group] = l
	n.mu.Unlock()
	return l
}

type raftLayer struct {
	n      *Node
	group  string        // the raft group's name; "" the region's first shard
	accept chan net.Conn // unbuffered: hand-off to Accept
	// ctx ends with Close or with the node: Accept returns and dials in
	// progress give up, so a raft group shutting down is not held by a
	// dial to a dead peer for the transport's whole timeout.
	ctx    context.Context
	cancel context.CancelFunc
}

// deliverRaft hands an inbound raft stream to the current layer's Accept,
// or resets it if there is none.
func (n *Node) deliverRaft(c *quic.Conn, s *quic.Stream, group string) {
	n.mu.Lock()
	l := n.raft[group]
	n.mu.Unlock()
	if l == nil {
		reset(s, codeProtocol)
		return
	}
	select {
	case l.accept <- &raftConn{Stream: s, c: c}:
	case <-l.ctx.Done():
		reset(s, codeClosed)
	}
}

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("mesh: raft accept: %w", ErrClosed)
	}
}

// Close stops Accept and the layer's dials in progress; it leaves the
// node and its connections open.
func (l *raftLayer) Close() error {
	l.cancel()
	return nil
}

func (l *raftLayer) Addr() net.Addr { return l.n.udp.LocalAddr() }

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, timeout)
	defer cancel()
	s, c, err := l.n.openStream(ctx, string(address), kindRaft, l.group)
	if err != nil {
		if l.ctx.Err() != nil {
			err = ErrClosed
		}
		return nil, fmt.Errorf("mesh: raft dial %s: %w", address, err)
	}
	// Raft goes to cores only (role.go): a node with an edge or admin
	// certificate at a raft address gets no log entries or votes.
	if r := peerRole(c); r != RoleCore {
		reset(s, codeForbidden)
		return nil, fmt.Errorf("mesh: raft dial %s: %w: peer %q is a %q, not a core", address, ErrForbidden, peerName(c), r)
	}
	rc := &raftConn{Stream: s, c: c}
	// An RPC waiting on a dead peer's answer ends with the layer too.
	rc.stop = context.AfterFunc(l.ctx, func() {
		s.CancelRead(codeClosed)
		s.CancelWrite(codeClosed)
	})
	return rc, nil
}

// raftConn is a raft stream as a net.Conn.
type raftConn struct {
	*quic.Stream
	c    *quic.Conn
	stop func() bool // a dialed stream's AfterFunc on its layer; nil if accepted
}

func (rc *raftConn) LocalAddr() net.Addr  { return rc.c.LocalAddr() }
func (rc *raftConn) RemoteAddr() net.Addr { return rc.c.RemoteAddr() }

// Read reports a graceful shutdown of the stream or connection (codeNoError,
// codeClosed) as io.EOF, so raft treats it as a peer hanging up.
func (rc *raftConn) Read(p []byte) (int, error) {
	n, err := rc.Stream.Read(p)
	if err != nil && gracefulClose(err) {
		err = io.EOF
	}
	return n, err
}

func gracefulClose(err error) bool {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return se.ErrorCode == codeNoError || se.ErrorCode == codeClosed
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return ae.ErrorCode == codeNoError || ae.ErrorCode == codeClosed
	}
	return false
}

// Close ends both directions of the stream.
func (rc *raftConn) Close() error {
	if rc.stop != nil {
		rc.stop()
	}
	rc.Stream.CancelRead(codeNoError)
	return rc.Stream.Close()
}
