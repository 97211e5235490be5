package vault_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/keystore/keystoretest"
	"github.com/lethe-store/lethe/keystore/vault"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// lethe is one test's Vault as Lethe sees it: a least-privilege client, the
// mount and a random prefix.
type lethe struct {
	client *vaultapi.Client
	mount  string
	prefix string
}

func mustLethe(t *testing.T) lethe {
	t.Helper()
	c, mount, prefix := testenv.LetheVault(t)
	return lethe{c, mount, prefix}
}

// open returns a Store with its own client (like another process), using
// l's token. cfg's Client, Mount and Prefix are filled in.
func (l lethe) open(t *testing.T, cfg vault.Config) *vault.Store {
	t.Helper()
	if cfg.Client == nil {
		cfg.Client = testenv.VaultClient(t, l.client.Address(), l.client.Token())
	}
	cfg.Mount, cfg.Prefix = l.mount, l.prefix
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := vault.New(testenv.Context(t), cfg)
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	return s
}

func (l lethe) subjectPath(ref keystore.Ref) string { return l.prefix + "/subjects/" + string(ref) }

// testLogger logs to the test, at debug level, until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// recorder is an Observer that records what it is told.
type recorder struct {
	mu       sync.Mutex
	lookups  []bool // KeyLookup's hit, in order
	requests []request
}

type request struct {
	op  string
	d   time.Duration
	err error
}

func (r *recorder) KeyLookup(hit bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups = append(r.lookups, hit)
}

func (r *recorder) VaultRequest(op string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, request{op, d, err})
}

// count returns the number of requests named op.
func (r *recorder) count(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, req := range r.requests {
		if req.op == op {
			n++
		}
	}
	return n
}

// hitsMisses returns the number of cache hits and misses.
func (r *recorder) hitsMisses() (hits, misses int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, hit := range r.lookups {
		if hit {
			hits++
		} else {
			misses++
		}
	}
	return hits, misses
}

// reset forgets what was recorded.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups, r.requests = nil, nil
}

// snapshot returns a copy of what was recorded.
func (r *recorder) snapshot() (lookups []bool, requests []request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lookups), slices.Clone(r.requests)
}

func TestKeyStore(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystoretest.Harness {
		l := mustLethe(t)
		return keystoretest.Harness{
			Open: func(t *testing.T) keystore.Store { return l.open(t, vault.Config{}) },
			CheckGone: func(t *testing.T, ref keystore.Ref) {
				checkGone(t, testenv.VaultRoot(t), l.mount, l.subjectPath(ref))
			},
		}
	})
}

// checkGone checks with the root token that Vault has nothing left at path
// and that KV's undelete cannot bring anything back.
func checkGone(t *testing.T, root *vaultapi.Client, mount, path string) {
	t.Helper()
	ctx := testenv.Context(t)
	kv := root.KVv2(mount)
	check := func(when string) {
		t.Helper()
		if md, err := kv.GetMetadata(ctx, path); !errors.Is(err, vaultapi.ErrSecretNotFound) {
			t.Fatalf("%s: GetMetadata = %+v, %v; want ErrSecretNotFound", when, md, err)
		}
		if s, err := kv.Get(ctx, path); !errors.Is(err, vaultapi.ErrSecretNotFound) {
			t.Fatalf("%s: Get = %+v, %v; want ErrSecretNotFound", when, s, err)
		}
		for v := 1; v <= 3; v++ {
			if s, err := kv.GetVersion(ctx, path, v); !errors.Is(err, vaultapi.ErrSecretNotFound) {
				t.Fatalf("%s: GetVersion(%d) = %+v, %v; want ErrSecretNotFound", when, v, s, err)
			}
		}
	}
	check("after Destroy")
	// Undelete answers without error even though there is nothing to bring
	// back; what matters is that nothing comes back.
	_ = kv.Undelete(ctx, path, []int{1, 2, 3})
	check("after an undelete")
}

