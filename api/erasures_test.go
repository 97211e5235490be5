package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	fpg "github.com/lethe-store/lethe/forgettable/postgres"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection"
)

// getRaw GETs path with a token and returns the status and body as sent.
func getRaw(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testenv.Context(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// The erasure proofs through HTTP: a subject with personal data in two
// streams is erased; the auditor's receipt names both streams, the counts,
// the post-delete check of Vault, the records in $lethe-erasures, and every
// projection cleaned once its checkpoint passed the last record; the admin's
// receipt by subject is the same document. A request pending for more than
// a month is overdue. Pages, filters, roles, and no personal data anywhere.
func TestErasureReceiptsThroughTheAPI(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	if _, err := tk.writer.Append(ctx, "lead-13", wire.Exact(-1), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized",
		Data: json.RawMessage(`{"first-name":"Casey","phone-number":"555-2951"}`), PersonalData: []wire.PersonalData{{Subject: casey, Paths: []string{"/first-name", "/phone-number"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.writer.Append(ctx, "lead-14", wire.Exact(-1), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized",
		Data: json.RawMessage(`{"first-name":"Dana"}`), PersonalData: []wire.PersonalData{{Subject: "dana@example.com", Paths: []string{"/first-name"}}}}); err != nil {
		t.Fatal(err)
	}
	// Both projections have applied the appends before the erasure.
	eventually(t, "the lookup index", func() error {
		s, err := tk.pii.Lookup(ctx, "lead", "/phone-number", "555-2951")
		if err != nil || fmt.Sprint(s) != "[lead-12 lead-13]" {
			return fmt.Errorf("%v, %v", s, err)
		}
		return nil
	})

	erased, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{Reason: "request by e-mail", LegalBasis: "GDPR Art. 17(1)(a)"})
	if err != nil {
		t.Fatal(err)
	}
	// The erase answer is the summary: deadline, times, no proof details.
	if erased.CompletedAt == nil || !erased.CompletedAt.Equal(erased.Completion.CompletedAt) || erased.Overdue ||
		!erased.Deadline.Equal(forgettable.ErasureDeadline(erased.RequestedAt)) || erased.Records != nil || erased.Streams != nil || erased.Projections != nil {
		t.Errorf("erase answer = %+v", erased)
	}

	var receipt wire.ErasureReceipt
	eventually(t, "every projection cleaned", func() error {
		receipt, err = tk.auditor.ErasureReceipt(ctx, erased.ErasureID, client.ReceiptOptions{})
		if err != nil {
			return err
		}
		if len(receipt.Projections) != 2 {
			return fmt.Errorf("projections %+v", receipt.Projections)
		}
		for _, p := range receipt.Projections {
			if !p.Cleaned {
				return fmt.Errorf("%+v not cleaned", p)
			}
		}
		return nil
	})
	c := receipt.Completion
	if receipt.ErasureID != erased.ErasureID || receipt.SubjectRef != erased.SubjectRef || receipt.Status != "completed" || c == nil ||
		!c.KeyExisted || !c.KeyVerifiedGone || c.KeyVersionsDestroyed != 1 || c.StreamsAffected != 2 || c.EventsAffected != 3 ||
		receipt.Reason != "request by e-mail" || receipt.LegalBasis != "GDPR Art. 17(1)(a)" || receipt.Actor != "token:"+api.BootstrapTokenID ||
		receipt.Overdue || receipt.CompletedAt == nil || !receipt.Deadline.Equal(forgettable.ErasureDeadline(receipt.RequestedAt)) {
		t.Errorf("receipt = %+v, completion %+v", receipt, c)
	}
	if !slices.Equal(receipt.Streams, []string{"lead-12", "lead-13"}) || receipt.StreamsNext != "" {
		t.Errorf("streams = %v (next %q), want [lead-12 lead-13]", receipt.Streams, receipt.StreamsNext)
	}
	if len(receipt.Records) != 2 || receipt.Records[0].Type != forgettable.SubjectFencedType || receipt.Records[1].Type != "subject-erased" ||
		receipt.Records[1].EventID != receipt.ErasureID || receipt.Records[0].StreamID != "$lethe-erasures" || receipt.Records[0].Position >= receipt.Records[1].Position {
		t.Errorf("records = %+v", receipt.Records)
	}
	for _, p := range receipt.Projections {
		if p.Position < receipt.Records[1].Position {
			t.Errorf("projection %+v cleaned before its checkpoint reached %d", p, receipt.Records[1].Position)
		}
	}
	// The lookup index agrees: casey's phone number finds nothing.
	if s, err := tk.pii.Lookup(ctx, "lead", "/phone-number", "555-2951"); err != nil || len(s) != 0 {
		t.Errorf("lookup after the receipt said cleaned: %v, %v", s, err)
	}
	// The receipt by subject (admin) is the same document.
	bySubject, err := tk.admin.Erasure(ctx, casey)
	if err != nil || !reflect.DeepEqual(bySubject, receipt) {
		t.Errorf("receipt by subject = %+v, %v\nwant %+v", bySubject, err, receipt)
	}
	// Streams a page at a time.
	first, err := tk.auditor.ErasureReceipt(ctx, erased.ErasureID, client.ReceiptOptions{StreamsLimit: 1})
	if err != nil || !slices.Equal(first.Streams, []string{"lead-12"}) || first.StreamsNext != "lead-12" {
		t.Errorf("first page of streams = %v (next %q), %v", first.Streams, first.StreamsNext, err)
	}
	second, err := tk.auditor.ErasureReceipt(ctx, erased.ErasureID, client.ReceiptOptions{StreamsLimit: 1, StreamsAfter: first.StreamsNext})
	if err != nil || !slices.Equal(second.Streams, []string{"lead-13"}) || second.StreamsNext != "" {
		t.Errorf("second page of streams = %v (next %q), %v", second.Streams, second.StreamsNext, err)
	}

	// A request recorded 40 days ago whose key was never destroyed (the
	// ledger row written as the superuser: the ledger takes now()).
	pendingRef := make([]byte, 32)
	_, _ = rand.Read(pendingRef)
	pendingID := eventstore.NewEventID()
	if _, err := d.pool.Exec(ctx, `INSERT INTO erasures (erasure_id, subject_ref, requested_at, actor, request_id) VALUES ($1, $2, now() - interval '40 days', 'cli:dpo', 'DSR-OLD')`,
		pgtype.UUID{Bytes: pendingID, Valid: true}, hex.EncodeToString(pendingRef)); err != nil {
		t.Fatal(err)
	}
	ids := func(l wire.ErasureList) []string {
		var out []string
		for _, e := range l.Erasures {
			out = append(out, e.ErasureID)
		}
		return out
	}
	for _, tc := range []struct {
		status string
		want   []string
	}{
		{"", []string{erased.ErasureID, pendingID.String()}},
		{"overdue", []string{pendingID.String()}},
		{"pending", []string{pendingID.String()}},
		{"completed", []string{erased.ErasureID}},
	} {
		l, err := tk.auditor.Erasures(ctx, client.ErasureListOptions{Status: tc.status})
		if err != nil || !slices.Equal(ids(l), tc.want) || l.Next != nil {
			t.Errorf("erasures, status %q = %v (next %v), %v; want %v", tc.status, ids(l), l.Next, err, tc.want)
		}
	}
	overdue, err := tk.admin.Erasures(ctx, client.ErasureListOptions{Status: "overdue"})
	if err != nil || len(overdue.Erasures) != 1 {
		t.Fatalf("overdue = %+v, %v", overdue, err)
	}
	if o := overdue.Erasures[0]; !o.Overdue || o.Status != "pending" || o.CompletedAt != nil || o.Completion != nil || o.RequestID != "DSR-OLD" ||
		!o.Deadline.Before(time.Now()) || o.Records != nil || o.Projections != nil {
		t.Errorf("the overdue erasure = %+v", o)
	}
	// Its receipt: no record yet, so no projection can be clean of it.
	pending, err := tk.auditor.ErasureReceipt(ctx, pendingID.String(), client.ReceiptOptions{})
	if err != nil || !pending.Overdue || pending.Records == nil || len(pending.Records) != 0 || pending.Streams == nil || len(pending.Streams) != 0 || len(pending.Projections) != 2 {
		t.Fatalf("pending receipt = %+v, %v", pending, err)
	}
	for _, p := range pending.Projections {
		if p.Cleaned {
			t.Errorf("projection %+v cleaned of an erasure without a record", p)
		}
	}
	// The request-time filter.
	l, err := tk.auditor.Erasures(ctx, client.ErasureListOptions{To: time.Now().AddDate(0, 0, -30)})
	if err != nil || !slices.Equal(ids(l), []string{pendingID.String()}) {
		t.Errorf("erasures requested over 30 days ago = %v, %v", ids(l), err)
	}
	l, err = tk.auditor.Erasures(ctx, client.ErasureListOptions{From: time.Now().AddDate(0, 0, -30)})
	if err != nil || !slices.Equal(ids(l), []string{erased.ErasureID}) {
		t.Errorf("erasures of the last 30 days = %v, %v", ids(l), err)
	}

	// Pages: more erasures, listed two at a time, newest first, each once.
	for i := range 5 {
		if _, err := tk.admin.Erase(ctx, fmt.Sprintf("subject-%d@example.com", i), wire.EraseRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []wire.ErasureReceipt
	opts := client.ErasureListOptions{Limit: 2}
	for pages := 1; ; pages++ {
		if pages > 10 {
			t.Fatal("the listing does not end")
		}
		page, err := tk.auditor.Erasures(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, page.Erasures...)
		if page.Next == nil {
			if pages != 4 || len(page.Erasures) != 1 {
				t.Errorf("page %d of 7 erasures by 2 has %d and is the last", pages, len(page.Erasures))
			}
			break
		}
		if len(page.Erasures) != 2 {
			t.Errorf("page %d holds %d erasures, want 2", pages, len(page.Erasures))
		}
		opts.Cursor = *page.Next
	}
	all, err := tk.auditor.Erasures(ctx, client.ErasureListOptions{})
	if err != nil || len(all.Erasures) != 7 || !reflect.DeepEqual(ids(all), ids(wire.ErasureList{Erasures: seen})) {
		t.Errorf("pages = %v, one page = %v, %v", ids(wire.ErasureList{Erasures: seen}), ids(all), err)
	}
	if !slices.IsSortedFunc(seen, func(a, b wire.ErasureReceipt) int { return b.RequestedAt.Compare(a.RequestedAt) }) || seen[len(seen)-1].ErasureID != pendingID.String() {
		t.Errorf("not newest first: %v", ids(wire.ErasureList{Erasures: seen}))
	}

	// Roles: auditor and admin read; nobody else.
	for _, cl := range []*client.Client{tk.reader, tk.pii, tk.writer} {
		if _, err := cl.Erasures(ctx, client.ErasureListOptions{}); problemType(err) != "forbidden" {
			t.Errorf("list as a non-auditor = %v, want forbidden", err)
		}
		if _, err := cl.ErasureReceipt(ctx, erased.ErasureID, client.ReceiptOptions{}); problemType(err) != "forbidden" {
			t.Errorf("receipt as a non-auditor = %v, want forbidden", err)
		}
	}
	if _, err := tk.admin.ErasureReceipt(ctx, erased.ErasureID, client.ReceiptOptions{}); err != nil {
		t.Errorf("receipt as admin: %v", err)
	}

	// Problems.
	for _, tc := range []struct {
		path, problem string
		status        int
	}{
		{"/v1/erasures/" + eventstore.NewEventID().String(), "erasure-not-found", 404},
		{"/v1/erasures/not-a-uuid", "invalid-request", 400},
		{"/v1/erasures/" + erased.ErasureID + "?streamsLimit=0", "invalid-query", 400},
		{"/v1/erasures/" + erased.ErasureID + "?after=x", "invalid-query", 400},
		{"/v1/erasures?status=late", "invalid-query", 400},
		{"/v1/erasures?from=yesterday", "invalid-query", 400},
		{"/v1/erasures?cursor=garbage", "invalid-query", 400},
		{"/v1/erasures?limit=1001", "invalid-query", 400},
	} {
		status, body := getRaw(t, hs.URL+tc.path, tk.secrets[wire.RoleAuditor])
		var p wire.Problem
		if err := json.Unmarshal([]byte(body), &p); err != nil || status != tc.status || p.Type != api.ProblemTypeBase+tc.problem || p.Status != tc.status {
			t.Errorf("GET %s = %d %s, want %d %s", tc.path, status, body, tc.status, tc.problem)
		}
	}

	// No subject id and no personal value in any answer of these routes.
	for _, path := range []string{"/v1/erasures", "/v1/erasures?status=overdue", "/v1/erasures/" + erased.ErasureID, "/v1/erasures/" + pendingID.String()} {
		status, body := getRaw(t, hs.URL+path, tk.secrets[wire.RoleAuditor])
		if status != 200 {
			t.Errorf("GET %s = %d", path, status)
		}
		for _, s := range append(slices.Clone(seedSecrets), "dana", "Dana", "subject-0@", "example.com") {
			if strings.Contains(body, s) {
				t.Errorf("GET %s holds %q: %s", path, s, body)
			}
		}
	}
}

// Cleaned is the checkpoint at or past the erasure's last record; without
// a record, nothing is cleaned.
func TestErasureReceiptCleaned(t *testing.T) {
	t.Parallel()
	id := eventstore.NewEventID()
	fenced, erased := forgettable.ErasureRecordIDs(id)
	requested := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	p := forgettable.ErasureProof{
		Erasure: forgettable.Erasure{ID: id, Ref: "3f", RequestedAt: requested, Actor: "test"},
		Records: []forgettable.ErasureRecord{{EventID: fenced, Type: forgettable.SubjectFencedType, Position: 100}, {EventID: erased, Type: "subject-erased", Position: 200}},
		Streams: []string{"lead-1", "lead-2"}, MoreStreams: true,
	}
	statuses := []projection.Status{
		{Name: "behind", Position: 199},
		{Name: "at", Position: 200},
		{Name: "past", Position: 5000},
		{Name: "rebuilding", Position: 0, RebuildPending: true},
	}
	now := requested.AddDate(0, 2, 0)
	r := api.ErasureReceipt(p, statuses, now)
	want := map[string]bool{"behind": false, "at": true, "past": true, "rebuilding": false}
	for _, pr := range r.Projections {
		if pr.Cleaned != want[pr.Name] {
			t.Errorf("projection %s at %d: cleaned %v, want %v", pr.Name, pr.Position, pr.Cleaned, want[pr.Name])
		}
	}
	if !r.Overdue || r.Status != "pending" || !r.Deadline.Equal(time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)) || r.StreamsNext != "lead-2" {
		t.Errorf("receipt = %+v", r)
	}
	p.Records = nil
	for _, pr := range api.ErasureReceipt(p, statuses, now).Projections {
		if pr.Cleaned {
			t.Errorf("projection %s cleaned of an erasure without a record", pr.Name)
		}
	}
}

// The cursor is opaque, and what it encodes comes back.
func TestErasureCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := forgettable.ErasureCursor{RequestedAt: time.Date(2026, 3, 1, 2, 3, 4, 567891000, time.UTC), ID: eventstore.NewEventID()}
	got, err := api.DecodeErasureCursor(api.EncodeErasureCursor(c))
	if err != nil || !got.RequestedAt.Equal(c.RequestedAt) || got.ID != c.ID {
		t.Errorf("round trip of %+v = %+v, %v", c, got, err)
	}
	for _, bad := range []string{"", "garbage", "AAAA", strings.Repeat("A", 40)} {
		if _, err := api.DecodeErasureCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

// completeFailsOnce is a real ledger whose first CompleteErasure fails, as
// when PostgreSQL becomes unreachable for an erasure's last step.
type completeFailsOnce struct {
	*fpg.Ledger
	failed atomic.Bool
}

func (l *completeFailsOnce) CompleteErasure(ctx context.Context, id [16]byte, c forgettable.ErasureCompletion) error {
	if !l.failed.Swap(true) {
		return errors.New("record erasure completion: connection refused (injected)")
	}
	return l.Ledger.CompleteErasure(ctx, id, c)
}

// An erasure interrupted after its key was destroyed, finished over HTTP:
// the receipt and the audit export's erasure.completed say it resumed, so
// that its keyExisted: false is read as this call's finding only.
func TestResumedErasureThroughTheAPI(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	// The first attempt, in another process: key destroyed, completion
	// not recorded.
	other := d.open()
	flaky := forgettable.New(other.Events(), other.Vault(), &completeFailsOnce{Ledger: other.Ledger()}, other.Policies(), forgettable.Options{})
	if _, err := flaky.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "cli:dpo"}); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("first attempt: %v, want the injected failure", err)
	}

	erased, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := erased.Completion; erased.Status != "completed" || erased.Actor != "cli:dpo" || c == nil || !c.Resumed || c.KeyExisted || c.KeyVersionsDestroyed != 0 || !c.KeyVerifiedGone {
		t.Fatalf("erase answer = %+v, completion %+v; want resumed, key verified gone", erased, erased.Completion)
	}
	status, raw := getRaw(t, hs.URL+"/v1/erasures/"+erased.ErasureID, tk.secrets[wire.RoleAuditor])
	if status != http.StatusOK || !strings.Contains(raw, `"resumed":true`) {
		t.Errorf("receipt = %d %s, want resumed", status, raw)
	}
	var done []api.AuditRecord
	if err := apipg.NewAuditTrail(d.pool).AuditRecords(ctx, api.AuditQuery{Kinds: []string{wire.AuditErasureCompleted}}, func(r *api.AuditRecord) error {
		done = append(done, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var dm map[string]any
	if len(done) != 1 || json.Unmarshal(done[0].Details, &dm) != nil || dm["resumed"] != true || dm["keyVerifiedGone"] != true || dm["keyExisted"] != false {
		t.Errorf("erasure.completed records = %d, details %s", len(done), func() []byte {
			if len(done) == 0 {
				return nil
			}
			return done[0].Details
		}())
	}
}
