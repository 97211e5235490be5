package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// ReadinessCheck is one dependency that must answer for the server to be
// ready (PostgreSQL reachable, schema current, Vault unsealed...).
type ReadinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// CheckResult is a readiness check's outcome in /readyz answers.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Options configures the HTTP handler.
type Options struct {
	Logger *slog.Logger
	// Readiness are the checks behind GET /readyz.
	Readiness []ReadinessCheck
	// ReadinessTimeout bounds each check (default 2s).
	ReadinessTimeout time.Duration
}

// NewHandler returns Lethe's HTTP handler.
func NewHandler(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReadinessTimeout <= 0 {
		opts.ReadinessTimeout = 2 * time.Second
	}
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Use(middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", readyHandler(opts))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, Problem{Type: ProblemTypeBase + "not-found", Title: "Not found", Status: http.StatusNotFound,
			Detail: "No such route."})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// RFC 9110 §15.5.6: a 405 lists the methods the route has.
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, req, Problem{Type: ProblemTypeBase + "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed,
			Detail: "This route answers " + strings.Join(allowed, ", ") + "."})
	})
	return r
}

func readyHandler(opts Options) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		results := make([]CheckResult, len(opts.Readiness))
		var wg sync.WaitGroup
		for i, c := range opts.Readiness {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(r.Context(), opts.ReadinessTimeout)
				defer cancel()
				results[i] = CheckResult{Name: c.Name, OK: true}
				if err := c.Check(ctx); err != nil {
					results[i] = CheckResult{Name: c.Name, Error: err.Error()}
					opts.Logger.Warn("readiness check failed", "check", c.Name, "err", err, "request_id", requestID(r))
				}
			}()
		}
		wg.Wait()
		for _, res := range results {
			if !res.OK {
				writeProblem(w, r, Problem{Type: ProblemTypeBase + "not-ready", Title: "Not ready",
					Status: http.StatusServiceUnavailable, Detail: "A dependency is not ready: " + res.Name + ".", Checks: results})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": results})
	}
}

func requestID(r *http.Request) string { return middleware.GetReqID(r.Context()) }
