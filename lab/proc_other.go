//go:build !linux

package lab

import "syscall"

// childAttr puts a child in its own process group; only Linux has a
// parent-death signal, so elsewhere a lab killed with -9 leaves its
// children running.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
