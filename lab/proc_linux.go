package lab

import "syscall"

// childAttr puts a child in its own process group (a terminal's Ctrl-C
// reaches the lab only, which stops the children in order) and has the
// kernel SIGKILL it when the lab dies, so a lab killed with -9 leaves no
// process behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
