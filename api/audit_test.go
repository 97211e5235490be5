package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// withAudit gives a server the audit trail on the deployment's database.
func withAudit(d *deployment) func(*api.Options) {
	return func(o *api.Options) { o.Audit = apipg.NewAuditTrail(d.pool) }
}

// auditExport is an NDJSON export, parsed and checked: every line but the
// last is a record, the last the summary, whose count and digest match.
type auditExport struct {
	raw     []byte
	records []wire.AuditRecord
	summary wire.AuditSummary
}

func parseNDJSON(t *testing.T, raw []byte) auditExport {
	t.Helper()
	x := auditExport{raw: raw}
	if len(raw) == 0 || raw[len(raw)-1] != '\n' {
		t.Fatalf("export does not end with a newline: %q", raw)
	}
	body := raw[:len(raw)-1]
	last := bytes.LastIndexByte(body, '\n') + 1 // 0 if the summary is alone
	var line wire.AuditSummaryLine
	dec := json.NewDecoder(bytes.NewReader(body[last:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&line); err != nil || line.Summary == nil {
		t.Fatalf("last line %q: not a summary (%v)", body[last:], err)
	}
	x.summary = *line.Summary
	sum := sha256.Sum256(raw[:last])
	if x.summary.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("summary sha256 %s, want %x (of the %d bytes before it)", x.summary.SHA256, sum, last)
	}
	if x.summary.Format != wire.AuditExportFormat || !x.summary.Complete || x.summary.GeneratedAt.IsZero() {
		t.Errorf("summary %+v", x.summary)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw[:last]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec wire.AuditRecord
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("record line %q: %v", sc.Bytes(), err)
		}
		if rec.ID == "" || rec.Kind == "" || rec.At.IsZero() || rec.At.Location() != time.UTC {
			t.Errorf("record %s: id, kind or time missing, or not UTC", sc.Bytes())
		}
		x.records = append(x.records, rec)
	}
	if int64(len(x.records)) != x.summary.Count {
		t.Errorf("summary count %d, want %d records", x.summary.Count, len(x.records))
	}
	for i := 1; i < len(x.records); i++ {
		if x.records[i].At.Before(x.records[i-1].At) {
			t.Errorf("record %d (%s) before record %d (%s)", i, x.records[i].At, i-1, x.records[i-1].At)
		}
	}
	return x
}

func (x auditExport) kinds() []string {
	var ks []string
	for _, r := range x.records {
		if !slices.Contains(ks, r.Kind) {
			ks = append(ks, r.Kind)
		}
	}
	return ks
}

func (x auditExport) ofKind(kind string) []wire.AuditRecord {
	var out []wire.AuditRecord
	for _, r := range x.records {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

func (x auditExport) ids() []string {
	out := make([]string, len(x.records))
	for i, r := range x.records {
		out[i] = r.ID
	}
	return out
}

func details(t *testing.T, r wire.AuditRecord) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Details, &m); err != nil {
		t.Fatalf("record %s details %s: %v", r.ID, r.Details, err)
	}
	return m
}

func export(t *testing.T, c *client.Client, opts client.AuditExportOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := c.ExportAudit(testenv.Context(t), opts, &buf); err != nil {
		t.Fatalf("audit export %+v: %v (%s)", opts, err, problemType(err))
	}
	return buf.Bytes()
}

// withRequestID sends one admin request with an X-Request-Id.
func withRequestID(t *testing.T, hs *httptest.Server, token, method, path, requestID string, body string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testenv.Context(t), method, hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Request-Id", requestID)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b)
	}
}

