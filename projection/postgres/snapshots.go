package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/projection"
)

// Snapshots stores state snapshots in the snapshots table (migration 006).
type Snapshots struct{ pool *pgxpool.Pool }

// NewSnapshots returns the snapshot store of a database.
func NewSnapshots(pool *pgxpool.Pool) *Snapshots { return &Snapshots{pool: pool} }

var _ projection.SnapshotStore = (*Snapshots)(nil)

// Latest implements projection.SnapshotStore.
func (s *Snapshots) Latest(ctx context.Context, streamID string, maxVersion int64, at *time.Time) (projection.Snapshot, bool, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT snapshot FROM snapshots WHERE stream_id = $1 AND version <= $2 AND ($3::timestamptz IS NULL OR recorded_at <= $3)
		ORDER BY version DESC LIMIT 1`, streamID, maxVersion, at).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return projection.Snapshot{}, false, nil
	}
	if err != nil {
		return projection.Snapshot{}, false, fmt.Errorf("snapshot of %s: %w", streamID, err)
	}
	var snap projection.Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return projection.Snapshot{}, false, fmt.Errorf("snapshot of %s: %w", streamID, err)
	}
	return snap, true, nil
}

// Save implements projection.SnapshotStore. Saving a version twice keeps
// the first.
func (s *Snapshots) Save(ctx context.Context, snap projection.Snapshot) error {
	raw, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO snapshots (stream_id, version, recorded_at, snapshot, subject_refs) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT DO NOTHING`, snap.StreamID, snap.Version, snap.UpdatedAt, raw, snap.SubjectRefs())
	return err
}
