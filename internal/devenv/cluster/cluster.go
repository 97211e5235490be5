package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-store/lethe/internal/devenv"
)

// Ports are the topology's loopback ports, chosen on its first start and
// kept in its folder: etcd's peers and Patroni's members record their
// addresses, so a restart must use the same ones.
type Ports struct {
	EtcdClient, EtcdPeer      []int
	PostgresNode, PatroniREST []int
	VaultAPI, VaultCluster    []int
	Lethe                     []int
	HAProxyPostgres           int
	HAProxyPostgresReplica    int
	HAProxyVault              int
	HAProxyLethe              int
}

// State is what the topology keeps between starts (state.json, mode 0600):
// its ports and its secrets. Local use only: it holds Vault's unseal key
// and root token.
type State struct {
	Ports               Ports
	PostgresPassword    string
	ReplicationPassword string
	VaultUnsealKey      string
	VaultRootToken      string
	AdminToken          string
}

// Options configure a Cluster.
type Options struct {
	// Dir holds every server's data and logs (created if missing).
	Dir string
	// VaultBin is the vault program; Lethe the lethe program.
	VaultBin, Lethe string
	// VaultPolicy is Lethe's Vault policy (docs/vault-policy.hcl): each
	// `lethe serve` gets a token of its own bound to it alone, never the
	// root token.
	VaultPolicy string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Cluster is Lethe's highly available topology on one machine: etcd (3
// members), PostgreSQL under Patroni (a primary and a synchronous
// standby), Vault with integrated storage (3 nodes), three `lethe serve`
// processes, and HAProxy in front of each tier.
type Cluster struct {
	opts    Options
	state   *State
	etcd    []*etcdMember
	pg      []*patroniNode
	vault   []*vaultNode
	lethe   []*proc
	tokens  []string // each lethe serve's Vault token
	haproxy *proc
	paused  []int // process groups frozen by PauseStandby
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// loadState reads the state of dir, or makes a new one with free ports and
// fresh secrets.
func loadState(dir string) (*State, error) {
	path := filepath.Join(dir, "state.json")
	b, err := os.ReadFile(path)
	if err == nil {
		var s State
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	s := &State{PostgresPassword: randomHex(16), ReplicationPassword: randomHex(16), AdminToken: randomHex(32)}
	taken := map[int]bool{}
	free := func(n int) ([]int, error) {
		var out []int
		for len(out) < n {
			p, err := devenv.FreePort()
			if err != nil {
				return nil, err
			}
			if !taken[p] {
				taken[p] = true
				out = append(out, p)
			}
		}
		return out, nil
	}
	p := &s.Ports
	for _, f := range []struct {
		dst *[]int
		n   int
	}{{&p.EtcdClient, 3}, {&p.EtcdPeer, 3}, {&p.PostgresNode, 2}, {&p.PatroniREST, 2}, {&p.VaultAPI, 3}, {&p.VaultCluster, 3}, {&p.Lethe, 3}} {
		if *f.dst, err = free(f.n); err != nil {
			return nil, err
		}
	}
	front, err := free(4)
	if err != nil {
		return nil, err
	}
	p.HAProxyPostgres, p.HAProxyPostgresReplica, p.HAProxyVault, p.HAProxyLethe = front[0], front[1], front[2], front[3]
	return s, nil
}

func (c *Cluster) saveState() error {
	b, err := json.MarshalIndent(c.state, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.opts.Dir, "state.json"), b, 0o600)
}

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Log != nil {
		fmt.Fprintf(c.opts.Log, "==> "+format+"\n", args...)
	}
}

// Start brings the topology up (or back up, with its data) and waits until
// each tier answers through HAProxy. On an error, what was started is
// stopped.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := devenv.CheckPostgresAccess(ctx, opts.Dir); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts}
	if c.state, err = loadState(opts.Dir); err != nil {
		return nil, err
	}
	if err := c.saveState(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	ports := &c.state.Ports
	binDir, err := devenv.PostgresBinDir(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	c.etcd = newEtcd(opts.Dir, ports)
	c.logf("starting etcd (3 members)")
	if err := startEtcd(ctx, c.etcd); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if c.pg, err = newPatroni(opts.Dir, ports, etcdHosts(c.etcd), binDir, c.state); err != nil {
		return nil, err
	}
	if c.vault, err = newVaultRaft(opts.Dir, opts.VaultBin, ports); err != nil {
		return nil, err
	}
	if c.haproxy, err = newHAProxy(opts.Dir, ports, c.pg, c.vault); err != nil {
		return nil, err
	}
	c.logf("starting HAProxy on 127.0.0.1 (PostgreSQL :%d, replicas :%d, Vault :%d, Lethe :%d)",
		ports.HAProxyPostgres, ports.HAProxyPostgresReplica, ports.HAProxyVault, ports.HAProxyLethe)
	if err := c.haproxy.start(); err != nil {
		return nil, err
	}
	// PostgreSQL and Vault come up side by side: each takes tens of
	// seconds, mostly waiting.
	c.logf("starting PostgreSQL under Patroni (a primary and a synchronous standby) and Vault (3 Raft nodes)")
	pgDone := make(chan error, 1)
	go func() { pgDone <- startPatroni(ctx, c.pg) }()
	verr := startVaultRaft(ctx, c.vault, c.state, c.saveState)
	if perr := <-pgDone; perr != nil {
		return nil, fmt.Errorf("patroni: %w", perr)
	}
	if verr != nil {
		return nil, fmt.Errorf("vault: %w", verr)
	}
	c.logf("PostgreSQL and Vault are up (%s)", time.Since(start).Round(time.Second))
	if err := c.prepareDatabase(ctx); err != nil {
		return nil, err
	}
	if err := c.letheTokens(ctx); err != nil {
		return nil, err
	}
	c.lethe = make([]*proc, len(ports.Lethe))
	for i, port := range ports.Lethe {
		c.lethe[i] = newProc(fmt.Sprintf("lethe%d", i+1), filepath.Join(opts.Dir, fmt.Sprintf("lethe%d.log", i+1)), c.letheCommand(port, c.tokens[i]))
		if err := c.lethe[i].start(); err != nil {
			return nil, err
		}
	}
	c.logf("starting 3 lethe serve processes")
	if err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
		for i, port := range ports.Lethe {
			if ok, err := restOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); err != nil || !ok {
				return fmt.Errorf("lethe%d not ready (%v)", i+1, err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := poll(ctx, 30*time.Second, func(ctx context.Context) error {
		if ok, err := restOK(ctx, c.LetheURL()+"/readyz"); err != nil || !ok {
			return fmt.Errorf("lethe through HAProxy not ready (%v)", err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	c.logf("the topology is up in %s", time.Since(start).Round(time.Second))
	return c, nil
}

// prepareDatabase creates the lethe database through HAProxy (the
// primary) and applies Lethe's migrations.
func (c *Cluster) prepareDatabase(ctx context.Context) error {
	err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, c.postgresURL("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'lethe')`).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			_, err = conn.Exec(ctx, `CREATE DATABASE lethe`)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create the lethe database: %w", err)
	}
	cmd := exec.CommandContext(ctx, c.opts.Lethe, "migrate")
	cmd.Env = append(os.Environ(), "LETHE_DATABASE_URL="+c.DatabaseURL())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lethe migrate: %w: %s", err, out)
	}
	return nil
}

// letheTokens writes Lethe's policy into Vault and makes one token per
// server bound to it alone (no default policy): a server's credentials
// can be revoked alone, and none can list subjects or touch the
// reference secret beyond creating it once.
func (c *Cluster) letheTokens(ctx context.Context) error {
	policy, err := os.ReadFile(c.opts.VaultPolicy)
	if err != nil {
		return fmt.Errorf("lethe's vault policy: %w", err)
	}
	if _, err := vaultCall(ctx, http.MethodPut, c.VaultURL()+"/v1/sys/policies/acl/lethe", c.state.VaultRootToken,
		map[string]string{"policy": string(policy)}, nil); err != nil {
		return fmt.Errorf("write lethe's vault policy: %w", err)
	}
	c.tokens = make([]string, len(c.state.Ports.Lethe))
	for i := range c.tokens {
		var out struct {
			Auth struct {
				ClientToken string `json:"client_token"`
			} `json:"auth"`
		}
		if _, err := vaultCall(ctx, http.MethodPost, c.VaultURL()+"/v1/auth/token/create", c.state.VaultRootToken, map[string]any{
			"policies": []string{"lethe"}, "no_default_policy": true, "display_name": fmt.Sprintf("lethe-serve-%d", i+1),
		}, &out); err != nil || out.Auth.ClientToken == "" {
			return fmt.Errorf("a vault token for lethe%d: %v", i+1, err)
		}
		c.tokens[i] = out.Auth.ClientToken
	}
	return nil
}

func (c *Cluster) letheCommand(port int, vaultToken string) func() *exec.Cmd {
	return func() *exec.Cmd {
		cmd := exec.Command(c.opts.Lethe, "serve")
		cmd.Env = append(devenvWithout(os.Environ(), "LETHE_", "VAULT_"),
			"LETHE_DATABASE_URL="+c.DatabaseURL(),
			"LETHE_VAULT_ADDR="+c.VaultURL(),
			"LETHE_VAULT_TOKEN="+vaultToken,
			"LETHE_ADMIN_TOKEN="+c.state.AdminToken,
			fmt.Sprintf("LETHE_LISTEN_ADDR=127.0.0.1:%d", port),
			"LETHE_LOG_FORMAT=json")
		return cmd
	}
}

func devenvWithout(env []string, prefixes ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, p := range prefixes {
			if len(kv) >= len(p) && kv[:len(p)] == p {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

func (c *Cluster) postgresURL(database string) string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/%s?sslmode=disable", c.state.PostgresPassword, c.state.Ports.HAProxyPostgres, database)
}

// DatabaseURL is the lethe database through HAProxy (the primary).
func (c *Cluster) DatabaseURL() string { return c.postgresURL("lethe") }

// ReplicaDatabaseURL is the lethe database through HAProxy's standby
// frontend.
func (c *Cluster) ReplicaDatabaseURL() string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/lethe?sslmode=disable", c.state.PostgresPassword, c.state.Ports.HAProxyPostgresReplica)
}

// VaultURL is Vault through HAProxy (the active node).
func (c *Cluster) VaultURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.state.Ports.HAProxyVault)
}

// LetheURL is Lethe's API through HAProxy.
func (c *Cluster) LetheURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.state.Ports.HAProxyLethe)
}

// AdminToken is the servers' bootstrap admin token; VaultRootToken Vault's
// root token (local use only).
func (c *Cluster) AdminToken() string     { return c.state.AdminToken }
func (c *Cluster) VaultRootToken() string { return c.state.VaultRootToken }

// Stop stops everything, front to back: HAProxy, the Lethe servers, Vault,
// PostgreSQL (the standby first), etcd. The data stays.
func (c *Cluster) Stop() {
	_ = c.ResumeStandby()
	if c.haproxy != nil {
		_ = c.haproxy.stop(syscall.SIGTERM, 5*time.Second)
	}
	for _, l := range c.lethe {
		if l != nil { // Start may have failed before making it
			_ = l.stop(syscall.SIGTERM, 35*time.Second)
		}
	}
	stopVaultRaft(c.vault)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var primary, others []*patroniNode
	for _, n := range c.pg {
		if r, err := n.role(ctx); err == nil && r == "primary" {
			primary = append(primary, n)
		} else {
			others = append(others, n)
		}
	}
	stopPatroni(append(others, primary...))
	stopEtcd(c.etcd)
}
