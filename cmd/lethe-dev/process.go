package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout bounds stopping all services.
const stopTimeout = 90 * time.Second

// serviceStack stops services in the reverse order of their start. The
// stop functions say what they do themselves.
type serviceStack struct {
	names []string
	stops []func(context.Context) error
}

// push adds a service, named in errors.
func (s *serviceStack) push(name string, stop func(context.Context) error) {
	s.names = append(s.names, name)
	s.stops = append(s.stops, stop)
}

// len returns how many services the stack holds: started, not yet
// stopped.
func (s *serviceStack) len() int { return len(s.stops) }

// stopAll stops every service, the last started first, within
// stopTimeout, and forgets them. It returns the errors of all stops.
func (s *serviceStack) stopAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var errs []error
	for i := len(s.stops) - 1; i >= 0; i-- {
		if err := s.stops[i](ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.names[i], err))
		}
	}
	s.names, s.stops = nil, nil
	return errors.Join(errs...)
}

// waitHealthy waits until url answers 200, the process exits (exited
// closes) or a minute passes.
func waitHealthy(ctx context.Context, url string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited")
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to answer 200: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}

// stopProcess sends SIGTERM to a process and waits for it to exit (exited
// closes), killing it after 15 seconds or when ctx ends.
func stopProcess(ctx context.Context, cmd *exec.Cmd, exited <-chan struct{}) error {
	if isClosed(exited) {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	<-exited
	return errors.New("still running 15s after SIGTERM; killed it")
}

// isClosed reports whether c is closed, without waiting.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// prefixWriter writes every line with a prefix. It is safe for concurrent
// use.
type prefixWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	midLine bool
}

// newPrefixWriter returns a prefixWriter writing to w.
func newPrefixWriter(w io.Writer, prefix string) *prefixWriter {
	return &prefixWriter{w: w, prefix: prefix}
}

// Write writes b to the underlying writer, with the prefix at the start
// of each line. It returns len(b) or the underlying writer's error.
func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	var out []byte
	for len(b) > 0 {
		if !p.midLine {
			out = append(out, p.prefix...)
		}
		line, rest, found := strings.Cut(string(b), "\n")
		out = append(out, line...)
		if found {
			out = append(out, '\n')
		}
		p.midLine = !found
		b = []byte(rest)
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}
