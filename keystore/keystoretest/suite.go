// Package keystoretest is the behavioural test suite that every
// keystore.Store implementation must pass. Run it from the
// implementation's tests:
//
//	func TestKeyStore(t *testing.T) {
//		keystoretest.Run(t, func(t *testing.T) keystoretest.Harness {
//			backend := newBackend(t) // empty, for this test only
//			return keystoretest.Harness{
//				Open: func(t *testing.T) keystore.Store { return openStore(t, backend) },
//			}
//		})
//	}
//
// Each subtest gets a backend of its own and may open several KeyStores on
// it, standing for several processes that share the stored keys but not
// their caches.
package keystoretest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-store/lethe/keystore"
)

// Harness is one test's key store backend.
type Harness struct {
	// Open returns a new keystore.Store on the test's backend. Each one is like
	// another process: its own cache, the same keys and reference secret.
	Open func(t *testing.T) keystore.Store

	// CheckGone, if not nil, checks with the backend's administrator rights
	// that nothing is left of ref's key after Destroy and that nothing can
	// bring it back (no undelete).
	CheckGone func(t *testing.T, ref keystore.Ref)
}

// Factory returns a Harness on a new, empty backend for one test.
type Factory func(t *testing.T) Harness

// Run runs the whole suite. Every subtest gets a backend of its own.
func Run(t *testing.T, newHarness Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"SubjectRef", testSubjectRef},
		{"SubjectRefFirstUseRace", testSubjectRefFirstUseRace},
		{"SubjectRefInvalid", testSubjectRefInvalid},
		{"CurrentKeyCreatesOnce", testCurrentKeyCreatesOnce},
		{"CurrentKeyConcurrentFirstUse", testCurrentKeyConcurrent},
		{"KeyVersions", testKeyVersions},
		{"InvalidRef", testInvalidRef},
		{"Rotate", testRotate},
		{"RotateConcurrent", testRotateConcurrent},
		{"RotateMissing", testRotateMissing},
		{"Destroy", testDestroy},
		{"DestroyMissing", testDestroyMissing},
		{"Invalidate", testInvalidate},
		{"CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newHarness(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomSubject() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "subject-" + hex.EncodeToString(b) + "@example.com"
}

// newRef returns the reference of a new random subject.
func newRef(t *testing.T, ks keystore.Store) keystore.Ref {
	t.Helper()
	ref, err := ks.SubjectRef(ctxFor(t), randomSubject())
	if err != nil {
		t.Fatalf("SubjectRef: %v", err)
	}
	return ref
}

func mustCurrentKey(t *testing.T, ks keystore.Store, ref keystore.Ref) (keystore.Key, bool) {
	t.Helper()
	k, created, err := ks.CurrentKey(ctxFor(t), ref)
	if err != nil {
		t.Fatalf("CurrentKey(%s): %v", ref, err)
	}
	if k.Ref() != ref {
		t.Fatalf("CurrentKey(%s) returned a key of %s", ref, k.Ref())
	}
	return k, created
}

func mustKey(t *testing.T, ks keystore.Store, ref keystore.Ref, version int) keystore.Key {
	t.Helper()
	k, err := ks.Key(ctxFor(t), ref, version)
	if err != nil {
		t.Fatalf("Key(%s, %d): %v", ref, version, err)
	}
	if k.Ref() != ref || k.Version() != version {
		t.Fatalf("Key(%s, %d) returned %v", ref, version, k)
	}
	return k
}

