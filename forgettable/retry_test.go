package forgettable_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// keysWithoutReads is a key store that hands out current keys but cannot
// read a given version (Vault gone after the append's key was cached).
type keysWithoutReads struct{ keystore.Store }

func (keysWithoutReads) Key(context.Context, keystore.Ref, int) (keystore.Key, error) {
	return keystore.Key{}, keystore.ErrUnavailable
}

// A retried append whose comparison with the stored events cannot be
// made (the key store is down) is that error, never a conflict: the
// client retries, and the retry is not taken for a different event.
func TestRetryComparisonWithVaultDownIsUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a := e.instance()
	seed := eventstoretest.SeedLeadEvents()[0]
	ev := forgettable.Event{EventData: seed, PersonalData: []forgettable.PersonalData{{Subject: casey, Paths: eventstoretest.SeedPersonalPaths(seed.Data)}}}
	if _, err := a.Append(ctx, "lead-12", eventstore.NoStream, ev); err != nil {
		t.Fatal(err)
	}
	// A rotation: the retry is sealed under version 2, so only a
	// comparison of the opened events can recognise it.
	if _, err := a.RotateKey(ctx, casey, "admin", ""); err != nil {
		t.Fatal(err)
	}
	down := forgettable.New(a.events, keysWithoutReads{a.keys}, a.app.Ledger(), a.app.Policies(), forgettable.Options{})
	_, err := down.Append(ctx, "lead-12", eventstore.NoStream, ev)
	if !errors.Is(err, keystore.ErrUnavailable) || errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Fatalf("retry compared with Vault down: %v; want ErrUnavailable, not a duplicate-id conflict", err)
	}
	// With Vault back, the same retry is recognised.
	res, err := a.Append(ctx, "lead-12", eventstore.NoStream, ev)
	if err != nil || !res.Duplicate {
		t.Fatalf("retry with Vault back: %+v, %v; want Duplicate", res, err)
	}
}
