//go:build !linux

package loadtest

import "syscall"

// slowControl: elsewhere a slow reader only gets a small receive buffer
// (set after connecting, in dial).
func slowControl(network, address string, c syscall.RawConn) error { return nil }
