package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/keystore"
)

// ErasureChannel is the LISTEN/NOTIFY channel on which an erasure's subject
// reference is announced, so that every process drops its cached key.
const ErasureChannel = "lethe_erasures"

// Ledger is forgettable.Ledger on PostgreSQL: the erasure ledger, legal
// holds and re-admissions (migrations/002_subjects.sql), the erasure
// proofs, and the audit_log rows of key rotations and reapplied erasures.
type Ledger struct {
	pool *pgxpool.Pool
}

var _ forgettable.Ledger = (*Ledger)(nil)

// NewLedger returns the ledger on pool.
func NewLedger(pool *pgxpool.Pool) *Ledger { return &Ledger{pool: pool} }

func refStrings(refs []keystore.Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = string(r)
	}
	return out
}

// Erased implements forgettable.Ledger.
func (l *Ledger) Erased(ctx context.Context, refs []keystore.Ref) (map[keystore.Ref]bool, error) {
	out := make(map[keystore.Ref]bool, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	rows, err := l.pool.Query(ctx, `SELECT subject_ref FROM erasures WHERE subject_ref = ANY ($1)`, refStrings(refs))
	if err != nil {
		return nil, fmt.Errorf("erasure ledger: %w", err)
	}
	erased, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("erasure ledger: %w", err)
	}
	for _, r := range erased {
		out[keystore.Ref(r)] = true
	}
	return out, nil
}

// Successor implements forgettable.Ledger.
func (l *Ledger) Successor(ctx context.Context, ref keystore.Ref) (keystore.Ref, bool, error) {
	var next string
	err := l.pool.QueryRow(ctx, `SELECT successor_ref FROM readmissions WHERE erased_ref = $1`, string(ref)).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("readmissions: %w", err)
	}
	return keystore.Ref(next), true, nil
}

const erasureColumns = `e.erasure_id, e.subject_ref, e.requested_at, e.actor, e.request_id, e.reason, e.legal_basis,
    c.completed_at, c.key_existed, c.versions_destroyed, c.key_verified_gone, c.streams_affected, c.events_affected, c.resumed`

func scanErasure(row pgx.Row) (forgettable.Erasure, error) {
	var (
		e         forgettable.Erasure
		id        pgtype.UUID
		ref       string
		completed pgtype.Timestamptz
		existed   pgtype.Bool
		versions  pgtype.Int4
		verified  pgtype.Bool
		streams   pgtype.Int8
		events    pgtype.Int8
		resumed   pgtype.Bool
	)
	if err := row.Scan(&id, &ref, &e.RequestedAt, &e.Actor, &e.RequestID, &e.Reason, &e.LegalBasis,
		&completed, &existed, &versions, &verified, &streams, &events, &resumed); err != nil {
		return e, err
	}
	e.ID, e.Ref, e.RequestedAt = id.Bytes, keystore.Ref(ref), e.RequestedAt.UTC()
	if completed.Valid {
		e.Completion = &forgettable.ErasureCompletion{
			CompletedAt: completed.Time.UTC(), KeyExisted: existed.Bool, VersionsDestroyed: int(versions.Int32),
			KeyVerifiedGone: verified.Bool, StreamsAffected: streams.Int64, EventsAffected: events.Int64, Resumed: resumed.Bool,
		}
	}
	return e, nil
}

