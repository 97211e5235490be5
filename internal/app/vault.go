package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/keystore/vault"
)

// VaultConfig is how Lethe reaches Vault: an address and credentials (a
// token, or an AppRole), or a client made elsewhere.
type VaultConfig struct {
	// Addr is Vault's address; empty (and no Client): no Vault.
	Addr string
	// Token authenticates, unless RoleID is set: AppRole then logs in
	// (and again when the token expires) under AppRoleMount.
	Token                          string
	RoleID, SecretID, AppRoleMount string
	// Mount is the KV version 2 mount of the keys and Prefix Lethe's path
	// in it (defaults: vault.DefaultMount, vault.DefaultPrefix).
	Mount, Prefix string
	// Timeout bounds one request; MaxRetries, its retries.
	Timeout    time.Duration
	MaxRetries int
	// CacheTTL bounds how long this process uses a subject's key without
	// asking Vault again (0: vault.DefaultCacheTTL). An erasure in another
	// process reaches this one at once through its announcement; the TTL
	// bounds the time when an announcement is lost and the listener has
	// not yet reconnected (a reconnection drops every cached key).
	CacheTTL time.Duration
	// Client, if set, is used as it is (address, TLS and token), and Addr
	// and the credentials are ignored: tests and the bench bring their
	// own.
	Client *vaultapi.Client
}

func (c VaultConfig) configured() bool { return c.Addr != "" || c.Client != nil }

// openVault connects to Vault. The client honours Vault's standard
// variables for TLS (VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT,
// VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME, VAULT_SKIP_VERIFY) and
// VAULT_NAMESPACE; the address and credentials come from Lethe's own.
func openVault(ctx context.Context, c VaultConfig, log *slog.Logger, obs vault.Observer, binding vault.ReferenceBinding, erasures vault.Erasures) (*vault.Store, error) {
	cfg := vault.Config{Client: c.Client, Mount: c.Mount, Prefix: c.Prefix, Logger: log, Observer: obs, CacheTTL: c.CacheTTL,
		Binding: binding, Erasures: erasures}
	if cfg.Client == nil {
		vc := vaultapi.DefaultConfig()
		if vc.Error != nil {
			return nil, fmt.Errorf("vault client configuration: %w", vc.Error)
		}
		vc.Address = c.Addr
		vc.Timeout = c.Timeout
		vc.MaxRetries = c.MaxRetries
		client, err := vaultapi.NewClient(vc)
		if err != nil {
			return nil, fmt.Errorf("vault client: %w", err)
		}
		client.ClearToken() // never pick up VAULT_TOKEN by accident
		switch {
		case c.RoleID != "":
			cfg.AppRole = &vault.AppRole{RoleID: c.RoleID, SecretID: c.SecretID, MountPath: c.AppRoleMount}
		case c.Token != "":
			client.SetToken(c.Token)
		default:
			return nil, errors.New("no Vault credentials: set LETHE_VAULT_TOKEN, or LETHE_VAULT_ROLE_ID and LETHE_VAULT_SECRET_ID")
		}
		cfg.Client = client
	}
	keys, err := vault.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: %w", cfg.Client.Address(), err)
	}
	log.Info("crypto-shredding on", "vault", cfg.Client.Address(), "mount", c.Mount, "prefix", c.Prefix)
	// The reference secret must be the one the database is bound to: a
	// mismatch stops the server here. Vault being unreachable does not
	// (it may come later): the check then runs on first use, and fails
	// closed.
	if err := keys.CheckReference(ctx); errors.Is(err, keystore.ErrReferenceMismatch) {
		return nil, fmt.Errorf("vault at %s: %w", cfg.Client.Address(), err)
	} else if err != nil {
		log.Warn("the subject reference secret could not be checked yet; it will be before first use", "err", err)
	}
	return keys, nil
}

// noKeyStore is the key store of a server without Vault: every key is
// unavailable, so appends with personal data are refused (fail closed) and
// appends without any work.
type noKeyStore struct{}

var errNoVault = fmt.Errorf("no Vault configured (LETHE_VAULT_ADDR): %w", keystore.ErrUnavailable)

func (noKeyStore) SubjectRef(context.Context, string) (keystore.Ref, error) { return "", errNoVault }
func (noKeyStore) CurrentKey(context.Context, keystore.Ref) (keystore.Key, bool, error) {
	return keystore.Key{}, false, errNoVault
}
func (noKeyStore) Key(context.Context, keystore.Ref, int) (keystore.Key, error) {
	return keystore.Key{}, errNoVault
}
func (noKeyStore) Rotate(context.Context, keystore.Ref) (keystore.Key, error) {
	return keystore.Key{}, errNoVault
}
func (noKeyStore) Destroy(context.Context, keystore.Ref) (keystore.DestroyReport, error) {
	return keystore.DestroyReport{}, errNoVault
}
func (noKeyStore) Invalidate(keystore.Ref) {}
