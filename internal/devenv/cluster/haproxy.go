package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// haproxyConfig routes the topology's entry points:
//
//   - PostgreSQL (TCP): the Patroni leader, checked on Patroni's REST API
//     (GET /primary answers 200 on the leader only); a second frontend for
//     the standbys (GET /replica), for read replicas;
//   - Vault (TCP): the active node (GET /v1/sys/health answers 200 on the
//     active node only; standbys would forward, but going to the active
//     node saves a hop);
//   - Lethe (HTTP): every `lethe serve` that is alive (GET /healthz), round
//     robin. Not /readyz: during a PostgreSQL or Vault failover every
//     server is unready at once, and HAProxy would answer with its own
//     page; a live server answers 503 with a problem document (and
//     Retry-After) itself. Subscriptions are long: the timeouts leave
//     them open.
//
// Checks run every second (every 500 ms while a server changes state); a
// server is out after two failed checks and back after one good one, and
// "on-marked-down shutdown-sessions" closes the connections of a server
// marked down, so clients reconnect to the new leader at once instead of
// waiting on a dead one.
func haproxyConfig(ports *Ports, pg []*patroniNode, vaults []*vaultNode) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("global")
	w("  maxconn 4000")
	w("defaults")
	w("  mode tcp")
	w("  timeout connect 2s")
	w("  timeout client 1h")
	w("  timeout server 1h")
	w("  timeout check 2s")
	w("  default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1 on-marked-down shutdown-sessions")
	w("frontend postgres_primary")
	w("  bind 127.0.0.1:%d", ports.HAProxyPostgres)
	w("  default_backend postgres_primary")
	w("backend postgres_primary")
	// Patroni's /primary answers 200 as soon as the node holds the leader
	// key, while its promotion still runs (a moment during which it is
	// read-only): the body's role must say primary too.
	w("  option httpchk")
	w("  http-check send meth GET uri /primary")
	w("  http-check expect status 200")
	w(`  http-check expect rstring "\"role\": ?\"(master|primary)\""`)
	for _, n := range pg {
		w("  server %s 127.0.0.1:%d check port %d", n.name, n.pgPort, n.restPort)
	}
	w("frontend postgres_replicas")
	w("  bind 127.0.0.1:%d", ports.HAProxyPostgresReplica)
	w("  default_backend postgres_replicas")
	w("backend postgres_replicas")
	w("  option httpchk GET /replica")
	w("  http-check expect status 200")
	for _, n := range pg {
		w("  server %s 127.0.0.1:%d check port %d", n.name, n.pgPort, n.restPort)
	}
	w("frontend vault")
	w("  bind 127.0.0.1:%d", ports.HAProxyVault)
	w("  default_backend vault")
	w("backend vault")
	w("  option httpchk GET /v1/sys/health")
	w("  http-check expect status 200")
	for _, v := range vaults {
		w("  server %s 127.0.0.1:%d check", v.name, v.apiPort)
	}
	w("frontend lethe")
	w("  mode http")
	w("  bind 127.0.0.1:%d", ports.HAProxyLethe)
	w("  default_backend lethe")
	w("backend lethe")
	w("  mode http")
	w("  balance roundrobin")
	w("  option httpchk GET /healthz")
	w("  http-check expect status 200")
	// A request whose connection failed never reached a server: try
	// another. Nothing that may have reached one is retried here (a
	// client retries an append with its event ids, which is safe).
	w("  retries 3")
	w("  option redispatch")
	w("  retry-on conn-failure")
	for i, port := range ports.Lethe {
		w("  server lethe%d 127.0.0.1:%d check", i+1, port)
	}
	return b.String()
}

func newHAProxy(dir string, ports *Ports, pg []*patroniNode, vaults []*vaultNode) (*proc, error) {
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(haproxyConfig(ports, pg, vaults)), 0o600); err != nil {
		return nil, err
	}
	// A configuration HAProxy refuses stops here, not as a topology that
	// never becomes reachable.
	if out, err := exec.Command("haproxy", "-c", "-f", cfgPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy -c %s: %w: %s", cfgPath, err, out)
	}
	return newProc("haproxy", filepath.Join(dir, "haproxy.log"), func() *exec.Cmd {
		// -db: in the foreground, logging to stderr.
		return exec.Command("haproxy", "-db", "-f", cfgPath)
	}), nil
}
