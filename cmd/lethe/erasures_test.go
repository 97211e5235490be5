package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	projpg "github.com/lethe-store/lethe/projection/postgres"
)

// lethe erasures list and get read the ledger from PostgreSQL: the
// deadline report (an old pending request is overdue) and the full
// receipt, the same document as the API's, for the subject's file.
func TestErasuresCommands(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	e.vars["USER"] = "dpo"
	ctx, pool, store := e.ctx, e.pool, e.store
	cli := e.run
	for _, stream := range []string{"lead-2", "lead-1"} {
		if _, err := store.Append(ctx, stream, eventstore.NoStream, forgettable.Event{
			EventData:    eventstore.EventData{ID: eventstore.NewEventID(), Type: "lead-initialized", Data: json.RawMessage(`{"first-name":"Ada"}`)},
			PersonalData: []forgettable.PersonalData{{Subject: "ada@example.com", Paths: []string{"/first-name"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// A projection whose checkpoint is past everything, and one that is
	// being rebuilt from scratch.
	if _, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, position) VALUES ('lookup', 9223372036854775807)`); err != nil {
		t.Fatal(err)
	}
	if err := projpg.RequestRebuild(ctx, pool, projpg.AnalyticsName, 0); err != nil {
		t.Fatal(err)
	}
	out, err := cli("ada@example.com\n", "subject", "erase", "--subject", "-", "--legal-basis", "GDPR Art. 17(1)(a)", "--request-id", "DSR-7")
	var erased wire.ErasureReceipt
	if err != nil || json.Unmarshal([]byte(out), &erased) != nil || erased.Status != "completed" || erased.CompletedAt == nil || erased.Overdue || erased.Deadline.IsZero() {
		t.Fatalf("subject erase = %s, %v", out, err)
	}
	// A request recorded 40 days ago and never completed.
	pendingID := eventstore.NewEventID()
	if _, err := pool.Exec(ctx, `INSERT INTO erasures (erasure_id, subject_ref, requested_at, actor) VALUES ($1, $2, now() - interval '40 days', 'cli:dpo')`,
		pgtype.UUID{Bytes: pendingID, Valid: true}, strings.Repeat("ab", 32)); err != nil {
		t.Fatal(err)
	}

	list := func(args ...string) []wire.ErasureReceipt {
		t.Helper()
		out, err := cli("", append([]string{"erasures", "list"}, args...)...)
		var l wire.ErasureList
		if err != nil || json.Unmarshal([]byte(out), &l) != nil {
			t.Fatalf("erasures list %v = %s, %v", args, out, err)
		}
		return l.Erasures
	}
	if l := list(); len(l) != 2 || l[0].ErasureID != erased.ErasureID || l[1].ErasureID != pendingID.String() {
		t.Errorf("erasures list = %+v", l)
	}
	if l := list("--status", "overdue"); len(l) != 1 || l[0].ErasureID != pendingID.String() || !l[0].Overdue || l[0].Status != "pending" || l[0].CompletedAt != nil {
		t.Errorf("erasures list --status overdue = %+v", l)
	}
	if l := list("--status", "completed", "--from", erased.RequestedAt.Format(time.RFC3339Nano)); len(l) != 1 || l[0].ErasureID != erased.ErasureID {
		t.Errorf("erasures list --status completed --from = %+v", l)
	}
	if l := list("--to", erased.RequestedAt.AddDate(0, 0, -1).Format(time.RFC3339)); len(l) != 1 || l[0].ErasureID != pendingID.String() {
		t.Errorf("erasures list --to = %+v", l)
	}

	out, err = cli("", "erasures", "get", "--id", erased.ErasureID)
	var r wire.ErasureReceipt
	if err != nil || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("erasures get = %s, %v", out, err)
	}
	if r.Completion == nil || !r.Completion.KeyVerifiedGone || r.Completion.StreamsAffected != 2 || r.RequestID != "DSR-7" || r.Actor != "cli:dpo" ||
		!slices.Equal(r.Streams, []string{"lead-1", "lead-2"}) || r.StreamsNext != "" || len(r.Records) != 2 {
		t.Errorf("receipt = %s", out)
	}
	want := map[string]bool{"lookup": true, projpg.AnalyticsName: false}
	if len(r.Projections) != 2 {
		t.Errorf("projections = %+v", r.Projections)
	}
	for _, p := range r.Projections {
		if p.Cleaned != want[p.Name] || p.RebuildPending != (p.Name == projpg.AnalyticsName) {
			t.Errorf("projection %+v, want cleaned %v", p, want[p.Name])
		}
	}
	if strings.Contains(out, "ada@example.com") || strings.Contains(out, "Ada") {
		t.Errorf("the receipt names the subject: %s", out)
	}
	// lethe subject status prints the same document.
	status, err := cli("ada@example.com\n", "subject", "status", "--subject", "-")
	if err != nil || status != out {
		t.Errorf("subject status = %s, %v\nwant %s", status, err, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"erasures", "get", "--id", eventstore.NewEventID().String()}, "no erasure"},
		{[]string{"erasures", "get", "--id", "nope"}, "not an erasure id"},
		{[]string{"erasures", "get"}, "needs --id"},
		{[]string{"erasures", "list", "--status", "late"}, "--status"},
		{[]string{"erasures", "list", "--from", "yesterday"}, "--from"},
		{[]string{"erasures", "frob"}, "unknown erasures command"},
		{[]string{"erasures"}, "no erasures command"},
	} {
		if out, err := cli("", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v = %v (%s), want an error with %q", tc.args, err, out, tc.want)
		}
	}
}
