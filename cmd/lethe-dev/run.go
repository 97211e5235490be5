package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lethe-store/lethe/internal/devenv"
)

// runLocal is "lethe-dev run": Lethe with its services, data kept in .lethe.
// It runs the steps below in turn; when it returns (Ctrl-C, SIGTERM, a
// failed step, or lethe serve exiting), the services started so far stop
// in the reverse order of their start.
func runLocal(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	lethe, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	r, err := newLocalRun(lethe, stdout, stderr)
	if err != nil {
		return err
	}
	defer func() {
		if serr := r.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	// Ctrl-C or SIGTERM, at any point, stops everything.
	ctx, stopNotify := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopNotify()

	if err := r.startPostgres(ctx); err != nil {
		return err
	}
	if err := r.startVault(ctx); err != nil {
		return err
	}
	if err := r.writeEnv(); err != nil {
		return err
	}
	if err := r.migrate(ctx); err != nil {
		return err
	}
	if err := r.startLethe(); err != nil {
		return err
	}
	if err := r.waitLetheHealthy(ctx); err != nil {
		return err
	}
	if err := r.demoTokens(ctx); err != nil {
		return err
	}
	loadSeedLead(ctx, r.url, r.st.Token, r.root, r.progress)
	if err := r.writeEnvWithTokens(); err != nil {
		return err
	}
	printBanner(r.stdout, r.url, r.st, r.pg.URL("lethe"), r.vault.Addr(), r.root, r.stateDir, r.pgDir)
	return r.wait(ctx)
}

// localRun is one "lethe-dev run": its settings, and what its steps have
// started and learnt so far.
type localRun struct {
	stdout, stderr io.Writer
	progress       io.Writer // "==> " lines on stderr

	root      string // the checkout's root directory
	lethe     string // the lethe program
	vaultBin  string // the vault program
	stateDir  string // .lethe
	stateFile string // .lethe/state.json
	pgDir     string // the PostgreSQL cluster: .lethe/pg, or under /var/tmp
	listen    string // where Lethe listens
	url       string // http://listen

	st       localState
	services *serviceStack
	pg       *devenv.Postgres
	vault    *devenv.Vault
	env      []string        // lethe migrate's and serve's environment
	envFile  strings.Builder // .lethe/env
	exited   chan struct{}   // closed when lethe serve has exited
	serveErr error           // lethe serve's exit, once exited is closed
}

// parseRunFlags parses the arguments of "lethe-dev run" and returns its
// --lethe flag.
func parseRunFlags(args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet("lethe-dev run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	letheFlag := fs.String("lethe", "", "the lethe program (default: bin/lethe in the repository)")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("run: unexpected arguments %q", fs.Args())
	}
	return *letheFlag, nil
}

// newLocalRun finds the lethe program (default bin/lethe) and the vault
// program, loads .lethe/state.json, making the admin token on the first
// run, and chooses where Lethe listens. It starts nothing.
func newLocalRun(lethe string, stdout, stderr io.Writer) (*localRun, error) {
	r := &localRun{stdout: stdout, stderr: stderr, progress: newPrefixWriter(stderr, "==> "), services: &serviceStack{}}
	root, err := devenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	if lethe == "" {
		lethe = filepath.Join(root, "bin", "lethe")
	}
	if fi, err := os.Stat(lethe); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("no lethe program at %s: build it first (make build, or go build -o bin/lethe ./cmd/lethe)", lethe)
	}
	vaultBin, err := devenv.VaultBinary(root)
	if err != nil {
		return nil, err
	}
	r.root, r.lethe, r.vaultBin = root, lethe, vaultBin
	r.stateDir = filepath.Join(root, ".lethe")
	if err := os.MkdirAll(r.stateDir, 0o755); err != nil {
		return nil, err
	}
	r.stateFile = filepath.Join(r.stateDir, "state.json")
	if r.st, err = loadState(r.stateFile); err != nil {
		return nil, err
	}
	if r.st.AdminToken == "" {
		r.st.AdminToken = randomHex(32)
	}
	if err := saveState(r.stateFile, r.st); err != nil {
		return nil, err
	}
	if r.listen, err = listenAddr(r.progress); err != nil {
		return nil, err
	}
	r.url = "http://" + r.listen
	return r, nil
}

