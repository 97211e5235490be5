package api_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// metric returns a metric without labels from GET /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("GET /metrics: no %s (%v)", name, sc.Err())
	return 0
}

// erase posts an erasure as the bootstrap admin with an X-Request-Id.
func erase(t *testing.T, base, adminToken, subject, requestID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/subjects/"+subject+"/erase", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("X-Request-Id", requestID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("erase: got %d, want %d", got, want)
	}
}

// lethe_erasures_total counts an erasure once, although the client sends
// the same X-Request-Id (its ticket number) again.
func TestErasuresMetric(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	if got, want := metric(t, hs.URL, "lethe_erasures_total"), 0.0; got != want {
		t.Fatalf("lethe_erasures_total before the erase: got %v, want %v", got, want)
	}
	erase(t, hs.URL, d.adminToken, casey, "DSR-2026-0042")
	if got, want := metric(t, hs.URL, "lethe_erasures_total"), 1.0; got != want {
		t.Errorf("lethe_erasures_total after the erase: got %v, want %v", got, want)
	}
	erase(t, hs.URL, d.adminToken, casey, "DSR-2026-0042")
	if got, want := metric(t, hs.URL, "lethe_erasures_total"), 1.0; got != want {
		t.Errorf("lethe_erasures_total after the repeat: got %v, want %v", got, want)
	}
	if r, err := tk.admin.Erasure(ctx, casey); err != nil || r.RequestID != "DSR-2026-0042" {
		t.Errorf("receipt: got requestId %q, %v; want the client's DSR-2026-0042", r.RequestID, err)
	}
}

// fakeSubjects answers Forget with what forget makes of the request.
type fakeSubjects struct {
	api.Subjects
	forget func(req forgettable.ErasureRequest) forgettable.Erasure
}

func (f fakeSubjects) Forget(_ context.Context, _ string, req forgettable.ErasureRequest) (forgettable.Erasure, error) {
	return f.forget(req), nil
}

// An erasure counts when the request completed it: a retry that finishes
// a pending erasure (started by another request) counts; a repeat
// answered with an earlier completion does not, whatever its request id.
func TestErasuresMetricCountsCompletions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		forget func(req forgettable.ErasureRequest) forgettable.Erasure
		want   float64
	}{
		{"retry completing a pending erasure", func(forgettable.ErasureRequest) forgettable.Erasure {
			return forgettable.Erasure{RequestID: "the-first-request", Completion: &forgettable.ErasureCompletion{CompletedAt: time.Now().UTC()}}
		}, 1},
		{"repeat with the same request id", func(req forgettable.ErasureRequest) forgettable.Erasure {
			return forgettable.Erasure{RequestID: req.RequestID, Completion: &forgettable.ErasureCompletion{CompletedAt: time.Now().Add(-time.Hour).UTC()}}
		}, 0},
		{"still pending", func(req forgettable.ErasureRequest) forgettable.Erasure {
			return forgettable.Erasure{RequestID: req.RequestID}
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := strings.Repeat("t", 40)
			srv := MustOpenServer(t, api.Options{AdminToken: token, Subjects: fakeSubjects{forget: tc.forget}})
			erase(t, srv.URL, token, "ada@example.com", "DSR-1")
			if got := metric(t, srv.URL, "lethe_erasures_total"); got != tc.want {
				t.Errorf("lethe_erasures_total: got %v, want %v", got, tc.want)
			}
		})
	}
}
