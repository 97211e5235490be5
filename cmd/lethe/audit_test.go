package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
)

// The command line's changes are in the audit trail under its actor, and
// `lethe audit export` writes the same format as the route.
func TestAuditCommands(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	ctx, pool, store := e.ctx, e.pool, e.store
	cli := func(args ...string) (string, error) { return e.run("", args...) }

	// A subject's data, through the Go API, with an actor.
	if _, err := store.Append(ctx, "lead-1", eventstore.NoStream, forgettable.Event{
		EventData: eventstore.EventData{ID: eventstore.NewEventID(), Type: "lead-initialized", Actor: "importer",
			Data: json.RawMessage(`{"first-name":"Ada","phone-number":"555-0199"}`)},
		PersonalData: []forgettable.PersonalData{{Subject: "ada@example.com", Paths: []string{"/first-name", "/phone-number"}}}}); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{
		{"policy", "put", "--type", "lead-initialized", "--paths", "/first-name"},
		{"policy", "delete", "--type", "lead-initialized", "--actor", "cli:alice"},
		{"subject", "rotate", "--subject", "ada@example.com", "--request-id", "CHG-7"},
		{"subject", "hold", "--subject", "ada@example.com", "--reason", "case 1"},
		{"token", "create", "--role", "auditor", "--name", "audit-bot"},
	} {
		if out, err := cli(args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	var tokenID string
	if err := pool.QueryRow(ctx, `SELECT id::text FROM api_tokens`).Scan(&tokenID); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("token", "revoke", tokenID); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}

	out, err := cli("audit", "export")
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	if strings.Contains(out, "Ada") || strings.Contains(out, "555-0199") || strings.Contains(out, "ada@example.com") {
		t.Errorf("the export holds personal data:\n%s", out)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(out, "\n"), "\n")
	var summary wire.AuditSummaryLine
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil || summary.Summary == nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	body := strings.Join(lines[:len(lines)-1], "")
	if sum := sha256.Sum256([]byte(body)); summary.Summary.SHA256 != hex.EncodeToString(sum[:]) || summary.Summary.Count != int64(len(lines)-1) {
		t.Errorf("summary %+v, want count %d and sha256 %x", summary.Summary, len(lines)-1, sum)
	}
	type want struct{ kind, actor, requestID string }
	var got []want
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var r wire.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, want{r.Kind, r.Actor, r.RequestID})
	}
	wantRecords := []want{
		{wire.AuditAppend, "importer", ""},
		{wire.AuditPolicyPut, "cli:tester", ""},
		{wire.AuditPolicyDeleted, "cli:alice", ""},
		{wire.AuditKeyRotated, "cli:tester", "CHG-7"},
		{wire.AuditHoldPlaced, "cli:tester", ""},
		{wire.AuditTokenCreated, "cli:tester", ""},
		{wire.AuditTokenRevoked, "cli:tester", ""},
	}
	if !slices.Equal(got, wantRecords) {
		t.Errorf("records (kind, actor, request id):\n got %v\nwant %v", got, wantRecords)
	}

	// CSV, filtered by actor and kind.
	out, err = cli("audit", "export", "--format", "csv", "--actor", "cli:tester", "--kind", "token.created", "--kind", "token.revoked,hold.placed")
	if err != nil {
		t.Fatalf("audit export csv: %v\n%s", err, out)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 5 || !slices.Equal(rows[0], wire.AuditCSVHeader) || rows[4][2] != "summary" {
		t.Fatalf("CSV export (%v):\n%s", err, out)
	}
	if rows[1][2] != wire.AuditHoldPlaced || rows[2][2] != wire.AuditTokenCreated || rows[3][2] != wire.AuditTokenRevoked ||
		!strings.Contains(rows[2][10], tokenID) || !strings.Contains(rows[2][10], `"audit-bot"`) {
		t.Errorf("CSV rows %q", rows[1:4])
	}
	var s wire.AuditCSVSummary
	cut := strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n") + 1
	if sum := sha256.Sum256([]byte(out[:cut])); json.Unmarshal([]byte(rows[4][10]), &s) != nil || s.Count != 3 || s.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("CSV summary %q, want count 3 and sha256 %x", rows[4][10], sum)
	}

	// One subject's records: the append, key rotation and hold that name
	// the reference, no policy or token change.
	var ref string
	if err := pool.QueryRow(ctx, `SELECT subject_ref FROM legal_holds`).Scan(&ref); err != nil {
		t.Fatal(err)
	}
	out, err = cli("audit", "export", "--subject-ref", ref)
	if err != nil {
		t.Fatalf("audit export --subject-ref: %v\n%s", err, out)
	}
	lines = strings.SplitAfter(strings.TrimSuffix(out, "\n"), "\n")
	var kinds []string
	for _, l := range lines[:len(lines)-1] {
		var r wire.AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil || !slices.Equal(r.SubjectRefs, []string{ref}) {
			t.Errorf("record %s (%v): want subjectRefs [%s]", l, err, ref)
		}
		kinds = append(kinds, r.Kind)
	}
	if want := []string{wire.AuditAppend, wire.AuditKeyRotated, wire.AuditHoldPlaced}; !slices.Equal(kinds, want) {
		t.Errorf("--subject-ref: kinds %v, want %v", kinds, want)
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil || summary.Summary == nil || summary.Summary.SubjectRef != ref ||
		summary.Summary.Count != 3 {
		t.Errorf("--subject-ref: summary %s (%v)", lines[len(lines)-1], err)
	}
	other := strings.Repeat("0", 64)
	if out, err := cli("audit", "export", "--subject-ref", other); err != nil || !strings.HasPrefix(out, `{"summary":`) {
		t.Errorf("--subject-ref of nobody: %v\n%s", err, out)
	}

	// Bad flags are refused before any output.
	for _, args := range [][]string{
		{"audit", "export", "--kind", "nope"},
		{"audit", "export", "--from", "yesterday"},
		{"audit", "export", "--format", "xml"},
		{"audit", "export", "--subject-ref", "ada@example.com"},
		{"audit", "export", "--subject-ref", strings.ToUpper(strings.Repeat("ab", 32))},
		{"audit", "export", "extra"},
		{"audit"},
		{"audit", "import"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(ctx, args, env(e.vars), nil, &stdout, &stderr)
		if err != nil && strings.Contains(err.Error()+stderr.String(), "ada@example.com") {
			t.Errorf("%v: the error quotes the subject id: %v %s", args, err, stderr.String())
		}
		if err == nil || stdout.Len() != 0 {
			t.Errorf("%v: err %v, stdout %q; want an error and no output", args, err, stdout.String())
		}
		if (args[len(args)-1] == "nope" || (len(args) > 2 && args[2] == "--subject-ref")) && !errors.Is(err, api.ErrInvalidAuditQuery) {
			t.Errorf("%v: err %v, want ErrInvalidAuditQuery", args, err)
		}
	}
}
