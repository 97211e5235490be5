//go:build !linux

package devenv

import "syscall"

// ChildSysProcAttr returns the process attributes for a server started as a
// child of the Go process: a process group of its own, so that Ctrl-C in the
// terminal reaches only the Go parent, which stops its children in order.
// Outside Linux a child is not signalled when its parent dies.
func ChildSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
