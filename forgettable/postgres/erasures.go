package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/lethe-store/lethe/forgettable"
)

// The erasure proofs (GET /v1/erasures, lethe erasures list|get): reads of
// the erasure ledger and of the log, without personal data.

// erasureDeadlineSQL is forgettable.ErasureDeadline in SQL: one calendar
// month after the request, counted in UTC whatever the session's time
// zone (a timestamp without time zone adds a month by the calendar and
// clamps to the month's last day).
const erasureDeadlineSQL = `((e.requested_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'`

// ListErasures returns a page of the erasure ledger, newest request first,
// as q selects. The order, (requested_at, erasure_id) descending, is total,
// so a listing continued with q.After neither skips nor repeats an erasure.
func (l *Ledger) ListErasures(ctx context.Context, q forgettable.ErasureQuery) ([]forgettable.Erasure, error) {
	if q.Limit < 1 {
		return nil, errors.New("list erasures: the limit must be at least 1")
	}
	// Only the conditions asked for: a generic plan of "$1 IS NULL OR ..."
	// could not use the index on requested_at. The fragments are fixed
	// text; every value is a parameter.
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !q.From.IsZero() {
		where = append(where, "e.requested_at >= "+arg(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "e.requested_at < "+arg(q.To))
	}
	if q.After != nil {
		// The first condition is implied by the second, and lets the
		// index on requested_at start the scan at the cursor.
		at := arg(q.After.RequestedAt)
		where = append(where, "e.requested_at <= "+at, "(e.requested_at, e.erasure_id) < ("+at+", "+arg(pgtype.UUID{Bytes: q.After.ID, Valid: true})+")")
	}
	switch q.Status {
	case forgettable.ErasuresAll:
	case forgettable.ErasuresPending:
		where = append(where, "c.erasure_id IS NULL")
	case forgettable.ErasuresCompleted:
		where = append(where, "c.erasure_id IS NOT NULL")
	case forgettable.ErasuresOverdue:
		if q.Now.IsZero() {
			return nil, errors.New("list overdue erasures: no time to judge them at")
		}
		where = append(where, "((c.erasure_id IS NULL AND "+arg(q.Now)+"::timestamptz > "+erasureDeadlineSQL+") OR c.completed_at > "+erasureDeadlineSQL+")")
	default:
		return nil, fmt.Errorf("list erasures: unknown status %q", string(q.Status))
	}
	sql := `SELECT ` + erasureColumns + ` FROM erasures e LEFT JOIN erasure_completions c USING (erasure_id)`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY e.requested_at DESC, e.erasure_id DESC LIMIT " + arg(q.Limit)
	rows, err := l.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list erasures: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (forgettable.Erasure, error) { return scanErasure(row) })
	if err != nil {
		return nil, fmt.Errorf("list erasures: %w", err)
	}
	return out, nil
}

// ErasureProof returns what the ledger and the log hold about an erasure:
// its entry, its records in $lethe-erasures and a page of the streams whose
// events carry the subject's reference — those after streamsAfter ("" from
// the start), in byte order, at most streamsLimit. All three are read in one
// snapshot. The streams come from the GIN index on events.subject_refs: each
// page reads the index entries of all the subject's events (one per event),
// then sorts their distinct streams. Returns ErrErasureNotFound (wrapped) if
// the ledger has no such erasure.
func (l *Ledger) ErasureProof(ctx context.Context, id [16]byte, streamsAfter string, streamsLimit int) (forgettable.ErasureProof, error) {
	if streamsLimit < 1 {
		return forgettable.ErasureProof{}, errors.New("erasure proof: the streams limit must be at least 1")
	}
	var p forgettable.ErasureProof
	err := pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		e, err := scanErasure(tx.QueryRow(ctx, `SELECT `+erasureColumns+`
FROM erasures e LEFT JOIN erasure_completions c USING (erasure_id) WHERE e.erasure_id = $1`, pgtype.UUID{Bytes: id, Valid: true}))
		if errors.Is(err, pgx.ErrNoRows) {
			return forgettable.ErrErasureNotFound
		}
		if err != nil {
			return err
		}
		p.Erasure = e
		fenced, erased := forgettable.ErasureRecordIDs(id)
		rows, err := tx.Query(ctx, `SELECT event_id, type, position, recorded_at FROM events
WHERE event_id = ANY ($1) AND stream_id = $2 ORDER BY position`,
			[]pgtype.UUID{{Bytes: fenced, Valid: true}, {Bytes: erased, Valid: true}}, forgettable.ErasedStreamID)
		if err != nil {
			return err
		}
		p.Records, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (forgettable.ErasureRecord, error) {
			var r forgettable.ErasureRecord
			var eid pgtype.UUID
			err := row.Scan(&eid, &r.Type, &r.Position, &r.RecordedAt)
			r.EventID, r.RecordedAt = eid.Bytes, r.RecordedAt.UTC()
			return r, err
		})
		if err != nil {
			return err
		}
		// The predicate repeats the partial index's condition, so that the
		// planner may use it.
		rows, err = tx.Query(ctx, `SELECT DISTINCT stream_id FROM events
WHERE subject_refs @> ARRAY[$1::text] AND subject_refs IS NOT NULL AND subject_refs <> '{}' AND stream_id > $2
ORDER BY stream_id LIMIT $3`, string(e.Ref), streamsAfter, streamsLimit+1)
		if err != nil {
			return err
		}
		p.Streams, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(p.Streams) > streamsLimit {
			p.Streams, p.MoreStreams = p.Streams[:streamsLimit], true
		}
		return nil
	})
	if err != nil {
		return forgettable.ErasureProof{}, fmt.Errorf("erasure %s: %w", uuidText(id), err)
	}
	return p, nil
}

func uuidText(id [16]byte) string {
	return pgtype.UUID{Bytes: id, Valid: true}.String()
}
