package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
)

// Issue 6's acceptance, end to end through `lethe serve` and the `lethe`
// commands on one database and Vault: the seed's lead stream appended by
// a writer, read by a pii-reader, exported for its subject, held, erased;
// the audit export (NDJSON and CSV) holds each action, no personal value,
// and a digest that matches; the subject export holds exactly the
// subject's values before the erasure and answers 410 after it; `lethe
// verify` passes before and after the erasure and fails after a row is
// edited behind Lethe's back.
func TestComplianceAcceptance(t *testing.T) {
	e := newCLIEnv(t)
	const adminToken = "admin-compliance-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	vars := map[string]string{"LETHE_ADMIN_TOKEN": adminToken, "LETHE_LISTEN_ADDR": "127.0.0.1:0"}
	for k, v := range e.vars {
		vars[k] = v
	}
	srv := startServe(t, vars)
	if srv.startErr != nil {
		t.Fatalf("serve: %v", srv.startErr)
	}
	ctx := e.ctx
	admin := client.New(srv.base, adminToken, nil)
	clients, ids := map[string]*client.Client{}, map[string]string{}
	for _, role := range []string{wire.RoleWriter, wire.RolePIIReader, wire.RoleAuditor} {
		tok, err := admin.CreateToken(ctx, role+"-acceptance", role)
		if err != nil {
			t.Fatalf("create %s token: %v", role, err)
		}
		clients[role], ids[role] = client.New(srv.base, tok.Secret, nil), tok.ID
	}
	subject := eventstoretest.SeedSubject

	// The seed's lead, its personal fields declared for Casey.
	var lead []wire.NewEvent
	personal := 0
	for _, ev := range eventstoretest.SeedLeadEvents() {
		ne := wire.NewEvent{ID: ev.ID.String(), Type: ev.Type, Data: ev.Data}
		if paths := eventstoretest.SeedPersonalPaths(ev.Data); len(paths) > 0 {
			ne.PersonalData = []wire.PersonalData{{Subject: subject, Paths: paths}}
			personal++
		}
		lead = append(lead, ne)
	}
	if _, err := clients[wire.RoleWriter].Append(ctx, "lead-12", wire.Exact(-1), lead...); err != nil {
		t.Fatalf("append the lead: %v", err)
	}
	page, err := clients[wire.RolePIIReader].ReadStream(ctx, "lead-12", client.ReadOptions{})
	if err != nil || len(page.Events) != len(lead) || !bytes.Contains(page.Events[0].Data, []byte(`"Casey"`)) {
		t.Fatalf("pii read: %d events, %v", len(page.Events), err)
	}

	// The subject export before the erasure: exactly Casey's events, her
	// values decrypted, each with its link.
	var doc bytes.Buffer
	if _, err := admin.ExportSubject(ctx, subject, &doc); err != nil {
		t.Fatalf("subject export: %v", err)
	}
	var export wire.SubjectExport
	if err := json.Unmarshal(doc.Bytes(), &export); err != nil {
		t.Fatal(err)
	}
	if !export.Complete || export.Count != personal || len(export.Events) != personal || !slices.Equal(export.Streams, []string{"lead-12"}) {
		t.Fatalf("subject export: %d events of %v, complete %v; want the %d events with her data", len(export.Events), export.Streams, export.Complete, personal)
	}
	for _, secret := range eventstoretest.SeedSecrets[:len(eventstoretest.SeedSecrets)-1] { // her values, not her id
		if !bytes.Contains(doc.Bytes(), []byte(`"`+secret+`"`)) {
			t.Errorf("subject export lacks %q", secret)
		}
	}
	for _, ev := range export.Events {
		if len(ev.Redacted) != 0 || len(ev.Link) != 64 {
			t.Errorf("exported event %s v%d: redacted %v, link %q", ev.StreamID, ev.Version, ev.Redacted, ev.Link)
		}
	}
	subjectFile := writeFile(t, "subject-export.json", doc.Bytes())

	if out, code := e.cli("", "verify"); code != 0 {
		t.Fatalf("verify before the erasure: exit %d\n%s", code, out)
	}
	if out, code := e.cli("", "verify", "--file", subjectFile); code != 0 {
		t.Fatalf("verify the subject export: exit %d\n%s", code, out)
	}

	// A legal hold blocks the erasure until released.
	if _, err := admin.SetHold(ctx, subject, true, "litigation LIT-7"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Erase(ctx, subject, wire.EraseRequest{Reason: "request by e-mail", LegalBasis: "GDPR Art. 17(1)(a)"}); client.ProblemType(err) != "legal-hold" {
		t.Fatalf("erase under a hold: %v, want legal-hold", err)
	}
	if _, err := admin.SetHold(ctx, subject, false, "litigation settled"); err != nil {
		t.Fatal(err)
	}
	receipt, err := admin.Erase(ctx, subject, wire.EraseRequest{Reason: "request by e-mail", LegalBasis: "GDPR Art. 17(1)(a)"})
	if err != nil || receipt.Status != "completed" || receipt.Completion == nil || !receipt.Completion.KeyVerifiedGone {
		t.Fatalf("erase: %+v, %v", receipt, err)
	}

	// After the erasure: 410 with the erasure's id, and the chains hold.
	_, err = admin.ExportSubject(ctx, subject, io.Discard)
	if client.ProblemType(err) != "subject-gone" {
		t.Fatalf("subject export after the erasure: %v, want subject-gone", err)
	}
	var problem *wire.Problem
	if !errors.As(err, &problem) || problem.Status != 410 || problem.ErasureID != receipt.ErasureID {
		t.Errorf("subject-gone problem %+v, want 410 naming erasure %s", problem, receipt.ErasureID)
	}
	if out, code := e.cli("", "verify"); code != 0 {
		t.Fatalf("verify after the erasure: exit %d\n%s", code, out)
	}
	if out, code := e.cli("", "verify", "--file", subjectFile); code != 0 {
		t.Fatalf("verify the subject export after the erasure: exit %d\n%s", code, out)
	}

	// The audit export, both formats, by the auditor.
	auditor := clients[wire.RoleAuditor]
	var nd, cs bytes.Buffer
	if _, err := auditor.ExportAudit(ctx, client.AuditExportOptions{}, &nd); err != nil {
		t.Fatalf("audit export ndjson: %v", err)
	}
	if _, err := auditor.ExportAudit(ctx, client.AuditExportOptions{Format: "csv"}, &cs); err != nil {
		t.Fatalf("audit export csv: %v", err)
	}
	for name, body := range map[string][]byte{"ndjson": nd.Bytes(), "csv": cs.Bytes()} {
		for _, secret := range eventstoretest.SeedSecrets {
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("%s audit export holds the personal value %q", name, secret)
			}
		}
		if out, code := e.cli("", "verify", "--file", writeFile(t, "audit."+name, body)); code != 0 {
			t.Errorf("verify the %s audit export: exit %d\n%s", name, code, out)
		}
	}

	// NDJSON: every action, under its actor; the summary's count and
	// digest match the lines before it.
	lines := strings.SplitAfter(strings.TrimSuffix(nd.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	var summary struct {
		Summary struct {
			Count  int    `json:"count"`
			SHA256 string `json:"sha256"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(last), &summary); err != nil {
		t.Fatalf("summary line %q: %v", last, err)
	}
	sum := sha256.Sum256([]byte(strings.Join(lines[:len(lines)-1], "")))
	if summary.Summary.Count != len(lines)-1 || summary.Summary.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("summary %+v; want count %d, sha256 %x", summary.Summary, len(lines)-1, sum)
	}
	type seen struct{ kind, actor, stream, route string }
	var got []seen
	var ndIDs []string
	for _, l := range lines[:len(lines)-1] {
		var r wire.AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		var details struct {
			Route string `json:"route"`
		}
		_ = json.Unmarshal(r.Details, &details)
		got = append(got, seen{r.Kind, r.Actor, r.Stream, details.Route})
		ndIDs = append(ndIDs, r.ID)
	}
	byAdmin := "token:" + api.BootstrapTokenID
	for _, want := range []seen{
		{wire.AuditTokenCreated, byAdmin, "", ""},
		{wire.AuditAppend, "token:" + ids[wire.RoleWriter], "lead-12", ""},
		{wire.AuditPIIRead, "token:" + ids[wire.RolePIIReader], "", "/v1/streams/{streamId}/events"},
		{wire.AuditPIIRead, "token:" + api.BootstrapTokenID, "", "/v1/subjects/{subject}/export"},
		{wire.AuditHoldPlaced, byAdmin, "", ""},
		{wire.AuditHoldReleased, byAdmin, "", ""},
		{wire.AuditErasureRequested, byAdmin, "", ""},
		{wire.AuditErasureCompleted, byAdmin, "", ""},
	} {
		if !slices.Contains(got, want) {
			t.Errorf("the audit export lacks %+v; it has %+v", want, got)
		}
	}

	// CSV: the same records, and its own digest.
	raw := cs.Bytes()
	cut := bytes.LastIndex(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) + 1
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v", err)
	}
	tail := rows[len(rows)-1]
	var csvSummary struct {
		Count  int    `json:"count"`
		SHA256 string `json:"sha256"`
	}
	if tail[2] != "summary" || json.Unmarshal([]byte(tail[10]), &csvSummary) != nil {
		t.Fatalf("csv last row %q", tail)
	}
	csvSum := sha256.Sum256(raw[:cut])
	var csvIDs []string
	for _, r := range rows[1 : len(rows)-1] {
		csvIDs = append(csvIDs, r[0])
	}
	if csvSummary.Count != len(rows)-2 || csvSummary.SHA256 != hex.EncodeToString(csvSum[:]) || !slices.Equal(csvIDs, ndIDs) {
		t.Errorf("csv: summary %+v over %d rows (sha256 %x); ids %v, ndjson %v", csvSummary, len(rows)-2, csvSum, csvIDs, ndIDs)
	}

	// A row edited behind Lethe's back: verify names it; an edited export
	// no longer matches its digest.
	e.tamper(`UPDATE events SET data = jsonb_set(data, '{lead-id}', '13') WHERE stream_id = 'lead-12' AND version = 1`)
	out, code := e.cli("", "verify")
	if code != 1 || !strings.Contains(out, "lead-12") {
		t.Fatalf("verify after tampering: exit %d, want 1 naming lead-12\n%s", code, out)
	}
	if out, code := e.cli("", "verify", "--stream", "lead-12", "--json"); code != 1 || !strings.Contains(out, `"version": 1`) && !strings.Contains(out, `"version":1`) {
		t.Errorf("verify --stream lead-12 after tampering: exit %d, want 1 naming version 1\n%s", code, out)
	}
	edited := bytes.Replace(nd.Bytes(), []byte(`"lead-12"`), []byte(`"lead-99"`), 1)
	if out, code := e.cli("", "verify", "--offline", "--file", writeFile(t, "edited.ndjson", edited)); code != 1 {
		t.Errorf("verify an edited audit export: exit %d, want 1\n%s", code, out)
	}
}
