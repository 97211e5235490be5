package forgettable_test

import (
	"errors"
	"testing"

	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// A subject whose erasure is pending (its key not destroyed yet) cannot be
// re-admitted: that would strand the erasure (its subject would continue
// under a new reference, and erasing "again" would erase the new one).
// Once the erasure completes, re-admission works.
func TestReadmitWaitsForTheErasureToComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a := e.instance()
	seedLead(t, a, "lead-12")
	dead, err := e.vault.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.SetAddress("http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	dead.SetToken(e.vault.Client.Token())
	dead.SetMaxRetries(0)
	down := *e
	down.vault = app.VaultConfig{Client: dead, Mount: e.vault.Mount, Prefix: e.vault.Prefix}
	ref, err := a.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.instance().ForgetRef(ctx, ref, forgettable.ErasureRequest{Actor: "dpo"}); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("erase with Vault down: %v; want it pending", err)
	}
	if _, err := a.Readmit(ctx, casey, "dpo", "came back"); !errors.Is(err, forgettable.ErrErasurePending) {
		t.Fatalf("readmit with the erasure pending: %v; want ErrErasurePending", err)
	}
	done, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "dpo"})
	if err != nil || done.Completion == nil || done.Ref != ref {
		t.Fatalf("erase again: %+v, %v; want the pending erasure of %s completed", done, err, ref)
	}
	if _, err := a.Readmit(ctx, casey, "dpo", "came back"); err != nil {
		t.Fatalf("readmit after the erasure completed: %v", err)
	}
}
