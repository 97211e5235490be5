package api_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/internal/testenv"
)

// A legal hold on a subject whose erasure has started is refused with 409
// erasure-started naming the erasure, and records no hold.
func TestHoldAfterErasureStartedIsRefused(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	receipt, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tk.admin.SetHold(ctx, casey, true, "litigation")
	var p *wire.Problem
	if !errors.As(err, &p) || p.Status != http.StatusConflict || p.Type != api.ProblemTypeBase+"erasure-started" || p.ErasureID != receipt.ErasureID {
		t.Fatalf("hold after the erasure: %v (%+v); want 409 erasure-started naming %s", err, p, receipt.ErasureID)
	}
	var holds int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM legal_holds`).Scan(&holds); err != nil || holds != 0 {
		t.Errorf("legal holds recorded: %d, %v; want none", holds, err)
	}
}
