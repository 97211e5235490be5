package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// The subject access export over HTTP: the seed's subject's events across
// two streams, values open, recorded in the access log before it was
// sent; after the erasure, 410 with the erasure's id and nothing else.
func TestSubjectExport(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	for _, stream := range []string{"lead-12", "lead-77"} {
		if _, err := tk.writer.Append(ctx, stream, wire.Exact(-1), seedLead()...); err != nil {
			t.Fatal(err)
		}
	}
	subject := eventstoretest.SeedSubject
	var buf bytes.Buffer
	if _, err := tk.admin.ExportSubject(ctx, subject, &buf); err != nil {
		t.Fatal(err)
	}
	var doc wire.SubjectExport
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("export is not a SubjectExport document: %v", err)
	}
	var want int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE $1 = ANY (subject_refs)`, doc.SubjectRef).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if doc.Format != "lethe-subject-export/1" || !doc.Complete || doc.Count != want || len(doc.Events) != want || want == 0 ||
		strings.Join(doc.Streams, ",") != "lead-12,lead-77" {
		t.Fatalf("export: format %q, complete %v, count %d, %d events, streams %v; want %d events in lead-12 and lead-77",
			doc.Format, doc.Complete, doc.Count, len(doc.Events), doc.Streams, want)
	}
	for _, secret := range eventstoretest.SeedSecrets {
		if secret != subject && !bytes.Contains(buf.Bytes(), []byte(secret)) {
			t.Errorf("the export lacks %q", secret)
		}
	}
	var logged int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE route = '/v1/subjects/{subject}/export'
		AND subject_refs = ARRAY[$1] AND stream_ids = ARRAY['lead-12', 'lead-77'] AND events = $2`, doc.SubjectRef, want).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	if logged != 1 {
		t.Errorf("%d access log rows for the export, want 1 naming the subject, its streams and %d events", logged, want)
	}

	// A subject with no data: an empty export, recorded all the same.
	buf.Reset()
	if _, err := tk.admin.ExportSubject(ctx, "nobody@example.com", &buf); err != nil {
		t.Fatal(err)
	}
	var empty wire.SubjectExport
	if err := json.Unmarshal(buf.Bytes(), &empty); err != nil || !empty.Complete || empty.Count != 0 || len(empty.Events) != 0 || len(empty.Streams) != 0 {
		t.Fatalf("export of a subject without data: %s, %v", buf.Bytes(), err)
	}
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE route = '/v1/subjects/{subject}/export' AND subject_refs = ARRAY[$1] AND events = 0`,
		empty.SubjectRef).Scan(&logged); err != nil || logged != 1 {
		t.Fatalf("access log rows of the empty export: %d, %v", logged, err)
	}
	if bytes.Contains(buf.Bytes(), []byte("nobody")) {
		t.Error("the export names the subject id")
	}

	receipt, err := tk.admin.Erase(ctx, subject, wire.EraseRequest{Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	_, err = tk.admin.ExportSubject(ctx, subject, &buf)
	var p *wire.Problem
	if !errors.As(err, &p) || p.Status != http.StatusGone || !strings.HasSuffix(p.Type, "/subject-gone") || p.ErasureID != receipt.ErasureID || buf.Len() != 0 {
		t.Fatalf("export after the erasure: %v (%d bytes); want 410 subject-gone naming erasure %s", err, buf.Len(), receipt.ErasureID)
	}
}

// A subject export longer than the server's write timeout is not cut off:
// the deadline moves with each write.
func TestSubjectExportOutlivesWriteTimeout(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	for i := range 100 { // 100 copies of the lead: over one 64 KiB write
		if _, err := tk.writer.Append(ctx, "lead-"+itoa(int64(100+i)), wire.Exact(-1), seedLead()...); err != nil {
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
	if _, err := client.New(srv.URL, d.adminToken, srv.Client()).ExportSubject(ctx, eventstoretest.SeedSubject, &buf); err != nil {
		t.Fatalf("export behind a 1 ns WriteTimeout: %v", err)
	}
	var doc wire.SubjectExport
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || !doc.Complete || len(doc.Streams) != 100 || buf.Len() < 64<<10 {
		t.Errorf("export: %d bytes, %d streams, complete %v, %v; want 100 streams over 64 KiB", buf.Len(), len(doc.Streams), doc.Complete, err)
	}
}

// failingExport is a subject export that repeats its last event copies
// times, then fails.
type failingExport struct {
	api.Subjects
	copies int
}

func (f failingExport) ExportSubject(ctx context.Context, subject string, record func(forgettable.Footprint) error, fn func(forgettable.RecordedEvent) error) error {
	var last forgettable.RecordedEvent
	if err := f.Subjects.ExportSubject(ctx, subject, record, func(e forgettable.RecordedEvent) error {
		last = e
		return fn(e)
	}); err != nil {
		return err
	}
	for range f.copies {
		if err := fn(last); err != nil {
			return err
		}
	}
	return errInjected
}

// A subject export that fails once bytes are out aborts the connection:
// the client never gets a document ending with "complete": true. One that
// fails before its first byte is a problem document, and showed nothing.
func TestSubjectExportFailureAbortsConnection(t *testing.T) {
	d := newDeployment(t)
	a := d.server()
	tk := d.tokens(a)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	late := d.server(func(o *api.Options) { o.Subjects = failingExport{o.Subjects, 2000} })
	early := d.server(func(o *api.Options) { o.Subjects = failingExport{o.Subjects, 0} })
	path := "/v1/subjects/" + url.PathEscape(casey) + "/export"

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, late.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || readErr == nil || len(body) < 64<<10 || bytes.Contains(body, []byte(`"complete":true`)) {
		t.Errorf("failure after the start: %d, %d bytes, read error %v; want 200 cut off after 64 KiB, without \"complete\": true",
			resp.StatusCode, len(body), readErr)
	}

	status, text := getRaw(t, early.URL+path, d.adminToken)
	if status != http.StatusInternalServerError || !strings.Contains(text, "/problems/internal") {
		t.Errorf("failure before the first byte: %d %.200s; want 500 internal", status, text)
	}
	if !strings.Contains(d.logs.String(), errInjected.Error()) {
		t.Errorf("the failure is not logged")
	}
}
