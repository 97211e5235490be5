// Package testenv gives integration tests real services: a PostgreSQL
// server and a Vault server on loopback.
//
// `make test` starts both once and passes them in LETHE_TEST_DATABASE_URL
// (a superuser URL; every test gets a database of its own),
// LETHE_TEST_VAULT_ADDR and LETHE_TEST_VAULT_TOKEN. When a variable is not
// set — `go test ./some/package` run by hand — the first test that needs the
// service starts a private one (see internal/devenv) and Main stops it when
// the package's tests end. Nothing is ever skipped: a service that cannot be
// had fails the test.
//
// The production variables (LETHE_DATABASE_URL, ...) are never read here:
// tests create and drop databases and destroy keys.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/internal/devenv"
	"github.com/lethe-store/lethe/migrations"
)

// Environment variables read by this package.
const (
	EnvDatabaseURL = "LETHE_TEST_DATABASE_URL"
	EnvVaultAddr   = "LETHE_TEST_VAULT_ADDR"
	EnvVaultToken  = "LETHE_TEST_VAULT_TOKEN"
)

// services are the servers this test binary started itself. It is the
// package's only state, shared by the tests of one test binary.
var services struct {
	mu       sync.Mutex
	pg       *devenv.Postgres
	pgDir    string
	pgURL    string
	vault    *devenv.Vault
	vaultErr error
	pgErr    error
}

// Main runs the tests and then stops the services that were started for
// them. Call it from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	services.mu.Lock()
	if services.vault != nil {
		_ = services.vault.Stop(ctx)
	}
	if services.pg != nil {
		_ = services.pg.Stop(ctx)
		_ = os.RemoveAll(services.pgDir)
	}
	services.mu.Unlock()
	os.Exit(code)
}

// ServerURL returns the URL of a PostgreSQL superuser connection to the
// server's "postgres" database, starting a server if none was given.
func ServerURL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u
	}
	services.mu.Lock()
	defer services.mu.Unlock()
	if services.pgURL == "" && services.pgErr == nil {
		services.pgErr = startPostgres()
	}
	if services.pgErr != nil {
		tb.Fatalf("no PostgreSQL for the tests (set %s or install PostgreSQL): %v", EnvDatabaseURL, services.pgErr)
	}
	return services.pgURL
}

func startPostgres() error {
	dir, err := os.MkdirTemp("", "lethe-test-pg-")
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: dir})
	if err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	services.pg, services.pgDir, services.pgURL = pg, dir, pg.URL("postgres")
	return nil
}

// Database creates an empty database for one test and returns its URL. The
// database is dropped when the test ends.
func Database(tb testing.TB) string {
	tb.Helper()
	server := ServerURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		tb.Fatalf("connect to the test PostgreSQL server: %v", err)
	}
	defer conn.Close(ctx)
	name := "lethe_test_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(tb, server, name)
}

func withDatabase(tb testing.TB, server, name string) string {
	tb.Helper()
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("%s must be a postgres:// URL", EnvDatabaseURL)
	}
	u.Path = "/" + name
	return u.String()
}

// MigratedDatabase creates a database for one test, applies Lethe's
// migrations and returns its URL.
func MigratedDatabase(tb testing.TB) string {
	tb.Helper()
	dbURL := Database(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("connect to test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, _, err := migrations.Migrate(ctx, conn); err != nil {
		tb.Fatalf("migrate test database: %v", err)
	}
	return dbURL
}

// Pool opens a connection pool on dbURL, closed when the test ends.
func Pool(tb testing.TB, dbURL string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		tb.Fatalf("parse database URL: %v", err)
	}
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Vault returns the address and a token of a Vault server with KV v2
// mounted at secret/, starting a dev server if none was given.
func Vault(tb testing.TB) (addr, token string) {
	tb.Helper()
	if addr := os.Getenv(EnvVaultAddr); addr != "" {
		token := os.Getenv(EnvVaultToken)
		if token == "" {
			tb.Fatalf("%s is set but %s is not", EnvVaultAddr, EnvVaultToken)
		}
		return addr, token
	}
	services.mu.Lock()
	defer services.mu.Unlock()
	if services.vault == nil && services.vaultErr == nil {
		services.vaultErr = startVault()
	}
	if services.vaultErr != nil {
		tb.Fatalf("no Vault for the tests (set %s, or run `make vault`): %v", EnvVaultAddr, services.vaultErr)
	}
	return services.vault.Addr(), services.vault.RootToken()
}

func startVault() error {
	root, err := devenv.RepoRoot()
	if err != nil {
		return err
	}
	bin, err := devenv.VaultBinary(root)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := devenv.StartVault(ctx, devenv.VaultOptions{Bin: bin})
	if err != nil {
		return err
	}
	services.vault = v
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Name returns a random name with the given prefix, for Vault paths and
// the like: tests that share a server never collide.
func Name(prefix string) string {
	return strings.TrimSuffix(prefix, "-") + "-" + randomHex(6)
}

// Context returns a context that ends with the test (or after a minute).
func Context(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}
