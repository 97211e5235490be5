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

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/projection"
)

// ReadinessCheck is one dependency that must answer for the server to be
// ready (PostgreSQL reachable, schema current, Vault unsealed...).
type ReadinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Events is what the API needs of the event store with crypto-shredding;
// *forgettable.Store implements it.
type Events interface {
	Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...forgettable.Event) (eventstore.AppendResult, error)
	ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, access forgettable.Access) ([]forgettable.RecordedEvent, error)
	ReadAll(ctx context.Context, opts eventstore.ReadAllOptions, access forgettable.Access) (forgettable.Page, error)
	Open(ctx context.Context, events []eventstore.RecordedEvent, access forgettable.Access) ([]forgettable.RecordedEvent, error)
}

// Subjects is what the admin routes need to erase and hold subjects;
// *forgettable.Store implements it.
type Subjects interface {
	Forget(ctx context.Context, subject string, req forgettable.ErasureRequest) (forgettable.Erasure, error)
	Erasure(ctx context.Context, subject string) (forgettable.Erasure, bool, error)
	SetHold(ctx context.Context, subject string, held bool, actor, reason string) error
	SubjectRef(ctx context.Context, subject string) (keystore.Ref, error)
	ExportSubject(ctx context.Context, subject string, record func(forgettable.Footprint) error, fn func(forgettable.RecordedEvent) error) error
}

// PolicyStore manages protection policies; *forgettable.Store implements
// it.
type PolicyStore interface {
	Policy(ctx context.Context, eventType string) (forgettable.Policy, error)
	ListPolicies(ctx context.Context) ([]forgettable.Policy, error)
	PutPolicy(ctx context.Context, p forgettable.Policy, requestID string) error
	DeletePolicy(ctx context.Context, eventType, actor, requestID string) error
}

// Subscriber starts catch-up subscriptions; *postgres.Store (the event
// store adapter) implements it.
type Subscriber interface {
	SubscribeToAll(opts eventstore.SubscribeAllOptions) *eventstore.Subscription
	SubscribeToStream(streamID string, opts eventstore.SubscribeStreamOptions) *eventstore.Subscription
	// VersionAt returns the version of the event at position in a stream
	// (ErrStreamNotFound if there is none): stream subscriptions resume
	// from a Last-Event-ID with it.
	VersionAt(ctx context.Context, streamID string, position int64) (int64, error)
}

// Limits bound what a request may ask. Zero fields take the defaults.
type Limits struct {
	// MaxBodyBytes bounds a request body (default 4 MiB).
	MaxBodyBytes int64
	// MaxEventsPerAppend bounds the events of one append (default 1,000).
	MaxEventsPerAppend int
	// MaxEventBytes bounds an event's data plus metadata (default 1 MiB).
	MaxEventBytes int
	// MaxLeavesPerEvent and MaxLeavesPerAppend bound the scalar values
	// (strings, numbers, booleans, nulls) of an event's data and of all
	// the events of an append (defaults 1,000 and 100,000): the lookup
	// index writes a row per leaf.
	MaxLeavesPerEvent  int
	MaxLeavesPerAppend int
	// MaxSubjectsPerAppend bounds the distinct data subjects an append
	// declares (default 100): a new subject's key is created in Vault
	// before the append is tried.
	MaxSubjectsPerAppend int
	// MaxSubscriptionsPerToken bounds the subscriptions (SSE) one token
	// holds open at once on one server process (default 16).
	MaxSubscriptionsPerToken int
	// MaxPageSize bounds a read's limit (default 1,000); DefaultPageSize is
	// the limit when a read gives none (default 100).
	MaxPageSize     int
	DefaultPageSize int
	// MaxPageBytes bounds a page by size (default 16 MiB): a read of a
	// stream or of the log, and each batch of a subscription, ends after
	// the event whose data and metadata (as stored) bring the page to
	// this size; the page then has a next link. The first event always
	// comes.
	MaxPageBytes int
	// SSEHeartbeat is the interval of SSE heartbeats (default 15s), and
	// SSEWriteTimeout how long a subscriber may take to accept one batch
	// of events before it is disconnected (default 30s); an audit export's
	// client gets as long for each 64 KiB written.
	SSEHeartbeat    time.Duration
	SSEWriteTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 4 << 20
	}
	def(&l.MaxEventsPerAppend, 1000)
	def(&l.MaxEventBytes, 1<<20)
	def(&l.MaxLeavesPerEvent, 1000)
	def(&l.MaxLeavesPerAppend, 100_000)
	def(&l.MaxSubjectsPerAppend, 100)
	def(&l.MaxSubscriptionsPerToken, 16)
	def(&l.MaxPageSize, 1000)
	def(&l.DefaultPageSize, 100)
	def(&l.MaxPageBytes, 16<<20)
	l.DefaultPageSize = min(l.DefaultPageSize, l.MaxPageSize)
	if l.SSEHeartbeat <= 0 {
		l.SSEHeartbeat = 15 * time.Second
	}
	if l.SSEWriteTimeout <= 0 {
		l.SSEWriteTimeout = 30 * time.Second
	}
	return l
}

