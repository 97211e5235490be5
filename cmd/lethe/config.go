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

	"github.com/lethe-store/lethe/internal/app"
)

// config is everything the commands read from flags and the environment.
type config struct {
	DatabaseURL     string
	Vault           app.VaultConfig
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
	f.string(&c.Vault.Addr, "vault-addr", "LETHE_VAULT_ADDR", "", "Vault address, e.g. https://vault.internal:8200")
	f.string(&c.Vault.Token, "vault-token", "LETHE_VAULT_TOKEN", "", "Vault token")
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

// openPool connects to PostgreSQL for a command (app.OpenPool, without
// connections reserved for projections).
func openPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	return app.OpenPool(ctx, databaseURL, 0)
}
