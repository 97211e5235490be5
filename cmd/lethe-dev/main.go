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
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/internal/devenv"
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

// examples are the commands that the banner of "lethe-dev run" suggests;
// LETHE_URL and the tokens are exported just above them, after a cd to the
// checkout's root directory (they name files relative to it). The seed's
// lead stream is loaded before the banner (loadSeedLead). Add API calls
// here as they appear.
const examples = `# The seed's lead, stream lead-12, is loaded: 7 events, with casey's name and
# phone number encrypted under her own key. Its state at version 2 (Casey David,
# 555-2951, a follow-up on May 27), then at version 6 (converted):
curl -s "$LETHE_URL/v1/streams/lead-12/state?version=2" -H "Authorization: Bearer $LETHE_TOKEN"
curl -s "$LETHE_URL/v1/streams/lead-12/state?version=6" -H "Authorization: Bearer $LETHE_TOKEN"

# A reader without pii-reader sees her name and phone as null, "restricted"
curl -s "$LETHE_URL/v1/streams/lead-12/state" -H "Authorization: Bearer $LETHE_READER_TOKEN"

# The history: every name and phone number the lead ever had
curl -s "$LETHE_URL/v1/streams/lead-12/history" -H "Authorization: Bearer $LETHE_TOKEN"

# Casey's access export (GDPR Art. 15/20), before the erasure: her events,
# her fields decrypted; after it, 410 subject-gone with the erasure's id
curl -s "$LETHE_URL/v1/subjects/casey.davis@example.com/export" -H "Authorization: Bearer $LETHE_ADMIN_TOKEN"

# Erase casey (GDPR Art. 17): the receipt; then the state again: the story
# stays (contacted twice, ordered, converted), her fields are "forgotten"
curl -s -X POST "$LETHE_URL/v1/subjects/casey.davis@example.com/erase" \
  -H "Authorization: Bearer $LETHE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"legalBasis": "GDPR Art. 17(1)(a)", "reason": "customer request"}'
curl -s "$LETHE_URL/v1/streams/lead-12/state" -H "Authorization: Bearer $LETHE_TOKEN"
curl -s "$LETHE_URL/v1/streams/lead-12/events" -H "Authorization: Bearer $LETHE_TOKEN"

# How lead-12 got there: this append, which make run sent already. Sending it
# again is a safe retry (200) until casey is erased; after that it is
# 409 subject-erased, by design
curl -s -X POST "$LETHE_URL/v1/streams/lead-12/events" -H "Authorization: Bearer $LETHE_TOKEN" \
  -H 'Content-Type: application/json' -d @docs/examples/lead-12.json

# Follow the global log live (Server-Sent Events; Ctrl-C to stop)
curl -sN "$LETHE_URL/v1/subscribe" -H "Authorization: Bearer $LETHE_READER_TOKEN"

# Is Lethe up? Ready (PostgreSQL, schema, Vault)?
curl -s "$LETHE_URL/healthz"
curl -s "$LETHE_URL/readyz"

# The compliance view (auditor): every append, disclosure, erasure, hold and
# token change, with a count and SHA-256 on the last line; the erasures with
# their deadline, key check and the read models they reached
curl -s "$LETHE_URL/v1/audit/export" -H "Authorization: Bearer $LETHE_AUDITOR_TOKEN"
curl -s "$LETHE_URL/v1/audit/export?format=csv&kind=erasure.requested,erasure.completed" -H "Authorization: Bearer $LETHE_AUDITOR_TOKEN"
curl -s "$LETHE_URL/v1/erasures" -H "Authorization: Bearer $LETHE_AUDITOR_TOKEN"

# The admin commands, with this deployment's settings:
. .lethe/env
bin/lethe policy put --type lead-initialized --paths /first-name,/last-name,/phone-number
bin/lethe token list
bin/lethe verify                                   # every stream's hash chain holds
bin/lethe audit export > audit.ndjson && bin/lethe verify --file audit.ndjson
bin/lethe erasures list                             # then: bin/lethe erasures get --id ID

# The lead as a Go aggregate (load, decide, append, conflicts): examples/lead
`

// The seed's lead stream, loaded by "lethe-dev run".
const (
	seedLeadStream = "lead-12"
	seedLeadFile   = "docs/examples/lead-12.json" // relative to the checkout's root
)

// stopTimeout bounds stopping all services.
const stopTimeout = 90 * time.Second

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

func (c exitCode) Error() string { return "exit status " + strconv.Itoa(int(c)) }

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
	case "env", "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// runTest is "lethe-dev test": services for one command's tests.
