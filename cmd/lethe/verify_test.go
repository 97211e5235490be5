package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
)

// tamper edits rows behind Lethe's back, as the superuser the tests
// connect as, with the append-only trigger off for the transaction.
func (e *cliEnv) tamper(stmts ...string) {
	e.t.Helper()
	tx, err := e.events.Pool().Begin(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(e.ctx))
	for _, q := range append([]string{`SET LOCAL session_replication_role = replica`}, stmts...) {
		if _, err := tx.Exec(e.ctx, q); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *cliEnv) appendPersonal(stream, subject string, n int) {
	e.t.Helper()
	evs := make([]forgettable.Event, n)
	for i := range evs {
		evs[i] = forgettable.Event{
			EventData: eventstore.EventData{ID: eventstore.NewEventID(), Type: "contact-details-updated", Actor: "token:writer",
				Data: json.RawMessage(fmt.Sprintf(`{"first-name": "Ada", "phone-number": "555-%d", "n": %d.50}`, i, i))},
			PersonalData: []forgettable.PersonalData{{Subject: subject, Paths: []string{"/first-name", "/phone-number"}}}}
	}
	if _, err := e.store.Append(e.ctx, stream, eventstore.Any, evs...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *cliEnv) appendPlain(stream string, n int) {
	e.t.Helper()
	evs := make([]eventstore.EventData, n)
	for i := range evs {
		evs[i] = eventstore.EventData{ID: eventstore.NewEventID(), Type: "order-placed", Data: json.RawMessage(fmt.Sprintf(`{"n": %d, "total": 1e2}`, i))}
	}
	if _, err := e.events.AppendToStream(e.ctx, stream, eventstore.Any, evs...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *cliEnv) head(stream string) (int64, string) {
	e.t.Helper()
	evs, err := e.events.ReadStream(e.ctx, stream, eventstore.ReadStreamOptions{Backward: true, From: eventstore.EndOfStream, Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs[0].Version, hex.EncodeToString(evs[0].Link)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lethe verify checks the whole store and one stream; erasing a subject
// (its key destroyed, its ciphertext kept) leaves every chain intact; a row
// edited behind Lethe's back is named by stream and version.
func TestVerifyCommand(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	e.appendPersonal("person-1", "ada@example.com", 1)
	e.appendPersonal("person-1", "ada@example.com", 3)
	e.appendPersonal("person-1", "ada@example.com", 12)
	e.appendPersonal("person-2", "bob@example.com", 2)
	e.appendPlain("order-1", 1)
	e.appendPlain("order-1", 15)

	out, code := e.cli("", "verify")
	if code != 0 || !strings.Contains(out, "every chain holds") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	// Erase a subject through the CLI: the chains still hold.
	if out, code := e.cli("ada@example.com\n", "subject", "erase", "--subject", "-"); code != 0 {
		t.Fatalf("erase: exit %d\n%s", code, out)
	}
	if evs, err := e.store.ReadStream(e.ctx, "person-1", eventstore.ReadStreamOptions{}, forgettable.Personal); err != nil || len(evs[0].Redacted) == 0 {
		t.Fatalf("after the erasure the fields should be forgotten: %v %v", evs, err)
	}
	out, code = e.cli("", "verify", "--json")
	var rep verifyReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("verify --json after the erasure: exit %d\n%s", code, out)
	}
	// person-1, person-2, order-1 and the erasure records' stream.
	if !rep.OK || rep.Streams != 4 || rep.Events != 16+2+16+2 || len(rep.Broken) != 0 || rep.Unchained != 0 {
		t.Errorf("verify --json after the erasure: %+v", rep)
	}

	// One byte of a ciphertext changed behind Lethe's back.
	e.tamper(`UPDATE events SET data = jsonb_set(data, '{phone-number}',
		to_jsonb(overlay(data->>'phone-number' placing (CASE WHEN substr(data->>'phone-number', 20, 1) = 'A' THEN 'B' ELSE 'A' END) from 20 for 1)))
		WHERE stream_id = 'person-1' AND version = 9`)
	out, code = e.cli("", "verify")
	if code != 1 || !strings.Contains(out, "stream person-1 version 9: link-mismatch") || !strings.Contains(out, "1 broken") {
		t.Fatalf("verify after tampering: exit %d, want 1 naming person-1 version 9\n%s", code, out)
	}
	if strings.Contains(out, "person-2") || strings.Contains(out, "order-1") {
		t.Errorf("untouched streams reported:\n%s", out)
	}
	if out, code := e.cli("", "verify", "--stream", "person-2"); code != 0 || !strings.Contains(out, "stream person-2: 2 events, last version 1, head ") {
		t.Errorf("verify --stream person-2: exit %d\n%s", code, out)
	}
	out, code = e.cli("", "verify", "--stream", "person-1", "--json")
	rep = verifyReport{}
	if code != 1 || json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep) != nil || rep.OK ||
		len(rep.Broken) != 1 || rep.Broken[0] != (chainBreak{Stream: "person-1", Version: 9, Reason: eventstore.BreakLinkMismatch}) {
		t.Errorf("verify --stream person-1 --json: exit %d, %+v\n%s", code, rep, out)
	}
	// A deleted event is a gap.
	e.tamper(`DELETE FROM events WHERE stream_id = 'order-1' AND version = 3`)
	if out, code := e.cli("", "verify", "--stream", "order-1"); code != 1 || !strings.Contains(out, "stream order-1 version 3: version-gap") {
		t.Errorf("verify after a deletion: exit %d\n%s", code, out)
	}

	// Usage and connection errors: exit 2.
	for _, args := range [][]string{
		{"verify", "--stream", "a", "--file", "b"},
		{"verify", "--offline"},
		{"verify", "--stream", "no spaces"},
		{"verify", "--nope"},
		{"verify", "extra"},
		{"verify", "--stream", "never-written"},
		{"verify", "--file", filepath.Join(t.TempDir(), "missing.ndjson")},
		{"verify", "--file", writeFile(t, "x.txt", []byte("hello"))},
		{"verify", "--file", writeFile(t, "other.json", []byte(`{"format": "something-else/1"}`))},
		{"verify", "--database-url", "postgres://lethe@127.0.0.1:1/lethe?connect_timeout=2"},
	} {
		if out, code := e.cli("", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, out)
		}
	}
	if _, code := e.cli("", "verify", "-h"); code != 0 {
		t.Errorf("verify -h: exit %d, want 0", code)
	}
}

// auditRecord is a line of the fixture: what an audit export holds
// (format lethe-audit-export/1, written by api/postgres).
type auditRecord struct {
	ID          string `json:"id"`
	At          string `json:"at"`
	Kind        string `json:"kind"`
	Actor       string `json:"actor,omitempty"`
	Stream      string `json:"stream,omitempty"`
	FromVersion *int64 `json:"fromVersion,omitempty"`
	ToVersion   *int64 `json:"toVersion,omitempty"`
	Link        string `json:"link,omitempty"`
}

func ndjsonExport(t *testing.T, recs []auditRecord) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, `{"summary":{"format":"lethe-audit-export/1","count":%d,"sha256":"%x","kinds":["append","pii.read"],"generatedAt":"2026-12-01T10:00:00Z","complete":true}}`+"\n", len(recs), sum)
	return b.Bytes()
}

func csvExport(t *testing.T, recs []auditRecord) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(auditCSVHeader + "\r\n")
	for _, r := range recs {
		from, to := "", ""
		if r.FromVersion != nil {
			from, to = fmt.Sprint(*r.FromVersion), fmt.Sprint(*r.ToVersion)
		}
		fmt.Fprintf(&b, "%s,%s,%s,%s,,%s,%s,%s,,%s,\"{\"\"n\"\": 1}\"\r\n", r.ID, r.At, r.Kind, r.Actor, r.Stream, from, to, r.Link)
	}
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, `summary,2026-12-01T10:00:00Z,summary,,,,,,,,"{""format"":""lethe-audit-export/1"",""count"":%d,""sha256"":""%x""}"`+"\r\n", len(recs), sum)
	return b.Bytes()
}

