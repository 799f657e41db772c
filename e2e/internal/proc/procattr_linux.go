package proc

import "syscall"

// childProcAttr puts a child in its own process group, so that Ctrl-C
// reaches only this program (the demo), which then stops the children in
// order; and stops the child if this program dies without stopping it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