func runTest(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("lethe-dev test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, "usage: lethe-dev test [--] CMD ARGS...\n") }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("test: no command given, e.g. lethe-dev test -- go test ./...")
	}
	name := fs.Arg(0)
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("test: %w", err)
	}
	vaultBin := ""
	if os.Getenv("LETHE_TEST_VAULT_ADDR") == "" {
		root, _ := devenv.RepoRoot() // VaultBinary says what is missing
		if vaultBin, err = devenv.VaultBinary(root); err != nil {
			return fmt.Errorf("test: %w (or point LETHE_TEST_VAULT_ADDR and LETHE_TEST_VAULT_TOKEN at a running Vault)", err)
		}
	}
	progress := newPrefixWriter(stderr, "==> ")
	services := &serviceStack{}
	defer func() { err = errors.Join(err, services.stopAll()) }()

	// Ctrl-C while the services start stops them and exits.
	startCtx, stopNotify := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopNotify()

	env := os.Environ()
	if u := os.Getenv("LETHE_TEST_DATABASE_URL"); u != "" {
		fmt.Fprintf(progress, "using the PostgreSQL server in LETHE_TEST_DATABASE_URL\n")
	} else {
		dir, err := os.MkdirTemp("", "lethe-test-pg-")
		if err != nil {
			return err
		}
		services.push("temporary folder "+dir, func(context.Context) error { return os.RemoveAll(dir) })
		// The server may run as the postgres user, which must enter dir.
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
		pg, err := devenv.StartPostgres(startCtx, devenv.PostgresOptions{Dir: dir, Log: progress})
		if err != nil {
			return interrupted(startCtx, err)
		}
		services.push("PostgreSQL", pg.Stop)
		env = append(env, "LETHE_TEST_DATABASE_URL="+pg.URL("postgres"))
	}
	if a := os.Getenv("LETHE_TEST_VAULT_ADDR"); a != "" {
		fmt.Fprintf(progress, "using the Vault server in LETHE_TEST_VAULT_ADDR (%s)\n", a)
		if os.Getenv("LETHE_TEST_VAULT_TOKEN") == "" {
			fmt.Fprintf(progress, "warning: LETHE_TEST_VAULT_TOKEN is not set\n")
		}
	} else {
		v, err := devenv.StartVault(startCtx, devenv.VaultOptions{Bin: vaultBin, Log: progress})
		if err != nil {
			return interrupted(startCtx, err)
		}
		services.push("Vault", v.Stop)
		env = append(env, "LETHE_TEST_VAULT_ADDR="+v.Addr(), "LETHE_TEST_VAULT_TOKEN="+v.RootToken())
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

	fmt.Fprintf(progress, "running %s\n", strings.Join(fs.Args(), " "))
	cmd := exec.Command(name, fs.Args()[1:]...)
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

// localState is .lethe/state.json: what "lethe-dev run" keeps between runs.
type localState struct {
	PostgresPort int    `json:"postgres_port"`
	VaultPort    int    `json:"vault_port"`
	AdminToken   string `json:"admin_token"`
	// The demo tokens made through the API: writer + pii-reader, reader
	// only, and auditor.
	Token        string `json:"token,omitempty"`
	ReaderToken  string `json:"reader_token,omitempty"`
	AuditorToken string `json:"auditor_token,omitempty"`
}

// runLocal is "lethe-dev run": Lethe with its services, data kept in .lethe.
func runLocal(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("lethe-dev run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	letheFlag := fs.String("lethe", "", "the lethe program (default: bin/lethe in the repository)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected arguments %q", fs.Args())
	}
	progress := newPrefixWriter(stderr, "==> ")

	root, err := devenv.RepoRoot()
	if err != nil {
		return err
	}
	lethe := *letheFlag
	if lethe == "" {
		lethe = filepath.Join(root, "bin", "lethe")
	}
	if fi, err := os.Stat(lethe); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("no lethe program at %s: build it first (make build, or go build -o bin/lethe ./cmd/lethe)", lethe)
	}
	vaultBin, err := devenv.VaultBinary(root)
	if err != nil {
		return err
	}
	stateDir := filepath.Join(root, ".lethe")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	stateFile := filepath.Join(stateDir, "state.json")
	st, err := loadState(stateFile)
	if err != nil {
		return err
	}
	if st.AdminToken == "" {
		st.AdminToken = randomHex(32)
	}
	if err := saveState(stateFile, st); err != nil {
		return err
	}
	listen, err := listenAddr(progress)
	if err != nil {
		return err
	}

	services := &serviceStack{}
	defer func() {
		started := services.len() > 0
		if serr := services.stopAll(); serr != nil {
			err = errors.Join(err, serr)
		} else if started {
			fmt.Fprintf(progress, "everything is stopped; the data is kept for the next run\n")
		}
	}()
	// Ctrl-C or SIGTERM, at any point, stops everything.
	ctx, stopNotify := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopNotify()

	pgDir := filepath.Join(stateDir, "pg")
	if err := devenv.CheckPostgresAccess(ctx, pgDir); err != nil {
		sum := sha256.Sum256([]byte(root))
		pgDir = filepath.Join("/var/tmp", "lethe-dev-"+hex.EncodeToString(sum[:])[:12], "pg")
		fmt.Fprintf(progress, "%v\n", err)
		fmt.Fprintf(progress, "so the PostgreSQL cluster of this checkout lives in %s\n", pgDir)
		if err := os.MkdirAll(filepath.Dir(pgDir), 0o755); err != nil {
			return err
		}
	}
	var pg *devenv.Postgres
	err = startOnPort(progress, "PostgreSQL", &st.PostgresPort, func(port int) (err error) {
		pg, err = devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: pgDir, Port: port, Fsync: true, Log: progress})
		return err
	})
	if err != nil {
		return interrupted(ctx, err)
	}
	services.push("PostgreSQL", pg.Stop)
	if err := pg.CreateDatabase(ctx, "lethe"); err != nil {
		return interrupted(ctx, err)
	}

	var vault *devenv.Vault
	err = startOnPort(progress, "Vault", &st.VaultPort, func(port int) (err error) {
		vault, err = devenv.StartVault(ctx, devenv.VaultOptions{Bin: vaultBin, Dir: filepath.Join(stateDir, "vault"), Port: port, Log: progress})
		return err
	})
	if err != nil {
		return interrupted(ctx, err)
	}
	services.push("Vault", vault.Stop)
	if err := saveState(stateFile, st); err != nil {
		return err
	}

	lethEnv := []string{
		"LETHE_DATABASE_URL=" + pg.URL("lethe"),
		"LETHE_VAULT_ADDR=" + vault.Addr(),
		"LETHE_VAULT_TOKEN=" + vault.RootToken(),
		"LETHE_LISTEN_ADDR=" + listen,
		"LETHE_ADMIN_TOKEN=" + st.AdminToken,
	}
	env := append(os.Environ(), lethEnv...)
	// The same settings for the admin commands in another terminal
	// (`. .lethe/env; bin/lethe policy list`).
	var envFile strings.Builder
	for _, kv := range lethEnv {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&envFile, "export %s='%s'\n", k, v)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "env"), []byte(envFile.String()), 0o600); err != nil {
		return err
	}

	fmt.Fprintf(progress, "applying database migrations (%s migrate)\n", filepath.Base(lethe))
	migrate := exec.CommandContext(ctx, lethe, "migrate")
	migrate.Stdout, migrate.Stderr, migrate.Env = stdout, stderr, env
	migrate.Cancel = func() error { return migrate.Process.Signal(syscall.SIGTERM) }
	migrate.WaitDelay = 10 * time.Second
	if err := migrate.Run(); err != nil {
		return interrupted(ctx, fmt.Errorf("%s migrate: %w", lethe, err))
	}

	fmt.Fprintf(progress, "starting Lethe on http://%s (%s serve)\n", listen, filepath.Base(lethe))
	serve := exec.Command(lethe, "serve")
	serve.Stdout, serve.Stderr, serve.Env = stdout, stderr, env
	serve.SysProcAttr = devenv.ChildSysProcAttr()
	if err := serve.Start(); err != nil {
		return fmt.Errorf("%s serve: %w", lethe, err)
	}
	exited := make(chan struct{})
	var serveErr error
	go func() {
		serveErr = serve.Wait()
		close(exited)
	}()
	services.push("Lethe", func(ctx context.Context) error {
		if !isClosed(exited) {
			fmt.Fprintf(progress, "stopping Lethe (SIGTERM to %s serve)\n", filepath.Base(lethe))
		}
		return stopProcess(ctx, serve, exited)
	})

	url := "http://" + listen
	if err := waitHealthy(ctx, url+"/healthz", exited); err != nil {
		if isClosed(exited) {
			return fmt.Errorf("%s serve exited: %v", lethe, serveErr)
		}
		return interrupted(ctx, err)
	}
	if err := ensureDemoTokens(ctx, url, &st); err != nil {
		return interrupted(ctx, fmt.Errorf("demo tokens: %w", err))
	}
	if err := saveState(stateFile, st); err != nil {
		return err
	}
	loadSeedLead(ctx, url, st.Token, root, progress)
	fmt.Fprintf(&envFile, "export LETHE_URL='%s'\nexport LETHE_TOKEN='%s'\nexport LETHE_READER_TOKEN='%s'\nexport LETHE_AUDITOR_TOKEN='%s'\n",
		url, st.Token, st.ReaderToken, st.AuditorToken)
	if err := os.WriteFile(filepath.Join(stateDir, "env"), []byte(envFile.String()), 0o600); err != nil {
		return err
	}
	printBanner(stdout, url, st, pg.URL("lethe"), vault.Addr(), root, stateDir, pgDir)

	select {
	case <-ctx.Done():
		return nil
	case <-exited:
		return fmt.Errorf("%s serve exited: %v", lethe, serveErr)
	}
}

