package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
)

// MustOpenServer serves api.NewHandler(opts) on loopback until the test ends.
func MustOpenServer(tb testing.TB, opts api.Options) *httptest.Server {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := httptest.NewServer(api.NewHandler(opts))
	tb.Cleanup(srv.Close)
	return srv
}

// do sends a request and returns the response with its body read.
func do(tb testing.TB, method, url string) (*http.Response, []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, body
}

// problem is the wire form of a problem+json document.
type problem struct {
	Type      string             `json:"type"`
	Title     string             `json:"title"`
	Status    int                `json:"status"`
	Detail    string             `json:"detail"`
	RequestID string             `json:"requestId"`
	Checks    []wire.CheckResult `json:"checks"`
}

func decodeProblem(tb testing.TB, resp *http.Response, body []byte, status int) problem {
	tb.Helper()
	if got, want := resp.StatusCode, status; got != want {
		tb.Errorf("status: got %d, want %d; body %s", got, want, body)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/problem+json"; got != want {
		tb.Errorf("Content-Type: got %q, want %q", got, want)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		tb.Fatalf("decode problem %s: %v", body, err)
	}
	if got, want := p.Status, status; got != want {
		tb.Errorf("problem status: got %d, want %d", got, want)
	}
	if p.Title == "" {
		tb.Errorf("problem title: got empty, want a title")
	}
	if p.RequestID == "" {
		tb.Errorf("problem requestId: got empty, want the request id")
	}
	return p
}

func ok(context.Context) error { return nil }

func TestHealthz(t *testing.T) {
	t.Parallel()
	// Liveness does not depend on the readiness checks.
	srv := MustOpenServer(t, api.Options{Readiness: []api.ReadinessCheck{
		{Name: "postgres", Check: func(context.Context) error { return errors.New("down") }},
	}})
	resp, body := do(t, http.MethodGet, srv.URL+"/healthz")
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Errorf("status: got %d, want %d", got, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type: got %q, want %q", got, want)
	}
	var doc map[string]string
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if got, want := doc["status"], "ok"; got != want {
		t.Errorf("status field: got %q, want %q", got, want)
	}
}

func TestReadyzAllPass(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		checks []api.ReadinessCheck
	}{
		{"no checks", nil},
		{"one check", []api.ReadinessCheck{{Name: "postgres", Check: ok}}},
		{"two checks", []api.ReadinessCheck{{Name: "postgres", Check: ok}, {Name: "schema", Check: ok}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := MustOpenServer(t, api.Options{Readiness: tt.checks})
			resp, body := do(t, http.MethodGet, srv.URL+"/readyz")
			if got, want := resp.StatusCode, http.StatusOK; got != want {
				t.Fatalf("status: got %d, want %d; body %s", got, want, body)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type: got %q, want %q", got, want)
			}
			var doc struct {
				Status string             `json:"status"`
				Checks []wire.CheckResult `json:"checks"`
			}
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			if got, want := doc.Status, "ready"; got != want {
				t.Errorf("status field: got %q, want %q", got, want)
			}
			var names []string
			for _, c := range doc.Checks {
				names = append(names, c.Name)
				if !c.OK || c.Error != "" {
					t.Errorf("check %s: got ok=%v error=%q, want ok", c.Name, c.OK, c.Error)
				}
			}
			var want []string
			for _, c := range tt.checks {
				want = append(want, c.Name)
			}
			if !slices.Equal(names, want) {
				t.Errorf("checks: got %q, want %q", names, want)
			}
		})
	}
}

