package mesh

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
)

// LocalDrops counts the datagrams that sockets made by TolerateLocalDrops
// could not send because the local host refused them.
var LocalDrops atomic.Int64

// TolerateLocalDrops wraps a UDP socket for quic-go so that a datagram the
// local host refuses to send counts as lost on the wire instead of ending
// the QUIC connection that sent it.
//
// quic-go ends a connection on any send error but "message too long" (its
// send queue returns the error; the connection is destroyed). The kernel
// refuses a datagram for reasons that say nothing about the connection: a
// firewall rule that drops on output (iptables DROP answers sendmsg with
// EPERM, so 1 % of packets dropped that way killed every WebTransport
// session within seconds: docs/BENCHMARKS.md), a full device queue
// (ENOBUFS), a route that flapped (ENETUNREACH, EHOSTUNREACH). QUIC
// retransmits what is lost, and its idle timeout ends a connection whose
// packets never leave, so these are better treated as loss.
//
// "Message too long" (PMTU discovery) and EIO (quic-go's probe for GSO)
// still reach quic-go. The wrapper keeps *net.UDPConn's methods, so quic-go
// keeps batching, GSO and ECN.
func TolerateLocalDrops(c *net.UDPConn) net.PacketConn {
	return &tolerantUDP{UDPConn: c}
}

type tolerantUDP struct {
	*net.UDPConn
	// sendHook, in tests, fails a send before the socket sees it.
	sendHook func() error
}

// localDrop reports whether err is the local host refusing one datagram.
func localDrop(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.EPERM, syscall.ENOBUFS, syscall.ENETUNREACH, syscall.EHOSTUNREACH:
		return true
	}
	return false
}

func (c *tolerantUDP) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	n, oobn, err := 0, 0, c.hook()
	if err == nil {
		n, oobn, err = c.UDPConn.WriteMsgUDP(b, oob, addr)
	}
	if err != nil && localDrop(err) {
		LocalDrops.Add(1)
		return len(b), len(oob), nil
	}
	return n, oobn, err
}

func (c *tolerantUDP) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := 0, c.hook()
	if err == nil {
		n, err = c.UDPConn.WriteTo(b, addr)
	}
	if err != nil && localDrop(err) {
		LocalDrops.Add(1)
		return len(b), nil
	}
	return n, err
}

// hook is the test's failure for the next send, if any.
func (c *tolerantUDP) hook() error {
	if c.sendHook == nil {
		return nil
	}
	return c.sendHook()
}