// interrupted reports an error that is the result of Ctrl-C as such.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return err
}

func printBanner(w io.Writer, url string, st localState, dbURL, vaultAddr, root, stateDir, pgDir string) {
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nLethe is running at %s\n\n", url)
	fmt.Fprintf(&b, "  PostgreSQL   %s\n", dbURL)
	fmt.Fprintf(&b, "  Vault        %s (unseal key and root token in %s)\n\n", vaultAddr, rel(filepath.Join(stateDir, "vault", "init.json")))
	fmt.Fprintf(&b, "This is a local-only setup for trying Lethe, not for production: Lethe\n")
	if strings.HasPrefix(pgDir, stateDir+string(filepath.Separator)) {
		fmt.Fprintf(&b, "uses Vault's root token, and all data stays in %s/.\n\n", rel(stateDir))
	} else {
		fmt.Fprintf(&b, "uses Vault's root token, and all data stays in %s/ and %s/.\n\n", rel(stateDir), pgDir)
	}
	fmt.Fprintf(&b, "Try it: copy and paste into another terminal. Run the commands from the\n")
	fmt.Fprintf(&b, "checkout's root directory: they use docs/examples/lead-12.json and .lethe/env.\n\n")
	fmt.Fprintf(&b, "  cd %s\n", shellQuote(root))
	fmt.Fprintf(&b, "  export LETHE_URL=%s\n", url)
	fmt.Fprintf(&b, "  export LETHE_ADMIN_TOKEN=%s   # admin: erase, holds, policies, tokens\n", st.AdminToken)
	fmt.Fprintf(&b, "  export LETHE_TOKEN=%s   # writer + pii-reader\n", st.Token)
	fmt.Fprintf(&b, "  export LETHE_READER_TOKEN=%s   # reader: personal data hidden\n", st.ReaderToken)
	fmt.Fprintf(&b, "  export LETHE_AUDITOR_TOKEN=%s   # auditor: audit export, erasure receipts\n", st.AuditorToken)
	b.WriteString("\n")
	for _, line := range strings.Split(strings.TrimRight(examples, "\n"), "\n") {
		if line == "" {
			b.WriteString("\n")
		} else {
			b.WriteString("  " + line + "\n")
		}
	}
	b.WriteString("\nCtrl-C stops everything.\n\n")
	io.WriteString(w, b.String())
}

