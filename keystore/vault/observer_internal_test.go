package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/keystore"
)

func TestOutcome(t *testing.T) {
	ref := testRef(7)
	path := "secret/data/lethe/subjects/" + string(ref)
	resp := func(code int, msgs ...string) error {
		return fmt.Errorf("error encountered while reading secret at %s: %w", path,
			&vaultapi.ResponseError{HTTPMethod: "GET", URL: "http://vault/v1/" + path, StatusCode: code, Errors: msgs})
	}
	refused := &url.Error{Op: "Get", URL: "http://vault/v1/" + path,
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		op   string
		raw  error
		want error // nil: success
		says string
	}{
		{"not found to a read", opReadKey, resp(404), nil, ""},
		{"not found to a metadata read", opReadKeyMetadata, resp(404), nil, ""},
		{"reference secret not found", opReadRefSecret, fmt.Errorf("%w: at %s", vaultapi.ErrSecretNotFound, path), nil, ""},
		{"cas mismatch", opCreateKey, resp(400, casMismatchMessage), nil, ""},
		{"not found to a write", opCreateKey, resp(404), keystore.ErrKeyNotFound, "vault create_key: key not found"},
		{"not found to a mount check", opCheckMount, resp(404), keystore.ErrKeyNotFound, "vault check_mount: key not found"},
		{"no mount", opReadKey, resp(404, `no handler for route "`+path+`". route entry not found.`), keystore.ErrUnavailable, "vault read_key: no such path"},
		{"403", opRotateKey, resp(403, "permission denied on "+path), keystore.ErrUnavailable, "vault rotate_key: permission denied"},
		{"sealed", opDestroyKey, resp(503, "Vault is sealed"), keystore.ErrUnavailable, "vault destroy_key: vault sealed"},
		{"500", opDeleteKeyMetadata, resp(500, "internal error at "+path), keystore.ErrUnavailable, "server error 500"},
		{"refused", opReadKey, refused, syscall.ECONNREFUSED, "vault read_key: unreachable: dial tcp: connection refused"},
		{"deadline", opReadKey, &url.Error{Op: "Get", URL: "http://vault/v1/" + path, Err: context.DeadlineExceeded}, context.DeadlineExceeded, "timeout"},
		{"anything else", opReadKey, fmt.Errorf("error parsing secret at %s: surprise", path), keystore.ErrUnavailable, "vault read_key: unexpected error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := outcome(tt.op, tt.raw, classify(tt.op+" "+path, tt.raw))
			if tt.want == nil {
				if got != nil {
					t.Fatalf("outcome = %v, want nil", got)
				}
				return
			}
			if !errors.Is(got, tt.want) || !strings.Contains(got.Error(), tt.says) {
				t.Fatalf("outcome = %v, want %v saying %q", got, tt.want, tt.says)
			}
			if strings.Contains(got.Error(), string(ref)) || strings.Contains(got.Error(), "subjects") {
				t.Fatalf("outcome = %q: names the path", got)
			}
			for e := error(got); e != nil; e = errors.Unwrap(e) {
				if strings.Contains(e.Error(), string(ref)) {
					t.Fatalf("outcome wraps %q, which names the reference", e)
				}
			}
			var re *requestError
			if !errors.As(got, &re) {
				t.Fatalf("outcome = %T, want *requestError", got)
			}
			for _, e := range re.errs {
				if strings.Contains(e.Error(), string(ref)) {
					t.Fatalf("outcome wraps %q, which names the reference", e)
				}
			}
		})
	}
}

// hitCounter is an Observer that counts cache hits without allocating.
type hitCounter struct{ hits, misses, requests atomic.Int64 }

func (c *hitCounter) KeyLookup(hit bool) {
	if hit {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
}

func (c *hitCounter) VaultRequest(string, time.Duration, error) { c.requests.Add(1) }

// A cache hit allocates nothing, with or without an Observer.
func TestCacheHitAllocs(t *testing.T) {
	client, err := vaultapi.NewClient(vaultapi.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var counter hitCounter
	for _, obs := range []Observer{nil, &counter} {
		s, err := New(context.Background(), Config{Client: client, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		ref := testRef(1)
		s.cache.put(s.cache.ticket(), testKeys(t, ref, 2))
		ctx := context.Background()
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := s.Key(ctx, ref, 1); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.CurrentKey(ctx, ref); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("observer %T: %v allocations per cache hit, want 0", obs, allocs)
		}
	}
	if counter.hits.Load() < 200 || counter.misses.Load() != 0 || counter.requests.Load() != 0 {
		t.Errorf("observed %d hits, %d misses, %d requests; want ≥ 200 hits only",
			counter.hits.Load(), counter.misses.Load(), counter.requests.Load())
	}
}
