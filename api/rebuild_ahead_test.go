package api_test

import (
	"errors"
	"testing"

	"github.com/lethe-store/lethe/internal/testenv"
)

// A rebuild from a position past the projection's checkpoint (past the
// log's head, say) is refused: the projection would skip the events in
// between, erasure records included, and erasure receipts would then say
// it was cleaned of erasures it never applied. Moving back is allowed.
func TestRebuildAheadOfTheCheckpointIsRefused(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	var at int64
	eventually(t, "analytics catches up", func() error {
		st, err := tk.admin.Projections(ctx)
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Name == "analytics" && s.Lag == 0 && s.Position > 0 {
				at = s.Position
				return nil
			}
		}
		return errors.New("not caught up yet")
	})
	if err := tk.admin.RebuildProjection(ctx, "analytics", at+1<<40); problemType(err) != "invalid-request" {
		t.Fatalf("rebuild from past the head: %v; want 400 invalid-request", err)
	}
	if err := tk.admin.RebuildProjection(ctx, "analytics", at/2); err != nil {
		t.Fatalf("rebuild from an earlier position: %v", err)
	}
}
