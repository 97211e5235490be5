package forgettable_test

import (
	"testing"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// The database refuses any new event for an erased reference, strictly:
// an append that passed the fence's check before the erasure started
// commits before the erasure is recorded (the erasure waits for it), and
// is counted in the erasure's eventsAffected. Two connections, in a fixed
// order: the append's transaction is open (its row inserted, the check
// passed) when the erasure begins.
func TestFencedAppendCommitsBeforeTheErasureStarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a := e.instance()
	seedLead(t, a, "lead-12")
	ref, err := a.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}
	var before int64
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE subject_refs @> ARRAY[$1]::text[]`, string(ref)).Scan(&before); err != nil {
		t.Fatal(err)
	}

	// The append: its row inserted (the fence trigger ran), not committed.
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `
INSERT INTO events (position, stream_id, version, event_id, type, data, metadata, subject_refs, link)
VALUES ((pg_current_xact_id()::text::bigint << 16), 'lead-77', 0, $1, 'contacted', '{}', '{}', ARRAY[$2]::text[], decode(repeat('00', 32), 'hex'))`,
		eventstore.NewEventID().String(), string(ref)); err != nil {
		t.Fatal(err)
	}

	type result struct {
		e   forgettable.Erasure
		err error
	}
	done := make(chan result, 1)
	go func() {
		er, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "dpo"})
		done <- result{er, err}
	}()
	// The erasure must wait for the append: it may not be recorded while
	// an append that passed the fence is uncommitted.
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case r := <-done:
			t.Fatalf("the erasure completed (%+v, %v) while an append carrying the subject, past the fence, was uncommitted", r.e.Completion, r.err)
		default:
		}
		var waiting int
		if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the erasure neither waited for the append nor completed within 15 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit the append: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("erasure: %v", r.err)
	}
	if c := r.e.Completion; c == nil || c.EventsAffected != before+1 {
		t.Fatalf("erasure completion %+v; want %d events affected (the append committed before it started)", c, before+1)
	}
}
