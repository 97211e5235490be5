package api_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// A database that takes no writes for now (a standby being promoted after
// a failover: PostgreSQL answers 25006, read-only transaction) is an
// outage: 503 database-unavailable with Retry-After, never a 500. (Found
// by review of the fault drills: HAProxy may route to a new primary a
// moment before its promotion ends.)
func TestReadOnlyDatabaseIsUnavailableNotABug(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	tk := d.tokens(d.server())
	ctx := testenv.Context(t)
	var db string
	if err := d.pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET default_transaction_read_only = on`); err != nil {
		t.Fatal(err)
	}
	// A server started now gets read-only connections.
	hs := d.server()
	ev := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "order-placed", Data: json.RawMessage(`{"total":1}`)}
	status, body, _ := postAppend(t, hs, hs.URL+"/v1/streams/order-1/events", tk.secrets[wire.RoleWriter],
		fmt.Sprintf(`{"events":[{"id":%q,"type":%q,"data":%s}]}`, ev.ID, ev.Type, ev.Data))
	var p wire.Problem
	_ = json.Unmarshal(body, &p)
	if status != 503 || p.Type != "https://lethe.dev/problems/database-unavailable" {
		t.Fatalf("an append to a read-only database: %d %s; want 503 database-unavailable", status, body)
	}
}
