package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/forgettable"
)

// Policies is forgettable.Policies on PostgreSQL (protection_policies,
// migrations/002_subjects.sql): each change commits with its audit_log row
// and its announcement on PolicyChannel.
type Policies struct {
	pool *pgxpool.Pool
}

var _ forgettable.Policies = (*Policies)(nil)

// NewPolicies returns the policy store on pool.
func NewPolicies(pool *pgxpool.Pool) *Policies { return &Policies{pool: pool} }

// Policy implements forgettable.Policies.
func (ps *Policies) Policy(ctx context.Context, eventType string) (forgettable.Policy, error) {
	var p forgettable.Policy
	err := ps.pool.QueryRow(ctx, `SELECT event_type, paths, updated_at, updated_by FROM protection_policies WHERE event_type = $1`, eventType).
		Scan(&p.EventType, &p.Paths, &p.UpdatedAt, &p.UpdatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, forgettable.ErrPolicyNotFound
	}
	if err != nil {
		return p, fmt.Errorf("protection policy: %w", err)
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

// PolicyChannel announces policy changes, so that every process drops its
// cached policies.
const PolicyChannel = "lethe_policies"

// PutPolicy implements forgettable.Policies. The policy, its audit_log
// row (policy.put: the event type and paths) and the change announcement
// commit together.
func (ps *Policies) PutPolicy(ctx context.Context, p forgettable.Policy, requestID string) error {
	return pgx.BeginFunc(ctx, ps.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
INSERT INTO protection_policies (event_type, paths, updated_by) VALUES ($1, $2, $3)
ON CONFLICT (event_type) DO UPDATE SET paths = EXCLUDED.paths, updated_by = EXCLUDED.updated_by, updated_at = now()`,
			p.EventType, p.Paths, p.UpdatedBy)
		if err != nil {
			return fmt.Errorf("put protection policy: %w", err)
		}
		if err := auditPolicy(ctx, tx, "policy.put", p.EventType, p.Paths, p.UpdatedBy, requestID); err != nil {
			return fmt.Errorf("put protection policy: %w", err)
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, PolicyChannel, p.EventType)
		return err
	})
}

// DeletePolicy implements forgettable.Policies. The deletion, its
// audit_log row (policy.deleted: the event type and the paths it had) and
// the change announcement commit together.
func (ps *Policies) DeletePolicy(ctx context.Context, eventType, actor, requestID string) error {
	return pgx.BeginFunc(ctx, ps.pool, func(tx pgx.Tx) error {
		var paths []string
		err := tx.QueryRow(ctx, `DELETE FROM protection_policies WHERE event_type = $1 RETURNING paths`, eventType).Scan(&paths)
		if errors.Is(err, pgx.ErrNoRows) {
			return forgettable.ErrPolicyNotFound
		}
		if err != nil {
			return fmt.Errorf("delete protection policy: %w", err)
		}
		if err := auditPolicy(ctx, tx, "policy.deleted", eventType, paths, actor, requestID); err != nil {
			return fmt.Errorf("delete protection policy: %w", err)
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, PolicyChannel, eventType)
		return err
	})
}

// ListPolicies implements forgettable.Policies.
func (ps *Policies) ListPolicies(ctx context.Context) ([]forgettable.Policy, error) {
	rows, err := ps.pool.Query(ctx, `SELECT event_type, paths, updated_at, updated_by FROM protection_policies ORDER BY event_type`)
	if err != nil {
		return nil, fmt.Errorf("protection policies: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (forgettable.Policy, error) {
		var p forgettable.Policy
		err := row.Scan(&p.EventType, &p.Paths, &p.UpdatedAt, &p.UpdatedBy)
		p.UpdatedAt = p.UpdatedAt.UTC()
		return p, err
	})
}
