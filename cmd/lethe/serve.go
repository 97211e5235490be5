package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lethe-store/lethe/api"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c config
	f := newFlagSet("serve", getenv, stderr)
	c.bindDatabase(f)
	c.bindVaultAll(f)
	c.bindLogging(f)
	f.string(&c.ListenAddr, "listen", "LETHE_LISTEN_ADDR", "127.0.0.1:8080", "address to serve HTTP on")
	f.bool(&c.Migrate, "migrate", "LETHE_MIGRATE", false, "apply database migrations before serving")
	f.duration(&c.ShutdownTimeout, "shutdown-timeout", "LETHE_SHUTDOWN_TIMEOUT", 30*time.Second, "how long to drain requests on shutdown")
	if err := f.parse(args); err != nil {
		return err
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}

	pool, err := openPool(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if c.Migrate {
		from, to, err := migrate(ctx, pool)
		if err != nil {
			return err
		}
		log.Info("database schema", "from", from, "to", to)
	}
	current, latest, err := schemaStatus(ctx, pool)
	if err != nil {
		return err
	}
	if current != latest {
		return fmt.Errorf("database schema is at version %d, this lethe needs %d: run `lethe migrate` or serve with --migrate", current, latest)
	}

	checks := []api.ReadinessCheck{}
	if c.vaultConfigured() {
		sh, err := openShredding(ctx, c, pool, log)
		if err != nil {
			return err
		}
		defer sh.Close()
		go sh.watch(ctx, log)
		checks = append(checks, api.ReadinessCheck{Name: "vault", Check: func(ctx context.Context) error {
			if err := sh.keys.Health(ctx); err != nil {
				log.Warn("vault health", "err", err)
				return errors.New("Vault is unreachable, sealed or not initialised")
			}
			return nil
		}})
		log.Info("crypto-shredding on", "vault", c.VaultAddr, "mount", c.Vault.Mount, "prefix", c.Vault.Prefix)
	} else {
		log.Warn("crypto-shredding off: no Vault configured (LETHE_VAULT_ADDR); personal data cannot be accepted")
	}

	handler := api.NewHandler(api.Options{
		Logger: log,
		Readiness: append([]api.ReadinessCheck{
			{Name: "postgres", Check: func(ctx context.Context) error {
				if err := pool.Ping(ctx); err != nil {
					log.Warn("postgres ping", "err", err)
					return errors.New("PostgreSQL is unreachable")
				}
				return nil
			}},
			{Name: "schema", Check: func(ctx context.Context) error {
				current, latest, err := schemaStatus(ctx, pool)
				if err != nil {
					log.Warn("schema status", "err", err)
					return errors.New("cannot read the schema version")
				}
				if current != latest {
					return fmt.Errorf("schema version %d, this lethe needs %d: run lethe migrate", current, latest)
				}
				return nil
			}},
		}, checks...),
	})
	return serveHTTP(ctx, log, c, handler)
}

// serveHTTP serves until ctx ends, then drains in-flight requests.
func serveHTTP(ctx context.Context, log *slog.Logger, c config, handler http.Handler) error {
	ln, err := net.Listen("tcp", c.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("lethe serving", "addr", "http://"+ln.Addr().String(), "version", version)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests", "timeout", c.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
