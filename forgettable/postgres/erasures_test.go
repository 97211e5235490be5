package postgres_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	espg "github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/forgettable/postgres"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// MustOpenStore returns an event store on a new, migrated database: the
// ledger's proofs read its events.
func MustOpenStore(tb testing.TB) *espg.Store {
	tb.Helper()
	s := espg.New(testenv.Pool(tb, testenv.MigratedDatabase(tb)), espg.Options{})
	tb.Cleanup(s.Close)
	return s
}

func randomRef(tb testing.TB) string {
	tb.Helper()
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// insertErasure writes a ledger row as the test's superuser, with a
// request time of the test's choosing (the ledger takes now()), and a
// completion if completed is not zero.
func insertErasure(tb testing.TB, pool *pgxpool.Pool, ref string, requested, completed time.Time) [16]byte {
	tb.Helper()
	ctx := testenv.Context(tb)
	id := eventstore.NewEventID()
	if _, err := pool.Exec(ctx, `INSERT INTO erasures (erasure_id, subject_ref, requested_at, actor) VALUES ($1, $2, $3, 'test')`,
		pgtype.UUID{Bytes: id, Valid: true}, ref, requested); err != nil {
		tb.Fatal(err)
	}
	if !completed.IsZero() {
		if _, err := pool.Exec(ctx, `INSERT INTO erasure_completions (erasure_id, completed_at, key_existed, versions_destroyed,
			key_verified_gone, streams_affected, events_affected) VALUES ($1, $2, true, 1, true, 0, 0)`,
			pgtype.UUID{Bytes: id, Valid: true}, completed); err != nil {
			tb.Fatal(err)
		}
	}
	return id
}

// The deadline is one calendar month in UTC, clamped to the month's last
// day, and PostgreSQL (the overdue filter) and Go (the deadline and
// overdue fields) agree to the microsecond, whatever the session's time
// zone.
func TestErasureDeadlineSQLAndGoAgree(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	u, err := url.Parse(testenv.MigratedDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("timezone", "America/St_Johns") // UTC-3:30, with summer time: month sums differ from UTC's
	u.RawQuery = q.Encode()
	pool := testenv.Pool(t, u.String())
	ledger := postgres.NewLedger(pool)
	for _, tc := range []struct{ requested, deadline string }{
		{"2024-01-31T23:30:00Z", "2024-02-29T23:30:00Z"},
		{"2023-01-31T10:00:00Z", "2023-02-28T10:00:00Z"},
		{"2025-12-31T12:00:00.123456Z", "2026-01-31T12:00:00.123456Z"},
		{"2026-03-31T08:00:00Z", "2026-04-30T08:00:00Z"},
		{"2026-05-15T00:00:00Z", "2026-06-15T00:00:00Z"},
		{"2024-03-01T02:00:00Z", "2024-04-01T02:00:00Z"}, // St John's: 29 February, 22:30
	} {
		requested, _ := time.Parse(time.RFC3339Nano, tc.requested)
		want, _ := time.Parse(time.RFC3339Nano, tc.deadline)
		if got := forgettable.ErasureDeadline(requested); !got.Equal(want) {
			t.Errorf("ErasureDeadline(%s) = %s, want %s", tc.requested, got, tc.deadline)
		}
		pending := insertErasure(t, pool, randomRef(t), requested, time.Time{})
		onTime := insertErasure(t, pool, randomRef(t), requested, want)
		late := insertErasure(t, pool, randomRef(t), requested, want.Add(time.Microsecond))
		for _, now := range []time.Time{want, want.Add(time.Microsecond)} {
			es, err := ledger.ListErasures(ctx, forgettable.ErasureQuery{Status: forgettable.ErasuresOverdue, Limit: 100, Now: now,
				From: requested, To: requested.Add(time.Microsecond)})
			if err != nil {
				t.Fatal(err)
			}
			var ids [][16]byte
			for _, e := range es {
				ids = append(ids, e.ID)
				if !e.Overdue(now) || !e.Deadline().Equal(want) {
					t.Errorf("%s at %s: SQL lists %x as overdue, Go says overdue %v with deadline %s", tc.requested, now, e.ID, e.Overdue(now), e.Deadline())
				}
			}
			wantIDs := [][16]byte{late}
			if now.After(want) {
				wantIDs = append(wantIDs, pending)
			}
			for _, id := range [][16]byte{pending, onTime, late} {
				if slices.Contains(ids, id) != slices.Contains(wantIDs, id) {
					t.Errorf("%s at %s: erasure %x overdue = %v, want %v", tc.requested, now, id, slices.Contains(ids, id), slices.Contains(wantIDs, id))
				}
			}
		}
	}
}

// Keyset pages, newest request first, ties broken by id: every erasure
// once, in order; the filters by state and request time.
func TestListErasuresPagesAndFilters(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := testenv.Pool(t, testenv.MigratedDatabase(t))
	ledger := postgres.NewLedger(pool)
	base := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	type row struct {
		id        [16]byte
		requested time.Time
		completed bool
	}
	var rows []row
	for i := range 9 {
		requested := base.Add(time.Duration(i/3) * time.Hour) // three erasures per instant
		var completed time.Time
		if i%2 == 0 {
			completed = requested.Add(time.Minute)
		}
		rows = append(rows, row{insertErasure(t, pool, randomRef(t), requested, completed), requested, !completed.IsZero()})
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := b.requested.Compare(a.requested); c != 0 {
			return c
		}
		return slices.Compare(b.id[:], a.id[:])
	})
	list := func(q forgettable.ErasureQuery) [][16]byte {
		t.Helper()
		q.Now = base.AddDate(1, 0, 0)
		var out [][16]byte
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("the listing does not end")
			}
			es, err := ledger.ListErasures(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				out = append(out, e.ID)
			}
			if len(es) < q.Limit {
				return out
			}
			c := es[len(es)-1].Cursor()
			q.After = &c
		}
	}
	want := func(keep func(row) bool) [][16]byte {
		var out [][16]byte
		for _, r := range rows {
			if keep(r) {
				out = append(out, r.id)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    forgettable.ErasureQuery
		keep func(row) bool
	}{
		{"all, pages of 2", forgettable.ErasureQuery{Limit: 2}, func(row) bool { return true }},
		{"all, one page", forgettable.ErasureQuery{Limit: 100}, func(row) bool { return true }},
		{"pending", forgettable.ErasureQuery{Limit: 2, Status: forgettable.ErasuresPending}, func(r row) bool { return !r.completed }},
		{"completed", forgettable.ErasureQuery{Limit: 2, Status: forgettable.ErasuresCompleted}, func(r row) bool { return r.completed }},
		{"overdue (the pending ones, a year on)", forgettable.ErasureQuery{Limit: 2, Status: forgettable.ErasuresOverdue}, func(r row) bool { return !r.completed }},
		{"from the second hour", forgettable.ErasureQuery{Limit: 2, From: base.Add(time.Hour)}, func(r row) bool { return !r.requested.Before(base.Add(time.Hour)) }},
		{"before the third hour", forgettable.ErasureQuery{Limit: 2, To: base.Add(2 * time.Hour)}, func(r row) bool { return r.requested.Before(base.Add(2 * time.Hour)) }},
		{"the second hour, completed", forgettable.ErasureQuery{Limit: 1, From: base.Add(time.Hour), To: base.Add(2 * time.Hour), Status: forgettable.ErasuresCompleted},
			func(r row) bool { return r.completed && r.requested.Equal(base.Add(time.Hour)) }},
	} {
		if got, want := list(tc.q), want(tc.keep); !slices.Equal(got, want) {
			t.Errorf("%s: got %x, want %x", tc.name, got, want)
		}
	}
	if _, err := ledger.ListErasures(ctx, forgettable.ErasureQuery{Limit: 1, Status: "bogus"}); err == nil {
		t.Error("an unknown status was accepted")
	}
}

// A proof: the erasure, its two records in log order, and the subject's
// streams (not another subject's) a page at a time.
func TestErasureProof(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	ledger := postgres.NewLedger(s.Pool())
	ref, other := randomRef(t), randomRef(t)
	for _, a := range []struct {
		stream string
		refs   []string
	}{{"lead-3", []string{ref}}, {"lead-1", []string{ref, other}}, {"lead-2", []string{ref}}, {"lead-2", []string{ref}}, {"lead-4", []string{other}}, {"lead-5", nil}} {
		e := eventstoretest.Event("lead-initialized", "status", "new")
		e.SubjectRefs = a.refs
		if _, err := s.AppendToStream(ctx, a.stream, eventstore.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	id := insertErasure(t, s.Pool(), ref, time.Now(), time.Time{})
	if _, err := ledger.ErasureProof(ctx, eventstore.NewEventID(), "", 10); !errors.Is(err, forgettable.ErrErasureNotFound) {
		t.Fatalf("an unknown erasure: %v, want ErrErasureNotFound", err)
	}
	p, err := ledger.ErasureProof(ctx, id, "", 10)
	if err != nil || len(p.Records) != 0 || p.Completion != nil || string(p.Ref) != ref {
		t.Fatalf("before any record: %+v, %v", p, err)
	}
	fenced, erased := forgettable.ErasureRecordIDs(id)
	for _, r := range []struct {
		id  eventstore.EventID
		typ string
	}{{fenced, forgettable.SubjectFencedType}, {erased, "subject-erased"}} {
		if _, err := s.AppendToStream(ctx, forgettable.ErasedStreamID, eventstore.Any,
			eventstore.EventData{ID: r.id, Type: r.typ, Data: []byte(`{"subjectRef":"` + ref + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	p, err = ledger.ErasureProof(ctx, id, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 2 || p.Records[0].EventID != fenced || p.Records[0].Type != forgettable.SubjectFencedType ||
		p.Records[1].EventID != erased || p.Records[0].Position >= p.Records[1].Position {
		t.Errorf("records = %+v", p.Records)
	}
	if !slices.Equal(p.Streams, []string{"lead-1", "lead-2"}) || !p.MoreStreams {
		t.Errorf("first page of streams = %v (more %v), want [lead-1 lead-2] and more", p.Streams, p.MoreStreams)
	}
	p, err = ledger.ErasureProof(ctx, id, "lead-2", 2)
	if err != nil || !slices.Equal(p.Streams, []string{"lead-3"}) || p.MoreStreams {
		t.Errorf("second page of streams = %v (more %v), %v; want [lead-3], no more", p.Streams, p.MoreStreams, err)
	}
}

// StartErasure says whether it created the ledger row; a completion's
// resumed flag is stored once, like the rest of it, and read back by every
// reader of the ledger.
func TestCompleteErasureStoresResumed(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	ledger := postgres.NewLedger(s.Pool())
	ref := keystore.Ref(randomRef(t))
	e := forgettable.Erasure{ID: eventstore.NewEventID(), Ref: ref, Actor: "test"}
	if _, created, err := ledger.StartErasure(ctx, e); err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	again := forgettable.Erasure{ID: eventstore.NewEventID(), Ref: ref, Actor: "other"}
	stored, created, err := ledger.StartErasure(ctx, again)
	if err != nil || created || stored.ID != e.ID {
		t.Fatalf("second start: %+v created %v, %v; want the first, not created", stored, created, err)
	}
	if err := ledger.CompleteErasure(ctx, e.ID, forgettable.ErasureCompletion{KeyVerifiedGone: true, Resumed: true}); err != nil {
		t.Fatal(err)
	}
	// A later completion keeps the first record.
	if err := ledger.CompleteErasure(ctx, e.ID, forgettable.ErasureCompletion{KeyExisted: true, VersionsDestroyed: 1, KeyVerifiedGone: true}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ledger.ErasureOf(ctx, ref)
	if err != nil || !ok || got.Completion == nil || !got.Completion.Resumed || got.Completion.KeyExisted {
		t.Fatalf("erasure of the ref = %+v, %v, %v; want the resumed completion", got.Completion, ok, err)
	}
	p, err := ledger.ErasureProof(ctx, e.ID, "", 10)
	if err != nil || p.Completion == nil || !p.Completion.Resumed {
		t.Errorf("proof completion = %+v, %v; want resumed", p.Completion, err)
	}
	list, err := ledger.ListErasures(ctx, forgettable.ErasureQuery{Status: forgettable.ErasuresCompleted, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		if l.ID == e.ID {
			found = l.Completion != nil && l.Completion.Resumed
		} else if l.Completion != nil && l.Completion.Resumed {
			t.Errorf("erasure %x listed as resumed: %+v", l.ID, l.Completion)
		}
	}
	if !found {
		t.Errorf("the resumed erasure is not listed as resumed: %+v", list)
	}
}