// The token Lethe gets can do what Lethe needs and nothing more: no list,
// no soft delete, no undelete, nothing outside its prefix.
func TestPolicyIsLeastPrivilege(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	s := l.open(t, vault.Config{})
	ref, err := s.SubjectRef(ctx, "dave@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CurrentKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	kv := l.client.KVv2(l.mount)
	path := l.subjectPath(ref)
	denied := func(what string, err error) {
		t.Helper()
		var re *vaultapi.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 403 {
			t.Errorf("%s: err = %v, want 403", what, err)
		}
	}
	_, err = l.client.Logical().ListWithContext(ctx, l.mount+"/metadata/"+l.prefix+"/subjects")
	denied("list subjects", err)
	denied("soft delete", kv.Delete(ctx, path))
	denied("soft delete of versions", kv.DeleteVersions(ctx, path, []int{1}))
	denied("undelete", kv.Undelete(ctx, path, []int{1}))
	_, err = kv.Get(ctx, "elsewhere/"+testenv.Name("x"))
	denied("read outside the prefix", err)
	_, err = kv.Put(ctx, "elsewhere/"+testenv.Name("x"), map[string]any{"a": "b"})
	denied("write outside the prefix", err)
	_, err = l.client.Logical().ReadWithContext(ctx, "sys/mounts")
	denied("read sys/mounts", err)
	// The reference secret: never updated (a new version would change
	// every reference), never deleted or destroyed.
	refSecret := l.prefix + "/ref-secret"
	_, err = kv.Put(ctx, refSecret, map[string]any{"secret": "AAAA"})
	denied("update the reference secret", err)
	denied("delete the reference secret", kv.DeleteMetadata(ctx, refSecret))
	denied("destroy the reference secret", kv.Destroy(ctx, refSecret, []int{1}))
}

// 100 concurrent first reads of one subject make one Vault read.
func TestConcurrentReadsShareOneVaultCall(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	writer := l.open(t, vault.Config{})
	ref, err := writer.SubjectRef(ctx, "erin@example.com")
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := writer.CurrentKey(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}

	for _, method := range []string{"Key", "CurrentKey"} {
		var obs recorder
		s := l.open(t, vault.Config{Observer: &obs})
		start := make(chan struct{})
		errs := make(chan error, 100)
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				<-start
				var k keystore.Key
				var err error
				if method == "Key" {
					k, err = s.Key(ctx, ref, 1)
				} else {
					k, _, err = s.CurrentKey(ctx, ref)
				}
				if err == nil && k.Material() != want.Material() {
					err = errors.New("wrong key")
				}
				errs <- err
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
		}
		if n := obs.count("read_key"); n != 1 {
			t.Errorf("%s: %d Vault reads for 100 concurrent first lookups, want 1", method, n)
		}
		if n := obs.count("create_key"); n != 0 {
			t.Errorf("%s: %d Vault writes, want 0", method, n)
		}
		if hits, misses := obs.hitsMisses(); hits+misses != 100 || misses < 1 {
			t.Errorf("%s: %d cache hits, %d misses; want 100 lookups, at least one miss", method, hits, misses)
		}
	}
}

