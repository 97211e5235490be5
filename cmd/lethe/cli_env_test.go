package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	espg "github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
)

// cliEnv is a migrated database and a Vault prefix of its own, the lethe
// command line on them (as $USER "tester"), and the Go API on the same
// database and keys, to set up data the commands then work on.
type cliEnv struct {
	t      *testing.T
	ctx    context.Context
	dbURL  string
	vars   map[string]string
	mount  string
	prefix string
	pool   *pgxpool.Pool
	events *espg.Store
	store  *forgettable.Store
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	ctx := testenv.Context(t)
	dbURL := testenv.MigratedDatabase(t)
	client, mount, prefix := testenv.LetheVault(t)
	vars := map[string]string{
		"LETHE_DATABASE_URL": dbURL, "LETHE_VAULT_ADDR": client.Address(), "LETHE_VAULT_TOKEN": client.Token(),
		"LETHE_VAULT_MOUNT": mount, "LETHE_VAULT_PREFIX": prefix, "USER": "tester",
	}
	a, err := app.Open(ctx, app.Config{Logger: slog.New(slog.DiscardHandler), Pool: testenv.Pool(t, dbURL), Vault: app.VaultConfig{Client: client, Mount: mount, Prefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return &cliEnv{t: t, ctx: ctx, dbURL: dbURL, vars: vars, mount: mount, prefix: prefix, pool: a.Pool(), events: a.Events(), store: a.Store()}
}

// cli runs lethe with args and returns its output (stdout, then stderr)
// and exit status.
func (e *cliEnv) cli(stdin string, args ...string) (string, int) {
	var stdout, stderr bytes.Buffer
	err := run(e.ctx, args, env(e.vars), strings.NewReader(stdin), &stdout, &stderr)
	out := stdout.String() + stderr.String()
	if err != nil {
		return out + "\nerror: " + err.Error(), exitCode(err)
	}
	return out, 0
}

// run runs lethe with args and returns its standard output, or on an error
// both outputs and the error.
func (e *cliEnv) run(stdin string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	if err := run(e.ctx, args, env(e.vars), strings.NewReader(stdin), &stdout, &stderr); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}