// Every action the audit trail covers, done through the API (and the Go
// API for re-admission and key rotation, which have no route), shows up
// in the export with who did it, by reference only, in both formats.
func TestAuditExportRecordsEveryAction(t *testing.T) {
	d := newDeployment(t)
	hs := d.server(withAudit(d))
	tk := d.tokens(hs) // four token.created, by bootstrap-admin
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, d.adminToken, hs.Client())
	writerID, piiID := tk.ids[wire.RoleWriter], tk.ids[wire.RolePIIReader]

	// Appends: the seed's lead (7 events, one append, casey's data) and a
	// stream without personal data (two appends).
	lead, err := tk.writer.Append(ctx, "lead-12", wire.Exact(-1), seedLead()...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := tk.writer.Append(ctx, "order-7", wire.Any(), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "order-placed",
			Data: json.RawMessage(`{"n":` + string(rune('0'+i)) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// A pii read, recorded in the access log.
	if _, err := tk.pii.ReadStream(ctx, "lead-12", client.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	// A restricted read shows no personal data: not recorded.
	if _, err := tk.reader.ReadStream(ctx, "lead-12", client.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	// Policies, with a request id.
	withRequestID(t, hs, d.adminToken, http.MethodPut, "/v1/policies/lead-initialized", "AUD-1", `{"paths":["/first-name"]}`)
	withRequestID(t, hs, d.adminToken, http.MethodDelete, "/v1/policies/lead-initialized", "AUD-2", "")
	// A token created and revoked.
	temp, err := admin.CreateToken(ctx, "temp", wire.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	withRequestID(t, hs, d.adminToken, http.MethodDelete, "/v1/tokens/"+temp.ID, "AUD-3", "")
	// Another subject: data, hold, release, key rotation.
	sam := testenv.Name("sam") + "@example.com"
	if _, err := tk.writer.Append(ctx, "lead-13", wire.Exact(-1), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized",
		Data: json.RawMessage(`{"first-name":"Samwise"}`), PersonalData: []wire.PersonalData{{Subject: sam, Paths: []string{"/first-name"}}}}); err != nil {
		t.Fatal(err)
	}
	hold, err := admin.SetHold(ctx, sam, true, "case 9")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetHold(ctx, sam, false, ""); err != nil {
		t.Fatal(err)
	}
	other := d.open() // the lethe command, another process
	store := other.Store()
	if _, err := store.RotateKey(ctx, sam, "cli:operator", "CHG-1"); err != nil {
		t.Fatal(err)
	}
	// Casey erased, then re-admitted.
	receipt, err := admin.Erase(ctx, casey, wire.EraseRequest{Reason: "request by e-mail", LegalBasis: "GDPR Art. 17(1)(a)"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Readmit(ctx, casey, "cli:operator", "came back"); err != nil {
		t.Fatal(err)
	}
	// A run of lethe erasures reapply after a Vault restore.
	if err := other.Ledger().RecordReapply(ctx, "cli:operator", 1, []keystore.Ref{keystore.Ref(receipt.SubjectRef)}, true); err != nil {
		t.Fatal(err)
	}

	raw := export(t, tk.auditor, client.AuditExportOptions{})
	x := parseNDJSON(t, raw)
	for _, k := range wire.AuditKinds {
		if len(x.ofKind(k)) == 0 {
			t.Errorf("no %s record; kinds: %v", k, x.kinds())
		}
	}
	if !slices.Equal(x.summary.Kinds, wire.AuditKinds) || x.summary.From != nil || x.summary.To != nil || x.summary.Actor != "" {
		t.Errorf("summary of an unfiltered export: %+v", x.summary)
	}
	// No personal value, no subject id, no token secret anywhere.
	for _, s := range append(append(slices.Clone(seedSecrets), sam, "Samwise", d.adminToken), tk.secrets[wire.RoleWriter], temp.Secret) {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the export contains %q", s)
		}
	}

	// One record per append: stream, versions, actor, subjects, link.
	caseyRef := receipt.SubjectRef
	var leadRec *wire.AuditRecord
	var orders []wire.AuditRecord
	for _, r := range x.ofKind(wire.AuditAppend) {
		switch r.Stream {
		case "lead-12":
			leadRec = &r
		case "order-7":
			orders = append(orders, r)
		}
	}
	if leadRec == nil || leadRec.FromVersion == nil || *leadRec.FromVersion != 0 || leadRec.ToVersion == nil || *leadRec.ToVersion != 6 ||
		!slices.Equal(leadRec.SubjectRefs, []string{caseyRef}) || leadRec.ID != "events:"+itoa(lead.FirstPosition) {
		t.Fatalf("lead-12 append record %+v, want events:%d, versions 0 to 6, subject %s", leadRec, lead.FirstPosition, caseyRef)
	}
	if leadRec.Actor != "token:"+writerID {
		t.Errorf("lead-12 append actor %q, want token:%s (events.actor, written by the store)", leadRec.Actor, writerID)
	}
	if len(leadRec.Link) != 64 {
		t.Errorf("lead-12 append link %q, want 64 hex digits (the chain head after the append)", leadRec.Link)
	}
	if len(orders) != 2 || *orders[0].FromVersion != 0 || *orders[0].ToVersion != 0 || *orders[1].FromVersion != 1 || orders[1].SubjectRefs != nil {
		t.Errorf("order-7 append records %+v, want two of one event each, no subjects", orders)
	}
	// The erasure's own records in $lethe-erasures are appends by its actor.
	var erasureAppends int
	for _, r := range x.ofKind(wire.AuditAppend) {
		if r.Stream == forgettable.ErasedStreamID {
			erasureAppends++
			if r.Actor != "token:"+api.BootstrapTokenID {
				t.Errorf("erasure record append actor %q, want token:%s", r.Actor, api.BootstrapTokenID)
			}
		}
	}
	if erasureAppends != 2 {
		t.Errorf("%d appends to %s, want 2 (fenced, erased)", erasureAppends, forgettable.ErasedStreamID)
	}

	// The pii read: the token, route, stream, subject and count.
	reads := x.ofKind(wire.AuditPIIRead)
	if len(reads) != 1 {
		t.Fatalf("pii.read records %+v, want 1 (the restricted read shows nothing)", reads)
	}
	rd := reads[0]
	if dm := details(t, rd); rd.Actor != "token:"+piiID || !slices.Equal(rd.Streams, []string{"lead-12"}) || !slices.Equal(rd.SubjectRefs, []string{caseyRef}) ||
		rd.RequestID == "" || dm["route"] != "/v1/streams/{streamId}/events" || dm["method"] != "GET" || dm["events"] != 2.0 {
		t.Errorf("pii.read record %+v details %s", rd, rd.Details)
	}

	// Erasure: requested and completed, by reference.
	req, done := x.ofKind(wire.AuditErasureRequested), x.ofKind(wire.AuditErasureCompleted)
	if len(req) != 1 || len(done) != 1 {
		t.Fatalf("erasure records %+v %+v", req, done)
	}
	if dm := details(t, req[0]); req[0].Actor != "token:"+api.BootstrapTokenID || !slices.Equal(req[0].SubjectRefs, []string{caseyRef}) ||
		dm["erasureId"] != receipt.ErasureID || dm["reason"] != "request by e-mail" || dm["legalBasis"] != "GDPR Art. 17(1)(a)" ||
		req[0].ID != "erasures:"+receipt.ErasureID {
		t.Errorf("erasure.requested %+v %s", req[0], req[0].Details)
	}
	if dm := details(t, done[0]); dm["keyVerifiedGone"] != true || dm["keyExisted"] != true || dm["eventsAffected"] != 2.0 ||
		dm["streamsAffected"] != 1.0 || dm["erasureId"] != receipt.ErasureID || done[0].Actor != req[0].Actor {
		t.Errorf("erasure.completed %+v %s", done[0], done[0].Details)
	}
	// Holds.
	placed, released := x.ofKind(wire.AuditHoldPlaced), x.ofKind(wire.AuditHoldReleased)
	if len(placed) != 1 || len(released) != 1 || !slices.Equal(placed[0].SubjectRefs, []string{hold.SubjectRef}) ||
		details(t, placed[0])["reason"] != "case 9" || released[0].Details != nil {
		t.Errorf("hold records %+v %+v", placed, released)
	}
	// Re-admission: the erased reference and its successor.
	re := x.ofKind(wire.AuditReadmission)
	if len(re) != 1 || re[0].Actor != "cli:operator" || len(re[0].SubjectRefs) != 2 || re[0].SubjectRefs[0] != caseyRef ||
		details(t, re[0])["erasedRef"] != caseyRef || details(t, re[0])["reason"] != "came back" {
		t.Errorf("readmission records %+v", re)
	}
	// Key rotation.
	rot := x.ofKind(wire.AuditKeyRotated)
	if len(rot) != 1 || rot[0].Actor != "cli:operator" || rot[0].RequestID != "CHG-1" || !slices.Equal(rot[0].SubjectRefs, []string{hold.SubjectRef}) ||
		details(t, rot[0])["keyVersion"] != 2.0 {
		t.Errorf("key.rotated records %+v", rot)
	}
	// Policies.
	put, del := x.ofKind(wire.AuditPolicyPut), x.ofKind(wire.AuditPolicyDeleted)
	if len(put) != 1 || len(del) != 1 || put[0].Actor != "token:"+api.BootstrapTokenID || put[0].RequestID != "AUD-1" || del[0].RequestID != "AUD-2" ||
		details(t, put[0])["eventType"] != "lead-initialized" || string(put[0].Details) != `{"paths":["/first-name"],"eventType":"lead-initialized"}` ||
		string(del[0].Details) != string(put[0].Details) {
		t.Errorf("policy records %+v %s / %+v %s", put, put[0].Details, del, del[0].Details)
	}
	// Tokens: the four of d.tokens and temp created; temp revoked.
	created, revoked := x.ofKind(wire.AuditTokenCreated), x.ofKind(wire.AuditTokenRevoked)
	if len(created) != 5 || len(revoked) != 1 || revoked[0].RequestID != "AUD-3" || revoked[0].Actor != "token:"+api.BootstrapTokenID {
		t.Fatalf("token records %+v / %+v", created, revoked)
	}
	if dm := details(t, revoked[0]); dm["tokenId"] != temp.ID || dm["name"] != "temp" || !slices.Equal(dm["roles"].([]any), []any{"reader"}) {
		t.Errorf("token.revoked details %s", revoked[0].Details)
	}
	for _, r := range created {
		if strings.Contains(string(r.Details), "lethe_") || r.Actor != "token:"+api.BootstrapTokenID || r.RequestID == "" {
			t.Errorf("token.created %+v %s", r, r.Details)
		}
	}
	// Revoking again changes nothing, so records nothing.
	if err := admin.RevokeToken(ctx, temp.ID); err != nil {
		t.Fatal(err)
	}
	if again := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Kinds: []string{wire.AuditTokenRevoked}})); len(again.records) != 1 {
		t.Errorf("revoking twice: %d token.revoked records, want 1", len(again.records))
	}

	// CSV: the same records, in the same order.
	rawCSV := export(t, admin, client.AuditExportOptions{Format: "csv"})
	rows := parseCSV(t, rawCSV)
	if len(rows) != len(x.records) {
		t.Fatalf("CSV has %d records, NDJSON %d", len(rows), len(x.records))
	}
	for i, row := range rows {
		r := x.records[i]
		if row[0] != r.ID || row[2] != r.Kind || row[3] != r.Actor || row[4] != r.RequestID || row[5] != r.Stream ||
			row[8] != strings.Join(r.SubjectRefs, " ") || row[9] != r.Link {
			t.Errorf("CSV row %d %q, NDJSON record %+v", i, row, r)
		}
		if at, err := time.Parse(time.RFC3339Nano, row[1]); err != nil || !at.Equal(r.At) {
			t.Errorf("CSV row %d time %q, want %s", i, row[1], r.At)
		}
		if r.Kind == wire.AuditPIIRead {
			var dm map[string]any
			if err := json.Unmarshal([]byte(row[10]), &dm); err != nil || !slices.Equal(dm["streams"].([]any), []any{"lead-12"}) || dm["events"] != 2.0 {
				t.Errorf("CSV pii.read details %q (%v), want the streams in them", row[10], err)
			}
		}
	}
	for _, s := range append(slices.Clone(seedSecrets), sam, "Samwise") {
		if bytes.Contains(rawCSV, []byte(s)) {
			t.Errorf("the CSV export contains %q", s)
		}
	}
}

// parseCSV checks a CSV export (header, summary row with count and the
// digest of everything before it) and returns its record rows.
func parseCSV(t *testing.T, raw []byte) [][]string {
	t.Helper()
	body := bytes.TrimSuffix(raw, []byte("\n"))
	last := bytes.LastIndexByte(body, '\n') + 1
	r := csv.NewReader(bytes.NewReader(raw))
	all, err := r.ReadAll()
	if err != nil {
		t.Fatalf("CSV export: %v", err)
	}
	if len(all) < 2 || !slices.Equal(all[0], wire.AuditCSVHeader) {
		t.Fatalf("CSV header %q", all[0])
	}
	sumRow := all[len(all)-1]
	var s wire.AuditCSVSummary
	if sumRow[2] != "summary" || json.Unmarshal([]byte(sumRow[10]), &s) != nil {
		t.Fatalf("CSV summary row %q", sumRow)
	}
	for i, v := range sumRow {
		if v != "" && i != 2 && i != 10 {
			t.Errorf("CSV summary row column %s = %q, want empty", wire.AuditCSVHeader[i], v)
		}
	}
	sum := sha256.Sum256(raw[:last])
	rows := all[1 : len(all)-1]
	if s.Format != wire.AuditExportFormat || s.Count != int64(len(rows)) || s.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("CSV summary %+v, want count %d, sha256 %x", s, len(rows), sum)
	}
	return rows
}

// The filters: kind, actor (either form of a token), stream, time range.
func TestAuditExportFilters(t *testing.T) {
	d := newDeployment(t)
	hs := d.server(withAudit(d))
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, d.adminToken, hs.Client())
	writerID := tk.ids[wire.RoleWriter]
	for _, stream := range []string{"lead-1", "lead-2", "lead-1"} {
		if _, err := tk.writer.Append(ctx, stream, wire.Any(), seedLead()[0]); err != nil {
			t.Fatal(err)
		}
		seed := seedLead()[1]
		seed.ID = eventstore.NewEventID().String()
		if _, err := tk.writer.Append(ctx, stream, wire.Any(), seed); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tk.pii.ReadStream(ctx, "lead-2", client.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetHold(ctx, "someone@example.com", true, ""); err != nil {
		t.Fatal(err)
	}
	all := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{}))

	// Kinds: repeated and comma-separated alike.
	holds := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Kinds: []string{"hold.released,hold.placed", wire.AuditPIIRead}}))
	if !slices.Equal(holds.kinds(), []string{wire.AuditPIIRead, wire.AuditHoldPlaced}) &&
		!slices.Equal(holds.kinds(), []string{wire.AuditHoldPlaced, wire.AuditPIIRead}) {
		t.Errorf("kinds hold.*, pii.read: got %v", holds.kinds())
	}
	if !slices.Equal(holds.summary.Kinds, []string{wire.AuditPIIRead, wire.AuditHoldPlaced, wire.AuditHoldReleased}) {
		t.Errorf("summary kinds %v", holds.summary.Kinds)
	}
	placed := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Kinds: []string{wire.AuditHoldPlaced}}))
	if len(placed.records) != 1 {
		t.Errorf("kind hold.placed: %d records", len(placed.records))
	}
	if released := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Kinds: []string{wire.AuditHoldReleased}})); len(released.records) != 0 {
		t.Errorf("kind hold.released: %+v, want none", released.records)
	}

	// Actor: the writer's appends, under either form of its name.
	byWriter := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Actor: writerID}))
	if len(byWriter.records) != 6 || !slices.Equal(byWriter.kinds(), []string{wire.AuditAppend}) || byWriter.summary.Actor != writerID {
		t.Errorf("actor %s: %d records of kinds %v, want its 6 appends", writerID, len(byWriter.records), byWriter.kinds())
	}
	prefixed := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Actor: "token:" + writerID}))
	if !slices.Equal(prefixed.ids(), byWriter.ids()) {
		t.Errorf("actor token:%s selects %v, actor %s %v", writerID, prefixed.ids(), writerID, byWriter.ids())
	}
	byAdmin := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Actor: "token:" + api.BootstrapTokenID}))
	if !slices.Equal(byAdmin.kinds(), []string{wire.AuditTokenCreated, wire.AuditHoldPlaced}) {
		t.Errorf("actor token:bootstrap-admin: kinds %v, want its token creations and hold", byAdmin.kinds())
	}

	// Stream: its appends and the reads that showed it.
	lead2 := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Stream: "lead-2"}))
	if !slices.Equal(lead2.kinds(), []string{wire.AuditAppend, wire.AuditPIIRead}) || len(lead2.records) != 3 {
		t.Errorf("stream lead-2: %+v", lead2.records)
	}
	for _, r := range lead2.ofKind(wire.AuditAppend) {
		if r.Stream != "lead-2" {
			t.Errorf("stream lead-2 export holds %+v", r)
		}
	}
	if none := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{Stream: "lead-2", Kinds: []string{wire.AuditHoldPlaced}})); len(none.records) != 0 {
		t.Errorf("stream and a kind without streams: %+v", none.records)
	}

	// Time: from inclusive, to exclusive, split at the pii read's time.
	at := lead2.ofKind(wire.AuditPIIRead)[0].At
	before := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{To: at}))
	after := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{From: at}))
	if got := append(before.ids(), after.ids()...); !slices.Equal(got, all.ids()) {
		t.Errorf("to %s then from it: %v, want %v", at, got, all.ids())
	}
	if len(after.records) == 0 || after.records[0].At.Before(at) || !after.summary.From.Equal(at) || after.summary.To != nil {
		t.Errorf("from %s: %+v, summary %+v", at, after.records, after.summary)
	}
	for _, r := range before.records {
		if !r.At.Before(at) {
			t.Errorf("to %s (exclusive) holds %+v", at, r)
		}
	}
	// An empty export is still whole: a summary alone.
	empty := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{From: at, To: at}))
	if len(empty.records) != 0 || empty.summary.Count != 0 {
		t.Errorf("from = to: %+v", empty)
	}
	if rows := parseCSV(t, export(t, tk.auditor, client.AuditExportOptions{From: at, To: at, Format: "csv"})); len(rows) != 0 {
		t.Errorf("empty CSV export: %q", rows)
	}
}

