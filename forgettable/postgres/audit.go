package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-store/lethe/keystore"
)

// The audit_log table (migrations/009_audit.sql) records the actions no
// other table records, with who did them. The Ledger writes the rows of
// key rotations and reapplied erasures; Policies writes those of policy
// changes, each committed with its change (auditPolicy).

// RecordKeyRotation implements forgettable.Ledger: an audit_log row of
// kind key.rotated with the subject's reference and the new key version.
func (l *Ledger) RecordKeyRotation(ctx context.Context, ref keystore.Ref, version int, actor, requestID string) error {
	if actor == "" {
		return errors.New("record key rotation: no actor")
	}
	_, err := l.pool.Exec(ctx, `
INSERT INTO audit_log (kind, actor, request_id, subject_refs, details)
VALUES ('key.rotated', $1, $2, ARRAY[$3]::text[], jsonb_build_object('keyVersion', $4::int))`,
		actor, requestID, string(ref), version)
	if err != nil {
		return fmt.Errorf("record key rotation: %w", err)
	}
	return nil
}

// RecordReapply records a run of `lethe erasures reapply`: how many
// erasures it checked, the references whose keys it found restored and
// destroyed again, and whether it got through them all (complete) or
// stopped on an error.
func (l *Ledger) RecordReapply(ctx context.Context, actor string, checked int, destroyed []keystore.Ref, complete bool) error {
	if actor == "" {
		return errors.New("record erasure reapply: no actor")
	}
	refs := make([]string, len(destroyed))
	for i, r := range destroyed {
		refs[i] = string(r)
	}
	_, err := l.pool.Exec(ctx, `
INSERT INTO audit_log (kind, actor, subject_refs, details)
VALUES ('erasure.reapplied', $1, $2::text[],
        jsonb_build_object('erasuresChecked', $3::int, 'keysDestroyed', cardinality($2::text[]), 'complete', $4::bool))`,
		actor, refs, checked, complete)
	if err != nil {
		return fmt.Errorf("record erasure reapply: %w", err)
	}
	return nil
}

// auditPolicy writes a policy change's audit_log row in tx.
func auditPolicy(ctx context.Context, tx pgx.Tx, kind, eventType string, paths []string, actor, requestID string) error {
	if actor == "" {
		return errors.New("no actor")
	}
	if paths == nil {
		paths = []string{}
	}
	_, err := tx.Exec(ctx, `
INSERT INTO audit_log (kind, actor, request_id, details)
VALUES ($1, $2, $3, jsonb_build_object('eventType', $4::text, 'paths', $5::text[]))`,
		kind, actor, requestID, eventType, paths)
	return err
}
