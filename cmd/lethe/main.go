// Command lethe is Lethe's server and administration tool.
//
//	lethe serve             run the HTTP API
//	lethe migrate           apply database migrations (--status: only report)
//	lethe subject ...       erase a data subject, legal holds, re-admission, key rotation, access export
//	lethe policy ...        protection policies
//	lethe erasures ...      the erasure ledger and receipts (list, get); reapply erasures after a Vault restore
//	lethe token ...         API tokens: create, list, revoke
//	lethe audit export      the audit trail, as NDJSON or CSV
//	lethe projection ...    persisted projections: status, rebuild
//	lethe verify            check the hash chains of the store, a stream or an export file
//	lethe version           print the version
//
// Configuration comes from environment variables (LETHE_DATABASE_URL,
// LETHE_LISTEN_ADDR, ...), which flags override; `lethe COMMAND -h` lists a
// command's flags with their variables. This is the only package that
// reads the environment and wires adapters together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lethe:", err)
		os.Exit(exitCode(err)) // 1, or what the command says (lethe verify: 2 for usage)
	}
}

const usage = `Lethe: a GDPR-compliant event store.

Usage:
  lethe serve [flags]     run the HTTP API server
  lethe migrate [flags]   apply database migrations (--status: only report)
  lethe subject ...       erase a data subject, legal holds, re-admission, key rotation, access export
  lethe policy ...        protection policies: fields that are always personal data
  lethe projection ...    persisted projections: status, rebuild
  lethe erasures ...      erasure receipts and the deadline report (list, get); reapply after a Vault restore
  lethe token ...         API tokens: create, list, revoke
  lethe verify            check the hash chains: the whole store, --stream ID, or --file EXPORT
  lethe audit export      the audit trail, without personal data, as NDJSON or CSV
  lethe version           print the version

Run "lethe COMMAND -h" for a command's flags. Every flag can also be set by
the environment variable shown in its help.
`

// groupCommands take a sub-command ("lethe token create").
var groupCommands = []string{"subject", "policy", "projection", "erasures", "audit", "token"}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// run is main without the process: testable, and free of global state.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	if len(rest) == 1 && isHelp(rest[0]) && slices.Contains(groupCommands, cmd) {
		// "lethe token -h": the group prints its usage and says no command
		// was given; asking for help is not a failure.
		_ = run(ctx, args[:1], getenv, stdin, io.Discard, stderr)
		return nil
	}
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "subject":
		return runSubject(ctx, rest, getenv, stdin, stdout, stderr)
	case "policy":
		return runPolicy(ctx, rest, getenv, stdout, stderr)
	case "projection":
		return runProjection(ctx, rest, getenv, stdout, stderr)
	case "erasures":
		return runErasures(ctx, rest, getenv, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(ctx, rest, getenv, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, getenv, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "lethe", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
