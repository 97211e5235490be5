// Command lethe-dev starts the services Lethe needs on a developer's machine.
// It is a development tool and is not shipped.
//
//	lethe-dev test [--] CMD ARGS...   run CMD (e.g. go test ./...) against a throwaway
//	                                  PostgreSQL and a Vault dev server (make test)
//	lethe-dev run [--lethe PATH]      run Lethe locally with PostgreSQL and Vault,
//	                                  keeping data in .lethe/ (make run)
//	lethe-dev env                     explain the environment variables
//
// The servers are started by package internal/devenv.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
)

const usage = `lethe-dev starts the services Lethe needs on a developer's machine.

Usage:
  lethe-dev test [--] CMD ARGS...   start a throwaway PostgreSQL (fsync off, removed
                                    afterwards) and a Vault dev server, run CMD with
                                    LETHE_TEST_DATABASE_URL, LETHE_TEST_VAULT_ADDR and
                                    LETHE_TEST_VAULT_TOKEN set, stop both, and exit
                                    with CMD's exit code. Example:
                                        lethe-dev test -- go test ./...
  lethe-dev run [--lethe PATH]      run Lethe locally (make run): PostgreSQL and a
                                    persistent Vault with their data in .lethe/,
                                    then "lethe migrate" and "lethe serve",
                                    demo tokens and the seed's lead stream
                                    lead-12. Ctrl-C stops everything; running
                                    it again reuses all data.
  lethe-dev cluster                 run the highly available topology (make
                                    cluster): etcd, PostgreSQL under Patroni
                                    (primary + synchronous standby), Vault
                                    (3 Raft nodes), 3 lethe serve and HAProxy,
                                    data in .lethe-cluster/. Ctrl-C stops it.
  lethe-dev env                     print this help.

Environment:
  LETHE_TEST_DATABASE_URL   test: use this PostgreSQL server (a superuser URL to its
                            "postgres" database) instead of starting one
  LETHE_TEST_VAULT_ADDR     test: use this Vault (KV v2 at secret/) instead of
  LETHE_TEST_VAULT_TOKEN          starting a dev server, with this token
  VAULT_BIN                 the vault program (default: bin/vault, built by
                            "make vault"; the first build takes ~20 min)
  LETHE_LISTEN_ADDR         run: where Lethe listens (default 127.0.0.1:8080, or a
                            free port if 8080 is busy)

PostgreSQL's server programs come from pg_config or /usr/lib/postgresql/*/bin
(apt-get install postgresql). As root, PostgreSQL runs as the postgres user.
`

// main runs lethe-dev and exits with its status: 0, the status an
// exitCode asks for, 2 for a bad flag (its usage is printed already), or
// 1 with the error on stderr.
func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	var code exitCode
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "lethe-dev: %v\n", err)
		os.Exit(1)
	}
}

// exitCode is an error that asks main to exit with a status and print
// nothing more: the reason has been printed already.
type exitCode int

// Error says the status, for callers other than main.
func (c exitCode) Error() string { return "exit status " + strconv.Itoa(int(c)) }

// run runs the subcommand in args[0] with the rest of args; with none, or
// an unknown one, it prints the usage to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	switch args[0] {
	case "test":
		return runTest(ctx, args[1:], stdout, stderr)
	case "run":
		return runLocal(ctx, args[1:], stdout, stderr)
	case "cluster":
		return runCluster(ctx, args[1:], stdout, stderr)
	case "env", "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// interrupted reports an error that is the result of Ctrl-C as such.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return err
}
