package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// etcdMember is one member of the etcd cluster Patroni keeps its state in.
type etcdMember struct {
	name                 string
	clientPort, peerPort int
	*proc
}

func (m *etcdMember) clientURL() string { return fmt.Sprintf("http://127.0.0.1:%d", m.clientPort) }
func (m *etcdMember) peerURL() string   { return fmt.Sprintf("http://127.0.0.1:%d", m.peerPort) }

// newEtcd prepares the members of an etcd cluster with data under dir.
// Heartbeats every 100 ms and elections after 1 s: a member that dies is
// noticed in about a second, and on loopback no healthy member misses a
// heartbeat that long.
func newEtcd(dir string, ports *Ports) []*etcdMember {
	members := make([]*etcdMember, len(ports.EtcdClient))
	var initial []string
	for i := range members {
		m := &etcdMember{name: fmt.Sprintf("etcd%d", i+1), clientPort: ports.EtcdClient[i], peerPort: ports.EtcdPeer[i]}
		members[i] = m
		initial = append(initial, m.name+"="+m.peerURL())
	}
	for _, m := range members {
		m.proc = newProc(m.name, filepath.Join(dir, m.name+".log"), func() *exec.Cmd {
			return exec.Command("etcd",
				"--name", m.name,
				"--data-dir", filepath.Join(dir, m.name),
				"--listen-client-urls", m.clientURL(), "--advertise-client-urls", m.clientURL(),
				"--listen-peer-urls", m.peerURL(), "--initial-advertise-peer-urls", m.peerURL(),
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-token", "lethe-cluster", "--initial-cluster-state", "new",
				"--heartbeat-interval", "100", "--election-timeout", "1000",
				"--log-level", "warn")
		})
	}
	return members
}

// healthy asks a member's /health.
func (m *etcdMember) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.clientURL()+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Health != "true" {
		return fmt.Errorf("%s: not healthy (%d %q)", m.name, resp.StatusCode, h.Health)
	}
	return nil
}

// startEtcd starts every member and waits until all are healthy.
func startEtcd(ctx context.Context, members []*etcdMember) error {
	for _, m := range members {
		if err := m.start(); err != nil {
			return err
		}
	}
	return poll(ctx, 30*time.Second, func(ctx context.Context) error {
		for _, m := range members {
			if err := m.healthy(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}

func stopEtcd(members []*etcdMember) {
	for _, m := range members {
		if m != nil && m.proc != nil {
			_ = m.stop(syscall.SIGTERM, 10*time.Second)
		}
	}
}

// etcdHosts are the client addresses Patroni is given.
func etcdHosts(members []*etcdMember) []string {
	var out []string
	for _, m := range members {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", m.clientPort))
	}
	return out
}
