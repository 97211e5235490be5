package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/projection"
)

// Service is the read-model port of the HTTP API (api.ReadModels): lookups,
// analytics, statuses and rebuild requests of the projections a Runner
// runs, in package projection's types (the API renders them).
type Service struct {
	pool    *pgxpool.Pool
	runner  *Runner
	blinder Blinder // nil: no lookup index (no key store)
}

// NewService returns the API's view of runner's projections.
func NewService(pool *pgxpool.Pool, runner *Runner, blinder Blinder) *Service {
	return &Service{pool: pool, runner: runner, blinder: blinder}
}

// Lookup returns the streams of a category that had value in field.
func (s *Service) Lookup(ctx context.Context, category, field, value string) (streams, subjectRefs []string, err error) {
	if s.blinder == nil || !slices.Contains(s.runner.Names(), LookupName) {
		return nil, nil, fmt.Errorf("lookup index: %w", ErrUnknownProjection)
	}
	return LookupWithSubjects(ctx, s.pool, s.blinder, category, field, value)
}

// Analytics returns the analysis model of a category.
func (s *Service) Analytics(ctx context.Context, category string) (projection.Analytics, error) {
	if !slices.Contains(s.runner.Names(), AnalyticsName) {
		return projection.Analytics{}, fmt.Errorf("analytics: %w", ErrUnknownProjection)
	}
	days, totals, err := AnalyticsOf(ctx, s.pool, category)
	if err != nil {
		return projection.Analytics{}, err
	}
	return projection.Analytics{Category: category, Days: days, Totals: totals}, nil
}

// Statuses returns the progress of the registered projections.
func (s *Service) Statuses(ctx context.Context) ([]projection.Status, error) {
	all, err := Statuses(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	names := s.runner.Names()
	out := []projection.Status{}
	for _, st := range all {
		if !slices.Contains(names, st.Name) {
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

// Rebuild requests a rebuild of a registered projection.
func (s *Service) Rebuild(ctx context.Context, name string, from int64) error {
	if !slices.Contains(s.runner.Names(), name) {
		return fmt.Errorf("%s: %w", name, ErrUnknownProjection)
	}
	return RequestRebuild(ctx, s.pool, name, from)
}
