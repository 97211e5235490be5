package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection/postgres"
)

// positions is a DataFree projection that records the position of each
// event it applies and whether it came bare, as DataFree promises (the
// runner's contract; that the catch-up read leaves the data out is
// TestReadAllEach's) (a primary key: an event applied twice fails the
// batch), and for each erasure record the number of events applied before
// it. onBatch, if set, runs in each ApplyBatch's transaction; resets, if
// set, counts the Resets committed.
func positions(onBatch func(batch int), resets *atomic.Int32) postgres.Projection {
	var mu sync.Mutex
	batches := 0
	return postgres.Projection{
		Name:     "positions",
		DataFree: true,
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS read_positions (position bigint PRIMARY KEY, bare boolean NOT NULL);
				CREATE TABLE IF NOT EXISTS read_positions_forgets (subject_ref text, applied_before bigint)`)
			return err
		},
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS read_positions, read_positions_forgets`)
			if resets != nil {
				resets.Add(1)
			}
			return err
		},
		ApplyBatch: func(ctx context.Context, tx pgx.Tx, events []forgettable.RecordedEvent) error {
			mu.Lock()
			batches++
			n := batches
			mu.Unlock()
			if onBatch != nil {
				onBatch(n)
			}
			pos := make([]int64, len(events))
			bare := make([]bool, len(events))
			for i, e := range events {
				pos[i] = e.Position
				bare[i] = e.Data == nil && e.Metadata == nil && e.SubjectRefs == nil
			}
			_, err := tx.Exec(ctx, `INSERT INTO read_positions SELECT * FROM unnest($1::bigint[], $2::boolean[])`, pos, bare)
			return err
		},
		Forget: func(ctx context.Context, tx pgx.Tx, ref string) error {
			_, err := tx.Exec(ctx, `INSERT INTO read_positions_forgets SELECT $1, count(*) FROM read_positions`, ref)
			return err
		},
	}
}

// A projection far behind catches up in runs of many batches read by one
// statement: every event applied once, in order with the erasure records
// between them, with no event data for a DataFree projection; a rebuild
// requested in the middle of a run starts over cleanly.
func TestCatchUpStreams(t *testing.T) {
	e := newEnv(t)
	ctx := testenv.Context(t)
	seedLead(t, e.store, "lead-12")
	appendTicks := func(n int) {
		for i := range n / 10 {
			evs := make([]eventstore.EventData, 10)
			for k := range evs {
				evs[k] = eventstore.EventData{ID: eventstore.NewEventID(), Type: "tick", Data: []byte(fmt.Sprintf(`{"k":%d}`, k))}
			}
			if _, err := e.events.AppendToStream(ctx, fmt.Sprintf("clock-%d", i%9), eventstore.Any, evs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendTicks(300)
	if _, err := e.store.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	var userBefore int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE stream_id NOT LIKE '$%'`).Scan(&userBefore); err != nil {
		t.Fatal(err)
	}
	appendTicks(400)
	var user, system int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE stream_id NOT LIKE '$%'), count(*) FILTER (WHERE stream_id LIKE '$lethe-erasures')
		FROM events`).Scan(&user, &system); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T) {
		t.Helper()
		var n, bare int
		var distinctPositions int
		if err := e.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE bare), count(DISTINCT position) FROM read_positions`).Scan(&n, &bare, &distinctPositions); err != nil {
			t.Fatal(err)
		}
		if n != user || bare != user || distinctPositions != user {
			t.Fatalf("applied %d events (%d bare, %d distinct), want each of %d once, bare", n, bare, distinctPositions, user)
		}
		rows, err := e.pool.Query(ctx, `SELECT subject_ref, applied_before FROM read_positions_forgets`)
		if err != nil {
			t.Fatal(err)
		}
		forgets, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
			Ref    string
			Before int
		}])
		if err != nil {
			t.Fatal(err)
		}
		if len(forgets) != system {
			t.Fatalf("%d erasure records reached Forget, want %d", len(forgets), system)
		}
		for _, f := range forgets {
			if len(f.Ref) != 64 || f.Before != userBefore {
				t.Errorf("Forget(%q) after %d events, want a reference after %d", f.Ref, f.Before, userBefore)
			}
		}
	}

	// Batches of 7: the first step reads a page, the next ones stream up
	// to 700 events each.
	r := e.runner(t, 7, positions(nil, nil))
	if steps := stepToEnd(t, e, r, "positions"); steps > 10 {
		t.Errorf("caught up on %d events in %d steps: not streamed (pages of 7 would take %d)", user, steps, user/7)
	}
	check(t)

	// A rebuild requested during a run: the request waits for the
	// batch's lock, so it is sent from another goroutine.
	var request sync.WaitGroup
	var resets atomic.Int32
	r2 := e.runner(t, 7, positions(func(batch int) {
		if batch == 3 {
			request.Go(func() {
				if err := postgres.RequestRebuild(context.WithoutCancel(ctx), e.pool, "positions", 0); err != nil {
					t.Error(err)
				}
			})
		}
	}, &resets))
	if err := postgres.RequestRebuild(ctx, e.pool, "positions", 0); err != nil {
		t.Fatal(err)
	}
	stepToEnd(t, e, r2, "positions")
	request.Wait()
	stepToEnd(t, e, r2, "positions")
	check(t)
	if n := resets.Load(); n != 2 {
		t.Errorf("%d resets, want 2: the rebuild requested during the run was not honoured", n)
	}
}

// stepToEnd steps a projection until its checkpoint is at the end of the
// log with no rebuild pending, and returns how many steps applied
// something. (The log's horizon is the cluster's: a transaction of a test
// running beside this one can hold the last events back for a moment.)
func stepToEnd(t *testing.T, e *env, r *postgres.Runner, name string) (steps int) {
	t.Helper()
	ctx := testenv.Context(t)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		n, more, err := r.Step(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			steps++
		}
		if n > 0 || more {
			continue
		}
		var done bool
		if err := e.pool.QueryRow(ctx, `SELECT c.position >= (SELECT max(position) FROM events) AND NOT c.reset_requested
			FROM projection_checkpoints c WHERE c.name = $1`, name).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			return steps
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never reached the end of the log", name)
	return steps
}
