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

// cancelAfterCreate is a key store whose CurrentKey ends the caller's
// request right after a key was created: the client went away.
type cancelAfterCreate struct {
	keystore.Store
	cancel context.CancelFunc
}

func (k cancelAfterCreate) CurrentKey(ctx context.Context, ref keystore.Ref) (keystore.Key, bool, error) {
	key, created, err := k.Store.CurrentKey(ctx, ref)
	if created {
		k.cancel()
	}
	return key, created, err
}

// An append for an erased subject creates a key before the ledger is
// asked; the check that destroys it again runs even if the request has
// ended by then, so no erased reference keeps a key.
func TestKeyCreatedForAnErasedSubjectIsDestroyedEvenIfTheClientLeaves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a := e.instance()
	seedLead(t, a, "lead-12")
	if _, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "dpo"}); err != nil {
		t.Fatal(err)
	}
	ref, err := a.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}

	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := forgettable.New(a.events, cancelAfterCreate{a.keys, cancel}, a.app.Ledger(), a.app.Policies(), forgettable.Options{})
	seed := eventstoretest.SeedLeadEvents()[0]
	seed.ID = eventstore.NewEventID()
	ev := forgettable.Event{EventData: seed, PersonalData: []forgettable.PersonalData{{Subject: casey, Paths: eventstoretest.SeedPersonalPaths(seed.Data)}}}
	if _, err := s.Append(reqCtx, "lead-99", eventstore.NoStream, ev); err == nil {
		t.Fatal("an append of an erased subject's data succeeded")
	}
	// A fresh process asks Vault: the key must be gone.
	fresh := e.instance()
	if _, err := fresh.keys.Key(ctx, ref, 1); !errors.Is(err, keystore.ErrKeyNotFound) {
		t.Fatalf("the erased subject's key after the abandoned append: %v; want ErrKeyNotFound (destroyed)", err)
	}
}
