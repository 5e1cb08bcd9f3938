package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
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
	l := &raftLayer{n: n, group: group, accept: make(chan net.Conn), done: make(chan struct{})}
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
	done   chan struct{} // closed by Close
	once   sync.Once
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
	case <-l.done:
		reset(s, codeClosed)
	case <-n.ctx.Done():
		reset(s, codeClosed)
	}
}

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("mesh: raft accept: %w", ErrClosed)
	case <-l.n.ctx.Done():
		return nil, fmt.Errorf("mesh: raft accept: %w", ErrClosed)
	}
}

// Close stops Accept; it leaves the node and its connections open.
func (l *raftLayer) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *raftLayer) Addr() net.Addr { return l.n.udp.LocalAddr() }

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.n.ctx, timeout)
	defer cancel()
	s, c, err := l.n.openStream(ctx, string(address), kindRaft, l.group)
	if err != nil {
		return nil, fmt.Errorf("mesh: raft dial %s: %w", address, err)
	}
	// Raft goes to cores only (role.go): a node with an edge or admin
	// certificate at a raft address gets no log entries or votes.
	if r := peerRole(c); r != RoleCore {
		reset(s, codeForbidden)
		return nil, fmt.Errorf("mesh: raft dial %s: %w: peer %q is a %q, not a core", address, ErrForbidden, peerName(c), r)
	}
	return &raftConn{Stream: s, c: c}, nil
}

// raftConn is a raft stream as a net.Conn.
type raftConn struct {
	*quic.Stream
	c *quic.Conn
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
	rc.Stream.CancelRead(codeNoError)
	return rc.Stream.Close()
}
