package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lethe-store/lethe/internal/devenv"
)

// runTest is "lethe-dev test": services for one command's tests.
func runTest(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	argv, err := parseTestArgs(args, stderr)
	if err != nil {
		return err
	}
	vaultBin, err := testVaultBinary()
	if err != nil {
		return err
	}
	progress := newPrefixWriter(stderr, "==> ")
	services := &serviceStack{}
	defer func() { err = errors.Join(err, services.stopAll()) }()

	// Ctrl-C while the services start stops them and exits.
	startCtx, stopNotify := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopNotify()
	env, err := startTestServices(startCtx, services, vaultBin, progress)
	if err != nil {
		return err
	}

	// From here on signals go to the command; the services stop when it
	// has exited.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if startCtx.Err() != nil {
		return interrupted(startCtx, nil)
	}
	stopNotify() // cancels startCtx
	return runCommand(argv, env, stdout, stderr, progress, sigs)
}

// parseTestArgs parses the arguments of "lethe-dev test" and returns the
// command to run with its arguments, once the command is found.
func parseTestArgs(args []string, stderr io.Writer) ([]string, error) {
	fs := flag.NewFlagSet("lethe-dev test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, "usage: lethe-dev test [--] CMD ARGS...\n") }
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return nil, errors.New("test: no command given, e.g. lethe-dev test -- go test ./...")
	}
	if _, err := exec.LookPath(fs.Arg(0)); err != nil {
		return nil, fmt.Errorf("test: %w", err)
	}
	return fs.Args(), nil
}

// testVaultBinary returns the vault program for a Vault dev server, or ""
// when LETHE_TEST_VAULT_ADDR names a running Vault instead.
func testVaultBinary() (string, error) {
	if os.Getenv("LETHE_TEST_VAULT_ADDR") != "" {
		return "", nil
	}
	root, _ := devenv.RepoRoot() // VaultBinary says what is missing
	vaultBin, err := devenv.VaultBinary(root)
	if err != nil {
		return "", fmt.Errorf("test: %w (or point LETHE_TEST_VAULT_ADDR and LETHE_TEST_VAULT_TOKEN at a running Vault)", err)
	}
	return vaultBin, nil
}

// startTestServices starts PostgreSQL and a Vault dev server, each unless
// the environment names one already, and returns the command's
// environment: this one with the LETHE_TEST_* variables of those started.
func startTestServices(ctx context.Context, services *serviceStack, vaultBin string, progress io.Writer) ([]string, error) {
	env := os.Environ()
	if u := os.Getenv("LETHE_TEST_DATABASE_URL"); u != "" {
		fmt.Fprintf(progress, "using the PostgreSQL server in LETHE_TEST_DATABASE_URL\n")
	} else {
		dbURL, err := startTestPostgres(ctx, services, progress)
		if err != nil {
			return nil, err
		}
		env = append(env, "LETHE_TEST_DATABASE_URL="+dbURL)
	}
	if a := os.Getenv("LETHE_TEST_VAULT_ADDR"); a != "" {
		fmt.Fprintf(progress, "using the Vault server in LETHE_TEST_VAULT_ADDR (%s)\n", a)
		if os.Getenv("LETHE_TEST_VAULT_TOKEN") == "" {
			fmt.Fprintf(progress, "warning: LETHE_TEST_VAULT_TOKEN is not set\n")
		}
	} else {
		v, err := devenv.StartVault(ctx, devenv.VaultOptions{Bin: vaultBin, Log: progress})
		if err != nil {
			return nil, interrupted(ctx, err)
		}
		services.push("Vault", v.Stop)
		env = append(env, "LETHE_TEST_VAULT_ADDR="+v.Addr(), "LETHE_TEST_VAULT_TOKEN="+v.RootToken())
	}
	return env, nil
}

// startTestPostgres starts a throwaway PostgreSQL (fsync off) in a new
// temporary folder, both removed when the services stop, and returns the
// URL of its "postgres" database.
func startTestPostgres(ctx context.Context, services *serviceStack, progress io.Writer) (string, error) {
	dir, err := os.MkdirTemp("", "lethe-test-pg-")
	if err != nil {
		return "", err
	}
	services.push("temporary folder "+dir, func(context.Context) error { return os.RemoveAll(dir) })
	// The server may run as the postgres user, which must enter dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: dir, Log: progress})
	if err != nil {
		return "", interrupted(ctx, err)
	}
	services.push("PostgreSQL", pg.Stop)
	return pg.URL("postgres"), nil
}

// runCommand runs argv with env, passing it the signals that arrive on
// sigs, and waits for it. A status other than 0 is said in a progress
// line and returned as an exitCode.
func runCommand(argv, env []string, stdout, stderr, progress io.Writer, sigs <-chan os.Signal) error {
	name := argv[0]
	fmt.Fprintf(progress, "running %s\n", strings.Join(argv, " "))
	cmd := exec.Command(name, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-done:
			break wait
		case s := <-sigs:
			fmt.Fprintf(progress, "got %v: passing it to %s\n", s, name)
			_ = cmd.Process.Signal(s)
		}
	}
	code := processExitCode(cmd.ProcessState, waitErr)
	if code != 0 {
		fmt.Fprintf(progress, "%s exited with status %d\n", name, code)
		return exitCode(code)
	}
	return nil
}

// processExitCode returns a finished command's exit code, as a shell
// reports it: 128+N when signal N killed it.
func processExitCode(ps *os.ProcessState, waitErr error) int {
	if ps == nil {
		if waitErr != nil {
			return 1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