// Options configures the HTTP server. NewHandler with zero Options builds
// the routes (handlers then fail on use): tests walk them.
type Options struct {
	Logger *slog.Logger
	// Readiness are the checks behind GET /readyz.
	Readiness []ReadinessCheck
	// ReadinessTimeout bounds each check (default 2s).
	ReadinessTimeout time.Duration
	// ReadinessCacheTTL is how long the checks' results answer /readyz
	// before they run again (default 1s).
	ReadinessCacheTTL time.Duration

	Events     Events
	Subjects   Subjects
	Policies   PolicyStore
	Subscriber Subscriber
	Tokens     TokenStore
	AccessLog  AccessLog
	Metrics    *Metrics
	Limits     Limits
	// Folders replace the generic fold of GET /v1/streams/{id}/state for
	// the streams of a category (the stream id up to its first "-").
	Folders map[string]projection.Folder
	// StateLoader, if set, loads generic-fold states with snapshots
	// (unless Upcasters are set).
	StateLoader StateLoader
	// Upcasters turn old schema versions of event types into their
	// current shape on every read (see docs/schema-evolution.md).
	Upcasters *projection.Upcasters
	// ReadModels answers the lookup, analytics and projection routes;
	// nil: they answer 404 projection-not-found.
	ReadModels ReadModels
	// Audit reads the audit trail for GET /v1/audit/export.
	Audit AuditTrail
	// Erasures reads the erasure ledger for the erasure receipts (GET
	// /v1/erasures, /v1/erasures/{erasureId} and
	// /v1/subjects/{subject}/erasure); nil: those routes fail.
	Erasures ErasureLedger
	// AdminToken is the bootstrap admin token (LETHE_ADMIN_TOKEN), held in
	// memory only; empty: none.
	AdminToken string
	// AuthCacheTTL bounds how long a verified token is trusted without
	// asking the token store again (default 5s). Revocations announced by
	// TokenRevoked take effect at once.
	AuthCacheTTL time.Duration
}

// Server is Lethe's HTTP API. Its handler is safe for concurrent use; any
// number of servers may share one database and Vault.
type Server struct {
	opts       Options
	log        *slog.Logger
	limits     Limits
	metrics    *Metrics
	router     *chi.Mux
	bootstrap  bootstrap
	auth       *authCache
	requestIDs *requestIDs
	readiness  *readinessCache
	subs       *subscriptionSlots

	closing   chan struct{}
	closeOnce sync.Once
}

// NewServer returns a Server.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReadinessTimeout <= 0 {
		opts.ReadinessTimeout = 2 * time.Second
	}
	if opts.ReadinessCacheTTL <= 0 {
		opts.ReadinessCacheTTL = time.Second
	}
	if opts.AuthCacheTTL <= 0 {
		opts.AuthCacheTTL = 5 * time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if opts.Upcasters != nil && opts.Events != nil {
		opts.Events = upcasting{Events: opts.Events, u: opts.Upcasters}
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		limits:     opts.Limits.withDefaults(),
		metrics:    opts.Metrics,
		auth:       newAuthCache(opts.AuthCacheTTL, 10_000),
		requestIDs: newRequestIDs(),
		readiness:  &readinessCache{ttl: opts.ReadinessCacheTTL, now: time.Now},
		closing:    make(chan struct{}),
	}
	s.subs = newSubscriptionSlots(s.limits.MaxSubscriptionsPerToken)
	if opts.AdminToken != "" {
		s.bootstrap = bootstrap{hash: HashToken(opts.AdminToken), set: true}
	}
	s.router = s.routes()
	return s
}

// NewHandler returns the router of a new Server.
func NewHandler(opts Options) http.Handler { return NewServer(opts).router }

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// TokenRevoked drops a token's cached authentication ("" drops all): wire
// it to the token store's revocation announcements, so that a revocation
// through any server takes effect at once in every server.
func (s *Server) TokenRevoked(tokenID string) { s.auth.dropToken(tokenID) }

// BeginShutdown ends every open subscription cleanly (http.Server.Shutdown
// does not end streaming responses): register it with
// http.Server.RegisterOnShutdown.
func (s *Server) BeginShutdown() { s.closeOnce.Do(func() { close(s.closing) }) }

// Route roles: who may call what.
var (
	readers = []string{wire.RoleReader, wire.RolePIIReader}
	writers = []string{wire.RoleWriter}
	admins  = []string{wire.RoleAdmin}
)

