package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/projection"
	"github.com/lethe-store/lethe/projection/postgres"
)

// vaultDown is a key store whose Vault cannot be reached for keys.
type vaultDown struct{ keystore.Store }

func (vaultDown) Key(context.Context, keystore.Ref, int) (keystore.Key, error) {
	return keystore.Key{}, keystore.ErrUnavailable
}

// A state loaded through a snapshot: the snapshot holds no personal value
// in the clear; a Vault outage is an error, never a redaction; and an
// erasure left pending (the subject fenced in the ledger, its key still in
// Vault) shows the subject's fields as forgotten, as reads of the events
// do: the snapshot's read asks the erasure ledger.
func TestSnapshotLoads(t *testing.T) {
	e := newEnv(t)
	ctx := testenv.Context(t)
	seedLead(t, e.store, "lead-12")
	loader := &projection.Loader{Events: e.events, Snapshots: postgres.NewSnapshots(e.pool), Opener: e.store, Every: 3}
	first := func(l *projection.Loader) (projection.Loaded, map[string]any, error) {
		t.Helper()
		got, err := l.Load(ctx, "lead-12", projection.UpTo{Version: -1}, forgettable.Personal)
		if err != nil {
			return got, nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(got.State.State, &m); err != nil {
			t.Fatal(err)
		}
		return got, m, nil
	}
	got, m, err := first(loader)
	if err != nil || got.Folded != 7 || m["first-name"] != "Casey" {
		t.Fatalf("first load = %+v %v, %v", got, m, err)
	}
	var snaps, clear int
	if err := e.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE snapshot::text ~ '(Casey|David|Davis|555-)') FROM snapshots`).Scan(&snaps, &clear); err != nil || snaps != 1 || clear != 0 {
		t.Fatalf("snapshots: %d, %d with personal data in the clear (%v)", snaps, clear, err)
	}
	got, m, err = first(loader)
	if err != nil || got.Folded != 0 || m["first-name"] != "Casey" || m["phone-number"] != "555-8101" || len(got.State.Redacted) != 0 {
		t.Fatalf("load from the snapshot = %+v %v, %v", got, m, err)
	}

	down := forgettable.New(e.events, vaultDown{e.keys}, e.app.Ledger(), e.app.Policies(), forgettable.Options{})
	if _, _, err := first(&projection.Loader{Events: e.events, Snapshots: postgres.NewSnapshots(e.pool), Opener: down}); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("load from the snapshot, Vault down: %v; want ErrUnavailable", err)
	}

	ref, err := e.store.SubjectRef(ctx, eventstoretest.SeedSubject)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.app.Ledger().StartErasure(ctx, forgettable.Erasure{ID: [16]byte(eventstore.NewEventID()), Ref: ref, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	got, m, err = first(loader)
	if err != nil || got.Folded != 0 || m["first-name"] != nil || m["phone-number"] != nil || m["status"] != "converted" {
		t.Fatalf("load from the snapshot, erasure pending = %+v %v, %v", got, m, err)
	}
	if len(got.State.Redacted) != 3 || got.State.Redacted[0].Reason != forgettable.ReasonForgotten {
		t.Errorf("redacted %+v, want the three personal fields forgotten", got.State.Redacted)
	}
}
