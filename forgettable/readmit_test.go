package forgettable_test

import (
	"errors"
	"testing"

	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
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
	ref := pendingErasure(t, e, a)
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