// shellQuote quotes s for a POSIX shell, unless it needs no quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ensureDemoTokens makes the demo tokens through the API with the admin
// token, unless the state's still work.
func ensureDemoTokens(ctx context.Context, url string, st *localState) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	valid := func(token string) (bool, error) {
		if token == "" {
			return false, nil
		}
		// A route that discloses no personal data (a probe must not read
		// anyone's) and that both demo tokens may call.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/analytics/lead", nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return false, nil // unknown or revoked: make a new one
		case http.StatusOK:
			return true, nil
		}
		return false, fmt.Errorf("checking a demo token: GET /v1/analytics/lead answered %s", resp.Status)
	}
	create := func(name string, roles ...string) (string, error) {
		body, _ := json.Marshal(map[string]any{"name": name, "roles": roles})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/tokens", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+st.AdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var t struct {
			Token string `json:"token"`
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &t) != nil || t.Token == "" {
			return "", fmt.Errorf("POST /v1/tokens: %s %s", resp.Status, b)
		}
		return t.Token, nil
	}
	for _, tk := range []struct {
		p     *string
		name  string
		roles []string
	}{
		{&st.Token, "make-run-demo", []string{"writer", "pii-reader"}},
		{&st.ReaderToken, "make-run-demo-reader", []string{"reader"}},
		{&st.AuditorToken, "make-run-demo-auditor", []string{"auditor"}},
	} {
		ok, err := valid(*tk.p)
		if err != nil {
			return err
		}
		if !ok {
			if *tk.p, err = create(tk.name, tk.roles...); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadSeedLead appends the seed's lead stream (seedLeadFile) with the demo
// writer token, unless the stream exists, and says in one progress line
// what happened. A failure is reported, not fatal: the banner's append
// loads it too.
func loadSeedLead(ctx context.Context, url, token, root string, progress io.Writer) {
	msg, err := appendSeedLead(ctx, url, token, root)
	if err != nil {
		msg = fmt.Sprintf("could not load the seed's lead stream %s: %v (the append in the banner loads it)", seedLeadStream, err)
	}
	fmt.Fprintf(progress, "%s\n", msg)
}

func appendSeedLead(ctx context.Context, url, token, root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, seedLeadFile))
	if err != nil {
		return "", err
	}
	req, err := wire.Decode[wire.AppendRequest](b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", seedLeadFile, err)
	}
	c := client.New(url, token, &http.Client{Timeout: 30 * time.Second})
	res, err := c.Append(ctx, seedLeadStream, req.ExpectedVersion, req.Events...)
	switch {
	case err == nil && res.Duplicate:
		return fmt.Sprintf("the seed's lead stream %s is loaded already", seedLeadStream), nil
	case err == nil:
		return fmt.Sprintf("loaded the seed's lead stream %s: %d events from %s", seedLeadStream, len(req.Events), seedLeadFile), nil
	case client.ProblemType(err) == "wrong-expected-version":
		return fmt.Sprintf("the seed's lead stream %s is there from a previous run: not loaded again", seedLeadStream), nil
	case client.ProblemType(err) == "subject-erased":
		return fmt.Sprintf("the seed's lead stream %s is there from a previous run, casey erased (delete .lethe/ to start from scratch)", seedLeadStream), nil
	}
	return "", fmt.Errorf("POST /v1/streams/%s/events: %w", seedLeadStream, err)
}

