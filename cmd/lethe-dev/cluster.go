package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/lethe-store/lethe/internal/devenv"
	"github.com/lethe-store/lethe/internal/devenv/cluster"
)

// runCluster runs the highly available topology (make cluster) until
// Ctrl-C: etcd, PostgreSQL under Patroni, a Vault Raft cluster, three
// `lethe serve` and HAProxy, with their data in .lethe-cluster/.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	root, err := devenv.RepoRoot()
	if err != nil {
		return err
	}
	vaultBin, err := devenv.VaultBinary(root)
	if err != nil {
		return err
	}
	ctx, stopNotify := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopNotify()
	dir := filepath.Join(root, ".lethe-cluster")
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, VaultBin: vaultBin, Lethe: filepath.Join(root, "bin", "lethe"),
		VaultPolicy: filepath.Join(root, "docs", "vault-policy.hcl"), Log: stdout})
	if err != nil {
		return interrupted(ctx, err)
	}
	defer func() {
		fmt.Fprintln(stdout, "==> stopping the topology (the data stays in .lethe-cluster/)")
		c.Stop()
	}()
	fmt.Fprintf(stdout, `
Lethe's highly available topology is running (local only, not for production:
each lethe serve has a Vault token of its own with Lethe's policy, but Vault's
unseal key and root token are in .lethe-cluster/state.json).

  Lethe (HAProxy → 3 lethe serve)    %s
  PostgreSQL (HAProxy → the leader)  %s
  Vault (HAProxy → the active node)  %s
  logs                               .lethe-cluster/*.log

  export LETHE_URL=%s
  export LETHE_ADMIN_TOKEN=%s
  curl -s "$LETHE_URL/readyz"

Ctrl-C stops everything; running it again reuses all data.
`, c.LetheURL(), c.DatabaseURL(), c.VaultURL(), c.LetheURL(), c.AdminToken())
	<-ctx.Done()
	return nil
}
