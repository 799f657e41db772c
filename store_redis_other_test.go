//go:build !linux

package pkceauth

import "syscall"

func dieWithParent() *syscall.SysProcAttr { return nil }
