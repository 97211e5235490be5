package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/keystore/vault"
)

// vaultConfig is how Lethe reaches Vault.
type vaultConfig struct {
	Timeout          time.Duration
	MaxRetries       int
	Addr, Token      string
	RoleID, SecretID string
	AppRoleMount     string
	Mount, Prefix    string
}

func (c *config) bindVaultAll(f *envFlags) {
	c.bindVault(f)
	f.string(&c.Vault.RoleID, "vault-role-id", "LETHE_VAULT_ROLE_ID", "", "AppRole role id (instead of a token)")
	f.string(&c.Vault.SecretID, "vault-secret-id", "LETHE_VAULT_SECRET_ID", "", "AppRole secret id")
	f.string(&c.Vault.AppRoleMount, "vault-approle-mount", "LETHE_VAULT_APPROLE_MOUNT", vault.DefaultAppRoleMount, "AppRole auth mount path")
	f.string(&c.Vault.Mount, "vault-mount", "LETHE_VAULT_MOUNT", vault.DefaultMount, "KV version 2 mount that holds the subject keys")
	f.string(&c.Vault.Prefix, "vault-prefix", "LETHE_VAULT_PREFIX", vault.DefaultPrefix, "path prefix of Lethe's secrets in that mount")
	f.duration(&c.Vault.Timeout, "vault-timeout", "LETHE_VAULT_TIMEOUT", 5*time.Second, "timeout of one Vault request")
	f.int(&c.Vault.MaxRetries, "vault-max-retries", "LETHE_VAULT_MAX_RETRIES", 1, "retries of a failed Vault request (fail fast: an outage is an error to the caller, not a wait)")
}

// vaultConfigured reports whether crypto-shredding is configured.
func (c *config) vaultConfigured() bool { return c.VaultAddr != "" }

// openKeyStore connects to Vault. The client honours Vault's standard
// variables for TLS (VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT,
// VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME, VAULT_SKIP_VERIFY) and
// VAULT_NAMESPACE; the address and credentials come from Lethe's own.
func openKeyStore(ctx context.Context, c config, log *slog.Logger, obs vault.Observer) (*vault.Store, error) {
	if !c.vaultConfigured() {
		return nil, errors.New("no Vault: set LETHE_VAULT_ADDR and LETHE_VAULT_TOKEN (or LETHE_VAULT_ROLE_ID and LETHE_VAULT_SECRET_ID)")
	}
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault client configuration: %w", vc.Error)
	}
	vc.Address = c.VaultAddr
	vc.Timeout = c.Vault.Timeout
	vc.MaxRetries = c.Vault.MaxRetries
	client, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	client.ClearToken() // never pick up VAULT_TOKEN by accident
	cfg := vault.Config{Client: client, Mount: c.Vault.Mount, Prefix: c.Vault.Prefix, Logger: log, Observer: obs}
	switch {
	case c.Vault.RoleID != "":
		cfg.AppRole = &vault.AppRole{RoleID: c.Vault.RoleID, SecretID: c.Vault.SecretID, MountPath: c.Vault.AppRoleMount}
	case c.VaultToken != "":
		client.SetToken(c.VaultToken)
	default:
		return nil, errors.New("no Vault credentials: set LETHE_VAULT_TOKEN, or LETHE_VAULT_ROLE_ID and LETHE_VAULT_SECRET_ID")
	}
	keys, err := vault.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: %w", c.VaultAddr, err)
	}
	return keys, nil
}

// shredding is crypto-shredding wired up: the event store, the key store,
// the ledger and the forgettable store on top.
type shredding struct {
	pool   *pgxpool.Pool
	events *postgres.Store
	keys   *vault.Store
	ledger *postgres.Ledger
	store  *forgettable.Store
}

func openShredding(ctx context.Context, c config, pool *pgxpool.Pool, log *slog.Logger) (*shredding, error) {
	keys, err := openKeyStore(ctx, c, log, nil)
	if err != nil {
		return nil, err
	}
	events := postgres.New(pool, postgres.Options{Logger: log})
	ledger := postgres.NewLedger(pool)
	return &shredding{
		pool: pool, events: events, keys: keys, ledger: ledger,
		store: forgettable.New(events, keys, ledger, ledger, forgettable.Options{Logger: log}),
	}, nil
}

func (s *shredding) Close() { s.events.Close() }

func postgresLedger(pool *pgxpool.Pool) *postgres.Ledger { return postgres.NewLedger(pool) }