// StartErasure implements forgettable.Ledger. The insert and the NOTIFY that
// tells every process to drop the subject's cached key commit together.
func (l *Ledger) StartErasure(ctx context.Context, e forgettable.Erasure) (forgettable.Erasure, bool, error) {
	var stored forgettable.Erasure
	created := false
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		// The subject's lock, which SetHold takes too: a hold and an
		// erasure never both win.
		held, err := lockSubject(ctx, tx, e.Ref)
		if err != nil {
			return err
		}
		if held {
			return fmt.Errorf("erasure of %s: %w", e.Ref, forgettable.ErrLegalHold)
		}
		tag, err := tx.Exec(ctx, `
INSERT INTO erasures (erasure_id, subject_ref, actor, request_id, reason, legal_basis)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject_ref) DO NOTHING`,
			pgtype.UUID{Bytes: e.ID, Valid: true}, string(e.Ref), e.Actor, e.RequestID, e.Reason, e.LegalBasis)
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		if created {
			if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, ErasureChannel, string(e.Ref)); err != nil {
				return err
			}
		}
		stored, err = scanErasure(tx.QueryRow(ctx, `SELECT `+erasureColumns+`
FROM erasures e LEFT JOIN erasure_completions c USING (erasure_id) WHERE e.subject_ref = $1`, string(e.Ref)))
		return err
	})
	if errors.Is(err, forgettable.ErrLegalHold) {
		return forgettable.Erasure{}, false, err
	}
	if err != nil {
		return forgettable.Erasure{}, false, fmt.Errorf("record erasure: %w", err)
	}
	return stored, created, nil
}

// lockSubject takes, until tx ends, the lock that serialises a subject's
// legal holds and erasure, and reports whether the subject is held (read
// after the lock, so it sees every hold committed before).
func lockSubject(ctx context.Context, tx pgx.Tx, ref keystore.Ref) (held bool, err error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('lethe.subject:' || $1, 0))`, string(ref)); err != nil {
		return false, err
	}
	err = tx.QueryRow(ctx, `SELECT held FROM legal_holds WHERE subject_ref = $1 ORDER BY id DESC LIMIT 1`, string(ref)).Scan(&held)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return held, err
}

// CompleteErasure implements forgettable.Ledger.
func (l *Ledger) CompleteErasure(ctx context.Context, id [16]byte, c forgettable.ErasureCompletion) error {
	_, err := l.pool.Exec(ctx, `
INSERT INTO erasure_completions (erasure_id, key_existed, versions_destroyed, key_verified_gone, streams_affected, events_affected, resumed)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (erasure_id) DO NOTHING`,
		pgtype.UUID{Bytes: id, Valid: true}, c.KeyExisted, c.VersionsDestroyed, c.KeyVerifiedGone, c.StreamsAffected, c.EventsAffected, c.Resumed)
	if err != nil {
		return fmt.Errorf("record erasure completion: %w", err)
	}
	return nil
}

// ErasureOf implements forgettable.Ledger.
func (l *Ledger) ErasureOf(ctx context.Context, ref keystore.Ref) (forgettable.Erasure, bool, error) {
	e, err := scanErasure(l.pool.QueryRow(ctx, `SELECT `+erasureColumns+`
FROM erasures e LEFT JOIN erasure_completions c USING (erasure_id) WHERE e.subject_ref = $1`, string(ref)))
	if errors.Is(err, pgx.ErrNoRows) {
		return forgettable.Erasure{}, false, nil
	}
	if err != nil {
		return forgettable.Erasure{}, false, fmt.Errorf("erasure ledger: %w", err)
	}
	return e, true, nil
}

// Affected implements forgettable.Ledger.
func (l *Ledger) Affected(ctx context.Context, ref keystore.Ref) (streams, events int64, err error) {
	err = l.pool.QueryRow(ctx, `
SELECT count(DISTINCT stream_id), count(*) FROM events
WHERE subject_refs IS NOT NULL AND subject_refs <> '{}' AND subject_refs @> ARRAY[$1]::text[]`, string(ref)).Scan(&streams, &events)
	if err != nil {
		return 0, 0, fmt.Errorf("count events of subject: %w", err)
	}
	return streams, events, nil
}

// Held implements forgettable.Ledger.
func (l *Ledger) Held(ctx context.Context, ref keystore.Ref) (bool, error) {
	var held bool
	err := l.pool.QueryRow(ctx, `SELECT held FROM legal_holds WHERE subject_ref = $1 ORDER BY id DESC LIMIT 1`, string(ref)).Scan(&held)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("legal holds: %w", err)
	}
	return held, nil
}

// SetHold implements forgettable.Ledger. A hold is refused, atomically,
// if the subject's erasure has started: the check and the insert run
// under the subject's lock, which StartErasure takes too.
func (l *Ledger) SetHold(ctx context.Context, ref keystore.Ref, held bool, actor, reason string) error {
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := lockSubject(ctx, tx, ref); err != nil {
			return err
		}
		if held {
			e, err := scanErasure(tx.QueryRow(ctx, `SELECT `+erasureColumns+`