// waitHealthy waits until url answers 200, the process exits (exited
// closes) or a minute passes.
func waitHealthy(ctx context.Context, url string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited")
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to answer 200: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}

// stopProcess sends SIGTERM to a process and waits for it to exit (exited
// closes), killing it after 15 seconds or when ctx ends.
func stopProcess(ctx context.Context, cmd *exec.Cmd, exited <-chan struct{}) error {
	if isClosed(exited) {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	<-exited
	return errors.New("still running 15s after SIGTERM; killed it")
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
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

func loadState(path string) (localState, error) {
	var st localState
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w (remove it to start over with new ports and admin token)", path, err)
	}
	return st, nil
}

// saveState writes the state file, mode 0600 (it holds the admin token),
// through a temporary file so that a crash never leaves half of it.
func saveState(path string, st localState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an old file's mode
		return err
	}
	return os.Rename(tmp, path)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// serviceStack stops services in the reverse order of their start. The
// stop functions say what they do themselves.
type serviceStack struct {
	names []string
	stops []func(context.Context) error
}

// push adds a service, named in errors.
func (s *serviceStack) push(name string, stop func(context.Context) error) {
	s.names = append(s.names, name)
	s.stops = append(s.stops, stop)
}

func (s *serviceStack) len() int { return len(s.stops) }

func (s *serviceStack) stopAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var errs []error
	for i := len(s.stops) - 1; i >= 0; i-- {
		if err := s.stops[i](ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.names[i], err))
		}
	}
	s.names, s.stops = nil, nil
	return errors.Join(errs...)
}

// prefixWriter writes every line with a prefix. It is safe for concurrent
// use.
type prefixWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	midLine bool
}

func newPrefixWriter(w io.Writer, prefix string) *prefixWriter {
	return &prefixWriter{w: w, prefix: prefix}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	var out []byte
	for len(b) > 0 {
		if !p.midLine {
			out = append(out, p.prefix...)
		}
		line, rest, found := strings.Cut(string(b), "\n")
		out = append(out, line...)
		if found {
			out = append(out, '\n')
		}
		p.midLine = !found
		b = []byte(rest)
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}
