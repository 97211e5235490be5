package vault

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"golang.org/x/sync/singleflight"

	"github.com/lethe-store/lethe/keystore"
)

var _ keystore.Store = (*Store)(nil)

// Defaults of Config.
const (
	DefaultMount        = "secret"
	DefaultPrefix       = "lethe"
	DefaultAppRoleMount = "approle"
	DefaultCacheSize    = 100_000
	DefaultCacheTTL     = 5 * time.Minute
)

// Config configures a Store.
type Config struct {
	// Client is a configured Vault client: address and TLS
	// (vaultapi.DefaultConfig reads VAULT_ADDR, VAULT_CACERT and the like)
	// and, for token authentication, the token. Required. The Store uses it
	// from several goroutines; with AppRole it sets the client's token.
	Client *vaultapi.Client

	// AppRole, if set, logs in with AppRole when New is called and logs in
	// again (once per call) when Vault answers 403, as it does for an
	// expired or revoked token, then retries the call.
	AppRole *AppRole

	// Mount is the path of the KV version 2 secrets engine; default
	// DefaultMount.
	Mount string

	// Prefix is the path under Mount where Lethe keeps its secrets; default
	// DefaultPrefix.
	Prefix string

	// CacheSize is the most subjects whose keys are cached; default
	// DefaultCacheSize.
	CacheSize int

	// CacheTTL is how long a cached subject's keys are used before Vault is
	// asked again; default DefaultCacheTTL. It bounds how long this process
	// may keep using a key that another process rotated or destroyed.
	CacheTTL time.Duration

	// Logger receives what the Store does (subject references only, never
	// subject ids, tokens or key bytes); nil discards it.
	Logger *slog.Logger

	// Observer, if set, receives cache hits and misses and the duration
	// and outcome of every request to Vault, for metrics; nil measures
	// nothing.
	Observer Observer

	// Binding, if set, binds the database to one reference secret: the
	// first time the secret is needed, its fingerprint (never the secret)
	// is compared with the one the database recorded, or recorded; a
	// secret is created only for a database without a binding and without
	// subjects. Without it, the secret is created on first use.
	Binding ReferenceBinding

	// Erasures, if set, is asked after each key this store creates
	// whether the subject was erased meanwhile (the erasure ledger;
	// forgettable/postgres implements it): if so, the new key is
	// destroyed at once. The check runs in the shared lookup that created
	// the key, so it happens even when every caller waiting for it has
	// gone away; the caller that claims the creation checks again.
	Erasures Erasures
}

// Erasures tells which subject references are erased (the erasure
// ledger).
type Erasures interface {
	Erased(ctx context.Context, refs []keystore.Ref) (map[keystore.Ref]bool, error)
}

// ReferenceBinding is where the database records the fingerprint of the
// reference secret its subject references were made with
// (forgettable/postgres implements it).
type ReferenceBinding interface {
	// BoundFingerprint returns the recorded fingerprint, if any.
	BoundFingerprint(ctx context.Context) (fingerprint string, bound bool, err error)
	// HasSubjects reports whether the database holds subject references
	// already (events with personal data, erasures).
	HasSubjects(ctx context.Context) (bool, error)
	// Bind records fingerprint unless one is recorded, and returns the
	// recorded one.
	Bind(ctx context.Context, fingerprint string) (recorded string, err error)
}

// AppRole holds the credentials of Vault's AppRole auth method.
type AppRole struct {
	RoleID   string
	SecretID string
	// MountPath is where the auth method is mounted; default
	// DefaultAppRoleMount.
	MountPath string
}

// Store is a keystore.Store on HashiCorp Vault's KV version 2 secrets
// engine. It is safe for concurrent use. See the package documentation.
type Store struct {
	client *vaultapi.Client
	kv     *vaultapi.KVv2
	mount  string
	prefix string
	log    *slog.Logger
	obs    Observer
	cache  *cache
	flight singleflight.Group

	// AppRole: auth is nil for token authentication. loginClient is a
	// token-less clone of client (a login must not carry the stale token).
	auth        *approle.AppRoleAuth
	authMount   string
	loginClient *vaultapi.Client
	loginMu     sync.Mutex

	binding   ReferenceBinding // nil: the secret is created on first use
	erasures  Erasures         // nil: created keys are not checked here
	refMu     sync.Mutex
	refSecret atomic.Pointer[[]byte] // set once; never changes

	mountMu sync.Mutex
	mountOK atomic.Bool // checkMount succeeded
}

// Limits of the retry loops.
const (
	// maxRotateAttempts bounds Rotate's read-modify-write attempts when
	// other writers keep winning the check-and-set.
	maxRotateAttempts = 8
	// maxCreateAttempts bounds the create-or-read loops.
	maxCreateAttempts = 3
	// flightTimeout bounds a shared Vault lookup, which runs detached from
	// the context of the caller that started it (others may wait for it).
	flightTimeout = time.Minute
)

var pathPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// New returns a Store. With cfg.AppRole it logs in first and fails if the
// login fails; otherwise it makes no call (the reference secret is read on
// first use). Errors from Vault wrap keystore.ErrUnavailable.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("vault keystore: no Vault client")
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for _, p := range []string{mount, prefix} {
		if !pathPattern.MatchString(p) || slices.Contains(strings.Split(p, "/"), "..") {
			return nil, fmt.Errorf("vault keystore: invalid mount or prefix %q", p)
		}
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	s := &Store{
		client:   cfg.Client,
		kv:       cfg.Client.KVv2(mount),
		mount:    mount,
		prefix:   prefix,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		cache:    newCache(cfg.CacheSize, cfg.CacheTTL),
		binding:  cfg.Binding,
		erasures: cfg.Erasures,
	}
	if cfg.AppRole != nil {
		s.authMount = strings.Trim(cfg.AppRole.MountPath, "/")
		if s.authMount == "" {
			s.authMount = DefaultAppRoleMount
		}
		auth, err := approle.NewAppRoleAuth(cfg.AppRole.RoleID,
			&approle.SecretID{FromString: cfg.AppRole.SecretID}, approle.WithMountPath(s.authMount))
		if err != nil {
			return nil, fmt.Errorf("vault keystore: approle: %w", err)
		}
		s.auth = auth
		lc, err := cfg.Client.CloneWithHeaders()
		if err != nil {
			return nil, fmt.Errorf("vault keystore: clone client for login: %w", err)
		}
		lc.ClearToken() // NewClient may have read VAULT_TOKEN
		s.loginClient = lc
		if err := s.login(ctx, ""); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// login logs in with AppRole and sets the client's token. stale is the
// token that Vault refused ("" at start): if the client's token is no
// longer stale, another goroutine has logged in meanwhile and login does
// nothing, so that many refused calls cause one login.
func (s *Store) login(ctx context.Context, stale string) error {
	s.loginMu.Lock()
	defer s.loginMu.Unlock()
	if stale != "" && s.client.Token() != stale {
		return nil
	}
	start := time.Now()
	secret, err := s.auth.Login(ctx, s.loginClient)
	if err == nil && (secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "") {
		err = errors.New("login answered no token")
	}
	if err != nil {
		s.obs.VaultRequest(opLogin, time.Since(start), observed(opLogin, err))
		return classify("login at auth/"+s.authMount, err)
	}
	s.obs.VaultRequest(opLogin, time.Since(start), nil)
	s.client.SetToken(secret.Auth.ClientToken)
	s.log.Info("vault: logged in with AppRole", "mount", s.authMount,
		"ttl", time.Duration(secret.Auth.LeaseDuration)*time.Second, "renewed", stale != "")
	return nil
}

// call makes one Vault call through fn and returns its error classified
// (see classify). With AppRole, a 403 causes one login and one retry. The
// first call checks the mount first (see checkMount).
func (s *Store) call(ctx context.Context, op, path string, fn func(ctx context.Context) error) error {
	if !s.mountOK.Load() {
		if err := s.checkMount(ctx); err != nil {
			return err
		}
	}
	return s.callOnce(ctx, op, path, fn)
}

func (s *Store) callOnce(ctx context.Context, op, path string, fn func(ctx context.Context) error) error {
	token := s.client.Token()
	raw, err := s.timed(ctx, op, path, fn)
	if s.auth != nil && statusCode(raw) == http.StatusForbidden {
		s.log.Warn("vault: permission denied; logging in again", "op", op, "path", path)
		if lerr := s.login(ctx, token); lerr != nil {
			return fmt.Errorf("%w (after a login to replace the refused token)", lerr)
		}
		_, err = s.timed(ctx, op, path, fn)
	}
	return err
}

// checkMount makes sure that Mount is a KV version 2 engine, the way the
// vault CLI does (GET sys/internal/ui/mounts/<mount>, which any token with
// a capability under the mount may read). Without it a missing mount would
// read as "no key" (vault/api turns a 404 into no secret), and a KV version
// 1 engine would accept the writes but ignore check-and-set, so two
// processes could each create a subject's key.
// recheckMount checks the mount again, ignoring an earlier success: Vault
// answers a read of a mount that is gone (disabled, moved, restored
// elsewhere) exactly as a read of a key that does not exist, and a "not
// found" must not be taken for an absent key — nor an erasure's "verified
// gone" — unless the mount is still there.
func (s *Store) recheckMount(ctx context.Context) error {
	s.mountOK.Store(false)
	return s.checkMount(ctx)
}

func (s *Store) checkMount(ctx context.Context) error {
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	if s.mountOK.Load() {
		return nil
	}
	var sec *vaultapi.Secret
	err := s.callOnce(ctx, opCheckMount, "", func(ctx context.Context) error {
		var err error
		sec, err = s.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+s.mount)
		return err
	})
	if errors.Is(err, keystore.ErrKeyNotFound) {
		err = nil // sec == nil: handled below
	}
	if err != nil {
		return err
	}
	var typ, version string
	if sec != nil {
		typ, _ = sec.Data["type"].(string)
		if opts, ok := sec.Data["options"].(map[string]any); ok {
			version, _ = opts["version"].(string)
		}
	}
	if typ != "kv" || version != "2" {
		return fmt.Errorf("%w: vault mount %s/ is not a KV version 2 secrets engine (type %q, version %q)",
			keystore.ErrUnavailable, s.mount, typ, version)
	}
	s.mountOK.Store(true)
	return nil
}

func (s *Store) timed(ctx context.Context, op, path string, fn func(ctx context.Context) error) (raw, classified error) {
	start := time.Now()
	raw = fn(ctx)
	classified = classify(op+" "+s.mount+"/"+path, raw)
	s.obs.VaultRequest(op, time.Since(start), outcome(op, raw, classified))
	return raw, classified
}

// errSoftDeleted is a secret whose newest KV version was deleted (not
// destroyed): Vault answers the read with its metadata and no data, and a
// check-and-set 0 write fails. To readers it is not found; Lethe never
// creates a new secret over it.
var errSoftDeleted = fmt.Errorf("%w: the newest version of the secret is deleted but not destroyed (soft delete)", keystore.ErrKeyNotFound)

// get reads the newest version of the secret at path; op names the
// request (see Observer). It returns keystore.ErrKeyNotFound
// (errSoftDeleted after a soft delete) if there is none.
func (s *Store) get(ctx context.Context, op, path string) (*vaultapi.KVSecret, error) {
	var sec *vaultapi.KVSecret
	err := s.call(ctx, op, path, func(ctx context.Context) error {
		var err error
		sec, err = s.kv.Get(ctx, path)
		return err
	})
	if err != nil {
		return nil, err
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("read %s/%s: %w", s.mount, path, errSoftDeleted)
	}
	return sec, nil
}

// put writes a new version of the secret at path if its current KV
// version is cas (0: if there is no secret); op names the request (see
// Observer). It returns the new KV version, or errCASMismatch.
func (s *Store) put(ctx context.Context, op, path string, data map[string]any, cas int) (int, error) {
	var sec *vaultapi.KVSecret
	err := s.call(ctx, op, path, func(ctx context.Context) error {
		var err error
		sec, err = s.kv.Put(ctx, path, data, vaultapi.WithCheckAndSet(cas))
		return err
	})
	if err != nil {
		return 0, err
	}
	if sec == nil || sec.VersionMetadata == nil {
		return 0, fmt.Errorf("%w: write %s/%s: no version in Vault's answer", keystore.ErrUnavailable, s.mount, path)
	}
	return sec.VersionMetadata.Version, nil
}

// do runs fn once for all concurrent callers with the same flight key. fn
// runs detached from the caller's context (other callers may be waiting
// for it), bounded by flightTimeout; each caller stops waiting when its own
// context ends.
func (s *Store) do(ctx context.Context, key string, fn func(ctx context.Context) (any, error)) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", keystore.ErrUnavailable, err)
	}
	ch := s.flight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flightTimeout)
		defer cancel()
		return fn(fctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", keystore.ErrUnavailable, ctx.Err())
	}
}