// startPostgres starts the PostgreSQL cluster on the port it had last
// time and creates the lethe database in it.
func (r *localRun) startPostgres(ctx context.Context) error {
	if err := r.choosePostgresDir(ctx); err != nil {
		return err
	}
	err := startOnPort(r.progress, "PostgreSQL", &r.st.PostgresPort, func(port int) (err error) {
		r.pg, err = devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: r.pgDir, Port: port, Fsync: true, Log: r.progress})
		return err
	})
	if err != nil {
		return interrupted(ctx, err)
	}
	r.services.push("PostgreSQL", r.pg.Stop)
	if err := r.pg.CreateDatabase(ctx, "lethe"); err != nil {
		return interrupted(ctx, err)
	}
	return nil
}

// choosePostgresDir sets where the PostgreSQL cluster lives: .lethe/pg, or,
// if the server cannot enter the checkout, a folder under /var/tmp named
// after the checkout's root directory.
func (r *localRun) choosePostgresDir(ctx context.Context) error {
	r.pgDir = filepath.Join(r.stateDir, "pg")
	if err := devenv.CheckPostgresAccess(ctx, r.pgDir); err != nil {
		sum := sha256.Sum256([]byte(r.root))
		r.pgDir = filepath.Join("/var/tmp", "lethe-dev-"+hex.EncodeToString(sum[:])[:12], "pg")
		fmt.Fprintf(r.progress, "%v\n", err)
		fmt.Fprintf(r.progress, "so the PostgreSQL cluster of this checkout lives in %s\n", r.pgDir)
		if err := os.MkdirAll(filepath.Dir(r.pgDir), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// startVault starts the persistent Vault in .lethe/vault on the port it
// had last time, and saves both services' ports.
func (r *localRun) startVault(ctx context.Context) error {
	err := startOnPort(r.progress, "Vault", &r.st.VaultPort, func(port int) (err error) {
		r.vault, err = devenv.StartVault(ctx, devenv.VaultOptions{Bin: r.vaultBin, Dir: filepath.Join(r.stateDir, "vault"), Port: port, Log: r.progress})
		return err
	})
	if err != nil {
		return interrupted(ctx, err)
	}
	r.services.push("Vault", r.vault.Stop)
	return saveState(r.stateFile, r.st)
}

// writeEnv sets Lethe's environment (database, Vault, listen address,
// admin token) and writes the same settings to .lethe/env for the admin
// commands in another terminal (`. .lethe/env; bin/lethe policy list`).
func (r *localRun) writeEnv() error {
	lethEnv := []string{
		"LETHE_DATABASE_URL=" + r.pg.URL("lethe"),
		"LETHE_VAULT_ADDR=" + r.vault.Addr(),
		"LETHE_VAULT_TOKEN=" + r.vault.RootToken(),
		"LETHE_LISTEN_ADDR=" + r.listen,
		"LETHE_ADMIN_TOKEN=" + r.st.AdminToken,
	}
	r.env = append(os.Environ(), lethEnv...)
	for _, kv := range lethEnv {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&r.envFile, "export %s='%s'\n", k, v)
	}
	return os.WriteFile(filepath.Join(r.stateDir, "env"), []byte(r.envFile.String()), 0o600)
}

// migrate runs "lethe migrate", which Ctrl-C stops with SIGTERM.
func (r *localRun) migrate(ctx context.Context) error {
	fmt.Fprintf(r.progress, "applying database migrations (%s migrate)\n", filepath.Base(r.lethe))
	migrate := exec.CommandContext(ctx, r.lethe, "migrate")
	migrate.Stdout, migrate.Stderr, migrate.Env = r.stdout, r.stderr, r.env
	migrate.Cancel = func() error { return migrate.Process.Signal(syscall.SIGTERM) }
	migrate.WaitDelay = 10 * time.Second
	if err := migrate.Run(); err != nil {
		return interrupted(ctx, fmt.Errorf("%s migrate: %w", r.lethe, err))
	}
	return nil
}

// startLethe starts "lethe serve"; r.exited closes when it exits.
func (r *localRun) startLethe() error {
	fmt.Fprintf(r.progress, "starting Lethe on http://%s (%s serve)\n", r.listen, filepath.Base(r.lethe))
	serve := exec.Command(r.lethe, "serve")
	serve.Stdout, serve.Stderr, serve.Env = r.stdout, r.stderr, r.env
	serve.SysProcAttr = devenv.ChildSysProcAttr()
	if err := serve.Start(); err != nil {
		return fmt.Errorf("%s serve: %w", r.lethe, err)
	}
	exited := make(chan struct{})
	r.exited = exited
	go func() {
		r.serveErr = serve.Wait()
		close(exited)
	}()
	r.services.push("Lethe", func(ctx context.Context) error {
		if !isClosed(exited) {
			fmt.Fprintf(r.progress, "stopping Lethe (SIGTERM to %s serve)\n", filepath.Base(r.lethe))
		}
		return stopProcess(ctx, serve, exited)
	})
	return nil
}

// waitLetheHealthy waits until Lethe answers /healthz.
func (r *localRun) waitLetheHealthy(ctx context.Context) error {
	if err := waitHealthy(ctx, r.url+"/healthz", r.exited); err != nil {
		if isClosed(r.exited) {
			return r.serveExited()
		}
		return interrupted(ctx, err)
	}
	return nil
}

// demoTokens makes the demo tokens that do not work (any, on the first
// run) and saves them.
func (r *localRun) demoTokens(ctx context.Context) error {
	if err := ensureDemoTokens(ctx, r.url, &r.st); err != nil {
		return interrupted(ctx, fmt.Errorf("demo tokens: %w", err))
	}
	return saveState(r.stateFile, r.st)
}

// writeEnvWithTokens adds Lethe's URL and the demo tokens to .lethe/env.
func (r *localRun) writeEnvWithTokens() error {
	fmt.Fprintf(&r.envFile, "export LETHE_URL='%s'\nexport LETHE_TOKEN='%s'\nexport LETHE_READER_TOKEN='%s'\nexport LETHE_AUDITOR_TOKEN='%s'\n",
		r.url, r.st.Token, r.st.ReaderToken, r.st.AuditorToken)
	return os.WriteFile(filepath.Join(r.stateDir, "env"), []byte(r.envFile.String()), 0o600)
}

// wait waits for Ctrl-C or SIGTERM (ctx ends), which is no error, or for
// lethe serve to exit by itself, which is.
func (r *localRun) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-r.exited:
		return r.serveExited()
	}
}

