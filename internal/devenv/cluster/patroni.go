package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// patroniNode is one PostgreSQL server managed by Patroni.
type patroniNode struct {
	name             string
	pgPort, restPort int
	dir              string // the node's folder: config, data, socket
	*proc
}

func (n *patroniNode) dataDir() string { return filepath.Join(n.dir, "data") }
func (n *patroniNode) restURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.restPort) }

// Failover settings. Patroni requires ttl >= loop_wait + 2*retry_timeout;
// ttl is kept well above that, so that a slow loop on a loaded machine (or
// an etcd member restarting) does not cost the leader its key. A crashed
// postmaster is failed over at once (primary_start_timeout 0), not
// restarted in place for up to 5 minutes, whatever ttl is; a leader whose
// Patroni dies is replaced after ttl; loop_wait bounds how long the REST
// API (which HAProxy follows) may call a dead primary "primary".
const (
	patroniTTL          = 20
	patroniLoopWait     = 2
	patroniRetryTimeout = 5
)

// patroniConfig is a node's configuration (JSON is YAML too).
func patroniConfig(n *patroniNode, hosts []string, binDir string, s *State) ([]byte, error) {
	cfg := map[string]any{
		"scope":     "lethe",
		"namespace": "/lethe/",
		"name":      n.name,
		"log":       map[string]any{"level": "INFO"},
		"restapi":   map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", n.restPort), "connect_address": fmt.Sprintf("127.0.0.1:%d", n.restPort)},
		"etcd3":     map[string]any{"hosts": hosts, "protocol": "http"},
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl": patroniTTL, "loop_wait": patroniLoopWait, "retry_timeout": patroniRetryTimeout,
				"maximum_lag_on_failover": 1 << 20,
				// An acknowledged commit exists on two nodes; with one node
				// left, writes wait (synchronous_mode_strict is off, so
				// Patroni lets the primary go on alone once the standby is
				// gone for good).
				"synchronous_mode":      true,
				"primary_start_timeout": 0,
				"postgresql": map[string]any{
					"use_pg_rewind": true,
					"use_slots":     true,
					"parameters": map[string]any{
						"wal_log_hints":   "on",
						"max_connections": 300,
						"wal_keep_size":   "256MB",
						"hot_standby":     "on",
					},
				},
			},
			"initdb": []any{map[string]string{"encoding": "UTF8"}, map[string]string{"locale": "C.UTF-8"}, "data-checksums"},
		},
		"postgresql": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", n.pgPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", n.pgPort),
			"data_dir":        n.dataDir(),
			"bin_dir":         binDir,
			"pgpass":          filepath.Join(n.dir, "pgpass"),
			"authentication": map[string]any{
				"superuser":   map[string]string{"username": "postgres", "password": s.PostgresPassword},
				"replication": map[string]string{"username": "replicator", "password": s.ReplicationPassword},
			},
			"pg_hba": []string{
				"local all all trust",
				"host all all 127.0.0.1/32 scram-sha-256",
				"host replication replicator 127.0.0.1/32 scram-sha-256",
			},
			"parameters": map[string]any{"unix_socket_directories": n.dir},
		},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// newPatroni prepares the nodes: folders owned by the postgres user (when
// this process is root: PostgreSQL refuses to run as root), configuration
// files, and the commands that run Patroni as that user.
func newPatroni(dir string, ports *Ports, hosts []string, binDir string, s *State) ([]*patroniNode, error) {
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	nodes := make([]*patroniNode, len(ports.PostgresNode))
	for i := range nodes {
		n := &patroniNode{name: fmt.Sprintf("pg%d", i+1), pgPort: ports.PostgresNode[i], restPort: ports.PatroniREST[i]}
		n.dir = filepath.Join(dir, n.name)
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, err
		}
		b, err := patroniConfig(n, hosts, binDir, s)
		if err != nil {
			return nil, err
		}
		cfgPath := filepath.Join(n.dir, "patroni.yml")
		if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
			return nil, err
		}
		if cred != nil {
			if err := chownTree(n.dir, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
		n.proc = newProc(n.name, filepath.Join(dir, n.name+".log"), func() *exec.Cmd {
			// Debian's Patroni with the system Python and its packages
			// (psycopg2, python3-etcd): a python3 earlier on PATH may lack them.
			cmd := exec.Command("/usr/bin/python3", "/usr/bin/patroni", cfgPath)
			cmd.Dir = n.dir
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + n.dir, "LANG=C.UTF-8"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: cred}
			return cmd
		})
		nodes[i] = n
	}
	return nodes, nil
}

// postgresCredential is the postgres user's, when this process is root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user (install the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// role asks a node's REST API what it is: "primary", "sync" (the
// synchronous standby), "replica", or an error.
func (n *patroniNode) role(ctx context.Context) (string, error) {
	for _, r := range []string{"primary", "sync"} {
		ok, err := restOK(ctx, n.restURL()+"/"+r)
		if err != nil {
			return "", fmt.Errorf("%s: %w", n.name, err)
		}
		if ok {
			return r, nil
		}
	}
	if ok, err := restOK(ctx, n.restURL()+"/replica"); err == nil && ok {
		return "replica", nil
	}
	return "", fmt.Errorf("%s: neither primary nor replica yet", n.name)
}

// restOK reports whether GET url answers 200 (any other status: false).
func restOK(ctx context.Context, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// startPatroni starts every node and waits until one is primary and
// another its synchronous standby.
func startPatroni(ctx context.Context, nodes []*patroniNode) error {
	for _, n := range nodes {
		if err := stopLeftoverPostmaster(n.dataDir()); err != nil {
			return err
		}
		if err := n.start(); err != nil {
			return err
		}
	}
	return poll(ctx, 120*time.Second, func(ctx context.Context) error {
		roles := map[string]int{}
		var errs []error
		for _, n := range nodes {
			r, err := n.role(ctx)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			roles[r]++
		}
		if roles["primary"] == 1 && roles["sync"] == 1 {
			return nil
		}
		return fmt.Errorf("roles %v: %w", roles, errors.Join(errs...))
	})
}

// stopLeftoverPostmaster stops a postmaster a killed run left behind on
// dataDir (Patroni killed with -9 leaves its postmaster running).
func stopLeftoverPostmaster(dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("a PostgreSQL server (pid %d) left on %s does not stop", pid, dataDir)
}

// postmasterPID returns the pid of the node's PostgreSQL server, 0 if none.
func (n *patroniNode) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(n.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if pid > 0 && syscall.Kill(pid, 0) == nil {
		return pid
	}
	return 0
}

// stopPatroni stops the nodes in the order given (standbys first, so that
// no primary is left waiting on a synchronous standby that went away).
func stopPatroni(nodes []*patroniNode) {
	for _, n := range nodes {
		if n == nil || n.proc == nil {
			continue
		}
		_ = n.stop(syscall.SIGTERM, 30*time.Second)
		_ = stopLeftoverPostmaster(n.dataDir())
	}
}
