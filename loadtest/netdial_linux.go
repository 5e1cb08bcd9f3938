package loadtest

import (
	"syscall"
)

// slowMSS is the TCP maximum segment size a slow reader advertises. The
// edge's kernel sizes the socket's send buffer from the peer's MSS (two
// times ten segments to start with); on loopback, with a 64 KiB MSS, that is
// megabytes, enough to hide any backlog from the edge's per-connection
// queue. A small MSS keeps it to tens of KiB.
const slowMSS = 536

// slowControl sets a slow reader's socket options before it connects: a
// small receive buffer (slowReadBuffer) and a small MSS (slowMSS).
func slowControl(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, slowReadBuffer); serr != nil {
			return
		}
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, slowMSS)
	})
	if err != nil {
		return err
	}
	return serr
}
