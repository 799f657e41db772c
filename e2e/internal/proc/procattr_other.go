//go:build !linux

package proc

import "syscall"

// childProcAttr leaves the child in this program's process group, so that
// Ctrl-C reaches it too; stop still waits for it to exit.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