FROM erasures e LEFT JOIN erasure_completions c USING (erasure_id) WHERE e.subject_ref = $1`, string(ref)))
			switch {
			case err == nil:
				return &forgettable.ErasureStartedError{Erasure: e}
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO legal_holds (subject_ref, held, actor, reason) VALUES ($1, $2, $3, $4)`,
			string(ref), held, actor, reason)
		return err
	})
	var started *forgettable.ErasureStartedError
	if errors.As(err, &started) {
		return err
	}
	if err != nil {
		return fmt.Errorf("legal hold: %w", err)
	}
	return nil
}

// Readmit implements forgettable.Ledger: only an erasure that completed
// can be followed by a re-admission (checked in the insert's statement).
func (l *Ledger) Readmit(ctx context.Context, erased, successor keystore.Ref, actor, reason string) error {
	tag, err := l.pool.Exec(ctx, `
INSERT INTO readmissions (erased_ref, successor_ref, actor, reason)
SELECT $1, $2, $3, $4 FROM erasures e JOIN erasure_completions c USING (erasure_id) WHERE e.subject_ref = $1`,
		string(erased), string(successor), actor, reason)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return fmt.Errorf("readmit: already re-admitted")
	case err != nil:
		return fmt.Errorf("readmit: %w", err)
	case tag.RowsAffected() == 1:
		return nil
	}
	e, ok, err := l.ErasureOf(ctx, erased)
	switch {
	case err != nil:
		return fmt.Errorf("readmit: %w", err)
	case !ok:
		return forgettable.ErrNotErased
	case e.Completion == nil:
		return forgettable.ErrErasurePending
	}
	return fmt.Errorf("readmit: the erasure completed meanwhile: try again")
}

// Listen calls onErasure with each erased subject reference and onPolicy
// with each changed event type announced by any process, until ctx ends. It
// holds one connection and reconnects on failure; after a reconnection it
// calls onReset, since announcements may have been missed (drop all caches).
func (l *Ledger) Listen(ctx context.Context, log *slog.Logger, onErasure func(keystore.Ref), onPolicy func(eventType string), onReset func()) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listenConn(ctx, onErasure, onPolicy, onReset)
		if ctx.Err() != nil {
			return
		}
		log.Warn("listen for erasures and policy changes: reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (l *Ledger) listenConn(ctx context.Context, onErasure func(keystore.Ref), onPolicy func(string), onReset func()) error {
	conn, err := pgx.ConnectConfig(ctx, l.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	for _, ch := range []string{ErasureChannel, PolicyChannel} {
		if _, err := conn.Exec(ctx, `LISTEN `+ch); err != nil {
			return err
		}
	}
	onReset()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case ErasureChannel:
			onErasure(keystore.Ref(n.Payload))
		case PolicyChannel:
			onPolicy(n.Payload)
		}
	}
}

// ErasedRefs returns every erased subject reference, oldest erasure first.
func (l *Ledger) ErasedRefs(ctx context.Context) ([]keystore.Ref, error) {
	rows, err := l.pool.Query(ctx, `SELECT subject_ref FROM erasures ORDER BY requested_at, erasure_id`)
	if err != nil {
		return nil, fmt.Errorf("erasure ledger: %w", err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("erasure ledger: %w", err)
	}
	out := make([]keystore.Ref, len(refs))
	for i, r := range refs {
		out[i] = keystore.Ref(r)
	}
	return out, nil
}
