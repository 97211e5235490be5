package api_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
)

// /readyz is unauthenticated and polled by every load balancer: its
// checks (PostgreSQL, Vault) run at most once per ReadinessCacheTTL,
// however many calls come, and run again after it.
func TestReadinessChecksAreCached(t *testing.T) {
	t.Parallel()
	var runs atomic.Int64
	hs := MustOpenServer(t, api.Options{ReadinessCacheTTL: 300 * time.Millisecond, Readiness: []api.ReadinessCheck{
		{Name: "postgres", Check: func(context.Context) error { runs.Add(1); return nil }},
	}})
	for range 50 {
		resp, err := hs.Client().Get(hs.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/readyz: %d", resp.StatusCode)
		}
	}
	if n := runs.Load(); n > 2 {
		t.Errorf("50 calls within the TTL ran the check %d times, want 1 (2 if the TTL passed meanwhile)", n)
	}
	time.Sleep(400 * time.Millisecond)
	before := runs.Load()
	resp, err := hs.Client().Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if runs.Load() != before+1 {
		t.Errorf("after the TTL the check did not run again")
	}
}