// Who may export, and bad parameters: problems before any byte.
func TestAuditExportRolesAndBadParameters(t *testing.T) {
	d := newDeployment(t)
	hs := d.server(withAudit(d))
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, d.adminToken, hs.Client())
	for name, c := range map[string]*client.Client{"reader": tk.reader, "writer": tk.writer, "pii-reader": tk.pii} {
		if _, err := c.ExportAudit(ctx, client.AuditExportOptions{}, io.Discard); problemType(err) != "forbidden" {
			t.Errorf("%s: audit export err = %v, want 403 forbidden", name, err)
		}
	}
	for name, c := range map[string]*client.Client{"auditor": tk.auditor, "admin": admin} {
		if _, err := c.ExportAudit(ctx, client.AuditExportOptions{}, io.Discard); err != nil {
			t.Errorf("%s: audit export err = %v, want 200", name, err)
		}
	}
	// The export is not an access to personal data: no access log row.
	var n int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log`).Scan(&n); err != nil || n != 0 {
		t.Errorf("access log rows after audit exports: %d, %v", n, err)
	}

	for _, q := range []string{
		"kind=nope", "kind=append,nope", "from=yesterday", "to=2026-13-01T00:00:00Z", "format=xml", "fromPosition=1",
		"from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "stream=$bad%20id", "actor=a&actor=b", "actor=%00",
		"subjectRef=" + strings.Repeat("A", 64), "subjectRef=" + strings.Repeat("a", 63), "subjectRef=" + strings.Repeat("a", 65),
		"subjectRef=" + strings.Repeat("g", 64), "subjectRef=ada%40example.com", "subjectRef=" + strings.Repeat("a", 64) + "&subjectRef=" + strings.Repeat("b", 64),
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/v1/audit/export?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+tk.secrets[wire.RoleAuditor])
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var p wire.Problem
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" ||
			json.Unmarshal(body, &p) != nil || p.Type != api.ProblemTypeBase+"invalid-query" {
			t.Errorf("?%s = %d %s %s, want 400 invalid-query", q, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if strings.Contains(string(body), "ada@example.com") {
			t.Errorf("?%s: the problem quotes the subject id: %s", q, body)
		}
	}
	// The content types.
	for format, want := range map[string]string{"": "application/x-ndjson", "ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/v1/audit/export?format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+tk.secrets[wire.RoleAuditor])
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("format %q: %d %s, want %s", format, resp.StatusCode, got, want)
		}
	}
}

// failingTrail hands over the real records, then many copies of the last
// one, then fails: a failure after the export has started.
type failingTrail struct {
	api.AuditTrail
	copies int
}

var errInjected = errors.New("injected failure")

func (f failingTrail) AuditRecords(ctx context.Context, q api.AuditQuery, fn func(*api.AuditRecord) error) error {
	var last api.AuditRecord
	if err := f.AuditTrail.AuditRecords(ctx, q, func(r *api.AuditRecord) error {
		last = *r
		return fn(r)
	}); err != nil {
		return err
	}
	for range f.copies {
		if err := fn(&last); err != nil {
			return err
		}
	}
	return errInjected
}

// A failure once bytes are out aborts the connection: the client gets an
// error and no summary line, never an export that looks whole. Before the
// first byte, it is a 500 problem.
func TestAuditExportFailureAbortsConnection(t *testing.T) {
	d := newDeployment(t)
	late := d.server(func(o *api.Options) { o.Audit = failingTrail{apipg.NewAuditTrail(d.pool), 5000} })
	early := d.server(func(o *api.Options) { o.Audit = failingTrail{apipg.NewAuditTrail(d.pool), 0} })
	ctx := testenv.Context(t)
	for _, format := range []string{"ndjson", "csv"} {
		var buf bytes.Buffer
		n, err := client.New(late.URL, d.adminToken, late.Client()).ExportAudit(ctx, client.AuditExportOptions{Format: format}, &buf)
		if err == nil || n == 0 || bytes.Contains(buf.Bytes(), []byte("summary")) {
			t.Errorf("%s: failure after the start: %d bytes, err %v, summary in output: %v", format, n, err, bytes.Contains(buf.Bytes(), []byte("summary")))
		}
		_, err = client.New(early.URL, d.adminToken, early.Client()).ExportAudit(ctx, client.AuditExportOptions{Format: format}, io.Discard)
		if problemType(err) != "internal" {
			t.Errorf("%s: failure before the first byte: %v, want 500 internal", format, err)
		}
	}
	if strings.Contains(d.logs.String(), errInjected.Error()) == false {
		t.Errorf("the failure is not logged")
	}
}

// The server's WriteTimeout does not cut an export: the deadline moves
// with every write. With a WriteTimeout of 1 ns, every write without that
// would fail.
func TestAuditExportOutlivesWriteTimeout(t *testing.T) {
	d := newDeployment(t)
	hs := d.server(withAudit(d))
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, d.adminToken, hs.Client())
	for i := range 300 {
		if _, err := admin.CreateToken(ctx, "t"+itoa(int64(i)), wire.RoleReader); err != nil {
			t.Fatal(err)
		}
	}
	// The same handler behind a server whose write deadline has always
	// passed.
	srv := httptest.NewUnstartedServer(hs.Config.Handler)
	srv.Config.WriteTimeout = time.Nanosecond
	srv.Start()
	defer srv.Close()
	var buf bytes.Buffer
	if _, err := client.New(srv.URL, d.adminToken, srv.Client()).ExportAudit(ctx, client.AuditExportOptions{Kinds: []string{wire.AuditTokenCreated}}, &buf); err != nil {
		t.Fatalf("export behind a 1 ns WriteTimeout: %v", err)
	}
	if x := parseNDJSON(t, buf.Bytes()); len(x.records) != 300 || buf.Len() < 64<<10 {
		t.Errorf("%d records, %d bytes; want 300 records over 64 KiB (several writes)", len(x.records), buf.Len())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The subject filter: everything done to or with one subject's data, of
// every kind that names subjects, and nothing of another subject's. An
// append whose events carry the reference only in part gives a record for
// each run of consecutive matching events, with every reference of those
// events.
func TestAuditExportSubjectFilter(t *testing.T) {
	d := newDeployment(t)
	hs := d.server(withAudit(d))
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, d.adminToken, hs.Client())
	ada, bob := testenv.Name("ada")+"@example.com", testenv.Name("bob")+"@example.com"
	ev := func(subjects ...string) wire.NewEvent {
		e := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-note", Data: json.RawMessage(`{"a":"x","b":"y"}`)}
		for i, s := range subjects {
			e.PersonalData = append(e.PersonalData, wire.PersonalData{Subject: s, Paths: []string{[]string{"/a", "/b"}[i]}})
		}
		return e
	}
	// lead-a: one append, versions 0-1 ada's, 2 bob's, 3 both; lead-b:
	// bob's only; order-1: nobody's.
	leadA, err := tk.writer.Append(ctx, "lead-a", wire.Exact(-1), ev(ada), ev(ada), ev(bob), ev(ada, bob))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.writer.Append(ctx, "lead-b", wire.Exact(-1), ev(bob), ev(bob)); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.writer.Append(ctx, "order-1", wire.Exact(-1), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "order-placed", Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"lead-a", "lead-b"} {
		if _, err := tk.pii.ReadStream(ctx, s, client.ReadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	withRequestID(t, hs, d.adminToken, http.MethodPut, "/v1/policies/lead-note", "POL-1", `{"paths":["/a"]}`)
	adaHold, err := admin.SetHold(ctx, ada, true, "case 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetHold(ctx, ada, false, ""); err != nil {
		t.Fatal(err)
	}
	bobHold, err := admin.SetHold(ctx, bob, true, "case 2")
	if err != nil {
		t.Fatal(err)
	}
	store := d.open().Store() // lethe subject rotate, another process
	for _, s := range []string{ada, bob} {
		if _, err := store.RotateKey(ctx, s, "cli:operator", ""); err != nil {
			t.Fatal(err)
		}
	}
	receipt, err := admin.Erase(ctx, ada, wire.EraseRequest{Reason: "request"})
	if err != nil {
		t.Fatal(err)
	}
	successor, err := store.Readmit(ctx, ada, "cli:operator", "came back")
	if err != nil {
		t.Fatal(err)
	}
	adaRef, bobRef := receipt.SubjectRef, bobHold.SubjectRef
	if adaHold.SubjectRef != adaRef || adaRef == bobRef {
		t.Fatalf("references: hold %s, receipt %s, bob %s", adaHold.SubjectRef, adaRef, bobRef)
	}

	all := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{}))
	x := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{SubjectRef: adaRef}))
	if x.summary.SubjectRef != adaRef || !slices.Equal(x.summary.Kinds, wire.AuditKinds) {
		t.Errorf("summary %+v, want subjectRef %s", x.summary, adaRef)
	}
	// Every kind that names subjects, each record naming ada.
	for _, k := range []string{wire.AuditAppend, wire.AuditPIIRead, wire.AuditErasureRequested, wire.AuditErasureCompleted,
		wire.AuditHoldPlaced, wire.AuditHoldReleased, wire.AuditReadmission, wire.AuditKeyRotated} {
		if len(x.ofKind(k)) == 0 {
			t.Errorf("no %s record for ada; kinds %v", k, x.kinds())
		}
	}
	for _, r := range x.records {
		if !slices.Contains(r.SubjectRefs, adaRef) {
			t.Errorf("the export of ada's reference holds %+v", r)
		}
	}
	// The records other than lead-a's appends are exactly those of the
	// unfiltered export that name ada, in the same order: bob's lead-b
	// append and read, his hold and key rotation, the policy and tokens
	// are not in it.
	var want, got []string
	for _, r := range all.records {
		if slices.Contains(r.SubjectRefs, adaRef) && !(r.Kind == wire.AuditAppend && r.Stream == "lead-a") {
			want = append(want, r.ID)
		}
	}
	var leadAs []wire.AuditRecord
	for _, r := range x.records {
		if r.Kind == wire.AuditAppend && r.Stream == "lead-a" {
			leadAs = append(leadAs, r)
			continue
		}
		got = append(got, r.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("records of ada (lead-a's appends aside):\n got %v\nwant %v", got, want)
	}
	if len(x.ofKind(wire.AuditPIIRead)) != 1 || !slices.Equal(x.ofKind(wire.AuditPIIRead)[0].Streams, []string{"lead-a"}) {
		t.Errorf("ada's pii.read records %+v, want the read of lead-a only", x.ofKind(wire.AuditPIIRead))
	}
	if h := x.ofKind(wire.AuditHoldPlaced); len(h) != 1 || details(t, h[0])["reason"] != "case 1" {
		t.Errorf("ada's hold.placed records %+v", h)
	}
	if re := x.ofKind(wire.AuditReadmission); len(re) != 1 || !slices.Equal(re[0].SubjectRefs, []string{adaRef, string(successor)}) {
		t.Errorf("ada's readmission records %+v", re)
	}
	// lead-a: versions 0-1 (ada's), then 3 (ada's and bob's), each with
	// every reference of its events; version 2 (bob's) is not there.
	type stored struct {
		pos  int64
		link string
		refs []string
	}
	evs := map[int64]stored{}
	rows, err := d.pool.Query(ctx, `SELECT version, position, encode(link, 'hex'), subject_refs FROM events WHERE stream_id = 'lead-a'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int64
		var e stored
		if err := rows.Scan(&v, &e.pos, &e.link, &e.refs); err != nil {
			t.Fatal(err)
		}
		evs[v] = e
	}
	if rows.Close(); rows.Err() != nil || len(evs) != 4 || evs[0].pos != leadA.FirstPosition {
		t.Fatalf("lead-a's events %+v, %v", evs, rows.Err())
	}
	if len(leadAs) != 2 ||
		leadAs[0].ID != "events:"+itoa(evs[0].pos) || *leadAs[0].FromVersion != 0 || *leadAs[0].ToVersion != 1 ||
		leadAs[0].Link != evs[1].link || !slices.Equal(leadAs[0].SubjectRefs, []string{adaRef}) ||
		leadAs[1].ID != "events:"+itoa(evs[3].pos) || *leadAs[1].FromVersion != 3 || *leadAs[1].ToVersion != 3 ||
		leadAs[1].Link != evs[3].link || !slices.Equal(leadAs[1].SubjectRefs, evs[3].refs) || len(evs[3].refs) != 2 {
		t.Errorf("ada's lead-a append records %+v, want versions 0-1 and 3 (events %+v)", leadAs, evs)
	}

	// And with the other filters.
	for _, c := range []struct {
		opts client.AuditExportOptions
		want func(wire.AuditRecord) bool
	}{
		{client.AuditExportOptions{Kinds: []string{wire.AuditHoldPlaced, wire.AuditKeyRotated}}, func(r wire.AuditRecord) bool {
			return r.Kind == wire.AuditHoldPlaced || r.Kind == wire.AuditKeyRotated
		}},
		{client.AuditExportOptions{Stream: "lead-a"}, func(r wire.AuditRecord) bool { return r.Stream == "lead-a" || slices.Contains(r.Streams, "lead-a") }},
		{client.AuditExportOptions{Actor: "cli:operator"}, func(r wire.AuditRecord) bool { return r.Actor == "cli:operator" }},
	} {
		c.opts.SubjectRef = adaRef
		y := parseNDJSON(t, export(t, tk.auditor, c.opts))
		var wantIDs []string
		for _, r := range x.records {
			if c.want(r) {
				wantIDs = append(wantIDs, r.ID)
			}
		}
		if len(wantIDs) == 0 || !slices.Equal(y.ids(), wantIDs) {
			t.Errorf("subject ada and %+v: %v, want %v", c.opts, y.ids(), wantIDs)
		}
	}
	// The successor reference selects the re-admission too.
	if y := parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{SubjectRef: string(successor)})); !slices.Equal(y.kinds(), []string{wire.AuditReadmission}) {
		t.Errorf("subject %s: kinds %v, want readmission", successor, y.kinds())
	}
	// Bob's export holds none of ada's own records.
	for _, r := range parseNDJSON(t, export(t, tk.auditor, client.AuditExportOptions{SubjectRef: bobRef})).records {
		if !slices.Contains(r.SubjectRefs, bobRef) {
			t.Errorf("the export of bob's reference holds %+v", r)
		}
	}
	// CSV: the same records.
	if rows := parseCSV(t, export(t, tk.auditor, client.AuditExportOptions{SubjectRef: adaRef, Format: "csv"})); len(rows) != len(x.records) {
		t.Errorf("CSV export of ada: %d rows, want %d", len(rows), len(x.records))
	}
}
