package api

import (
	"context"
	"net/http"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/projection"
)

// ReadModels answers the routes of the persisted projections (lookup
// index, analysis model, statuses, rebuilds); projection/postgres.Service
// implements it. Errors wrap projection.ErrUnknownProjection for a
// projection this server does not run.
type ReadModels interface {
	// Lookup returns the streams that held value, and the references of
	// the subjects whose events said so (the access log records them).
	Lookup(ctx context.Context, category, field, value string) (streams, subjectRefs []string, err error)
	Analytics(ctx context.Context, category string) (projection.Analytics, error)
	Statuses(ctx context.Context) ([]projection.Status, error)
	Rebuild(ctx context.Context, name string, from int64) error
}

// readModels answers 404 when this server runs no projections.
func (s *Server) readModels(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.ReadModels == nil {
		s.problem(w, r, http.StatusNotFound, "projection-not-found", "This server runs no projections.")
		return false
	}
	return true
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	if !s.readModels(w, r) {
		return
	}
	q := r.URL.Query()
	if err := checkQuery(q, "category", "field", "value"); err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	category, field, value := q.Get("category"), q.Get("field"), q.Get("value")
	if category == "" || field == "" || field[0] != '/' || !q.Has("value") {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", "Give category, field (a JSON Pointer such as /phone-number) and value.")
		return
	}
	streams, refs, err := s.opts.ReadModels.Lookup(r.Context(), category, field, value)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A lookup by a value tells which streams (and whose events) held it:
	// recorded like a read of personal data, with the subjects'
	// references, and, like it, not served if it cannot be recorded.
	if err := s.record(r.Context(), r, &accessTally{streams: streams, refs: refs}); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.LookupResult{Streams: streams})
}

func (s *Server) analytics(w http.ResponseWriter, r *http.Request) {
	if !s.readModels(w, r) {
		return
	}
	category, ok := s.param(w, r, "category")
	if !ok {
		return
	}
	if !isStorableText(category) {
		s.problem(w, r, http.StatusBadRequest, "invalid-request", "category: not UTF-8, or holds a NUL character.")
		return
	}
	if err := checkQuery(r.URL.Query()); err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	a, err := s.opts.ReadModels.Analytics(r.Context(), category)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toWireAnalytics(a))
}

func (s *Server) projectionStatuses(w http.ResponseWriter, r *http.Request) {
	if !s.readModels(w, r) {
		return
	}
	st, err := s.opts.ReadModels.Statuses(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.ProjectionList{Projections: ProjectionStatuses(st)})
}

func (s *Server) rebuildProjection(w http.ResponseWriter, r *http.Request) {
	if !s.readModels(w, r) {
		return
	}
	name, ok := s.param(w, r, "name")
	if !ok {
		return
	}
	req, ok := decodeBody[wire.RebuildRequest](s, w, r, true)
	if !ok {
		return
	}
	if req.FromPosition < 0 {
		s.problem(w, r, http.StatusBadRequest, "invalid-request", "fromPosition: want 0 (from scratch) or a position.")
		return
	}
	if err := s.opts.ReadModels.Rebuild(r.Context(), name, req.FromPosition); err != nil {
		s.fail(w, r, err)
		return
	}
	p, _ := principalFrom(r.Context())
	s.log.Info("projection rebuild requested", "projection", name, "from_position", req.FromPosition, "by", p.TokenID, "request_id", requestID(r))
	st, err := s.opts.ReadModels.Statuses(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, x := range ProjectionStatuses(st) {
		if x.Name == name {
			writeJSON(w, http.StatusAccepted, x)
			return
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

// ProjectionStatuses renders projections' progress as the API's documents
// (GET /v1/projections, lethe projection status).
func ProjectionStatuses(st []projection.Status) []wire.ProjectionStatus {
	out := make([]wire.ProjectionStatus, len(st))
	for i, x := range st {
		out[i] = wire.ProjectionStatus{Name: x.Name, Position: x.Position, EventsApplied: x.EventsApplied, LastEventAt: x.LastEventAt,
			UpdatedAt: x.UpdatedAt, Lag: x.Lag, RebuildPending: x.RebuildPending, LastError: x.LastError}
	}
	return out
}

// toWireAnalytics renders a category's analysis model.
func toWireAnalytics(a projection.Analytics) wire.Analytics {
	out := wire.Analytics{Category: a.Category, Days: make([]wire.DayCounts, len(a.Days)), Totals: a.Totals}
	for i, d := range a.Days {
		out.Days[i] = wire.DayCounts{Day: d.Day, Counts: d.Counts}
	}
	return out
}