// lethe verify --file checks an audit export's own digest and count, and
// every chain head it quotes against the store; a subject access export's
// event links against the store.
func TestVerifyFile(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	e.appendPlain("order-1", 3)
	v1, link1 := e.head("order-1")
	e.appendPlain("order-1", 12)
	v2, link2 := e.head("order-1")
	e.appendPlain("order-2", 1)
	v3, link3 := e.head("order-2")
	i64 := func(n int64) *int64 { return &n }
	recs := []auditRecord{
		{ID: "events:65536", At: "2026-12-01T09:00:00Z", Kind: "append", Actor: "token:t", Stream: "order-1", FromVersion: i64(0), ToVersion: i64(v1), Link: link1},
		{ID: "access_log:1", At: "2026-12-01T09:00:01Z", Kind: "pii.read", Actor: "token:r"},
		{ID: "events:131072", At: "2026-12-01T09:00:02Z", Kind: "append", Actor: "token:t", Stream: "order-1", FromVersion: i64(v1 + 1), ToVersion: i64(v2), Link: link2},
		{ID: "events:196608", At: "2026-12-01T09:00:03Z", Kind: "append", Stream: "order-2", FromVersion: i64(0), ToVersion: i64(v3), Link: link3},
	}
	nd := writeFile(t, "audit.ndjson", ndjsonExport(t, recs))
	cs := writeFile(t, "audit.csv", csvExport(t, recs))
	for _, f := range []string{nd, cs} {
		out, code := e.cli("", "verify", "--file", f)
		if code != 0 || !strings.Contains(out, "4 records, SHA-256 matches; 3 quoted links checked against the store: verified") {
			t.Errorf("verify --file %s: exit %d\n%s", filepath.Base(f), code, out)
		}
	}
	out, code := e.cli("", "verify", "--file", nd, "--json")
	var rep fileReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Records != 4 || rep.LinksChecked != 3 ||
		rep.DigestOK == nil || !*rep.DigestOK || rep.Format != "lethe-audit-export/1" || rep.Encoding != "ndjson" {
		t.Errorf("verify --file --json: exit %d %+v\n%s", code, rep, out)
	}

	// The files edited: one byte of a record, a record dropped, cut short.
	good, _ := os.ReadFile(nd)
	edited := bytes.Replace(good, []byte(`"token:r"`), []byte(`"token:R"`), 1)
	dropped := bytes.Replace(good, good[bytes.IndexByte(good, '\n')+1:bytes.Index(good, []byte(`{"id":"events:131072"`))], nil, 1)
	cut := good[:bytes.LastIndex(good[:len(good)-1], []byte("\n"))+1]
	goodCSV, _ := os.ReadFile(cs)
	editedCSV := bytes.Replace(goodCSV, []byte("token:r"), []byte("token:R"), 1)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"edited":     {edited, "digest-mismatch"},
		"dropped":    {dropped, "count-mismatch"},
		"cut short":  {cut, "no-summary"},
		"edited csv": {editedCSV, "digest-mismatch"},
		"broken csv": {bytes.Replace(goodCSV, []byte("token:r"), []byte(`tok"en`), 1), "bad-record"},
		"after the summary": {append(append([]byte{}, good...), `{"id":"x","kind":"append"}`+"\n"...),
			"data-after-summary"},
	} {
		ext := ".ndjson"
		if strings.HasSuffix(name, "csv") {
			ext = ".csv"
		}
		out, code := e.cli("", "verify", "--file", writeFile(t, "f"+ext, tc.data), "--offline")
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 1 and %s\n%s", name, code, tc.want, out)
		}
	}
	// --offline reads the file alone: no database needed.
	var stdout, stderr bytes.Buffer
	if err := run(e.ctx, []string{"verify", "--file", nd, "--offline"}, env(nil), nil, &stdout, &stderr); err != nil ||
		!strings.Contains(stdout.String(), "not checked against the store (--offline): verified") {
		t.Errorf("verify --offline without a database: %v\n%s%s", err, stdout.String(), stderr.String())
	}

	// The store cut short behind Lethe's back: order-2's quoted head is
	// gone, and its chain alone still holds.
	e.tamper(`DELETE FROM events WHERE stream_id = 'order-2'`)
	for _, f := range []string{nd, cs} {
		out, code := e.cli("", "verify", "--file", f)
		if code != 1 || !strings.Contains(out, "stream order-2 version 0: missing-event") {
			t.Errorf("verify --file %s after order-2 was deleted: exit %d\n%s", filepath.Base(f), code, out)
		}
	}
	if out, code := e.cli("", "verify"); code != 0 {
		t.Errorf("verify of the store: exit %d, want 0: a deleted stream leaves no trace in the store\n%s", code, out)
	}
	// A quoted head rewritten: another link.
	e.tamper(fmt.Sprintf(`UPDATE events SET link = sha256('x') WHERE stream_id = 'order-1' AND version = %d`, v1))
	if out, code := e.cli("", "verify", "--file", nd); code != 1 || !strings.Contains(out, fmt.Sprintf("line 1 stream order-1 version %d: link-mismatch", v1)) {
		t.Errorf("verify --file after a head was rewritten: exit %d\n%s", code, out)
	}
}

