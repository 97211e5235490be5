package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The faults the drills inject, and the repairs that follow them. Each
// fault returns a description of what it hit.

// primary returns the Patroni node that is primary.
func (c *Cluster) primary(ctx context.Context) (*patroniNode, error) {
	for _, n := range c.pg {
		if r, err := n.role(ctx); err == nil && r == "primary" {
			return n, nil
		}
	}
	return nil, errors.New("no PostgreSQL primary")
}

// standby returns a Patroni node that is not primary.
func (c *Cluster) standby(ctx context.Context) (*patroniNode, error) {
	p, err := c.primary(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range c.pg {
		if n != p {
			return n, nil
		}
	}
	return nil, errors.New("no PostgreSQL standby")
}

// KillPostgresPrimary kills the primary's postmaster with SIGKILL (its
// Patroni stays up, notices, and a failover follows).
func (c *Cluster) KillPostgresPrimary(ctx context.Context) (string, error) {
	p, err := c.primary(ctx)
	if err != nil {
		return "", err
	}
	pid := p.postmasterPID()
	if pid == 0 {
		return "", fmt.Errorf("%s: no postmaster", p.name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return "", err
	}
	return fmt.Sprintf("postmaster of %s (pid %d)", p.name, pid), nil
}

// PauseStandby freezes the standby node whole (Patroni and PostgreSQL,
// one process group) with SIGSTOP; ResumeStandby wakes it.
func (c *Cluster) PauseStandby(ctx context.Context) (string, error) {
	s, err := c.standby(ctx)
	if err != nil {
		return "", err
	}
	// Patroni, the postmaster and every PostgreSQL process (each calls
	// setsid: no process group holds them all) are frozen one by one.
	if s.pid() == 0 || s.postmasterPID() == 0 {
		return "", fmt.Errorf("%s: not running", s.name)
	}
	pids := append([]int{s.pid()}, processTree(s.postmasterPID())...)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
			return "", err
		}
		c.paused = append(c.paused, pid)
	}
	return fmt.Sprintf("standby %s (Patroni and %d PostgreSQL processes)", s.name, len(pids)-1), nil
}

// ResumeStandby wakes the processes PauseStandby froze.
func (c *Cluster) ResumeStandby() error {
	var err error
	for _, pid := range c.paused {
		if e := syscall.Kill(pid, syscall.SIGCONT); e != nil && !errors.Is(e, syscall.ESRCH) {
			err = errors.Join(err, e)
		}
	}
	c.paused = nil
	return err
}

// processTree returns pid and its descendants, from /proc.
func processTree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: the fields after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// KillActiveVault kills the active Vault node with SIGKILL; RestartVault
// starts and unseals it again.
func (c *Cluster) KillActiveVault(ctx context.Context) (string, error) {
	v := activeVault(ctx, c.vault)
	if v == nil {
		return "", errors.New("no active Vault node")
	}
	if err := v.kill(); err != nil {
		return "", err
	}
	return v.name, nil
}

// RestartVault starts every Vault node that is down and unseals it, then
// waits for an active node.
func (c *Cluster) RestartVault(ctx context.Context) error {
	for _, v := range c.vault {
		if v.running() {
			continue
		}
		if err := v.start(); err != nil {
			return err
		}
		if err := unseal(ctx, v, c.state.VaultUnsealKey); err != nil {
			return err
		}
	}
	return waitActive(ctx, c.vault)
}

// KillLethe kills `lethe serve` number i (from 0) with SIGKILL;
// RestartLethe starts the servers that are down.
func (c *Cluster) KillLethe(i int) (string, error) {
	if err := c.lethe[i].kill(); err != nil {
		return "", err
	}
	return c.lethe[i].name, nil
}

// RestartLethe starts every `lethe serve` that is down and waits until it
// is ready.
func (c *Cluster) RestartLethe(ctx context.Context) error {
	for i, l := range c.lethe {
		if l.running() {
			continue
		}
		if err := l.start(); err != nil {
			return err
		}
		port := c.state.Ports.Lethe[i]
		if err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
			if ok, err := restOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); err != nil || !ok {
				return fmt.Errorf("%s not ready (%v)", l.name, err)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// RestartEtcd restarts the etcd members one after the other (a rolling
// restart: a quorum stays up), each healthy again before the next. A
// member that needed SIGKILL to stop is stopped all the same: noted, not
// an error.
func (c *Cluster) RestartEtcd(ctx context.Context) (string, error) {
	var notes []string
	for _, m := range c.etcd {
		if err := m.stop(syscall.SIGTERM, 10*time.Second); err != nil {
			notes = append(notes, err.Error())
		}
		if err := m.start(); err != nil {
			return "", err
		}
		if err := poll(ctx, 30*time.Second, m.healthy); err != nil {
			return "", err
		}
	}
	if len(notes) > 0 {
		return "etcd1..3, one at a time (" + strings.Join(notes, "; ") + ")", nil
	}
	return "etcd1..3, one at a time", nil
}

// Healthy waits until the topology is whole again: a PostgreSQL primary
// with a synchronous standby, an active Vault node with every node
// unsealed, and every `lethe serve` ready.
func (c *Cluster) Healthy(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, func(ctx context.Context) error {
		roles := map[string]int{}
		for _, n := range c.pg {
			if r, err := n.role(ctx); err == nil {
				roles[r]++
			}
		}
		if roles["primary"] != 1 || roles["sync"] != 1 {
			return fmt.Errorf("PostgreSQL roles %v", roles)
		}
		for _, v := range c.vault {
			if h := v.health(ctx); h != http.StatusOK && h != http.StatusTooManyRequests {
				return fmt.Errorf("%s: health %d", v.name, h)
			}
		}
		for i, port := range c.state.Ports.Lethe {
			if ok, err := restOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); err != nil || !ok {
				return fmt.Errorf("lethe%d not ready (%v)", i+1, err)
			}
		}
		return nil
	})
}

// VaultCaughtUp waits until every Vault node has applied the Raft log up
// to what the active node had committed when it was called: from then on
// each node's own storage holds every write made before (a read through a
// standby is forwarded to the active node, so reads cannot show this).
func (c *Cluster) VaultCaughtUp(ctx context.Context) error {
	type leader struct {
		Committed uint64 `json:"raft_committed_index"`
		Applied   uint64 `json:"raft_applied_index"`
	}
	active := activeVault(ctx, c.vault)
	if active == nil {
		return errors.New("no active Vault node")
	}
	var a leader
	if _, err := vaultCall(ctx, http.MethodGet, active.addr()+"/v1/sys/leader", "", nil, &a); err != nil {
		return err
	}
	return poll(ctx, 60*time.Second, func(ctx context.Context) error {
		for _, v := range c.vault {
			var l leader
			if _, err := vaultCall(ctx, http.MethodGet, v.addr()+"/v1/sys/leader", "", nil, &l); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			if l.Applied < a.Committed {
				return fmt.Errorf("%s applied %d of %d", v.name, l.Applied, a.Committed)
			}
		}
		return nil
	})
}

// LetheURLs are the `lethe serve` processes' own addresses (not through
// HAProxy).
func (c *Cluster) LetheURLs() []string {
	var out []string
	for _, port := range c.state.Ports.Lethe {
		out = append(out, fmt.Sprintf("http://127.0.0.1:%d", port))
	}
	return out
}

// VaultNodeURLs are the Vault nodes' own addresses.
func (c *Cluster) VaultNodeURLs() []string {
	var out []string
	for _, v := range c.vault {
		out = append(out, v.addr())
	}
	return out
}
