package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/migrations"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env returns a getenv that reads only vars: tests never see the
// process's own LETHE_* variables.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// latestSchemaVersion is the number of migration files in the binary.
func latestSchemaVersion(tb testing.TB) int {
	tb.Helper()
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil || len(names) == 0 {
		tb.Fatalf("migration files: got %d, %v; want at least one", len(names), err)
	}
	return len(names)
}

func TestRunVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "-version", "--version"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{arg}, env(nil), nil, &stdout, &stderr); err != nil {
			t.Fatalf("run(%s): got %v, want nil", arg, err)
		}
		if got, want := stdout.String(), "lethe dev\n"; got != want {
			t.Errorf("run(%s) stdout: got %q, want %q", arg, got, want)
		}
		if got := stderr.String(); got != "" {
			t.Errorf("run(%s) stderr: got %q, want nothing", arg, got)
		}
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"help", "-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{arg}, env(nil), nil, &stdout, &stderr); err != nil {
			t.Fatalf("run(%s): got %v, want nil", arg, err)
		}
		if got, want := stdout.String(), usage; got != want {
			t.Errorf("run(%s) stdout: got %q, want the usage", arg, got)
		}
	}
}

// "lethe token -h" prints the group's usage and succeeds; "lethe token"
// alone is a usage error.
func TestRunGroupHelp(t *testing.T) {
	t.Parallel()
	for _, group := range groupCommands {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{group, "-h"}, env(nil), nil, &stdout, &stderr); err != nil {
			t.Errorf("run(%s -h): got %v, want nil", group, err)
		}
		if !strings.Contains(stderr.String(), "lethe "+group) {
			t.Errorf("run(%s -h) stderr: got %q, want the group's usage", group, stderr.String())
		}
		if err := run(context.Background(), []string{group}, env(nil), nil, &stdout, &stderr); err == nil {
			t.Errorf("run(%s): got nil, want a usage error", group)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no arguments", nil, "no command given"},
		{"empty arguments", []string{}, "no command given"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"flag instead of command", []string{"--listen", ":80"}, `unknown command "--listen"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, env(nil), nil, &stdout, &stderr)
			if err == nil {
				t.Fatalf("got nil, want an error %q", tt.wantErr)
			}
			if got, want := err.Error(), tt.wantErr; got != want {
				t.Errorf("error: got %q, want %q", got, want)
			}
			if got, want := stderr.String(), usage; got != want {
				t.Errorf("stderr: got %q, want the usage", got)
			}
			if got := stdout.String(); got != "" {
				t.Errorf("stdout: got %q, want nothing", got)
			}
		})
	}
}

// Configuration mistakes are reported before any connection is tried: the
// database URL below points at a closed port.
func TestRunServeConfigErrors(t *testing.T) {
	t.Parallel()
	const unreachable = "postgres://lethe@127.0.0.1:1/lethe?connect_timeout=2"
	tests := []struct {
		name    string
		args    []string
		vars    map[string]string
		wantErr string // a substring of the error
	}{
		{"log format", nil, map[string]string{"LETHE_LOG_FORMAT": "xml"}, `log format "xml": want text or json`},
		{"log format flag", []string{"--log-format", "yaml"}, nil, `log format "yaml": want text or json`},
		{"log level", nil, map[string]string{"LETHE_LOG_LEVEL": "loud"}, `log level "loud": want debug, info, warn or error`},
		{"migrate", nil, map[string]string{"LETHE_MIGRATE": "maybe"}, "$LETHE_MIGRATE: want true or false"},
		{"shutdown timeout", nil, map[string]string{"LETHE_SHUTDOWN_TIMEOUT": "soon"}, "$LETHE_SHUTDOWN_TIMEOUT"},
		{"unexpected argument", []string{"now"}, nil, "unexpected arguments: now"},
		{"unknown flag", []string{"--nope"}, nil, "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"LETHE_DATABASE_URL": unreachable}
			for k, v := range tt.vars {
				vars[k] = v
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"serve"}, tt.args...), env(vars), nil, &stdout, &stderr)
			if err == nil {
				t.Fatalf("got nil, want an error containing %q", tt.wantErr)
			}
			if got, want := err.Error(), tt.wantErr; !strings.Contains(got, want) {
				t.Errorf("error: got %q, want it to contain %q", got, want)
			}
		})
	}
}

func TestRunServeHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"serve", "-h"}, env(nil), nil, &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"LETHE_DATABASE_URL", "LETHE_LISTEN_ADDR", "LETHE_MIGRATE", "LETHE_LOG_FORMAT"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help: got %q, want it to mention %s", stderr.String(), want)
		}
	}
}

func TestRunNoDatabase(t *testing.T) {
	t.Parallel()
	for _, cmd := range [][]string{{"serve"}, {"migrate"}, {"migrate", "--status"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), cmd, env(nil), nil, &stdout, &stderr)
		if err == nil {
			t.Fatalf("%s: got nil, want an error", cmd)
		}
		if got, want := err.Error(), "LETHE_DATABASE_URL"; !strings.Contains(got, want) {
			t.Errorf("%s: error got %q, want it to mention %s", cmd, got, want)
		}
	}
}

// A database URL holds a password: no error may repeat it.
func TestRunDatabaseURLErrorsHidePassword(t *testing.T) {
	t.Parallel()
	const password = "s3cretpw"
	tests := []struct {
		name, url string
		wantErr   string // a substring of the error
	}{
		{"bad escape", "postgres://u:" + password + "@127.0.0.1:5432/lethe%zz", "not a valid PostgreSQL URL"},
		{"bad port", "postgres://u:" + password + "@127.0.0.1:notaport/lethe", "not a valid PostgreSQL URL"},
		{"bad DSN", "host=127.0.0.1 password=" + password + " port=notaport", "not a valid PostgreSQL URL"},
		{"unreachable", "postgres://u:" + password + "@127.0.0.1:1/lethe?connect_timeout=2", "connect to PostgreSQL at 127.0.0.1:1"},
	}
	for _, tt := range tests {
		for _, cmd := range []string{"serve", "migrate"} {
			t.Run(tt.name+"/"+cmd, func(t *testing.T) {
				t.Parallel()
				var stdout, stderr bytes.Buffer
				err := run(context.Background(), []string{cmd}, env(map[string]string{"LETHE_DATABASE_URL": tt.url}), nil, &stdout, &stderr)
				if err == nil {
					t.Fatalf("got nil, want an error")
				}
				if got, want := err.Error(), tt.wantErr; !strings.Contains(got, want) {
					t.Errorf("error: got %q, want it to contain %q", got, want)
				}
				for what, s := range map[string]string{"error": err.Error(), "stdout": stdout.String(), "stderr": stderr.String()} {
					if strings.Contains(s, password) {
						t.Errorf("%s %q holds the password", what, s)
					}
				}
			})
		}
	}
}

func TestRunMigrate(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Database(t)
	latest := latestSchemaVersion(t)
	ctx := testenv.Context(t)
	vars := env(map[string]string{"LETHE_DATABASE_URL": dbURL})

	// A fresh database is not current.
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"migrate", "--status"}, vars, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "lethe migrate") {
		t.Errorf("status before migrate: got %v, want an error suggesting lethe migrate", err)
	}
	if got, want := stdout.String(), fmt.Sprintf("schema version 0, latest %d\n", latest); got != want {
		t.Errorf("status before migrate: got %q, want %q", got, want)
	}

	stdout.Reset()
	if err := run(ctx, []string{"migrate"}, vars, nil, &stdout, &stderr); err != nil {
		t.Fatalf("migrate: %v; stderr %s", err, stderr.String())
	}
	if got, want := stdout.String(), fmt.Sprintf("migrated schema from version 0 to %d\n", latest); got != want {
		t.Errorf("migrate: got %q, want %q", got, want)
	}

	stdout.Reset()
	if err := run(ctx, []string{"migrate", "--status"}, vars, nil, &stdout, &stderr); err != nil {
		t.Fatalf("status after migrate: %v", err)
	}
	if got, want := stdout.String(), fmt.Sprintf("schema version %d, latest %d\n", latest, latest); got != want {
		t.Errorf("status after migrate: got %q, want %q", got, want)
	}

	// Migrating again changes nothing. The flag overrides the environment.
	stdout.Reset()
	if err := run(ctx, []string{"migrate", "--database-url", dbURL}, env(map[string]string{"LETHE_DATABASE_URL": "postgres://u@127.0.0.1:1/x"}), nil, &stdout, &stderr); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if got, want := stdout.String(), fmt.Sprintf("schema is current (version %d)\n", latest); got != want {
		t.Errorf("second migrate: got %q, want %q", got, want)
	}
}

func TestRunServeUnmigrated(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Database(t)
	ctx := testenv.Context(t)
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"serve", "--listen", "127.0.0.1:0"}, env(map[string]string{"LETHE_DATABASE_URL": dbURL}), nil, &stdout, &stderr)
	if err == nil {
		t.Fatal("got nil, want an error")
	}
	if got, want := err.Error(), "lethe migrate"; !strings.Contains(got, want) {
		t.Errorf("error: got %q, want it to suggest %q", got, want)
	}
	if strings.Contains(stderr.String(), "lethe serving") {
		t.Errorf("stderr: got %q, want no serving line", stderr.String())
	}
}

var servingAddr = regexp.MustCompile(`msg="lethe serving" addr=(http://\S+)`)

func TestRunServe(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Database(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var stdout io.Writer = io.Discard
	stderr := new(testenv.SyncBuffer)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--migrate", "--listen", "127.0.0.1:0"},
			env(map[string]string{"LETHE_DATABASE_URL": dbURL, "LETHE_SHUTDOWN_TIMEOUT": "5s"}), nil, stdout, stderr)
	}()

	var base string
	deadline := time.After(30 * time.Second)
	for base == "" {
		if m := servingAddr.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned before serving: %v; stderr:\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("no serving line after 30s; stderr:\n%s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: read body: %v", path, err)
		}
		if got, want := resp.StatusCode, http.StatusOK; got != want {
			t.Errorf("GET %s: status got %d, want %d; body %s", path, got, want, body)
		}
		if path == "/readyz" {
			var doc struct {
				Checks []struct {
					Name string `json:"name"`
					OK   bool   `json:"ok"`
				} `json:"checks"`
			}
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			var names []string
			for _, c := range doc.Checks {
				if c.OK {
					names = append(names, c.Name)
				}
			}
			if got, want := strings.Join(names, ","), "postgres,schema"; got != want {
				t.Errorf("passing checks: got %q, want %q", got, want)
			}
		}
	}
	if !strings.Contains(stderr.String(), "database schema") {
		t.Errorf("stderr: got %q, want the --migrate log line", stderr.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: got %v, want nil; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return 10s after cancel; stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("stderr: got %q, want the stopped line", stderr.String())
	}
	if _, err := client.Get(base + "/healthz"); err == nil {
		t.Errorf("GET /healthz after shutdown: got nil, want an error")
	}
}

// Help and flag errors list each flag with its default: never the value
// the environment gave it (a database URL's password, a Vault token).
func TestRunHelpHidesEnvironmentValues(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"LETHE_DATABASE_URL":    "postgres://u:s3cretpw@127.0.0.1:5432/lethe",
		"LETHE_VAULT_TOKEN":     "hvs.s3crettoken",
		"LETHE_VAULT_SECRET_ID": "s3cretid",
	}
	for _, args := range [][]string{{"serve", "-h"}, {"serve", "--nope"}, {"subject", "erase", "--nope"}, {"audit", "export", "-h"}, {"verify", "--nope"}} {
		var stdout, stderr bytes.Buffer
		_ = run(context.Background(), args, env(vars), nil, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if !strings.Contains(out, "LETHE_DATABASE_URL") {
			t.Errorf("%v: no flag help in %q", args, out)
		}
		for _, secret := range []string{"s3cretpw", "s3crettoken", "s3cretid"} {
			if strings.Contains(out, secret) {
				t.Errorf("%v: the output shows %q:\n%s", args, secret, out)
			}
		}
	}
}
