package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/devenv"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/projection/postgres"
)

// Forget fences the subject in the ledger (reads show "forgotten" at
// once) and appends the subject-fenced record before Vault is asked. With
// Vault down the erasure stops after the fence, left pending: the record
// must still reach the lookup index, so that no value of the subject's
// finds the stream any more.
func TestFencedErasureReachesLookup(t *testing.T) {
	ctx := testenv.Context(t)
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := devenv.VaultBinary(root)
	if err != nil {
		t.Fatal(err)
	}
	v, err := devenv.StartVault(ctx, devenv.VaultOptions{Bin: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background())
	e := openEnv(t, app.VaultConfig{Client: testenv.VaultClient(t, v.Addr(), v.RootToken())})
	keys := e.keys
	seedLead(t, e.store, "lead-12")
	r := e.runner(t, 100, postgres.Lookup(keys))
	catchUp(t, e, r, postgres.LookupName)
	if got, err := postgres.LookupStreams(ctx, e.pool, keys, "lead", "/phone-number", "555-2951"); err != nil || len(got) != 1 {
		t.Fatalf("lookup before the erasure = %v, %v", got, err)
	}

	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "test"}); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("forget, Vault down: %v", err)
	}
	// The subject is erased as far as reads go...
	evs, err := e.store.ReadStream(ctx, "lead-12", eventstore.ReadStreamOptions{}, forgettable.Personal)
	if err != nil || len(evs[0].Redacted) == 0 {
		t.Fatalf("read after the fenced erasure: %v, %v", evs, err)
	}
	// ...but not for the read models.
	catchUp(t, e, r, postgres.LookupName)
	if got, err := postgres.LookupStreams(ctx, e.pool, keys, "lead", "/phone-number", "555-2951"); err != nil || len(got) != 0 {
		t.Errorf("lookup by the erased subject's phone = %v, %v; want nothing", got, err)
	}
}
