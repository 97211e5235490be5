package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// The admin commands against real PostgreSQL and Vault, with the
// least-privilege Vault token the tests use.
func TestSubjectAndPolicyCommands(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	ctx, pool, store, mount, prefix := e.ctx, e.pool, e.store, e.mount, e.prefix
	cli := e.run

	// A policy, through the CLI.
	if out, err := cli("", "policy", "put", "--type", "lead-initialized", "--paths", "/first-name,/phone-number"); err != nil {
		t.Fatalf("policy put: %v\n%s", err, out)
	}
	if out, err := cli("", "policy", "put", "--type", "x", "--paths", "/a,/a/b"); err == nil {
		t.Fatalf("overlapping policy paths accepted: %s", out)
	}
	out, err := cli("", "policy", "list")
	if err != nil || !strings.Contains(out, `"/phone-number"`) || !strings.Contains(out, `"cli:tester"`) {
		t.Fatalf("policy list = %s, %v", out, err)
	}

	// Data for a subject, through the Go API.
	if _, err := store.Append(ctx, "lead-1", eventstore.NoStream, forgettable.Event{
		EventData:    eventstore.EventData{ID: eventstore.NewEventID(), Type: "lead-initialized", Data: json.RawMessage(`{"first-name":"Ada","phone-number":"555-1"}`)},
		PersonalData: []forgettable.PersonalData{{Subject: "ada@example.com"}}}); err != nil {
		t.Fatal(err)
	}

	// The subject's access export, recorded in the access log.
	out, err = cli("", "subject", "export", "--subject", "ada@example.com")
	var export wire.SubjectExport
	if err != nil || json.Unmarshal([]byte(out), &export) != nil || !export.Complete || export.Count != 1 || !strings.Contains(string(export.Events[0].Data), `"Ada"`) {
		t.Fatalf("subject export = %s, %v", out, err)
	}
	var logged int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE token_id = 'cli:tester' AND route = 'lethe subject export' AND subject_refs = ARRAY[$1]`,
		export.SubjectRef).Scan(&logged); err != nil || logged != 1 {
		t.Fatalf("access log rows of the CLI export: %d, %v", logged, err)
	}

	// Hold, refused erase, release, erase with the id on stdin, status.
	if out, err := cli("ada@example.com\n", "subject", "hold", "--subject", "-", "--reason", "case 7"); err != nil {
		t.Fatalf("hold: %v %s", err, out)
	}
	if out, err := cli("ada@example.com\n", "subject", "erase", "--subject", "-"); err == nil || !strings.Contains(err.Error(), "legal hold") {
		t.Fatalf("erase under hold: %v %s", err, out)
	}
	if out, err := cli("ada@example.com\n", "subject", "release", "--subject", "-"); err != nil {
		t.Fatalf("release: %v %s", err, out)
	}
	// Before the erasure, status names her reference (for the audit
	// export's --subject-ref), never her id.
	before, err := cli("ada@example.com\n", "subject", "status", "--subject", "-")
	if err != nil || strings.Contains(before, "ada@") {
		t.Fatalf("status before the erasure: %s, %v", before, err)
	}
	var notErased struct{ Status, SubjectRef string }
	if err := json.Unmarshal([]byte(before), &notErased); err != nil || notErased.Status != "not erased" || len(notErased.SubjectRef) != 64 {
		t.Fatalf("status before the erasure: %q (%v)", before, err)
	}
	out, err = cli("ada@example.com\n", "subject", "erase", "--subject", "-", "--legal-basis", "GDPR Art. 17(1)(a)", "--request-id", "REQ-1")
	if err != nil {
		t.Fatalf("erase: %v %s", err, out)
	}
	var receipt struct {
		ErasureID  string `json:"erasureId"`
		SubjectRef string `json:"subjectRef"`
		Status     string `json:"status"`
		Actor      string `json:"actor"`
		Completion struct {
			KeyVerifiedGone bool  `json:"keyVerifiedGone"`
			EventsAffected  int64 `json:"eventsAffected"`
		} `json:"completion"`
	}
	if err := json.Unmarshal([]byte(out), &receipt); err != nil {
		t.Fatalf("receipt %q: %v", out, err)
	}
	if receipt.Status != "completed" || !receipt.Completion.KeyVerifiedGone || receipt.Completion.EventsAffected != 1 || receipt.Actor != "cli:tester" || receipt.SubjectRef != notErased.SubjectRef {
		t.Fatalf("receipt = %+v", receipt)
	}
	if strings.Contains(out, "ada@example.com") {
		t.Errorf("the receipt names the subject: %s", out)
	}
	if out, err := cli("", "subject", "export", "--subject", "ada@example.com"); err == nil || !strings.Contains(err.Error(), receipt.ErasureID) || strings.Contains(out, "Ada") {
		t.Fatalf("export after the erasure: %v %s", err, out)
	}
	status, err := cli("", "subject", "status", "--subject", "ada@example.com")
	if err != nil || !strings.Contains(status, receipt.ErasureID) {
		t.Fatalf("status = %s, %v", status, err)
	}
	// After a Vault restore from an old backup, reapply destroys the key
	// again. (Simulated: put a key back at the erased subject's path.)
	root := testenv.VaultRoot(t)
	if _, err := root.KVv2(mount).Put(ctx, prefix+"/subjects/"+receipt.SubjectRef, map[string]any{"current": "1", "k1": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}); err != nil {
		t.Fatal(err)
	}
	out, err = cli("", "erasures", "reapply")
	if err != nil || !strings.Contains(out, "1 erasures checked, 1 restored keys destroyed again") {
		t.Fatalf("reapply = %s, %v", out, err)
	}
	if out, err := cli("", "erasures", "reapply"); err != nil || !strings.Contains(out, "0 restored keys") {
		t.Fatalf("second reapply = %s, %v", out, err)
	}
	// Both runs are in the audit trail: the first destroyed her key again.
	var runs []string
	rows, err := pool.Query(ctx, `SELECT actor || ' ' || coalesce(array_to_string(subject_refs, ','), '') || ' ' || details::text
		FROM audit_log WHERE kind = 'erasure.reapplied' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0] != `cli:tester `+receipt.SubjectRef+` {"complete": true, "keysDestroyed": 1, "erasuresChecked": 1}` ||
		runs[1] != `cli:tester  {"complete": true, "keysDestroyed": 0, "erasuresChecked": 1}` {
		t.Errorf("erasure.reapplied records: %q", runs)
	}
	if out, err := cli("", "policy", "delete", "--type", "lead-initialized"); err != nil {
		t.Fatalf("policy delete: %v %s", err, out)
	}
	if _, err := cli("", "policy", "get", "--type", "lead-initialized"); err == nil {
		t.Fatal("deleted policy still there")
	}
}

// Vault down: the admin commands fail fast and say so, instead of waiting
// through the Vault client's default retries.
func TestVaultDownFailsFast(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	vars := env(map[string]string{
		"LETHE_DATABASE_URL": testenv.MigratedDatabase(t),
		"LETHE_VAULT_ADDR":   "http://127.0.0.1:1", "LETHE_VAULT_TOKEN": "t",
	})
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := run(ctx, []string{"subject", "rotate", "--subject", "x@example.com"}, vars, nil, &stdout, &stderr)
	if err == nil || !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("err = %v, want keystore.ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to report Vault down, want a few seconds at most", d)
	}
	if strings.Contains(err.Error(), "x@example.com") {
		t.Errorf("the error names the subject: %v", err)
	}
}