func sameKey(a, b keystore.Key) bool {
	return a.Ref() == b.Ref() && a.Version() == b.Version() && a.Material() == b.Material()
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// A subject's reference is a deterministic, 64-hex-digit HMAC, the same in
// every process that shares the backend, and different for another subject.
func testSubjectRef(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	a, b := h.Open(t), h.Open(t)
	ref1, err := a.SubjectRef(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.ParseRef(string(ref1)); err != nil {
		t.Fatalf("SubjectRef = %q: %v", ref1, err)
	}
	if len(ref1) != 64 || len(ref1.Bytes()) != keystore.RefSize {
		t.Fatalf("SubjectRef = %q, want 64 hex digits", ref1)
	}
	if again, err := a.SubjectRef(ctx, "alice@example.com"); err != nil || again != ref1 {
		t.Fatalf("second SubjectRef = %q, %v; want %q", again, err, ref1)
	}
	if other, err := b.SubjectRef(ctx, "alice@example.com"); err != nil || other != ref1 {
		t.Fatalf("SubjectRef in another store instance = %q, %v; want %q", other, err, ref1)
	}
	bob, err := a.SubjectRef(ctx, "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if bob == ref1 {
		t.Fatal("two subjects have the same reference")
	}
	// Case and whitespace are the caller's business: ids are compared as
	// bytes.
	if upper, err := a.SubjectRef(ctx, "Alice@example.com"); err != nil || upper == ref1 {
		t.Fatalf("SubjectRef(Alice@...) = %q, %v; want a reference other than alice's", upper, err)
	}
	// A reference is keyed: not the plain SHA-256 of the id.
	if sum := sha256.Sum256([]byte("alice@example.com")); string(ref1) == hex.EncodeToString(sum[:]) {
		t.Fatal("reference is the unkeyed SHA-256 of the subject id")
	}
}

// Processes that start at the same moment on an empty backend agree on the
// reference secret: the first one's secret wins, the others read it.
func testSubjectRefFirstUseRace(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	const n = 4
	stores := make([]keystore.Store, n)
	for i := range stores {
		stores[i] = h.Open(t)
	}
	refs := make([]keystore.Ref, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, ks := range stores {
		wg.Go(func() {
			<-start
			refs[i], errs[i] = ks.SubjectRef(ctx, "carol@example.com")
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("store %d: %v", i, errs[i])
		}
		if refs[i] != refs[0] {
			t.Fatalf("store %d: reference %s, store 0: %s", i, refs[i], refs[0])
		}
	}
}

func testSubjectRefInvalid(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	ks := h.Open(t)
	_, err := ks.SubjectRef(ctx, "")
	wantErr(t, "SubjectRef(\"\")", err, keystore.ErrInvalidSubject)
	long := "secret-subject-" + strings.Repeat("x", keystore.MaxSubjectLength)
	_, err = ks.SubjectRef(ctx, long)
	wantErr(t, "SubjectRef(too long)", err, keystore.ErrInvalidSubject)
	if strings.Contains(err.Error(), "secret-subject") {
		t.Fatalf("error echoes the subject id: %v", err)
	}
	if _, err := ks.SubjectRef(ctx, strings.Repeat("y", keystore.MaxSubjectLength)); err != nil {
		t.Fatalf("SubjectRef(%d bytes): %v", keystore.MaxSubjectLength, err)
	}
}

// CurrentKey creates version 1 once, then returns it, in this process and
// in others.
func testCurrentKeyCreatesOnce(t *testing.T, h Harness) {
	ks, other := h.Open(t), h.Open(t)
	ref := newRef(t, ks)
	k1, created := mustCurrentKey(t, ks, ref)
	if !created || k1.Version() != 1 || k1.IsZero() {
		t.Fatalf("first CurrentKey = %v, created %v; want version 1, created", k1, created)
	}
	if k1.Material() == [keystore.KeySize]byte{} {
		t.Fatal("key material is all zeros")
	}
	k2, created := mustCurrentKey(t, ks, ref)
	if created || !sameKey(k1, k2) {
		t.Fatalf("second CurrentKey = %v, created %v; want the first key, not created", k2, created)
	}
	k3, created := mustCurrentKey(t, other, ref)
	if created || !sameKey(k1, k3) {
		t.Fatalf("CurrentKey in another store instance = %v, created %v; want the first key, not created", k3, created)
	}
	// Another subject has another key.
	kb, created := mustCurrentKey(t, ks, newRef(t, ks))
	if !created || kb.Material() == k1.Material() {
		t.Fatal("two subjects got the same key material")
	}
}

// Many goroutines in two processes ask for the key of one new subject at
// once: exactly one key exists, and exactly one caller is told it created
// it.
func testCurrentKeyConcurrent(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	const perStore = 8
	stores := []keystore.Store{h.Open(t), h.Open(t)}
	ref := newRef(t, stores[0])
	type result struct {
		key     keystore.Key
		created bool
		err     error
	}
	results := make(chan result, perStore*len(stores))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, ks := range stores {
		for range perStore {
			wg.Go(func() {
				<-start
				k, created, err := ks.CurrentKey(ctx, ref)
				results <- result{k, created, err}
			})
		}
	}
	close(start)
	wg.Wait()
	close(results)
	var first keystore.Key
	created := 0
	for r := range results {
		if r.err != nil {
			t.Fatalf("CurrentKey: %v", r.err)
		}
		if r.created {
			created++
		}
		if first.IsZero() {
			first = r.key
		}
		if r.key.Version() != 1 || !sameKey(r.key, first) {
			t.Fatalf("CurrentKey returned %v and %v: want one key, version 1", first, r.key)
		}
	}
	if created != 1 {
		t.Fatalf("%d callers were told they created the key, want 1", created)
	}
	if k := mustKey(t, h.Open(t), ref, 1); !sameKey(k, first) {
		t.Fatal("a new store instance reads another key than the one created")
	}
}

func testKeyVersions(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	ks, other := h.Open(t), h.Open(t)
	ref := newRef(t, ks)
	k1, _ := mustCurrentKey(t, ks, ref)
	if k := mustKey(t, ks, ref, 1); !sameKey(k, k1) {
		t.Fatal("Key(ref, 1) differs from CurrentKey")
	}
	if k := mustKey(t, other, ref, 1); !sameKey(k, k1) {
		t.Fatal("Key(ref, 1) in another store instance differs from CurrentKey")
	}
	for _, v := range []int{2, 99, 0, -1} {
		_, err := ks.Key(ctx, ref, v)
		wantErr(t, "Key of a missing version", err, keystore.ErrKeyNotFound)
	}
	_, err := ks.Key(ctx, newRef(t, ks), 1)
	wantErr(t, "Key of a subject without a key", err, keystore.ErrKeyNotFound)
	// Asking for a missing key does not create one.
	missing := newRef(t, ks)
	_, err = other.Key(ctx, missing, 1)
	wantErr(t, "Key of a subject without a key", err, keystore.ErrKeyNotFound)
	if _, created := mustCurrentKey(t, ks, missing); !created {
		t.Fatal("Key created a key")
	}
}

func testInvalidRef(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	ks := h.Open(t)
	valid := newRef(t, ks)
	for _, bad := range []keystore.Ref{"", "not-a-ref", "../" + valid[3:], keystore.Ref(strings.ToUpper(string(valid))), valid + "00"} {
		_, _, err := ks.CurrentKey(ctx, bad)
		wantErr(t, "CurrentKey("+string(bad)+")", err, keystore.ErrInvalidRef)
		_, err = ks.Key(ctx, bad, 1)
		wantErr(t, "Key("+string(bad)+")", err, keystore.ErrInvalidRef)
		_, err = ks.Rotate(ctx, bad)
		wantErr(t, "Rotate("+string(bad)+")", err, keystore.ErrInvalidRef)
		_, err = ks.Destroy(ctx, bad)
		wantErr(t, "Destroy("+string(bad)+")", err, keystore.ErrInvalidRef)
		ks.Invalidate(bad) // must not panic
	}
}

// Rotate adds a version with new material; older versions stay readable.
// CurrentKey returns the new version at once in the process that rotated,
// in a process that has no cached key, and in any process after Invalidate.
func testRotate(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	ks, other := h.Open(t), h.Open(t)
	ref := newRef(t, ks)
	k1, _ := mustCurrentKey(t, ks, ref)
	k2, err := ks.Rotate(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Ref() != ref || k2.Version() != 2 || k2.Material() == k1.Material() {
		t.Fatalf("Rotate = %v, want version 2 with new material", k2)
	}
	if k := mustKey(t, ks, ref, 1); !sameKey(k, k1) {
		t.Fatal("Key(ref, 1) changed after Rotate")
	}
	if k := mustKey(t, ks, ref, 2); !sameKey(k, k2) {
		t.Fatal("Key(ref, 2) is not the rotated key")
	}
	if k, created := mustCurrentKey(t, ks, ref); created || !sameKey(k, k2) {
		t.Fatalf("CurrentKey after Rotate = %v (created %v), want version 2", k, created)
	}
	if k, created := mustCurrentKey(t, other, ref); created || !sameKey(k, k2) {
		t.Fatalf("CurrentKey in another store instance = %v (created %v), want version 2", k, created)
	}
	if k := mustKey(t, other, ref, 1); !sameKey(k, k1) {
		t.Fatal("Key(ref, 1) in another store instance changed after Rotate")
	}

	k3, err := other.Rotate(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if k3.Version() != 3 {
		t.Fatalf("second Rotate = %v, want version 3", k3)
	}
	ks.Invalidate(ref)
	if k, _ := mustCurrentKey(t, ks, ref); !sameKey(k, k3) {
		t.Fatalf("CurrentKey after another instance rotated and Invalidate = %v, want version 3", k)
	}
	for v, want := range map[int]keystore.Key{1: k1, 2: k2, 3: k3} {
		if k := mustKey(t, h.Open(t), ref, v); !sameKey(k, want) {
			t.Fatalf("Key(ref, %d) in a new store instance differs", v)
		}
	}
}

// Concurrent rotations in two processes all succeed, each with a version of
// its own.
func testRotateConcurrent(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	const perStore = 3
	stores := []keystore.Store{h.Open(t), h.Open(t)}
	ref := newRef(t, stores[0])
	mustCurrentKey(t, stores[0], ref)
	keys := make(chan keystore.Key, perStore*len(stores))
	errs := make(chan error, perStore*len(stores))
	var wg sync.WaitGroup
	for _, ks := range stores {
		for range perStore {
			wg.Go(func() {
				k, err := ks.Rotate(ctx, ref)
				if err != nil {
					errs <- err
					return
				}
				keys <- k
			})
		}
	}
	wg.Wait()
	close(keys)
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Rotate: %v", err)
	}
	fresh := h.Open(t)
	seen := map[int]bool{}
	for k := range keys {
		if seen[k.Version()] {
			t.Fatalf("two rotations returned version %d", k.Version())
		}
		seen[k.Version()] = true
		if got := mustKey(t, fresh, ref, k.Version()); !sameKey(got, k) {
			t.Fatalf("Key(ref, %d) is not what Rotate returned", k.Version())
		}
	}
	last := 1 + perStore*len(stores)
	for v := 2; v <= last; v++ {
		if !seen[v] {
			t.Fatalf("versions %v: want 2 to %d", seen, last)
		}
	}
	if k, _ := mustCurrentKey(t, fresh, ref); k.Version() != last {
		t.Fatalf("CurrentKey = version %d, want %d", k.Version(), last)
	}
}

func testRotateMissing(t *testing.T, h Harness) {
	ks := h.Open(t)
	_, err := ks.Rotate(ctxFor(t), newRef(t, ks))
	wantErr(t, "Rotate of a subject without a key", err, keystore.ErrKeyNotFound)
}

// Destroy erases every version for good, reports it, and is idempotent.
// The key store keeps no memory of it: CurrentKey afterwards creates a new
// key (stopping that is the erasure ledger's job).
func testDestroy(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	ks, other := h.Open(t), h.Open(t)
	ref := newRef(t, ks)
	k1, _ := mustCurrentKey(t, ks, ref)
	if _, err := ks.Rotate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	mustKey(t, other, ref, 1) // cached in the other instance
	bystander := newRef(t, ks)
	kb, _ := mustCurrentKey(t, ks, bystander)

	rep, err := ks.Destroy(ctx, ref)
	if err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if !rep.Existed || !rep.Verified || rep.VersionsDestroyed < 1 {
		t.Fatalf("Destroy = %+v, want existed, verified, at least one version destroyed", rep)
	}
	if h.CheckGone != nil {
		h.CheckGone(t, ref)
	}
	for v := 1; v <= 2; v++ {
		_, err := ks.Key(ctx, ref, v)
		wantErr(t, "Key after Destroy", err, keystore.ErrKeyNotFound)
	}
	_, err = ks.Rotate(ctx, ref)
	wantErr(t, "Rotate after Destroy", err, keystore.ErrKeyNotFound)
	other.Invalidate(ref)
	_, err = other.Key(ctx, ref, 1)
	wantErr(t, "Key after Destroy, in another instance after Invalidate", err, keystore.ErrKeyNotFound)
	_, err = h.Open(t).Key(ctx, ref, 1)
	wantErr(t, "Key after Destroy, in a new instance", err, keystore.ErrKeyNotFound)

	// Idempotent.
	rep, err = ks.Destroy(ctx, ref)
	if err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if rep.Existed || rep.VersionsDestroyed != 0 || !rep.Verified {
		t.Fatalf("second Destroy = %+v, want nothing existed, verified", rep)
	}

	// Other subjects keep their keys.
	if k := mustKey(t, h.Open(t), bystander, 1); !sameKey(k, kb) {
		t.Fatal("Destroy changed another subject's key")
	}

	// No memory of the erasure in the key store itself.
	k, created := mustCurrentKey(t, ks, ref)
	if !created || k.Version() != 1 || k.Material() == k1.Material() {
		t.Fatalf("CurrentKey after Destroy = %v (created %v), want a new version 1", k, created)
	}
}

func testDestroyMissing(t *testing.T, h Harness) {
	ks := h.Open(t)
	rep, err := ks.Destroy(ctxFor(t), newRef(t, ks))
	if err != nil {
		t.Fatalf("Destroy of a subject without a key: %v", err)
	}
	if rep.Existed || rep.VersionsDestroyed != 0 || !rep.Verified {
		t.Fatalf("Destroy of a subject without a key = %+v, want nothing existed, verified", rep)
	}
}

// A process may keep a key it has cached, but Invalidate makes it ask the
// backend again; a version newer than those it has cached is always looked
// up.
func testInvalidate(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	a, b := h.Open(t), h.Open(t)
	ref := newRef(t, a)
	k1, _ := mustCurrentKey(t, a, ref)
	k2, err := b.Rotate(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	// Without Invalidate, a may still answer version 1 or already 2.
	if k, _ := mustCurrentKey(t, a, ref); !sameKey(k, k1) && !sameKey(k, k2) {
		t.Fatalf("CurrentKey = %v, want version 1 or 2", k)
	}
	if k := mustKey(t, a, ref, 2); !sameKey(k, k2) {
		t.Fatal("Key(ref, 2) in an instance that cached version 1 is not the rotated key")
	}
	a.Invalidate(ref)
	if k, _ := mustCurrentKey(t, a, ref); !sameKey(k, k2) {
		t.Fatalf("CurrentKey after Invalidate = %v, want version 2", k)
	}
	a.Invalidate(newRef(t, a)) // nothing cached: no-op
	a.Invalidate(ref)
	a.Invalidate(ref)
	if k := mustKey(t, a, ref, 1); !sameKey(k, k1) {
		t.Fatal("Key(ref, 1) after Invalidate differs")
	}
}

// A canceled context is an error, never "not found".
func testCanceledContext(t *testing.T, h Harness) {
	ks := h.Open(t)
	ref := newRef(t, ks)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := ks.CurrentKey(ctx, ref)
	if err == nil || errors.Is(err, keystore.ErrKeyNotFound) || !errors.Is(err, context.Canceled) {
		t.Fatalf("CurrentKey with a canceled context: err = %v, want context.Canceled, not ErrKeyNotFound", err)
	}
	_, err = ks.Key(ctx, ref, 1)
	if err == nil || errors.Is(err, keystore.ErrKeyNotFound) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Key with a canceled context: err = %v, want context.Canceled, not ErrKeyNotFound", err)
	}
	_, err = ks.Rotate(ctx, ref)
	if err == nil || errors.Is(err, keystore.ErrKeyNotFound) {
		t.Fatalf("Rotate with a canceled context: err = %v, want an error other than ErrKeyNotFound", err)
	}
	// Nothing was created.
	if _, created := mustCurrentKey(t, ks, ref); !created {
		t.Fatal("a call with a canceled context created the key")
	}
}
