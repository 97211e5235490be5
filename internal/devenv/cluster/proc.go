package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/lethe-store/lethe/internal/devenv"
)

// proc is a server process of the topology, a child of this process: its
// output goes to a log file; it can be stopped gently, killed (-9), frozen
// (SIGSTOP) and started again with the same command.
type proc struct {
	name    string
	logPath string
	build   func() *exec.Cmd // a fresh command each start

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

func newProc(name, logPath string, build func() *exec.Cmd) *proc {
	return &proc{name: name, logPath: logPath, build: build}
}

// start starts the process; its output is appended to its log.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.isExited() {
		return fmt.Errorf("%s: already running", p.name)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "==== %s: starting %s\n", time.Now().Format(time.RFC3339), p.name)
	cmd := p.build()
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = devenv.ChildSysProcAttr()
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", p.name, cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited, p.paused = cmd, exited, false
	return nil
}

func (p *proc) isExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// running reports whether the process is alive (frozen counts as alive).
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.isExited()
}

// pid returns the process id, or 0 if it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.isExited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// stop sends sig, then SIGKILL if the process has not exited after
// timeout. A frozen process is woken first.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.isExited() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	if p.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s: still running %s after %v; killed", p.name, timeout, sig)
	}
}

// kill kills the process (SIGKILL) and waits for it to exit.
func (p *proc) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.isExited() {
		return fmt.Errorf("%s: not running", p.name)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("%s: kill: %w", p.name, err)
	}
	<-p.exited
	return nil
}

// pause freezes the process (SIGSTOP) and waits until it is stopped.
func (p *proc) pause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.isExited() {
		return fmt.Errorf("%s: not running", p.name)
	}
	if err := devenv.Freeze(p.cmd.Process.Pid); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	p.paused = true
	return nil
}

// resume wakes a frozen process.
func (p *proc) resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused || p.cmd == nil {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("%s: resume: %w", p.name, err)
	}
	p.paused = false
	return nil
}

// poll calls ready every 200ms until it returns nil or timeout passes, and
// returns its last error then.
func poll(ctx context.Context, timeout time.Duration, ready func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready after %v: %w", timeout, last)
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