// serveExited is the error of lethe serve having exited; call it once
// r.exited is closed.
func (r *localRun) serveExited() error {
	return fmt.Errorf("%s serve exited: %v", r.lethe, r.serveErr)
}

// stop stops the services started so far, the last started first, and
// says so when it started any and all stopped cleanly.
func (r *localRun) stop() error {
	started := r.services.len() > 0
	err := r.services.stopAll()
	if err == nil && started {
		fmt.Fprintf(r.progress, "everything is stopped; the data is kept for the next run\n")
	}
	return err
}

// listenAddr returns where Lethe listens: $LETHE_LISTEN_ADDR, else
// 127.0.0.1:8080 if it is free, else a free port.
func listenAddr(progress io.Writer) (string, error) {
	if addr := os.Getenv("LETHE_LISTEN_ADDR"); addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("LETHE_LISTEN_ADDR=%s: %w", addr, err)
		}
		l.Close()
		return addr, nil
	}
	if devenv.PortFree(8080) {
		return "127.0.0.1:8080", nil
	}
	port, err := devenv.FreePort()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "port 8080 is busy, so Lethe listens on 127.0.0.1:%d (set LETHE_LISTEN_ADDR to choose)\n", port)
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

// startOnPort starts a service on the port it had last time (*port), so
// that its address stays the same across runs. If there is none, or another
// program holds it now, the service gets a new free port, stored in *port.
// (The service's own server left running by a crashed run is stopped by
// start, so the port is tried before it is judged busy.)
func startOnPort(progress io.Writer, service string, port *int, start func(port int) error) error {
	if *port == 0 {
		p, err := devenv.FreePort()
		if err != nil {
			return err
		}
		*port = p
	}
	err := start(*port)
	if err == nil || devenv.PortFree(*port) {
		return err
	}
	p, err := devenv.FreePort()
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "port %d of %s is taken by another program; using %d from now on\n", *port, service, p)
	*port = p
	return start(p)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