func TestReadyzFailingCheck(t *testing.T) {
	t.Parallel()
	srv := MustOpenServer(t, api.Options{Readiness: []api.ReadinessCheck{
		{Name: "postgres", Check: ok},
		{Name: "schema", Check: func(context.Context) error { return errors.New("schema version 0, this lethe needs 1") }},
	}})
	resp, body := do(t, http.MethodGet, srv.URL+"/readyz")
	p := decodeProblem(t, resp, body, http.StatusServiceUnavailable)
	if got, want := p.Type, "https://lethe.dev/problems/not-ready"; got != want {
		t.Errorf("type: got %q, want %q", got, want)
	}
	if !strings.Contains(p.Detail, "schema") {
		t.Errorf("detail: got %q, want it to name the failing check %q", p.Detail, "schema")
	}
	if got, want := len(p.Checks), 2; got != want {
		t.Fatalf("checks: got %d, want %d: %+v", got, want, p.Checks)
	}
	if got, want := p.Checks[0], (wire.CheckResult{Name: "postgres", OK: true}); got != want {
		t.Errorf("checks[0]: got %+v, want %+v", got, want)
	}
	if got, want := p.Checks[1], (wire.CheckResult{Name: "schema", Error: "schema version 0, this lethe needs 1"}); got != want {
		t.Errorf("checks[1]: got %+v, want %+v", got, want)
	}
	if got, want := resp.Header.Get("Cache-Control"), "no-store"; got != want {
		t.Errorf("Cache-Control: got %q, want %q", got, want)
	}
}

// A check that outlives ReadinessTimeout fails instead of hanging /readyz.
func TestReadyzCheckTimeout(t *testing.T) {
	t.Parallel()
	srv := MustOpenServer(t, api.Options{
		ReadinessTimeout: 50 * time.Millisecond,
		Readiness: []api.ReadinessCheck{
			{Name: "vault", Check: func(ctx context.Context) error {
				<-ctx.Done()
				return ctx.Err()
			}},
		},
	})
	start := time.Now()
	resp, body := do(t, http.MethodGet, srv.URL+"/readyz")
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("elapsed: got %v, want about 50ms", elapsed)
	}
	p := decodeProblem(t, resp, body, http.StatusServiceUnavailable)
	if got, want := len(p.Checks), 1; got != want {
		t.Fatalf("checks: got %d, want %d", got, want)
	}
	if p.Checks[0].OK || p.Checks[0].Name != "vault" {
		t.Errorf("checks[0]: got %+v, want vault failing", p.Checks[0])
	}
}

// The request id in a problem is the one the client sent (chi's
// X-Request-Id), so that logs and answers can be matched.
func TestProblemCarriesRequestID(t *testing.T) {
	t.Parallel()
	srv := MustOpenServer(t, api.Options{})
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/nope", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "req-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := decodeProblem(t, resp, body, http.StatusNotFound)
	if got, want := p.RequestID, "req-42"; got != want {
		t.Errorf("requestId: got %q, want %q", got, want)
	}
}

func TestRoutingProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path string
		status             int
		typ                string
	}{
		{"unknown route", http.MethodGet, "/nope", http.StatusNotFound, "https://lethe.dev/problems/not-found"},
		{"unknown nested route", http.MethodPost, "/streams/lead-1/events", http.StatusNotFound, "https://lethe.dev/problems/not-found"},
		{"POST healthz", http.MethodPost, "/healthz", http.StatusMethodNotAllowed, "https://lethe.dev/problems/method-not-allowed"},
		{"DELETE healthz", http.MethodDelete, "/healthz", http.StatusMethodNotAllowed, "https://lethe.dev/problems/method-not-allowed"},
		{"PUT readyz", http.MethodPut, "/readyz", http.StatusMethodNotAllowed, "https://lethe.dev/problems/method-not-allowed"},
	}
	srv := MustOpenServer(t, api.Options{Readiness: []api.ReadinessCheck{{Name: "postgres", Check: ok}}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := do(t, tt.method, srv.URL+tt.path)
			p := decodeProblem(t, resp, body, tt.status)
			if got, want := p.Type, tt.typ; got != want {
				t.Errorf("type: got %q, want %q", got, want)
			}
		})
	}
}

// RFC 9110 section 15.5.6: a 405 response MUST carry an Allow header
// listing the route's methods.
func TestMethodNotAllowedListsAllow(t *testing.T) {
	t.Parallel()
	srv := MustOpenServer(t, api.Options{})
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, _ := do(t, http.MethodPost, srv.URL+path)
		if got, want := resp.StatusCode, http.StatusMethodNotAllowed; got != want {
			t.Errorf("POST %s: status got %d, want %d", path, got, want)
		}
		if got := resp.Header.Values("Allow"); !slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, http.MethodGet) }) {
			t.Errorf("POST %s: Allow got %q, want it to list GET", path, got)
		}
	}
}
