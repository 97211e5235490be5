package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/keystore/vault"
)

func (c *config) bindVaultAll(f *envFlags) {
	c.bindVault(f)
	f.string(&c.Vault.RoleID, "vault-role-id", "LETHE_VAULT_ROLE_ID", "", "AppRole role id (instead of a token)")
	f.string(&c.Vault.SecretID, "vault-secret-id", "LETHE_VAULT_SECRET_ID", "", "AppRole secret id")
	f.string(&c.Vault.AppRoleMount, "vault-approle-mount", "LETHE_VAULT_APPROLE_MOUNT", vault.DefaultAppRoleMount, "AppRole auth mount path")
	f.string(&c.Vault.Mount, "vault-mount", "LETHE_VAULT_MOUNT", vault.DefaultMount, "KV version 2 mount that holds the subject keys")
	f.string(&c.Vault.Prefix, "vault-prefix", "LETHE_VAULT_PREFIX", vault.DefaultPrefix, "path prefix of Lethe's secrets in that mount")
	f.duration(&c.Vault.Timeout, "vault-timeout", "LETHE_VAULT_TIMEOUT", 5*time.Second, "timeout of one Vault request")
	f.duration(&c.Vault.CacheTTL, "key-cache-ttl", "LETHE_KEY_CACHE_TTL", vault.DefaultCacheTTL, "how long a subject's key is used from memory without asking Vault again (erasures are announced at once; this bounds a lost announcement)")
	f.int(&c.Vault.MaxRetries, "vault-max-retries", "LETHE_VAULT_MAX_RETRIES", 1, "retries of a failed Vault request (fail fast: an outage is an error to the caller, not a wait)")
}

// withApp runs fn with Lethe assembled on the database and Vault of c
// (app.Open, not run: no listeners, no projections), for the commands
// that erase, hold, re-admit, rotate and export. They need Vault.
func withApp(ctx context.Context, c config, stderr io.Writer, fn func(*app.App) error) error {
	if c.Vault.Addr == "" {
		return errors.New("no Vault: set LETHE_VAULT_ADDR and LETHE_VAULT_TOKEN (or LETHE_VAULT_ROLE_ID and LETHE_VAULT_SECRET_ID)")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.Open(ctx, app.Config{Logger: log, DatabaseURL: c.DatabaseURL, Vault: c.Vault})
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(a)
}
