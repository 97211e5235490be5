package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ReferenceBinding records which subject reference secret the database's
// references were made with: its fingerprint, never the secret
// (migrations/014_reference_binding.sql). keystore/vault asks it before it
// uses a secret (vault.ReferenceBinding).
type ReferenceBinding struct {
	pool *pgxpool.Pool
}

// NewReferenceBinding returns the binding on pool.
func NewReferenceBinding(pool *pgxpool.Pool) *ReferenceBinding { return &ReferenceBinding{pool: pool} }

// BoundFingerprint returns the recorded fingerprint, if any.
func (b *ReferenceBinding) BoundFingerprint(ctx context.Context) (string, bool, error) {
	var fp string
	err := b.pool.QueryRow(ctx, `SELECT fingerprint FROM reference_binding`).Scan(&fp)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reference binding: %w", err)
	}
	return fp, true, nil
}

// HasSubjects reports whether any event carries a subject reference or any
// subject was erased.
func (b *ReferenceBinding) HasSubjects(ctx context.Context) (bool, error) {
	var has bool
	err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM erasures) OR EXISTS (SELECT 1 FROM legal_holds)
	    OR EXISTS (SELECT 1 FROM events WHERE subject_refs IS NOT NULL AND subject_refs <> '{}')`).Scan(&has)
	if err != nil {
		return false, fmt.Errorf("reference binding: %w", err)
	}
	return has, nil
}

// Bind records fingerprint unless a fingerprint is recorded already, and
// returns the recorded one (so that two servers binding at once agree on
// the first).
func (b *ReferenceBinding) Bind(ctx context.Context, fingerprint string) (string, error) {
	var recorded string
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO reference_binding (fingerprint) VALUES ($1) ON CONFLICT (singleton) DO NOTHING`, fingerprint); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT fingerprint FROM reference_binding`).Scan(&recorded)
	})
	if err != nil {
		return "", fmt.Errorf("reference binding: %w", err)
	}
	return recorded, nil
}
