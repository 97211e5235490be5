package vault_test

import (
	"errors"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/keystore/vault"
)

// ops returns the op names of requests, in order.
func ops(requests []request) []string {
	var out []string
	for _, r := range requests {
		out = append(out, r.op)
	}
	return out
}

// wantRequests checks that the Observer was told of exactly the requests
// named want, in order, each successful, and of no cache lookup but
// lookups.
func wantRequests(t *testing.T, what string, obs *recorder, lookups []bool, want ...string) {
	t.Helper()
	gotLookups, requests := obs.snapshot()
	if !slices.Equal(gotLookups, lookups) {
		t.Errorf("%s: cache lookups (hit?) = %v, want %v", what, gotLookups, lookups)
	}
	if got := ops(requests); !slices.Equal(got, want) {
		t.Errorf("%s: Vault requests = %q, want %q", what, got, want)
	}
	for _, r := range requests {
		if r.err != nil {
			t.Errorf("%s: %s: err = %v, want nil", what, r.op, r.err)
		}
		if r.d <= 0 {
			t.Errorf("%s: %s: duration %v, want > 0", what, r.op, r.d)
		}
	}
	obs.reset()
}

// The Observer hears of every cache lookup and every Vault request, by
// name; answers the Store treats as normal ("not found" to a read) are
// successes.
func TestObserver(t *testing.T) {
	t.Parallel()
	l := mustLethe(t)
	ctx := testenv.Context(t)
	var obs recorder
	s := l.open(t, vault.Config{Observer: &obs})

	ref, err := s.SubjectRef(ctx, "rupert@example.com")
	if err != nil {
		t.Fatal(err)
	}
	// A new prefix: the reference secret is not there yet.
	wantRequests(t, "first SubjectRef", &obs, nil, "check_mount", "read_ref_secret", "create_ref_secret")

	if _, created, err := s.CurrentKey(ctx, ref); err != nil || !created {
		t.Fatalf("CurrentKey: created %v, err %v; want a new key", created, err)
	}
	// "Not found" is trusted once the mount is seen to be there still.
	wantRequests(t, "CurrentKey of a new subject", &obs, []bool{false}, "read_key", "check_mount", "create_key")

	s.Invalidate(ref)
	for range 2 {
		if _, err := s.Key(ctx, ref, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CurrentKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	wantRequests(t, "Key twice, then CurrentKey", &obs, []bool{false, true, true}, "read_key")

	if _, err := s.Key(ctx, ref, 2); !errors.Is(err, keystore.ErrKeyNotFound) {
		t.Fatalf("Key of a missing version: err = %v, want ErrKeyNotFound", err)
	}
	wantRequests(t, "Key of a version the cache lacks", &obs, []bool{false}, "read_key")

	if _, err := s.Rotate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	wantRequests(t, "Rotate", &obs, nil, "read_key", "rotate_key")

	rep, err := s.Destroy(ctx, ref)
	if err != nil || !rep.Existed {
		t.Fatalf("Destroy = %+v, %v", rep, err)
	}
	wantRequests(t, "Destroy", &obs, nil,
		"check_mount", "read_key_metadata", "destroy_key", "delete_key_metadata", "read_key_metadata", "read_key")

	if _, err := s.Key(ctx, ref, 1); !errors.Is(err, keystore.ErrKeyNotFound) {
		t.Fatalf("Key after Destroy: err = %v, want ErrKeyNotFound", err)
	}
	wantRequests(t, "Key of a destroyed key", &obs, []bool{false}, "read_key", "check_mount")

	if err := s.Health(ctx); err != nil {
		t.Fatal(err)
	}
	wantRequests(t, "Health", &obs, nil, "health")
}

// wantFailures checks that the Observer was told of at least one request
// and that every request failed with ErrUnavailable for reason, naming
// neither refs nor paths.
func wantFailures(t *testing.T, obs *recorder, reason string, refs ...keystore.Ref) []request {
	t.Helper()
	_, requests := obs.snapshot()
	if len(requests) == 0 {
		t.Fatal("no Vault request observed")
	}
	for _, r := range requests {
		if r.err == nil {
			t.Errorf("%s: err = nil, want an error", r.op)
			continue
		}
		if !errors.Is(r.err, keystore.ErrUnavailable) || !strings.Contains(r.err.Error(), reason) {
			t.Errorf("%s: err = %v, want ErrUnavailable saying %q", r.op, r.err, reason)
		}
		for _, ref := range refs {
			if strings.Contains(r.err.Error(), string(ref)) || strings.Contains(r.err.Error(), "/subjects/") {
				t.Errorf("%s: err = %v names a subject's path or reference", r.op, r.err)
			}
		}
	}
	return requests
}

// A Store whose Vault does not answer (a closed loopback port) reports
// each failed request to the Observer.
func TestObserverVaultUnreachable(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	client := testenv.VaultClient(t, addr, "no-token")
	client.SetMaxRetries(0) // nothing to wait for
	var obs recorder
	s, err := vault.New(ctx, vault.Config{Client: client, Logger: testLogger(t), Observer: &obs})
	if err != nil {
		t.Fatal(err)
	}
	ref := keystore.Ref(strings.Repeat("ab", keystore.RefSize))

	_, err = s.Key(ctx, ref, 1)
	wantUnavailable(t, "Key", err, "unreachable")
	requests := wantFailures(t, &obs, "unreachable", ref)
	if got, want := ops(requests), []string{"check_mount"}; !slices.Equal(got, want) {
		t.Errorf("Vault requests = %q, want %q", got, want)
	}
	if !errors.Is(requests[0].err, syscall.ECONNREFUSED) {
		t.Errorf("err = %v, want it to wrap ECONNREFUSED", requests[0].err)
	}
	if _, misses := obs.hitsMisses(); misses != 1 {
		t.Errorf("%d cache misses, want 1", misses)
	}
	obs.reset()

	wantUnavailable(t, "Health", s.Health(ctx), "unreachable")
	requests = wantFailures(t, &obs, "unreachable")
	if got, want := ops(requests), []string{"health"}; !slices.Equal(got, want) {
		t.Errorf("Vault requests = %q, want %q", got, want)
	}
}
