package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// config is everything the commands read from flags and the environment.
type config struct {
	DatabaseURL     string
	VaultAddr       string
	VaultToken      string
	Vault           vaultConfig
	ListenAddr      string
	TLSCert, TLSKey string
	Migrate         bool
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
}

// envFlags binds flags whose defaults come from environment variables.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	err    error
}

// string binds a string flag. Help and flag errors show the built-in
// default, never the environment's value: database URLs carry passwords,
// and Vault tokens and secret ids are credentials.
func (f *envFlags) string(p *string, name, env, def, help string) {
	builtin := def
	if v := f.getenv(env); v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, help+" ($"+env+")")
	f.fs.Lookup(name).DefValue = builtin
}

func (f *envFlags) bool(p *bool, name, env string, def bool, help string) {
	switch strings.ToLower(f.getenv(env)) {
	case "1", "true", "yes", "on":
		def = true
	case "0", "false", "no", "off":
		def = false
	case "":
	default:
		f.err = errors.Join(f.err, fmt.Errorf("$%s: want true or false", env))
	}
	f.fs.BoolVar(p, name, def, help+" ($"+env+")")
}

func (f *envFlags) int(p *int, name, env string, def int, help string) {
	if v := f.getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.err = errors.Join(f.err, fmt.Errorf("$%s: want a whole number", env))
		}
		def = n
	}
	f.fs.IntVar(p, name, def, help+" ($"+env+")")
}

func (f *envFlags) duration(p *time.Duration, name, env string, def time.Duration, help string) {
	if v := f.getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.err = errors.Join(f.err, fmt.Errorf("$%s: %w", env, err))
		}
		def = d
	}
	f.fs.DurationVar(p, name, def, help+" ($"+env+")")
}

func newFlagSet(name string, getenv func(string) string, stderr io.Writer) *envFlags {
	fs := flag.NewFlagSet("lethe "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &envFlags{fs: fs, getenv: getenv}
}

func (c *config) bindDatabase(f *envFlags) {
	f.string(&c.DatabaseURL, "database-url", "LETHE_DATABASE_URL", "", "PostgreSQL URL, e.g. postgres://lethe@127.0.0.1:5432/lethe")
}

func (c *config) bindVault(f *envFlags) {
	f.string(&c.VaultAddr, "vault-addr", "LETHE_VAULT_ADDR", "", "Vault address, e.g. https://vault.internal:8200")
	f.string(&c.VaultToken, "vault-token", "LETHE_VAULT_TOKEN", "", "Vault token")
}

func (c *config) bindLogging(f *envFlags) {
	f.string(&c.LogFormat, "log-format", "LETHE_LOG_FORMAT", "text", "log format: text or json")
	f.string(&c.LogLevel, "log-level", "LETHE_LOG_LEVEL", "info", "log level: debug, info, warn or error")
}

func (f *envFlags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(f.fs.Args(), " "))
	}
	return f.err
}

func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.LogFormat)
}

// minServerVersion is the oldest PostgreSQL Lethe runs on (13: xid8 and
// pg_snapshot functions).
const minServerVersion = 130000

// openPool connects to PostgreSQL and checks the server version.
func openPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	return openPoolReserving(ctx, databaseURL, 0)
}

// explicitMaxConns reports whether the URL or DSN sets the pool's size.
func explicitMaxConns(databaseURL string) bool {
	return strings.Contains(databaseURL, "pool_max_conns")
}

// openPoolReserving is openPool for a server that keeps reserved
// connections busy for long stretches (a projection catching up holds two):
// unless the URL sets pool_max_conns, the pool gets reserved connections on
// top of pgx's default, so that the API keeps its share.
func openPoolReserving(ctx context.Context, databaseURL string, reserved int) (*pgxpool.Pool, error) {
	if databaseURL == "" {
		return nil, errors.New("no database: set LETHE_DATABASE_URL or --database-url")
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("LETHE_DATABASE_URL is not a valid PostgreSQL URL or DSN")
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "lethe"
	if reserved > 0 && !explicitMaxConns(databaseURL) {
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
	if num < minServerVersion {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL %d.%d is too old: Lethe needs 13 or later", num/10000, num%10000)
	}
	return pool, nil
}