func (s *Server) routes() *chi.Mux {
	r := chi.NewRouter()
	r.Use(s.assignRequestID, s.requestIDHeader, s.observe, s.recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", s.ready)
	r.Handle("/metrics", s.metrics.Handler())
	r.Route("/v1", func(r chi.Router) {
		r.Use(s.authenticate)
		r.With(s.require(writers...)).Post("/streams/{streamId}/events", s.appendEvents)
		r.With(s.require(readers...)).Get("/streams/{streamId}/events", s.readStream)
		r.With(s.require(readers...)).Get("/streams/{streamId}/state", s.streamState)
		r.With(s.require(readers...)).Get("/streams/{streamId}/history", s.streamHistory)
		r.With(s.require(readers...)).Get("/events", s.readAll)
		r.With(s.require(wire.RolePIIReader)).Get("/lookup", s.lookup)
		r.With(s.require(wire.RoleReader, wire.RolePIIReader, wire.RoleAuditor)).Get("/analytics/{category}", s.analytics)
		r.With(s.require(readers...)).Get("/streams/{streamId}/subscribe", s.subscribeStream)
		r.With(s.require(readers...)).Get("/subscribe", s.subscribeAll)
		r.With(s.require(wire.RoleAuditor, wire.RoleAdmin)).Get("/audit/export", s.exportAudit)
		r.With(s.require(wire.RoleAuditor, wire.RoleAdmin)).Get("/erasures", s.listErasures)
		r.With(s.require(wire.RoleAuditor, wire.RoleAdmin)).Get("/erasures/{erasureId}", s.getErasure)
		r.Group(func(r chi.Router) {
			r.Use(s.require(admins...))
			r.Post("/subjects/{subject}/erase", s.erase)
			r.Get("/subjects/{subject}/erasure", s.erasure)
			r.Get("/subjects/{subject}/export", s.exportSubject)
			r.Put("/subjects/{subject}/hold", s.hold(true))
			r.Delete("/subjects/{subject}/hold", s.hold(false))
			r.Get("/policies", s.listPolicies)
			r.Get("/policies/{eventType}", s.getPolicy)
			r.Put("/policies/{eventType}", s.putPolicy)
			r.Delete("/policies/{eventType}", s.deletePolicy)
			r.Post("/tokens", s.createToken)
			r.Get("/tokens", s.listTokens)
			r.Delete("/tokens/{tokenId}", s.revokeToken)
			r.Get("/projections", s.projectionStatuses)
			r.Post("/projections/{name}/rebuild", s.rebuildProjection)
		})
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, http.StatusNotFound, "not-found", "No such route.")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// RFC 9110 §15.5.6: a 405 lists the methods the route has. Match
		// the path chi routed on: the raw one when it has escapes (a%2Fb
		// is one segment, a/b two).
		path := req.URL.RawPath
		if path == "" {
			path = req.URL.Path
		}
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.problem(w, req, http.StatusMethodNotAllowed, "method-not-allowed", "This route answers "+strings.Join(allowed, ", ")+".")
	})
	return r
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	results := s.readiness.get(func() []wire.CheckResult { return s.checkReadiness(r) })
	for _, res := range results {
		if !res.OK {
			p := newProblem(r, http.StatusServiceUnavailable, "not-ready", "A dependency is not ready: "+res.Name+".")
			p.Checks = results
			writeProblem(w, r, p)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": results})
}

// readinessCache keeps the readiness checks' last results for a moment,
// so that /readyz (unauthenticated, polled by every load balancer) does
// not ask PostgreSQL and Vault on every call: at most one round of checks
// runs at a time, and its results answer every call for ttl.
type readinessCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	results []wire.CheckResult
	at      time.Time
}

// get returns results no older than ttl, running check when there are
// none (callers meanwhile wait for that one run).
func (c *readinessCache) get(check func() []wire.CheckResult) []wire.CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.results != nil && c.now().Sub(c.at) < c.ttl {
		return c.results
	}
	c.results, c.at = check(), c.now()
	return c.results
}

// checkReadiness runs every readiness check at once, each bounded by
// ReadinessTimeout.
func (s *Server) checkReadiness(r *http.Request) []wire.CheckResult {
	results := make([]wire.CheckResult, len(s.opts.Readiness))
	var wg sync.WaitGroup
	for i, c := range s.opts.Readiness {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Detached from this caller: the results answer others too.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.opts.ReadinessTimeout)
			defer cancel()
			results[i] = wire.CheckResult{Name: c.Name, OK: true}
			if err := c.Check(ctx); err != nil {
				results[i] = wire.CheckResult{Name: c.Name, Error: err.Error()}
				s.log.Warn("readiness check failed", "check", c.Name, "err", err, "request_id", requestID(r))
			}
		}()
	}
	wg.Wait()
	return results
}

func requestID(r *http.Request) string { return middleware.GetReqID(r.Context()) }

// requestIDHeader returns the request id to the client, to quote in
// support requests; the logs carry it too.
func (s *Server) requestIDHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", requestID(r))
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into a 500 problem. The panic value is logged
// by type only: it could hold request data.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "route", routePattern(r), "request_id", requestID(r), "panic_type", typeName(v))
				s.problem(w, r, http.StatusInternalServerError, "internal", "Internal error; quote the request id.")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
