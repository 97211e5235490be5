package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	espg "github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore/vault"
	"github.com/lethe-store/lethe/projection/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const casey = eventstoretest.SeedSubject

type env struct {
	dbURL  string
	app    *app.App
	pool   *pgxpool.Pool
	events *espg.Store
	keys   *vault.Store
	store  *forgettable.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	client, mount, prefix := testenv.LetheVault(t)
	return openEnv(t, app.VaultConfig{Client: client, Mount: mount, Prefix: prefix})
}

// openEnv assembles Lethe as `lethe serve` does (app.Open, not run: the
// tests make and step their own runners) on a new database.
func openEnv(t *testing.T, vc app.VaultConfig) *env {
	t.Helper()
	e := &env{dbURL: testenv.MigratedDatabase(t)}
	a, err := app.Open(testenv.Context(t), app.Config{Logger: slog.New(slog.DiscardHandler), Pool: testenv.Pool(t, e.dbURL), Vault: vc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	e.app, e.pool, e.events, e.keys, e.store = a, a.Pool(), a.Events(), a.Vault(), a.Store()
	return e
}

func (e *env) runner(t *testing.T, batch int, ps ...postgres.Projection) *postgres.Runner {
	t.Helper()
	r := postgres.NewRunner(e.pool, e.events, e.store, postgres.Options{BatchSize: batch})
	for _, p := range ps {
		if err := r.Register(p); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// catchUp steps a projection until its checkpoint is at the end of the
// log (stepToEnd): a step that applies nothing is not the end, as the
// cluster's horizon may hold the last events back for a moment (any
// transaction open in the cluster, another package's test included).
func catchUp(t *testing.T, e *env, r *postgres.Runner, name string) {
	t.Helper()
	stepToEnd(t, e, r, name)
}

// waitVisible waits until the log's last event is visible to readers of
// $all (past the cluster's horizon), so that a step reads all of it.
func waitVisible(t *testing.T, e *env) {
	t.Helper()
	ctx := testenv.Context(t)
	var last int64
	if err := e.pool.QueryRow(ctx, `SELECT max(position) FROM events`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		page, err := e.events.ReadAll(ctx, eventstore.ReadAllOptions{After: last - 1, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 1 {
			return
		}
	}
	t.Fatal("the log's last event never became visible")
}

func seedLead(t *testing.T, s *forgettable.Store, stream string) {
	t.Helper()
	var events []forgettable.Event
	for _, e := range eventstoretest.SeedLeadEvents() {
		fe := forgettable.Event{EventData: e}
		if paths := eventstoretest.SeedPersonalPaths(e.Data); len(paths) > 0 {
			fe.PersonalData = []forgettable.PersonalData{{Subject: casey, Paths: paths}}
		}
		events = append(events, fe)
	}
	if _, err := s.Append(testenv.Context(t), stream, eventstore.NoStream, events...); err != nil {
		t.Fatal(err)
	}
}

// subjectsPerStream is a user projection that opts in to erasure: which
// subjects' data each stream carried (references only).
func subjectsPerStream() postgres.Projection {
	return postgres.Projection{
		Name: "subjects-per-stream",
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS read_subjects (stream_id text, subject_ref text, events int, PRIMARY KEY (stream_id, subject_ref))`)
			return err
		},
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS read_subjects`)
			return err
		},
		Apply: func(ctx context.Context, tx pgx.Tx, e forgettable.RecordedEvent) error {
			for _, r := range e.SubjectRefs {
				if _, err := tx.Exec(ctx, `INSERT INTO read_subjects VALUES ($1, $2, 1) ON CONFLICT (stream_id, subject_ref) DO UPDATE SET events = read_subjects.events + 1`, e.StreamID, r); err != nil {
					return err
				}
			}
			return nil
		},
		Forget: func(ctx context.Context, tx pgx.Tx, ref string) error {
			_, err := tx.Exec(ctx, `DELETE FROM read_subjects WHERE subject_ref = $1`, ref)
			return err
		},
	}
}

// The built-ins on the seed's lead: found by past and present values, the
// funnel counted; after the erasure, no value of casey's finds the stream,
// in the lookup index or the user projection, and the dump holds none.
func TestBuiltinsAndErasure(t *testing.T) {
	e := newEnv(t)
	ctx := testenv.Context(t)
	seedLead(t, e.store, "lead-12")
	seedLead(t, e.store, "lead-13")
	if _, err := e.store.Append(ctx, "order-1", eventstore.NoStream, forgettable.Event{EventData: eventstore.EventData{
		ID: eventstore.NewEventID(), Type: "order-submitted", Data: json.RawMessage(`{"sku":"A-1"}`)}}); err != nil {
		t.Fatal(err)
	}
	r := e.runner(t, 4, postgres.Lookup(e.keys), postgres.Analytics(), subjectsPerStream())
	for _, n := range r.Names() {
		catchUp(t, e, r, n)
	}
	lookup := func(category, field, value string) []string {
		t.Helper()
		s, err := postgres.LookupStreams(ctx, e.pool, e.keys, category, field, value)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := lookup("lead", "/phone-number", "555-2951"); fmt.Sprint(got) != "[lead-12 lead-13]" {
		t.Errorf("lookup by the old phone = %v", got)
	}
	if got := lookup("lead", "/last-name", "Davis"); len(got) != 2 {
		t.Errorf("lookup by the present name = %v", got)
	}
	if got := lookup("order", "/sku", "A-1"); fmt.Sprint(got) != "[order-1]" {
		t.Errorf("lookup order = %v", got)
	}
	if got := lookup("lead", "/phone-number", "555-0000"); len(got) != 0 {
		t.Errorf("lookup of an unknown value = %v", got)
	}
	days, totals, err := postgres.AnalyticsOf(ctx, e.pool, "lead")
	if err != nil || len(days) != 1 || totals["contacted"] != 4 || totals["payment-confirmed"] != 2 || days[0].Counts["lead-initialized"] != 2 {
		t.Errorf("analytics = %v %v, %v", days, totals, err)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM read_subjects`).Scan(&n); err != nil || n != 2 {
		t.Errorf("subjects per stream: %d rows, %v", n, err)
	}

	if _, err := e.store.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range r.Names() {
		catchUp(t, e, r, n)
	}
	for _, v := range [][2]string{{"/phone-number", "555-2951"}, {"/phone-number", "555-8101"}, {"/last-name", "David"}, {"/first-name", "Casey"}} {
		if got := lookup("lead", v[0], v[1]); len(got) != 0 {
			t.Errorf("after the erasure, %s = %s finds %v", v[0], v[1], got)
		}
	}
	if got := lookup("order", "/sku", "A-1"); len(got) != 1 {
		t.Errorf("the erasure removed another subject's entries: %v", got)
	}
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM read_subjects`).Scan(&n); err != nil || n != 0 {
		t.Errorf("subjects per stream after the erasure: %d rows, %v", n, err)
	}
	dump := testenv.PGDump(t, e.dbURL)
	for _, s := range eventstoretest.SeedSecrets {
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("pg_dump contains %q", s)
		}
	}
	// A rebuild from scratch gives the same read models.
	for _, n := range r.Names() {
		if err := postgres.RequestRebuild(ctx, e.pool, n, 0); err != nil {
			t.Fatal(err)
		}
		catchUp(t, e, r, n)
	}
	if got := lookup("lead", "/phone-number", "555-2951"); len(got) != 0 {
		t.Errorf("after a rebuild, the old phone finds %v", got)
	}
	if _, totals, _ := postgres.AnalyticsOf(ctx, e.pool, "lead"); totals["contacted"] != 4 {
		t.Errorf("analytics after a rebuild: %v", totals)
	}
	st, err := postgres.Statuses(ctx, e.pool)
	if err != nil || len(st) != 3 || st[0].Lag != 0 || st[0].EventsApplied == 0 || st[0].RebuildPending {
		t.Errorf("statuses = %+v, %v", st, err)
	}
}

// tally counts events per stream: a read model whose every effect shows.
func tally(failAt int, calls *int) postgres.Projection {
	return postgres.Projection{
		Name: "tally",
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS read_tally (stream_id text PRIMARY KEY, events int NOT NULL)`)
			return err
		},
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS read_tally`)
			return err
		},
		Apply: func(ctx context.Context, tx pgx.Tx, e forgettable.RecordedEvent) error {
			*calls++
			if *calls == failAt {
				return errors.New("killed mid-batch")
			}
			_, err := tx.Exec(ctx, `INSERT INTO read_tally VALUES ($1, 1) ON CONFLICT (stream_id) DO UPDATE SET events = read_tally.events + 1`, e.StreamID)
			return err
		},
	}
}

func readTally(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(testenv.Context(t), `SELECT stream_id, events FROM read_tally`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

// A runner killed mid-batch (the batch fails halfway, or its context is
// cancelled) and started again gives the same read model as an
// uninterrupted run; two runners on one projection double nothing.
func TestKilledMidBatchAndConcurrentRunners(t *testing.T) {
	e := newEnv(t)
	ctx := testenv.Context(t)
	want := map[string]int{}
	for i := range 30 {
		stream := fmt.Sprintf("clock-%d", i%7)
		var evs []eventstore.EventData
		for k := range 1 + i%5 {
			evs = append(evs, eventstore.EventData{ID: eventstore.NewEventID(), Type: "tick", Data: json.RawMessage(fmt.Sprintf(`{"k":%d}`, k))})
		}
		if _, err := e.events.AppendToStream(ctx, stream, eventstore.Any, evs...); err != nil {
			t.Fatal(err)
		}
		want[stream] += len(evs)
	}
	waitVisible(t, e) // the first batch must find 16 events
	var calls int
	r := e.runner(t, 16, tally(20, &calls)) // fails on its 20th Apply: in the second batch
	n, _, err := r.Step(ctx, "tally")
	if err != nil || n != 16 {
		t.Fatalf("first batch: %d, %v", n, err)
	}
	if _, _, err := r.Step(ctx, "tally"); err == nil {
		t.Fatal("the killed batch did not fail")
	}
	// A batch whose context ends halfway.
	cctx, cancel := context.WithCancel(ctx)
	killer := postgres.Projection(tally(0, new(int)))
	killer.Name = "tally-cancelled"
	inner := killer.Apply
	count := 0
	killer.Apply = func(c context.Context, tx pgx.Tx, ev forgettable.RecordedEvent) error {
		count++
		if count == 5 {
			cancel()
		}
		return inner(c, tx, ev)
	}
	rk := e.runner(t, 16, killer)
	if _, _, err := rk.Step(cctx, "tally-cancelled"); err == nil {
		t.Fatal("the cancelled batch did not fail")
	}
	var pos int64
	if err := e.pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = 'tally-cancelled'`).Scan(&pos); err != nil || pos != 0 {
		t.Fatalf("the cancelled batch moved the checkpoint to %d (%v)", pos, err)
	}

	// Started again: two runners (two processes) at once.
	calls = 0
	r1 := e.runner(t, 16, tally(-1, &calls))
	var calls2 int
	r2 := e.runner(t, 16, tally(-1, &calls2))
	var wg sync.WaitGroup
	for _, rr := range []*postgres.Runner{r1, r2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, _, err := rr.Step(ctx, "tally"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := readTally(t, e.pool); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("read model %v, want %v", got, want)
	}
}
