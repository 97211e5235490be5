package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	"github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// MustOpenStore returns a Store on a new, migrated database.
func MustOpenStore(tb testing.TB) *postgres.Store {
	tb.Helper()
	return openStore(tb, testenv.MigratedDatabase(tb))
}

func openStore(tb testing.TB, dbURL string) *postgres.Store {
	tb.Helper()
	s := postgres.New(testenv.Pool(tb, dbURL), postgres.Options{})
	tb.Cleanup(s.Close)
	return s
}

func TestStore(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstoretest.Store { return MustOpenStore(t) })
}

// The events table is append-only whoever asks: the trigger refuses
// UPDATE, DELETE and TRUNCATE even for the superuser the tests connect as.
func TestAppendOnlyEnforcedByDatabase(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	if _, err := s.AppendToStream(ctx, "lead-1", eventstore.NoStream, eventstoretest.Event("lead-initialized", "status", "new")); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`UPDATE events SET data = '{"status":"forged"}'`,
		`UPDATE events SET type = 'x' WHERE false`,
		`DELETE FROM events`,
		`DELETE FROM events WHERE stream_id = 'none'`,
		`TRUNCATE events`,
	} {
		_, err := s.Pool().Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "LT001" {
			t.Errorf("%s: err = %v, want SQLSTATE LT001", stmt, err)
		}
	}
	evs, err := s.ReadStream(ctx, "lead-1", eventstore.ReadStreamOptions{})
	if err != nil || len(evs) != 1 || string(evs[0].Data) != `{"status": "new"}` {
		t.Fatalf("after refused changes: %v %v, want the original event", evs, err)
	}
}

// Many writers append concurrently to the same stream with expected version
// Any: every append succeeds and the stream's versions have no gap.
func TestConcurrentAppendsToOneStream(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	const writers, each = 8, 25
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Single events and batches (which take the COPY path).
				evs := []eventstore.EventData{eventstoretest.Event("tick")}
				if i%5 == 4 {
					evs = make([]eventstore.EventData, 12)
					for k := range evs {
						evs[k] = eventstoretest.Event("tock")
					}
				}
				if _, err := s.AppendToStream(ctx, "hot-1", eventstore.Any, evs...); err != nil {
					errs <- err
				}
				total.Add(int64(len(evs)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	evs, err := s.ReadStream(ctx, "hot-1", eventstore.ReadStreamOptions{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(evs)) != total.Load() {
		t.Fatalf("%d events, want %d", len(evs), total.Load())
	}
	for i, e := range evs {
		if e.Version != int64(i) {
			t.Fatalf("event %d has version %d", i, e.Version)
		}
	}
}

// Writers that all expect the same exact version: exactly one wins each
// round, the others get a conflict carrying the winner's event.
func TestConcurrentExactAppendsOneWins(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	for round := range 10 {
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.AppendToStream(ctx, "race-1", eventstore.Exact(int64(round)-1), eventstoretest.Event("try"))
				var werr *eventstore.WrongExpectedVersionError
				switch {
				case err == nil:
					wins.Add(1)
				case errors.As(err, &werr):
					if werr.Current != int64(round) || len(werr.Events) != 1 || werr.Events[0].Version != int64(round) {
						t.Errorf("round %d: conflict current %d with %d events", round, werr.Current, len(werr.Events))
					}
				default:
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins.Load())
		}
	}
}

// The global ordering guarantee. Fast writers append through the Store
// while slow writers hold their append transactions open for a random
// while, so that commits land out of position order — the sequence-gap
// problem. A tailing reader that only ever asks for "events after the last
// position I saw" must see every committed event exactly once, in position
// order.
func TestTailingReaderNeverSkips(t *testing.T) {
	t.Parallel()
	t.Run("ReadAll", func(t *testing.T) {
		t.Parallel()
		testTailingReader(t, func(ctx context.Context, s *postgres.Store, after int64) ([]eventstore.RecordedEvent, int64, bool, error) {
			page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{After: after, Limit: 50})
			return page.Events, page.Next, page.HeldBack, err
		})
	})
	// ReadAllEach, the one-statement read of projection rebuilds, stops at
	// the same horizon.
	t.Run("ReadAllEach", func(t *testing.T) {
		t.Parallel()
		testTailingReader(t, func(ctx context.Context, s *postgres.Store, after int64) ([]eventstore.RecordedEvent, int64, bool, error) {
			var events []eventstore.RecordedEvent
			_, err := s.ReadAllEach(ctx, eventstore.ReadAllEachOptions{After: after, Limit: 50}, func(e eventstore.RecordedEvent) error {
				events = append(events, e)
				return nil
			})
			next := after
			if len(events) > 0 {
				next = events[len(events)-1].Position
			}
			// It does not say whether committed events are held back:
			// the test asks the table.
			var highest int64
			if err == nil {
				err = s.Pool().QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&highest)
			}
			return events, next, highest > next, err
		})
	})
}

