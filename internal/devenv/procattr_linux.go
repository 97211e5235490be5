package devenv

import "syscall"

// ChildSysProcAttr returns the process attributes for a server started as a
// child of the Go process: a process group of its own, so that Ctrl-C in the
// terminal reaches only the Go parent (which stops its children in order),
// and SIGTERM when the parent dies, so that no server outlives a killed
// parent. (Linux sends the signal when the OS thread that started the child
// exits; Go keeps its threads for the life of the process unless a goroutine
// locked to one ends.)
func ChildSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
