package api_test

import (
	"encoding/json"
	"testing"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// "Retries are safe": the same request again is 200 with the original
// versions. The store decides "identical" by comparing the stored (sealed)
// data with the newly sealed data, so an identical retry with personal
// data after the subject's key was rotated (lethe subject rotate-key) —
// or after a protection policy for the type was added — is sealed
// differently and answered 409 duplicate-event-id, which the docs reserve
// for an id "already stored with different content".
func TestIdenticalRetryAfterKeyRotation(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	subject := testenv.Name("rot") + "@example.com"
	ev := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized",
		Data:         json.RawMessage(`{"first-name":"Ash"}`),
		PersonalData: []wire.PersonalData{{Subject: subject, Paths: []string{"/first-name"}}}}
	first, err := tk.writer.Append(ctx, "lead-77", wire.Exact(-1), ev)
	if err != nil {
		t.Fatal(err)
	}

	// An operator rotates the subject's key (as lethe subject rotate-key
	// does, through another process).
	admin := d.open().Store()
	if _, err := admin.RotateKey(ctx, subject, "test", ""); err != nil {
		t.Fatal(err)
	}
	// The client retries (its first answer was lost); the load balancer
	// sends the retry to another server (stateless servers), or the same
	// one after its key cache expired (5 minutes).
	b := d.server()
	writerB := client.New(b.URL, tk.secrets[wire.RoleWriter], b.Client())
	again, err := writerB.Append(ctx, "lead-77", wire.Exact(-1), ev)
	if err != nil {
		t.Fatalf("identical retry after a key rotation: %v (%s); want 200 with %+v", err, problemType(err), first.AppendResult)
	}
	if !again.Duplicate || again.AppendResult != first.AppendResult {
		t.Errorf("identical retry: %+v, want 200 with %+v", again, first.AppendResult)
	}
}