// A subject access export carries each event's link; lethe verify --file
// finds them in the store, or says which is gone.
func TestVerifySubjectExportFile(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	e.appendPersonal("person-1", "casey@example.com", 2)
	e.appendPersonal("person-2", "casey@example.com", 11)
	out, code := e.cli("", "subject", "export", "--subject", "casey@example.com")
	var doc wire.SubjectExport
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.Count != 13 {
		t.Fatalf("subject export: exit %d\n%s", code, out)
	}
	_, head := e.head("person-2")
	if got := doc.Events[12].Link; got != head {
		t.Errorf("the export's last link %q, want the stream's head %q", got, head)
	}
	f := writeFile(t, "export.json", []byte(out))
	if out, code := e.cli("", "verify", "--file", f); code != 0 || !strings.Contains(out, "subject access export") || !strings.Contains(out, "13 records; 13 quoted links checked against the store: verified") {
		t.Errorf("verify --file (subject export): exit %d\n%s", code, out)
	}
	if out, code := e.cli("", "verify", "--file", writeFile(t, "cut.json", []byte(out[:len(out)/2]))); code != 1 || !strings.Contains(out, "incomplete") {
		t.Errorf("verify --file (cut export): exit %d\n%s", code, out)
	}
	e.tamper(`DELETE FROM events WHERE stream_id = 'person-2' AND version = 10`)
	if out, code := e.cli("", "verify", "--file", f); code != 1 || !strings.Contains(out, "line 13 stream person-2 version 10: missing-event") {
		t.Errorf("verify --file after an exported event was deleted: exit %d\n%s", code, out)
	}
}
