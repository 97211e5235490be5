package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// A new topology gets distinct ports, and a restart reads the same ones
// back (etcd's peers and Patroni's members record their addresses).
func TestStateKeepsItsPorts(t *testing.T) {
	dir := t.TempDir()
	s, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{opts: Options{Dir: dir}, state: s}
	if err := c.saveState(); err != nil {
		t.Fatal(err)
	}
	p := s.Ports
	all := append(append(append(append(append(append(append([]int{}, p.EtcdClient...), p.EtcdPeer...), p.PostgresNode...), p.PatroniREST...),
		p.VaultAPI...), p.VaultCluster...), p.Lethe...)
	all = append(all, p.HAProxyPostgres, p.HAProxyPostgresReplica, p.HAProxyVault, p.HAProxyLethe)
	seen := map[int]bool{}
	for _, port := range all {
		if port <= 0 || seen[port] {
			t.Fatalf("ports %v: %d is zero or twice", all, port)
		}
		seen[port] = true
	}
	again, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again.Ports) != fmt.Sprint(s.Ports) || again.AdminToken != s.AdminToken || len(s.AdminToken) != 64 {
		t.Errorf("a restart reads other ports or secrets: %+v, then %+v", s, again)
	}
}

// HAProxy sends PostgreSQL clients to the Patroni leader, Vault clients to
// the active node, and Lethe's clients to every live server (not only the
// ready ones: during a failover every server is unready at once, and each
// answers its own 503 problem better than HAProxy's page).
func TestHAProxyFollowsTheLeaders(t *testing.T) {
	s, err := loadState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pg := []*patroniNode{{name: "pg1", pgPort: 1, restPort: 2}, {name: "pg2", pgPort: 3, restPort: 4}}
	vaults := []*vaultNode{{name: "vault1", apiPort: 5}}
	cfg := haproxyConfig(&s.Ports, pg, vaults)
	for _, want := range []string{
		"http-check send meth GET uri /primary", `http-check expect rstring "\"role\": ?\"(master|primary)\""`,
		"server pg1 127.0.0.1:1 check port 2", "server pg2 127.0.0.1:3 check port 4",
		"option httpchk GET /replica", "option httpchk GET /v1/sys/health", "server vault1 127.0.0.1:5 check",
		"option httpchk GET /healthz", "on-marked-down shutdown-sessions",
		fmt.Sprintf("server lethe3 127.0.0.1:%d check", s.Ports.Lethe[2]),
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("haproxy.cfg lacks %q:\n%s", want, cfg)
		}
	}
}

// Patroni's configuration: synchronous replication, failover on a
// crashed primary at once, timings Patroni accepts.
func TestPatroniConfigIsSynchronous(t *testing.T) {
	s := &State{PostgresPassword: "p", ReplicationPassword: "r"}
	b, err := patroniConfig(&patroniNode{name: "pg1", pgPort: 1, restPort: 2, dir: "/x"}, []string{"127.0.0.1:9"}, "/bin", s)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Bootstrap struct {
			DCS struct {
				Sync                bool `json:"synchronous_mode"`
				PrimaryStartTimeout *int `json:"primary_start_timeout"`
			} `json:"dcs"`
		} `json:"bootstrap"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	d := cfg.Bootstrap.DCS
	if !d.Sync || d.PrimaryStartTimeout == nil || *d.PrimaryStartTimeout != 0 {
		t.Errorf("dcs %+v: want synchronous_mode and primary_start_timeout 0", d)
	}
	if patroniTTL < patroniLoopWait+2*patroniRetryTimeout {
		t.Errorf("ttl %d < loop_wait %d + 2 × retry_timeout %d: Patroni would refuse it", patroniTTL, patroniLoopWait, patroniRetryTimeout)
	}
}
