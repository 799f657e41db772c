package pkceauth

import "syscall"

// dieWithParent makes a test's server process end with the test binary,
// even when that is killed.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