func TestCacheTTLAndSize(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	var obs recorder
	s := l.open(t, vault.Config{Observer: &obs, CacheSize: 2, CacheTTL: time.Second})
	var refs []keystore.Ref
	for i := range 3 {
		ref, err := s.SubjectRef(ctx, fmt.Sprintf("frank-%d@example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CurrentKey(ctx, ref); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	reads := obs.count("read_key")
	// refs[0] was evicted by refs[2] (size 2); refs[2] is cached.
	if _, err := s.Key(ctx, refs[2], 1); err != nil {
		t.Fatal(err)
	}
	if n := obs.count("read_key"); n != reads {
		t.Fatalf("a cached key was read from Vault (%d reads, want %d)", n, reads)
	}
	if _, err := s.Key(ctx, refs[0], 1); err != nil {
		t.Fatal(err)
	}
	if n := obs.count("read_key"); n != reads+1 {
		t.Fatalf("an evicted key was not read from Vault (%d reads, want %d)", n, reads+1)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.Key(ctx, refs[0], 1); err != nil {
		t.Fatal(err)
	}
	if n := obs.count("read_key"); n != reads+2 {
		t.Fatalf("an expired key was not read from Vault (%d reads, want %d)", n, reads+2)
	}
}

// After a soft delete (which Lethe never does, but an operator might), the
// key reads as not found, and Lethe refuses to create a new secret over it
// (its check-and-set would fail anyway); undelete brings it back.
func TestSoftDeletedSecret(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	root := testenv.VaultRoot(t)
	s := l.open(t, vault.Config{})
	ref, err := s.SubjectRef(ctx, "grace@example.com")
	if err != nil {
		t.Fatal(err)
	}
	k1, _, err := s.CurrentKey(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.KVv2(l.mount).Delete(ctx, l.subjectPath(ref)); err != nil {
		t.Fatal(err)
	}
	s.Invalidate(ref)
	_, err = s.Key(ctx, ref, 1)
	if !errors.Is(err, keystore.ErrKeyNotFound) {
		t.Fatalf("Key of a soft-deleted secret: err = %v, want ErrKeyNotFound", err)
	}
	_, created, err := s.CurrentKey(ctx, ref)
	if !errors.Is(err, keystore.ErrUnavailable) || created {
		t.Fatalf("CurrentKey of a soft-deleted secret: created %v, err = %v; want ErrUnavailable", created, err)
	}
	_, err = s.Rotate(ctx, ref)
	if !errors.Is(err, keystore.ErrKeyNotFound) {
		t.Fatalf("Rotate of a soft-deleted secret: err = %v, want ErrKeyNotFound", err)
	}
	if err := root.KVv2(l.mount).Undelete(ctx, l.subjectPath(ref), []int{1}); err != nil {
		t.Fatal(err)
	}
	if k, err := s.Key(ctx, ref, 1); err != nil || k.Material() != k1.Material() {
		t.Fatalf("Key after undelete: %v, %v; want the original key", k, err)
	}
	// Destroy removes a soft-deleted secret for good too.
	if err := root.KVv2(l.mount).Delete(ctx, l.subjectPath(ref)); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Destroy(ctx, ref)
	if err != nil || !rep.Existed || !rep.Verified {
		t.Fatalf("Destroy of a soft-deleted secret = %+v, %v", rep, err)
	}
	checkGone(t, root, l.mount, l.subjectPath(ref))

	// A soft-deleted reference secret is never replaced: every reference
	// would change.
	if err := root.KVv2(l.mount).Delete(ctx, l.prefix+"/ref-secret"); err != nil {
		t.Fatal(err)
	}
	_, err = l.open(t, vault.Config{}).SubjectRef(ctx, "grace@example.com")
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("SubjectRef with a soft-deleted reference secret: err = %v, want ErrUnavailable", err)
	}
	if ref2, err := s.SubjectRef(ctx, "grace@example.com"); err != nil || ref2 != ref {
		t.Fatalf("SubjectRef with the secret in memory = %s, %v; want %s", ref2, err, ref)
	}
}

// A secret that is not in Lethe's layout is an error, neither "not found"
// nor a key, and the error shows no key bytes.
func TestMalformedSecret(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	root := testenv.VaultRoot(t)
	s := l.open(t, vault.Config{})
	ref, err := s.SubjectRef(ctx, "heidi@example.com")
	if err != nil {
		t.Fatal(err)
	}
	short := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	for _, data := range []map[string]any{
		{"current": "1", "k1": short},
		{"current": "2", "k1": base64.StdEncoding.EncodeToString(make([]byte, 32))},
		{"current": "x", "k1": base64.StdEncoding.EncodeToString(make([]byte, 32))},
		{"k1": base64.StdEncoding.EncodeToString(make([]byte, 32))},
		{"current": "1", "k1": base64.StdEncoding.EncodeToString(make([]byte, 32)), "note": "hi"},
	} {
		if _, err := root.KVv2(l.mount).Put(ctx, l.subjectPath(ref), data); err != nil {
			t.Fatal(err)
		}
		s.Invalidate(ref)
		_, err := s.Key(ctx, ref, 1)
		if err == nil || errors.Is(err, keystore.ErrKeyNotFound) || strings.Contains(err.Error(), short) {
			t.Fatalf("Key of %v: err = %v, want an error other than ErrKeyNotFound, without the bytes", data, err)
		}
		_, _, err = s.CurrentKey(ctx, ref)
		if err == nil || errors.Is(err, keystore.ErrKeyNotFound) {
			t.Fatalf("CurrentKey of %v: err = %v, want an error other than ErrKeyNotFound", data, err)
		}
	}
}

// wantUnavailable checks err wraps ErrUnavailable (never ErrKeyNotFound),
// says why, and carries no token.
func wantUnavailable(t *testing.T, what string, err error, reason string, tokens ...string) {
	t.Helper()
	t.Logf("%s: %v", what, err)
	if !errors.Is(err, keystore.ErrUnavailable) || errors.Is(err, keystore.ErrKeyNotFound) {
		t.Errorf("%s: err = %v, want ErrUnavailable and not ErrKeyNotFound", what, err)
		return
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("%s: err = %v, want it to say %q", what, err, reason)
	}
	for _, tok := range tokens {
		if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("%s: the error contains a token: %v", what, err)
		}
	}
}

// outage runs every kind of call on a Store whose Vault has gone away (or
// been sealed) and checks each fails with ErrUnavailable. s has the
// reference secret in memory and cached keys for known; fresh is a Store
// that has made no call yet. The calls run concurrently: each waits out
// vault/api's retries.
func outage(t *testing.T, s, fresh *vault.Store, known, unknown keystore.Ref, reason string, tokens ...string) {
	t.Helper()
	ctx := testenv.Context(t)
	checks := map[string]func() error{
		"SubjectRef (fresh store)": func() error { _, err := fresh.SubjectRef(ctx, "ivan@example.com"); return err },
		"CurrentKey (new subject)": func() error { _, _, err := s.CurrentKey(ctx, unknown); return err },
		"Key (missing version)":    func() error { _, err := s.Key(ctx, known, 2); return err },
		"Key (uncached subject)":   func() error { _, err := s.Key(ctx, unknown, 1); return err },
		"Key (fresh store)":        func() error { _, err := fresh.Key(ctx, known, 1); return err },
		"Rotate":                   func() error { _, err := s.Rotate(ctx, known); return err },
		"Destroy":                  func() error { _, err := s.Destroy(ctx, unknown); return err },
		"Health":                   func() error { return s.Health(ctx) },
	}
	var wg sync.WaitGroup
	for name, call := range checks {
		wg.Go(func() { wantUnavailable(t, name, call(), reason, tokens...) })
	}
	wg.Wait()
	// What this process already holds keeps working: the reference secret
	// and cached keys (up to CacheTTL).
	if _, err := s.SubjectRef(ctx, "ivan@example.com"); err != nil {
		t.Errorf("SubjectRef with the secret in memory: %v", err)
	}
	if _, err := s.Key(ctx, known, 1); err != nil {
		t.Errorf("Key of a cached key: %v", err)
	}
}

// privateLethe starts a private Vault and prepares it like LetheVault.
func privateLethe(t *testing.T) (l lethe, root *vaultapi.Client, stop func()) {
	t.Helper()
	v := testenv.PrivateVault(t)
	root = testenv.VaultRootAt(t, v)
	c, mount, prefix := testenv.LetheVaultAt(t, root)
	return lethe{c, mount, prefix}, root, func() {
		if err := v.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// prepareOutage returns a used Store (reference secret loaded, one key
// cached) observed by obs (if not nil), a fresh one, the cached subject
// and a subject without a key.
func prepareOutage(t *testing.T, l lethe, obs vault.Observer) (s, fresh *vault.Store, known, unknown keystore.Ref) {
	t.Helper()
	ctx := testenv.Context(t)
	s = l.open(t, vault.Config{Observer: obs})
	fresh = l.open(t, vault.Config{})
	var err error
	if known, err = s.SubjectRef(ctx, "judy@example.com"); err != nil {
		t.Fatal(err)
	}
	if unknown, err = s.SubjectRef(ctx, "mallory@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CurrentKey(ctx, known); err != nil {
		t.Fatal(err)
	}
	if err := s.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	return s, fresh, known, unknown
}

func TestVaultDown(t *testing.T) {
	t.Parallel()
	l, root, stop := privateLethe(t)
	var obs recorder
	s, fresh, known, unknown := prepareOutage(t, l, &obs)
	obs.reset()
	stop()
	outage(t, s, fresh, known, unknown, "unreachable", l.client.Token(), root.Token())
	// The Observer heard of each failed request, and of the cache hit.
	requests := wantFailures(t, &obs, "unreachable", known, unknown)
	// Which request fails first for a key depends on the order the
	// concurrent calls run in (a call re-checks the mount when another
	// one found it unknown): a key request or the mount check.
	for _, want := range [][]string{{"read_key", "check_mount"}, {"health"}} {
		if !slices.ContainsFunc(requests, func(r request) bool { return slices.Contains(want, r.op) }) {
			t.Errorf("no failed %v request observed; got %q", want, ops(requests))
		}
	}
	if lookups, _ := obs.snapshot(); len(lookups) == 0 || !lookups[len(lookups)-1] || !slices.Contains(lookups, false) {
		t.Errorf("cache lookups (hit?) = %v; want misses, and a hit last", lookups)
	}
}

func TestVaultSealed(t *testing.T) {
	t.Parallel()
	l, root, _ := privateLethe(t)
	s, fresh, known, unknown := prepareOutage(t, l, nil)
	if err := root.Sys().SealWithContext(testenv.Context(t)); err != nil {
		t.Fatal(err)
	}
	outage(t, s, fresh, known, unknown, "sealed", l.client.Token(), root.Token())
}

// A token without Lethe's policy, a revoked token, or a mount the token
// has no rights on: every call fails with ErrUnavailable, never "not
// found".
func TestPermissionDenied(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	root := testenv.VaultRoot(t)
	good := l.open(t, vault.Config{})
	ref, err := good.SubjectRef(ctx, "niaj@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := good.CurrentKey(ctx, ref); err != nil {
		t.Fatal(err)
	}

	tok, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"default"}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{l.prefix}, NoDefaultPolicy: true, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Auth().Token().RevokeOrphanWithContext(ctx, revoked.Auth.ClientToken); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		token string
		mount string
	}{
		{"token without the policy", tok.Auth.ClientToken, l.mount},
		{"revoked token", revoked.Auth.ClientToken, l.mount},
		{"mount outside the policy", l.client.Token(), "nosuchmount"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := vault.New(ctx, vault.Config{
				Client: testenv.VaultClient(t, l.client.Address(), tc.token),
				Mount:  tc.mount, Prefix: l.prefix, Logger: testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.SubjectRef(ctx, "niaj@example.com")
			wantUnavailable(t, "SubjectRef", err, "permission denied", tc.token)
			_, _, err = s.CurrentKey(ctx, ref)
			wantUnavailable(t, "CurrentKey", err, "permission denied", tc.token)
			_, err = s.Key(ctx, ref, 1)
			wantUnavailable(t, "Key", err, "permission denied", tc.token)
			_, err = s.Key(ctx, ref, 7)
			wantUnavailable(t, "Key of a missing version", err, "permission denied", tc.token)
			_, err = s.Rotate(ctx, ref)
			wantUnavailable(t, "Rotate", err, "permission denied", tc.token)
			_, err = s.Destroy(ctx, ref)
			wantUnavailable(t, "Destroy", err, "permission denied", tc.token)
		})
	}
	// The key is still there.
	if _, err := l.open(t, vault.Config{}).Key(ctx, ref, 1); err != nil {
		t.Fatal(err)
	}
}

// A mount that is not KV version 2 is refused before any key is read or
// written: a KV version 1 engine would ignore check-and-set.
func TestMountMustBeKV2(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	root := testenv.VaultRoot(t)
	mount := testenv.Name("kv1")
	if err := root.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().UnmountWithContext(context.Background(), mount) })
	prefix := testenv.Name("lethe-test")
	policy := prefix
	if err := root.Sys().PutPolicyWithContext(ctx, policy, testenv.LethePolicy(t, mount, prefix)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().DeletePolicyWithContext(context.Background(), policy) })
	tok, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{policy}, NoDefaultPolicy: true, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := vault.New(ctx, vault.Config{
		Client: testenv.VaultClient(t, root.Address(), tok.Auth.ClientToken),
		Mount:  mount, Prefix: prefix, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.SubjectRef(ctx, "olivia@example.com")
	wantUnavailable(t, "SubjectRef on KV version 1", err, "not a KV version 2")
	if list, err := root.Logical().ListWithContext(ctx, mount+"/"); err != nil || list != nil {
		t.Fatalf("something was written to the KV version 1 mount: %v, %v", list, err)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	var obs recorder
	s := l.open(t, vault.Config{Observer: &obs})
	if err := s.Health(testenv.Context(t)); err != nil {
		t.Fatalf("Health: %v", err)
	}
	if obs.count("health") != 1 {
		t.Fatal("Health was not observed")
	}
}

// AppRole: the Store logs in at New, and when its token stops working
// (revoked here, expired in real life) it logs in again — once for many
// concurrent calls — and the calls succeed.
func TestAppRole(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	root := testenv.VaultRoot(t)
	roleID, secretID := testenv.VaultAppRole(t, root, l.prefix) // the policy is named like the prefix

	client := testenv.VaultClient(t, l.client.Address(), "")
	var obs recorder
	s := l.open(t, vault.Config{Client: client, AppRole: &vault.AppRole{RoleID: roleID, SecretID: secretID}, Observer: &obs})
	first := client.Token()
	if first == "" || obs.count("login") != 1 {
		t.Fatalf("after New: token set %v, %d logins; want a token from one login", first != "", obs.count("login"))
	}
	refs := make([]keystore.Ref, 10)
	for i := range refs {
		var err error
		if refs[i], err = s.SubjectRef(ctx, fmt.Sprintf("peggy-%d@example.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CurrentKey(ctx, refs[0]); err != nil {
		t.Fatal(err)
	}

	if err := root.Auth().Token().RevokeOrphanWithContext(ctx, first); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failures atomic.Int32
	for _, ref := range refs[1:] {
		wg.Go(func() {
			if _, _, err := s.CurrentKey(ctx, ref); err != nil {
				t.Errorf("CurrentKey after the token was revoked: %v", err)
				failures.Add(1)
			}
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		return
	}
	if client.Token() == first {
		t.Fatal("the token was not replaced")
	}
	if n := obs.count("login"); n != 2 {
		t.Fatalf("%d logins, want 2 (New, and one after the revocation)", n)
	}

	// Wrong credentials: New fails, with ErrUnavailable.
	_, err := vault.New(ctx, vault.Config{
		Client:  testenv.VaultClient(t, l.client.Address(), ""),
		AppRole: &vault.AppRole{RoleID: roleID, SecretID: "not-the-secret-id"},
		Mount:   l.mount, Prefix: l.prefix,
	})
	wantUnavailable(t, "New with a wrong secret id", err, "login", "not-the-secret-id")
}

func TestNewValidatesConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := vault.New(ctx, vault.Config{}); err == nil {
		t.Error("New without a client: no error")
	}
	client, err := vaultapi.NewClient(vaultapi.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../x", "a/../b", "a b", "a//b", "a/*"} {
		if _, err := vault.New(ctx, vault.Config{Client: client, Prefix: p}); err == nil {
			t.Errorf("New with prefix %q: no error", p)
		}
		if _, err := vault.New(ctx, vault.Config{Client: client, Mount: p}); err == nil {
			t.Errorf("New with mount %q: no error", p)
		}
	}
	if _, err := vault.New(ctx, vault.Config{Client: client, Prefix: "/apps/lethe/"}); err != nil {
		t.Errorf("New with prefix /apps/lethe/: %v", err)
	}
}
