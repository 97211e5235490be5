package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/migrations"
)

// MinServerVersion is the oldest PostgreSQL Lethe runs on (13: xid8 and
// the pg_snapshot functions).
const MinServerVersion = 130000

// OpenPool connects to PostgreSQL and checks the server's version. Unless
// the URL sets pool_max_conns, the pool gets reserved connections on top
// of pgx's default: a server reserves them for the projections, which hold
// connections for long stretches while they catch up, so that the API
// keeps its share. Errors never quote the URL (it may carry a password).
func OpenPool(ctx context.Context, databaseURL string, reserved int) (*pgxpool.Pool, error) {
	if databaseURL == "" {
		return nil, errors.New("no database: set LETHE_DATABASE_URL or --database-url")
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("LETHE_DATABASE_URL is not a valid PostgreSQL URL or DSN")
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "lethe"
	if reserved > 0 && !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns += int32(reserved)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	var num int
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if num < MinServerVersion {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL %d.%d is too old: Lethe needs 13 or later", num/10000, num%10000)
	}
	return pool, nil
}

// Migrate applies the pending migrations under the migration lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (from, to int32, err error) {
	return withConn(ctx, pool, "migrate", migrations.Migrate)
}

// SchemaStatus returns the database's schema version and the latest this
// build knows.
func SchemaStatus(ctx context.Context, pool *pgxpool.Pool) (current, latest int32, err error) {
	return withConn(ctx, pool, "schema status", migrations.Status)
}

// withConn runs a migrations function on one of pool's connections.
func withConn(ctx context.Context, pool *pgxpool.Pool, what string, fn func(context.Context, *pgx.Conn) (int32, int32, error)) (int32, int32, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", what, err)
	}
	defer conn.Release()
	return fn(ctx, conn.Conn())
}