// --- subject references ---

const refSecretField = "secret"

func (s *Store) refSecretPath() string { return s.prefix + "/ref-secret" }

// SubjectRef returns HMAC-SHA256(subject) under the reference secret, in
// lowercase hex. The secret is read from Vault (created there, once, by
// whichever process comes first) on first use and kept in memory. Returns
// keystore.ErrInvalidSubject, keystore.ErrUnavailable.
func (s *Store) SubjectRef(ctx context.Context, subject string) (keystore.Ref, error) {
	if err := keystore.ValidateSubject(subject); err != nil {
		return "", err
	}
	secret, err := s.refKey(ctx)
	if err != nil {
		return "", fmt.Errorf("subject reference: %w", err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(subject))
	return keystore.Ref(hex.EncodeToString(mac.Sum(nil))), nil
}

// derivedKeyLabel is the message a derived key is computed from: longer
// than any subject id SubjectRef accepts, so that no subject reference can
// ever equal a derived key (the API shows subject references).
func derivedKeyLabel(purpose string) []byte {
	label := make([]byte, keystore.MaxSubjectLength+1, keystore.MaxSubjectLength+1+len(purpose))
	copy(label, "lethe derived key v1\x00")
	return append(label, purpose...)
}

// DerivedKey returns a 256-bit key for a purpose (e.g. "lookup index"),
// derived from the subject-reference secret held in Vault: the database
// never sees it, and no subject reference equals it or any MAC under it.
func (s *Store) DerivedKey(ctx context.Context, purpose string) ([]byte, error) {
	secret, err := s.refKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("derived key: %w", err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(derivedKeyLabel(purpose))
	return mac.Sum(nil), nil
}

func (s *Store) refKey(ctx context.Context) ([]byte, error) {
	if p := s.refSecret.Load(); p != nil {
		return *p, nil
	}
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if p := s.refSecret.Load(); p != nil {
		return *p, nil
	}
	secret, err := s.boundRefSecret(ctx)
	if err != nil {
		return nil, err
	}
	s.refSecret.Store(&secret)
	return secret, nil
}

// CheckReference loads the reference secret (creating it only where the
// binding allows) and checks it against the database's binding: a server
// calls it at start, and refuses to start on keystore.ErrReferenceMismatch.
func (s *Store) CheckReference(ctx context.Context) error {
	_, err := s.refKey(ctx)
	return err
}

// referenceFingerprintPurpose labels the fingerprint among derived keys.
const referenceFingerprintPurpose = "reference-secret-fingerprint"

// fingerprint identifies secret without revealing it: an HMAC under it of
// a fixed label (a derived key, like DerivedKey's), in hex.
func fingerprint(secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(derivedKeyLabel(referenceFingerprintPurpose))
	return hex.EncodeToString(mac.Sum(nil))
}

// boundRefSecret loads the reference secret under the binding's rules.
func (s *Store) boundRefSecret(ctx context.Context) ([]byte, error) {
	if s.binding == nil {
		return s.loadOrCreateRefSecret(ctx, true)
	}
	bound, isBound, err := s.binding.BoundFingerprint(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: the reference binding: %w", keystore.ErrUnavailable, err)
	}
	create := !isBound
	if create {
		has, err := s.binding.HasSubjects(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: the reference binding: %w", keystore.ErrUnavailable, err)
		}
		create = !has
	}
	secret, err := s.loadOrCreateRefSecret(ctx, create)
	if errors.Is(err, keystore.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %w: no reference secret at %s/%s, and the database already holds subject references (wrong LETHE_VAULT_PREFIX or mount, or a Vault restored without it); refusing to create one",
			keystore.ErrUnavailable, keystore.ErrReferenceMismatch, s.mount, s.refSecretPath())
	}
	if err != nil {
		return nil, err
	}
	fp := fingerprint(secret)
	if !isBound {
		if bound, err = s.binding.Bind(ctx, fp); err != nil {
			return nil, fmt.Errorf("%w: the reference binding: %w", keystore.ErrUnavailable, err)
		}
		s.log.Info("vault: the database is bound to this reference secret", "path", s.mount+"/"+s.refSecretPath())
	}
	if bound != fp {
		return nil, fmt.Errorf("%w: %w: the secret at %s/%s is not the one the database was bound to (wrong LETHE_VAULT_PREFIX or mount, or a Vault restored from another backup)",
			keystore.ErrUnavailable, keystore.ErrReferenceMismatch, s.mount, s.refSecretPath())
	}
	return secret, nil
}

// loadOrCreateRefSecret reads the reference secret, creating it if it
// does not exist and create is true; otherwise its absence is an error
// wrapping keystore.ErrKeyNotFound.
func (s *Store) loadOrCreateRefSecret(ctx context.Context, create bool) ([]byte, error) {
	path := s.refSecretPath()
	for range maxCreateAttempts {
		sec, err := s.get(ctx, opReadRefSecret, path)
		switch {
		case err == nil:
			return decodeRefSecret(s.mount+"/"+path, sec.Data)
		case errors.Is(err, errSoftDeleted):
			return nil, fmt.Errorf("%w: %w; refusing to create another one, which would change every subject reference: undelete it",
				keystore.ErrUnavailable, err)
		case !errors.Is(err, keystore.ErrKeyNotFound):
			return nil, err
		case !create:
			return nil, err
		}
		fresh := make([]byte, keystore.RefSize)
		_, _ = rand.Read(fresh) // never fails (crypto/rand)
		_, err = s.put(ctx, opCreateRefSecret, path, map[string]any{refSecretField: base64.StdEncoding.EncodeToString(fresh)}, 0)
		switch {
		case err == nil:
			s.log.Info("vault: created the subject reference secret", "path", s.mount+"/"+path)
			return fresh, nil
		case !errors.Is(err, errCASMismatch):
			// Lethe's policy may create the secret, never update it:
			// losing the race to create it is a permission denied (the
			// write is an update once it exists), not a CAS mismatch.
			// If it exists now, another process created it: use theirs.
			if sec, rerr := s.get(ctx, opReadRefSecret, path); rerr == nil {
				return decodeRefSecret(s.mount+"/"+path, sec.Data)
			}
			return nil, err
		}
		// Another process created it first: read theirs.
	}
	return nil, fmt.Errorf("%w: %s/%s: keeps changing", keystore.ErrUnavailable, s.mount, path)
}

func decodeRefSecret(where string, data map[string]any) ([]byte, error) {
	str, _ := data[refSecretField].(string)
	b, err := base64.StdEncoding.DecodeString(str)
	if err != nil || len(b) != keystore.RefSize {
		return nil, fmt.Errorf("%w: %s: field %q is not %d base64-encoded bytes", keystore.ErrUnavailable, where, refSecretField, keystore.RefSize)
	}
	return b, nil
}

// --- subject keys ---

func (s *Store) subjectPath(ref keystore.Ref) string { return s.prefix + "/subjects/" + string(ref) }

func checkRef(ref keystore.Ref) error {
	_, err := keystore.ParseRef(string(ref))
	return err
}

// flightResult is what a CurrentKey lookup shared between callers yields.
// created is reported to one caller only: the first to claim it.
type flightResult struct {
	keys    *subjectKeys
	created bool
	claimed atomic.Bool
}

// CurrentKey returns the newest version of ref's key, creating version 1
// if ref has none. Creation happens once: Vault's check-and-set decides
// between processes, and the one caller that caused it gets created ==
// true (if it stops waiting, no caller does).
//
// From the cache, the newest version is the newest known to this process:
// after a Rotate in another process, CurrentKey may return the version
// before for up to CacheTTL (or until Invalidate). Such a key is still
// valid: every version stays readable until Destroy. After a Rotate in
// this process it returns the new version at once.
//
// After Destroy (in this process, or in another once this process's
// cache entry is gone), CurrentKey creates a new key: the erasure ledger,
// not the key store, must stop that for a forgotten subject.
//
// Returns keystore.ErrInvalidRef, keystore.ErrUnavailable, or the error
// of Config.Erasures when a created key cannot be checked.
func (s *Store) CurrentKey(ctx context.Context, ref keystore.Ref) (keystore.Key, bool, error) {
	if err := checkRef(ref); err != nil {
		return keystore.Key{}, false, err
	}
	if sk, ok := s.cache.get(ref); ok {
		s.obs.KeyLookup(true)
		return sk.currentKey(), false, nil
	}
	s.obs.KeyLookup(false)
	v, err := s.do(ctx, "current/"+string(ref), func(ctx context.Context) (any, error) {
		// A caller that missed the cache just before an earlier lookup
		// filled it starts a lookup of its own: the cache answers it.
		if sk, ok := s.cache.get(ref); ok {
			return &flightResult{keys: sk}, nil
		}
		ticket := s.cache.ticket()
		sk, created, err := s.readOrCreate(ctx, ref)
		if err != nil {
			return nil, err
		}
		if created && s.erasures != nil {
			erased, err := s.destroyIfErased(ctx, ref)
			if err != nil {
				return nil, err
			}
			if erased { // not cached: the claimer finds the subject erased
				return &flightResult{keys: sk, created: true}, nil
			}
		}
		s.cache.put(ticket, sk)
		return &flightResult{keys: sk, created: created}, nil
	})
	if err != nil {
		return keystore.Key{}, false, fmt.Errorf("current key of %s: %w", ref, err)
	}
	r := v.(*flightResult)
	created := r.created && r.claimed.CompareAndSwap(false, true)
	return r.keys.currentKey(), created, nil
}

// destroyIfErased destroys ref's key, just created, if the erasure ledger
// says ref is erased (an erasure recorded while the key was being made),
// and reports whether it did.
func (s *Store) destroyIfErased(ctx context.Context, ref keystore.Ref) (bool, error) {
	erased, err := s.erasures.Erased(ctx, []keystore.Ref{ref})
	if err != nil {
		s.log.Warn("a key was created but the erasure ledger could not be asked whether its subject is erased; `lethe erasures reapply` destroys it if so", "ref", ref, "err", err)
		// The ledger's own error (the database unavailable, say), not
		// the key store's: Vault answered.
		return false, fmt.Errorf("check the key of %s against the erasure ledger: %w", ref, err)
	}
	if !erased[ref] {
		return false, nil
	}
	if _, err := s.Destroy(ctx, ref); err != nil {
		return true, fmt.Errorf("destroy the key created for erased %s: %w", ref, err)
	}
	s.log.Info("destroyed a key created for an erased subject", "ref", ref)
	return true, nil
}

func (s *Store) readOrCreate(ctx context.Context, ref keystore.Ref) (*subjectKeys, bool, error) {
	path := s.subjectPath(ref)
	for range maxCreateAttempts {
		sk, err := s.readKeys(ctx, ref)
		switch {
		case err == nil:
			return sk, false, nil
		case errors.Is(err, errSoftDeleted):
			return nil, false, fmt.Errorf("%w: %w; an operator must undelete or destroy it", keystore.ErrUnavailable, err)
		case !errors.Is(err, keystore.ErrKeyNotFound):
			return nil, false, err
		}
		material := newMaterial()
		sk, err = newSubjectKeys(ref, 1, map[int][]byte{1: material})
		if err != nil {
			return nil, false, err
		}
		kvVersion, err := s.put(ctx, opCreateKey, path, sk.data(), 0)
		switch {
		case err == nil:
			sk.kvVersion = kvVersion
			s.log.Debug("vault: created a subject key", "ref", string(ref))
			return sk, true, nil
		case !errors.Is(err, errCASMismatch):
			return nil, false, err
		}
		// Another goroutine or process created it first: read theirs.
	}
	return nil, false, fmt.Errorf("%w: %s/%s: keeps changing", keystore.ErrUnavailable, s.mount, path)
}

// Key returns version of ref's key, from the cache or from Vault.
// Returns keystore.ErrKeyNotFound (no key, or no such version),
// keystore.ErrInvalidRef, keystore.ErrUnavailable.
func (s *Store) Key(ctx context.Context, ref keystore.Ref, version int) (keystore.Key, error) {
	if err := checkRef(ref); err != nil {
		return keystore.Key{}, err
	}
	if version < 1 {
		return keystore.Key{}, fmt.Errorf("key %s version %d: %w", ref, version, keystore.ErrKeyNotFound)
	}
	if sk, ok := s.cache.get(ref); ok {
		if k, ok := sk.keys[version]; ok {
			s.obs.KeyLookup(true)
			return k, nil
		}
		// A newer version than this process knows, from a rotation
		// elsewhere: ask Vault.
	}
	s.obs.KeyLookup(false)
	read := func(ctx context.Context) (any, error) {
		ticket := s.cache.ticket()
		sk, err := s.readKeys(ctx, ref)
		if err != nil {
			return nil, err
		}
		s.cache.put(ticket, sk)
		return keysRead{keys: sk}, nil
	}
	v, err := s.do(ctx, "read/"+string(ref), func(ctx context.Context) (any, error) {
		// A caller that missed the cache just before an earlier lookup
		// filled it starts a lookup of its own: the cache answers it, if
		// it has the version this lookup was started for.
		if sk, ok := s.cache.get(ref); ok {
			if _, ok := sk.keys[version]; ok {
				return keysRead{keys: sk, cached: true}, nil
			}
		}
		return read(ctx)
	})
	if err != nil {
		return keystore.Key{}, fmt.Errorf("key %s version %d: %w", ref, version, err)
	}
	k, ok := v.(keysRead).keys.keys[version]
	if !ok && v.(keysRead).cached {
		// The shared lookup was answered by the cache, for another
		// caller's version: ask Vault for this one, alone.
		if v, err = read(ctx); err != nil {
			return keystore.Key{}, fmt.Errorf("key %s version %d: %w", ref, version, err)
		}
		k, ok = v.(keysRead).keys.keys[version]
	}
	if !ok {
		return keystore.Key{}, fmt.Errorf("key %s version %d: %w", ref, version, keystore.ErrKeyNotFound)
	}
	return k, nil
}

// keysRead is what a Key lookup shared between callers yields: a
// subject's keys, and whether the cache answered.
type keysRead struct {
	keys   *subjectKeys
	cached bool
}

// CachedKey returns version of ref's key if this process's cache holds it,
// without asking Vault: reads open what they can while rows stream in, and
// fetch the rest in one concurrent batch.
func (s *Store) CachedKey(ref keystore.Ref, version int) (keystore.Key, bool) {
	if sk, ok := s.cache.get(ref); ok {
		if k, ok := sk.keys[version]; ok {
			s.obs.KeyLookup(true)
			return k, true
		}
	}
	return keystore.Key{}, false
}

// Rotate adds a version to ref's key: it reads the secret, adds the new
// version and writes it back with check-and-set on the KV version it read,
// retrying when another writer got there first. Returns
// keystore.ErrKeyNotFound, keystore.ErrInvalidRef, keystore.ErrUnavailable.
func (s *Store) Rotate(ctx context.Context, ref keystore.Ref) (keystore.Key, error) {
	if err := checkRef(ref); err != nil {
		return keystore.Key{}, err
	}
	path := s.subjectPath(ref)
	for attempt := range maxRotateAttempts {
		if attempt > 0 {
			if err := sleep(ctx, time.Duration(attempt)*time.Duration(1+mrand.IntN(10))*time.Millisecond); err != nil {
				return keystore.Key{}, fmt.Errorf("rotate %s: %w: %w", ref, keystore.ErrUnavailable, err)
			}
		}
		ticket := s.cache.ticket()
		old, err := s.readKeys(ctx, ref)
		if err != nil {
			return keystore.Key{}, fmt.Errorf("rotate %s: %w", ref, err)
		}
		materials := make(map[int][]byte, len(old.keys)+1)
		for v, k := range old.keys {
			m := k.Material()
			materials[v] = m[:]
		}
		next := old.current + 1
		materials[next] = newMaterial()
		sk, err := newSubjectKeys(ref, next, materials)
		if err != nil {
			return keystore.Key{}, err
		}
		kvVersion, err := s.put(ctx, opRotateKey, path, sk.data(), old.kvVersion)
		if errors.Is(err, errCASMismatch) {
			continue
		}
		if err != nil {
			return keystore.Key{}, fmt.Errorf("rotate %s: %w", ref, err)
		}
		sk.kvVersion = kvVersion
		s.cache.put(ticket, sk)
		s.log.Debug("vault: rotated a subject key", "ref", string(ref), "version", next)
		return sk.currentKey(), nil
	}
	return keystore.Key{}, fmt.Errorf("rotate %s: %w: other writers kept changing the key (%d attempts)",
		ref, keystore.ErrUnavailable, maxRotateAttempts)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Destroy erases ref's key for good: it drops the cache entry, destroys
// every KV version listed in the secret's metadata, deletes the metadata
// (which removes every version, with no undelete), and then reads both the
// metadata and the data to check that Vault has neither. Destroying a key
// that does not exist reports Existed == false and no error.
//
// Other processes' caches still hold the key until their CacheTTL passes:
// the erasure ledger must be checked before a key is used.
//
// Returns keystore.ErrInvalidRef, keystore.ErrUnavailable; an error
// without either if a key is found again after the deletion (created
// concurrently).
func (s *Store) Destroy(ctx context.Context, ref keystore.Ref) (keystore.DestroyReport, error) {
	var report keystore.DestroyReport
	if err := checkRef(ref); err != nil {
		return report, err
	}
	s.Invalidate(ref)
	path := s.subjectPath(ref)
	// "Verified gone" must mean gone from the mount Lethe uses, not that
	// the mount itself went away.
	if err := s.recheckMount(ctx); err != nil {
		return report, fmt.Errorf("destroy %s: %w", ref, err)
	}

	var md *vaultapi.KVMetadata
	err := s.call(ctx, opReadKeyMetadata, path, func(ctx context.Context) error {
		var err error
		md, err = s.kv.GetMetadata(ctx, path)
		return err
	})
	switch {
	case err == nil && md != nil:
		report.Existed = true
	case err == nil, errors.Is(err, keystore.ErrKeyNotFound):
	default:
		return report, fmt.Errorf("destroy %s: %w", ref, err)
	}

	if report.Existed {
		var versions []int
		for _, v := range md.Versions {
			versions = append(versions, v.Version)
			if !v.Destroyed {
				report.VersionsDestroyed++
			}
		}
		slices.Sort(versions)
		if len(versions) > 0 {
			err := s.call(ctx, opDestroyKey, path, func(ctx context.Context) error {
				return s.kv.Destroy(ctx, path, versions)
			})
			if err != nil {
				return report, fmt.Errorf("destroy %s: %w", ref, err)
			}
		}
		err := s.call(ctx, opDeleteKeyMetadata, path, func(ctx context.Context) error {
			return s.kv.DeleteMetadata(ctx, path)
		})
		if err != nil {
			return report, fmt.Errorf("destroy %s: %w", ref, err)
		}
		s.Invalidate(ref) // a read that raced with the deletion
	}

	if err := s.verifyGone(ctx, path); err != nil {
		return report, fmt.Errorf("destroy %s: %w", ref, err)
	}
	report.Verified = true
	s.log.Debug("vault: destroyed a subject key", "ref", string(ref), "existed", report.Existed,
		"versions", report.VersionsDestroyed)
	return report, nil
}

// verifyGone checks that Vault has neither metadata nor data at path.
func (s *Store) verifyGone(ctx context.Context, path string) error {
	err := s.call(ctx, opReadKeyMetadata, path, func(ctx context.Context) error {
		_, err := s.kv.GetMetadata(ctx, path)
		return err
	})
	switch {
	case err == nil:
		return errors.New("verify: the key's metadata is still there (created again concurrently?)")
	case !errors.Is(err, keystore.ErrKeyNotFound):
		return fmt.Errorf("verify: %w", err)
	}
	_, err = s.get(ctx, opReadKey, path)
	switch {
	case err == nil, errors.Is(err, errSoftDeleted):
		return errors.New("verify: the key's data is still there (created again concurrently?)")
	case !errors.Is(err, keystore.ErrKeyNotFound):
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// Invalidate drops ref's keys from this Store's cache: the next CurrentKey
// or Key asks Vault.
func (s *Store) Invalidate(ref keystore.Ref) {
	s.cache.remove(ref)
	s.flight.Forget("current/" + string(ref))
	s.flight.Forget("read/" + string(ref))
}

// InvalidateAll drops every cached key of this process: what a process
// does when it may have missed erasure announcements (its listener
// reconnected), so that no key it kept can decrypt for an erased subject.
func (s *Store) InvalidateAll() { s.cache.clear() }

// Health reports whether Vault is initialised and unsealed (GET
// sys/health, which needs no token). It does not check the token. Returns
// nil or an error wrapping keystore.ErrUnavailable.
func (s *Store) Health(ctx context.Context) error {
	start := time.Now()
	h, raw := s.client.Sys().HealthWithContext(ctx)
	d := time.Since(start)
	if raw != nil {
		s.obs.VaultRequest(opHealth, d, observed(opHealth, raw))
		return classify(opHealth, raw)
	}
	var reason string
	switch {
	case h == nil:
		reason = "empty answer"
	case !h.Initialized:
		reason = "not initialized"
	case h.Sealed:
		reason = "vault sealed"
	default:
		s.obs.VaultRequest(opHealth, d, nil)
		return nil
	}
	s.obs.VaultRequest(opHealth, d, &requestError{op: opHealth, reason: reason, errs: []error{keystore.ErrUnavailable}})
	return fmt.Errorf("%w: vault %s: %s", keystore.ErrUnavailable, opHealth, reason)
}

// readKeys reads ref's secret from Vault.
func (s *Store) readKeys(ctx context.Context, ref keystore.Ref) (*subjectKeys, error) {
	path := s.subjectPath(ref)
	sec, err := s.get(ctx, opReadKey, path)
	if errors.Is(err, keystore.ErrKeyNotFound) {
		if merr := s.recheckMount(ctx); merr != nil {
			return nil, merr
		}
	}
	if err != nil {
		return nil, err
	}
	sk, err := parseSubjectKeys(ref, sec.Data)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", s.mount, path, err)
	}
	if sec.VersionMetadata == nil {
		return nil, fmt.Errorf("%w: %s/%s: no KV version in Vault's answer", keystore.ErrUnavailable, s.mount, path)
	}
	sk.kvVersion = sec.VersionMetadata.Version
	return sk, nil
}

func newMaterial() []byte {
	b := make([]byte, keystore.KeySize)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// newSubjectKeys builds subjectKeys from raw materials.
func newSubjectKeys(ref keystore.Ref, current int, materials map[int][]byte) (*subjectKeys, error) {
	sk := &subjectKeys{ref: ref, current: current, keys: make(map[int]keystore.Key, len(materials))}
	for v, m := range materials {
		k, err := keystore.NewKey(ref, v, m)
		if err != nil {
			return nil, err
		}
		sk.keys[v] = k
	}
	return sk, nil
}

// data is the secret's KV data: {"current": "2", "k1": base64, "k2": base64}.
func (sk *subjectKeys) data() map[string]any {
	d := make(map[string]any, len(sk.keys)+1)
	d["current"] = strconv.Itoa(sk.current)
	for v, k := range sk.keys {
		m := k.Material()
		d["k"+strconv.Itoa(v)] = base64.StdEncoding.EncodeToString(m[:])
	}
	return d
}

// errMalformed is a subject secret that is not in Lethe's layout. It is
// neither "not found" nor "unavailable": someone wrote the secret by hand.
var errMalformed = errors.New("malformed key secret")

// parseSubjectKeys reads a secret in the layout of data. Its errors never
// include key bytes.
func parseSubjectKeys(ref keystore.Ref, data map[string]any) (*subjectKeys, error) {
	current, err := atoi(data["current"])
	if err != nil || current < 1 {
		return nil, fmt.Errorf("%w: field \"current\" is not a version", errMalformed)
	}
	materials := make(map[int][]byte, len(data)-1)
	for name, raw := range data {
		if name == "current" {
			continue
		}
		v, err := strconv.Atoi(strings.TrimPrefix(name, "k"))
		if !strings.HasPrefix(name, "k") || err != nil || v < 1 {
			return nil, fmt.Errorf("%w: unexpected field %q", errMalformed, name)
		}
		str, _ := raw.(string)
		m, err := base64.StdEncoding.DecodeString(str)
		if err != nil || len(m) != keystore.KeySize {
			return nil, fmt.Errorf("%w: field %q is not %d base64-encoded bytes", errMalformed, name, keystore.KeySize)
		}
		if v > current {
			return nil, fmt.Errorf("%w: version %d is newer than current %d", errMalformed, v, current)
		}
		materials[v] = m
	}
	if _, ok := materials[current]; !ok {
		return nil, fmt.Errorf("%w: no field \"k%d\" for the current version", errMalformed, current)
	}
	return newSubjectKeys(ref, current, materials)
}

func atoi(v any) (int, error) {
	switch v := v.(type) {
	case string:
		return strconv.Atoi(v)
	case json.Number:
		n, err := v.Int64()
		return int(n), err
	default:
		return 0, fmt.Errorf("%T is not a number", v)
	}
}
