package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/keystore"
)

// AccessLog is api.AccessLog on PostgreSQL (table access_log, append-only).
type AccessLog struct {
	pool *pgxpool.Pool
}

var _ api.AccessLog = (*AccessLog)(nil)

// NewAccessLog returns the access log on pool.
func NewAccessLog(pool *pgxpool.Pool) *AccessLog { return &AccessLog{pool: pool} }

// RecordAccess implements api.AccessLog. A zero r.At records the database's
// time. Subjects must be given as references (keystore.Ref): anything else
// is refused, so that no subject id can reach the log.
func (l *AccessLog) RecordAccess(ctx context.Context, r api.AccessRecord) error {
	if r.TokenID == "" {
		return errors.New("record access: no token id")
	}
	for _, ref := range r.SubjectRefs {
		if _, err := keystore.ParseRef(ref); err != nil {
			return fmt.Errorf("record access: subject reference: %w", err)
		}
	}
	_, err := l.pool.Exec(ctx, `
INSERT INTO access_log (at, token_id, method, route, request_id, stream_ids, subject_refs, events)
VALUES (coalesce($1, now()), $2, $3, $4, $5, $6, $7, $8)`,
		pgtype.Timestamptz{Time: r.At, Valid: !r.At.IsZero()}, r.TokenID, r.Method, r.Route, r.RequestID,
		r.StreamIDs, r.SubjectRefs, r.Events)
	if err != nil {
		return fmt.Errorf("record access: %w", err)
	}
	return nil
}