// testTailingReader appends from fast writers and from slow ones (whose
// transactions commit after higher-positioned appends) while read follows
// $all: every committed event must be read once, in order.
func testTailingReader(t *testing.T, read func(ctx context.Context, s *postgres.Store, after int64) (events []eventstore.RecordedEvent, next int64, heldBack bool, err error)) {
	dbURL := testenv.MigratedDatabase(t)
	s := openStore(t, dbURL)
	pool := s.Pool()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const fastWriters, slowWriters, appendsPerWriter = 8, 4, 40
	var committed sync.Map // event id -> true once its append committed
	var total atomic.Int64
	var wg sync.WaitGroup
	writeErr := make(chan error, fastWriters+slowWriters)

	for w := range fastWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range appendsPerWriter {
				n := 1 + i%3
				evs := make([]eventstore.EventData, n)
				for k := range evs {
					evs[k] = eventstoretest.Event("fast", "w", w, "i", i)
				}
				stream := fmt.Sprintf("fast%d-%d", w, i%5)
				if _, err := s.AppendToStream(ctx, stream, eventstore.Any, evs...); err != nil {
					writeErr <- err
					return
				}
				for _, e := range evs {
					committed.Store(e.ID, true)
				}
				total.Add(int64(n))
			}
		}()
	}
	for w := range slowWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range appendsPerWriter / 4 {
				e := eventstoretest.Event("slow", "w", w, "i", i)
				tx, err := pool.Begin(ctx)
				if err != nil {
					writeErr <- err
					return
				}
				var n int64
				var v1, v2, p1, p2 int64
				stream := fmt.Sprintf("slow-%d", w)
				d, err := eventstore.ContentDigest(stream, e.ID, e.Type, e.Data, nil, nil, "")
				if err != nil {
					_ = tx.Rollback(ctx)
					writeErr <- err
					return
				}
				err = tx.QueryRow(ctx, postgres.AppendSQL, stream, int64(eventstore.Any),
					[]pgtype.UUID{{Bytes: e.ID, Valid: true}}, []string{e.Type}, [][]byte{e.Data}, [][]byte{[]byte("{}")}, []string{""},
					[]string{""}, [][]byte{d[:]}).
					Scan(&n, &v1, &v2, &p1, &p2)
				if err != nil || n != 1 {
					_ = tx.Rollback(ctx)
					writeErr <- fmt.Errorf("slow append: n=%d err=%v", n, err)
					return
				}
				// Hold the transaction: its position is low, but it
				// commits after faster, higher-positioned appends.
				time.Sleep(time.Duration(5+rand.IntN(30)) * time.Millisecond)
				if err := tx.Commit(ctx); err != nil {
					writeErr <- err
					return
				}
				committed.Store(e.ID, true)
				total.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// The tailing reader, and a naive one that reads "position > P" with no
	// horizon, to show the test can tell the difference.
	seen := map[eventstore.EventID]bool{}
	var after, last int64
	naiveSeen := map[eventstore.EventID]bool{}
	var naiveAfter int64
	readerDone := false
	for !readerDone {
		select {
		case <-done:
			readerDone = true // one more full read after the writers finished
		default:
		}
		for {
			events, next, heldBack, err := read(ctx, s, after)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events {
				if e.Position <= last {
					t.Fatalf("position %d after %d: out of order", e.Position, last)
				}
				if seen[e.ID] {
					t.Fatalf("event %s seen twice", e.ID)
				}
				seen[e.ID] = true
				last = e.Position
			}
			after = next
			if len(events) < 50 && !(readerDone && heldBack) {
				break
			}
		}
		rows, err := pool.Query(ctx, `SELECT event_id, position FROM events WHERE position > $1 ORDER BY position LIMIT 200`, naiveAfter)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id pgtype.UUID
			if err := rows.Scan(&id, &naiveAfter); err != nil {
				t.Fatal(err)
			}
			naiveSeen[id.Bytes] = true
		}
		rows.Close()
		if !readerDone {
			time.Sleep(time.Millisecond)
		}
	}
	close(writeErr)
	for err := range writeErr {
		t.Fatal(err)
	}
	// The loop above did a last full read after every writer finished,
	// until nothing was held back by a transaction still running.
	if int64(len(seen)) != total.Load() {
		t.Fatalf("tailing reader saw %d events, %d were committed", len(seen), total.Load())
	}
	committed.Range(func(k, _ any) bool {
		if !seen[k.(eventstore.EventID)] {
			t.Errorf("committed event %s never seen", k.(eventstore.EventID))
		}
		return true
	})
	t.Logf("%d events, all seen once in order; a naive reader without the horizon missed %d",
		total.Load(), total.Load()-int64(len(naiveSeen)))
}

