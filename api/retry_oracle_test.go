package api_test

import (
	"encoding/json"
	"testing"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/internal/testenv"
)

// A writer that did not write an event learns nothing of its personal
// data by resending its id: a right guess and a wrong one get the same
// 409 duplicate-event-id. The writer that wrote it still has its
// idempotent retry (200, Duplicate).
func TestRetryByAnotherWriterRevealsNothing(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	seed := seedLead()
	first, err := tk.writer.Append(ctx, "lead-12", wire.Exact(-1), seed[0])
	if err != nil {
		t.Fatal(err)
	}
	other, err := tk.admin.CreateToken(ctx, "another-writer", wire.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	probe := client.New(hs.URL, other.Secret, hs.Client())

	right := seed[0]
	wrong := seed[0]
	var m map[string]any
	if err := json.Unmarshal(wrong.Data, &m); err != nil {
		t.Fatal(err)
	}
	m["first-name"] = "Robin" // a wrong guess
	wrong.Data, _ = json.Marshal(m)
	for name, ev := range map[string]wire.NewEvent{"right guess": right, "wrong guess": wrong} {
		_, err := probe.Append(ctx, "lead-12", wire.Exact(-1), ev)
		if got := problemType(err); got != "duplicate-event-id" {
			t.Errorf("another writer resending the id with the %s: %v (%s); want 409 duplicate-event-id either way", name, err, got)
		}
	}
	again, err := tk.writer.Append(ctx, "lead-12", wire.Exact(-1), right)
	if err != nil || !again.Duplicate || again.AppendResult != first.AppendResult {
		t.Errorf("the writer's own retry: %+v, %v; want 200 Duplicate with %+v", again, err, first.AppendResult)
	}
}
