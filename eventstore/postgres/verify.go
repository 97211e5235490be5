package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/lethe-store/lethe/eventstore"
)

// verifySQL reads the events as stored, in primary key order, for the
// hash-chain check. Data and metadata come as text, which is cheaper to
// produce than jsonb's binary form and canonicalises the same.
const verifySQL = `SELECT stream_id, version, position, event_id, type, data::text, metadata::text, recorded_at, actor, link, subject_refs
FROM events`

// VerifyChains checks the hash chain of one stream, or of every stream when
// streamID is "", against the events as stored, and hands fn one report
// per stream in stream id order (docs/architecture.md "The hash chain").
// It reads in one read-only REPEATABLE READ transaction, in primary key
// order, one event at a time: memory does not grow with the store. It
// returns fn's first error, which stops the check, and ErrStreamNotFound
// for a streamID with no events. A broken chain is not an error: it is in
// the report.
//
// Only what the store holds can be checked: a stream cut short at its end,
// or deleted whole, leaves a chain that holds. Those are found against the
// heads quoted in exports (LinksAt).
func (s *Store) VerifyChains(ctx context.Context, streamID string, fn func(eventstore.ChainReport) error) error {
	q, args := verifySQL+` ORDER BY stream_id, version`, []any(nil)
	if streamID != "" {
		if err := eventstore.ValidateStreamID(streamID); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		q, args = verifySQL+` WHERE stream_id = $1 ORDER BY stream_id, version`, []any{streamID}
	}
	found := false
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// JIT would compile the plan of a whole-table read before its
		// first row, for nothing.
		if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			v       eventstore.ChainVerifier
			e       eventstore.RecordedEvent
			id      pgtype.UUID
			actor   pgtype.Text
			current string
			started bool
		)
		for rows.Next() {
			if err := rows.Scan(&e.StreamID, &e.Version, &e.Position, &id, &e.Type, (*[]byte)(&e.Data), (*[]byte)(&e.Metadata),
				&e.RecordedAt, &actor, &e.Link, &e.SubjectRefs); err != nil {
				return err
			}
			e.ID, e.Actor = id.Bytes, actor.String
			if !started || e.StreamID != current {
				if started {
					if err := fn(v.Report()); err != nil {
						return err
					}
				}
				current, started = e.StreamID, true
				v.Reset(current)
			}
			v.Add(e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if started {
			found = true
			return fn(v.Report())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if streamID != "" && !found {
		return fmt.Errorf("verify: stream %s: %w", streamID, eventstore.ErrStreamNotFound)
	}
	return nil
}

// StoredLink is what LinksAt found at a stream and version.
type StoredLink struct {
	// Found is false when the stream has no event at that version.
	Found bool
	// Link is the event's link; nil for an event stored before links
	// existed.
	Link []byte
}

// LinksAt returns the links stored at the given places (streams[i],
// versions[i]), in one statement: how `lethe verify --file` checks the
// chain heads an export quotes against the store. A head that is no longer
// there (the stream was cut short or deleted), or is another link, means
// the store no longer holds what the export recorded.
func (s *Store) LinksAt(ctx context.Context, streams []string, versions []int64) ([]StoredLink, error) {
	if len(streams) != len(versions) {
		return nil, fmt.Errorf("links at: %d streams, %d versions", len(streams), len(versions))
	}
	rows, err := s.pool.Query(ctx, `SELECT e.version IS NOT NULL, e.link
FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS q(stream_id, version, ord)
LEFT JOIN events e ON e.stream_id = q.stream_id AND e.version = q.version
ORDER BY q.ord`, streams, versions)
	if err != nil {
		return nil, fmt.Errorf("links at: %w", err)
	}
	out := make([]StoredLink, 0, len(streams))
	for rows.Next() {
		var l StoredLink
		if err := rows.Scan(&l.Found, &l.Link); err != nil {
			rows.Close()
			return nil, fmt.Errorf("links at: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("links at: %w", err)
	}
	if len(out) != len(streams) {
		return nil, fmt.Errorf("links at: %d answers for %d places", len(out), len(streams))
	}
	return out, nil
}