// Two stores on one database stand for two server processes: the reader is
// woken by the writer's append through LISTEN/NOTIFY. The test watches the
// reader's wake-up channel itself, which only a notification (or a
// reconnection) closes — no poll can make it pass.
func TestNotificationsAcrossProcesses(t *testing.T) {
	t.Parallel()
	dbURL := testenv.MigratedDatabase(t)
	writer, reader := openStore(t, dbURL), openStore(t, dbURL)
	connected := reader.Changes()
	reader.StartListening()
	select { // the listener wakes everyone once LISTEN is in place
	case <-connected:
	case <-time.After(15 * time.Second):
		t.Fatal("the reader never started listening")
	}
	woken := reader.Changes()
	start := time.Now()
	if _, err := writer.AppendToStream(testenv.Context(t), "ping-1", eventstore.NoStream, eventstoretest.Event("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
		t.Logf("the other store was notified in %v", time.Since(start))
	case <-time.After(15 * time.Second):
		t.Fatal("the other store was not notified of the append")
	}
	// And a subscription there delivers the event without its safety poll.
	sub := reader.SubscribeToAll(eventstore.SubscribeAllOptions{SafetyPoll: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("subscription: %v", err)
		}
		if e.StreamID == "ping-1" {
			return
		}
	}
}

func TestPositionsAreJSONSafe(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	res, err := s.AppendToStream(testenv.Context(t), "n-1", eventstore.NoStream, eventstoretest.Event("x"))
	if err != nil {
		t.Fatal(err)
	}
	// JavaScript clients read positions as float64: they must be exact.
	if float64(res.LastPosition) != float64(int64(float64(res.LastPosition))) || res.LastPosition > 1<<53 {
		t.Fatalf("position %d is not exactly representable in JSON numbers", res.LastPosition)
	}
	b, _ := json.Marshal(res)
	t.Logf("append result: %s", b)
}

// Events without personal data store NULL, not an empty array, on every
// append path (one event, a few, a COPY batch): it keeps rows and WAL small.
func TestNoSubjectRefsStoredAsNull(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	for i, n := range []int{1, 3, 12} {
		evs := make([]eventstore.EventData, n)
		for k := range evs {
			evs[k] = eventstoretest.Event("plain")
		}
		if _, err := s.AppendToStream(ctx, fmt.Sprintf("plain-%d", i), eventstore.NoStream, evs...); err != nil {
			t.Fatal(err)
		}
	}
	var notNull int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE subject_refs IS NOT NULL`).Scan(&notNull); err != nil {
		t.Fatal(err)
	}
	if notNull != 0 {
		t.Fatalf("%d events without personal data store a non-NULL subject_refs", notNull)
	}
	evs, err := s.ReadStream(ctx, "plain-2", eventstore.ReadStreamOptions{})
	if err != nil || len(evs) != 12 || evs[0].SubjectRefs != nil || evs[0].ErasedRefs != nil {
		t.Fatalf("read back: %d events, refs %v erased %v, err %v", len(evs), evs[0].SubjectRefs, evs[0].ErasedRefs, err)
	}
}
