package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are Lethe's Prometheus metrics, in a registry of their own (no
// global state). Labels are route patterns, methods, status codes and
// fixed operation names: never a stream id, subject or token.
type Metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.HistogramVec
	appended       prometheus.Counter
	read           prometheus.Counter
	keyLookups     *prometheus.CounterVec
	vaultRequests  *prometheus.HistogramVec
	vaultErrors    *prometheus.CounterVec
	erasures       prometheus.Counter
	subscribers    prometheus.Gauge
	accessRecorded prometheus.Counter
}

// NewMetrics returns Lethe's metrics with the Go runtime and process
// collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lethe_http_request_duration_seconds", Help: "HTTP request latency by route pattern, method and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "lethe_events_appended_total", Help: "Events appended (retried identical appends not counted)."}),
		read:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lethe_events_read_total", Help: "Events returned by reads and subscriptions."}),
		keyLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lethe_key_cache_lookups_total", Help: "Data key lookups, by whether the in-memory cache answered (hit) or Vault was asked (miss).",
		}, []string{"result"}),
		vaultRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lethe_vault_request_duration_seconds", Help: "Vault request latency by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		vaultErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lethe_vault_errors_total", Help: "Vault requests that failed, by operation."}, []string{"op"}),
		erasures:    prometheus.NewCounter(prometheus.CounterOpts{Name: "lethe_erasures_total", Help: "Data subject erasures completed through this server (repeats not counted)."}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lethe_sse_subscribers", Help: "Open Server-Sent Events subscriptions."}),
		accessRecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lethe_access_log_records_total", Help: "Responses with decrypted personal data recorded in the access log.",
		}),
	}
	m.reg.MustRegister(m.requests, m.appended, m.read, m.keyLookups, m.vaultRequests, m.vaultErrors, m.erasures, m.subscribers, m.accessRecorded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// KeyLookup counts a key lookup (the key store's observer hook).
func (m *Metrics) KeyLookup(hit bool) {
	if hit {
		m.keyLookups.WithLabelValues("hit").Inc()
	} else {
		m.keyLookups.WithLabelValues("miss").Inc()
	}
}

// VaultRequest measures a Vault request (the key store's observer hook).
func (m *Metrics) VaultRequest(op string, d time.Duration, err error) {
	m.vaultRequests.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.vaultErrors.WithLabelValues(op).Inc()
	}
}

// observe measures every request and logs it: route pattern, never the
// raw path (it may hold a subject id), and the token id once authenticate
// has filled in the request's requestInfo.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		next.ServeHTTP(ww, r)
		route := routePattern(r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		method := methodLabel(r.Method)
		s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(status)).Observe(d.Seconds())
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{slog.String("method", method), slog.String("route", route), slog.Int("status", status),
			slog.Duration("duration", d), slog.String("request_id", requestID(r))}
		if info.tokenID != "" {
			attrs = append(attrs, slog.String("token_id", info.tokenID))
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

// methodLabel is the request's method if it is one of HTTP's standard
// methods, else "OTHER": any token is a valid method, and the client's
// must not make the metric's series (or the log) grow without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// routePattern is the matched route's pattern ("unmatched" for a 404).
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
