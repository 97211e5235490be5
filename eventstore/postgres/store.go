package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/eventstore"
)

// NotifyChannel is the LISTEN/NOTIFY channel that announces new events.
const NotifyChannel = "lethe_events"

// maxAppendRetries bounds the retries of an append with expected version Any
// or StreamExists that lost a race for the next version.
const maxAppendRetries = 50

// Options configures a Store.
type Options struct {
	// Logger receives operational messages (never event data). Defaults
	// to slog.Default().
	Logger *slog.Logger
	// SafetyPoll is how often idle subscriptions re-read without a
	// notification (eventstore.DefaultSafetyPoll if zero).
	SafetyPoll time.Duration
}

// Store is an eventstore.Store on PostgreSQL. It is safe for concurrent use.
// Close it to stop its background goroutines.
type Store struct {
	pool       *pgxpool.Pool
	log        *slog.Logger
	safetyPoll time.Duration

	hashers sync.Pool // *eventstore.ChainHasher: content digests of appends

	changes *broadcaster  // wakes this process's subscriptions
	pending chan struct{} // appends waiting to be announced with NOTIFY

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	listenOnce sync.Once
}

var _ eventstore.Store = (*Store)(nil)

// New returns a Store on pool. The schema must be migrated (see package
// migrations).
func New(pool *pgxpool.Pool, opts Options) *Store {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		pool:       pool,
		log:        log,
		safetyPoll: opts.SafetyPoll,
		changes:    newBroadcaster(),
		pending:    make(chan struct{}, 1),
		ctx:        ctx,
		cancel:     cancel,
	}
	s.wg.Add(1)
	go s.announce()
	return s
}

// Close stops the store's background goroutines. It does not close the pool.
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
}

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// headSQL reads a stream's last version (-1 for no stream) and its link:
// always one row.
const headSQL = `SELECT coalesce(h.version, -1) AS v, h.link
    FROM (VALUES (1)) o(x) LEFT JOIN LATERAL (
        SELECT version, link FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1
    ) h ON true`

// recordedAtMicros is now() (the recorded_at of the append's events) in
// Unix microseconds, exactly on every supported PostgreSQL: whole seconds
// and the microseconds within the minute, each exact even where extract
// returns a double (PostgreSQL 13; 14 and later return numeric), in UTC so
// that no session time zone enters.
const recordedAtMicros = `(extract(epoch FROM date_trunc('second', now() AT TIME ZONE 'UTC'))::bigint * 1000000
    + extract(microseconds FROM now() AT TIME ZONE 'UTC')::bigint % 1000000)`

// appendSQL appends 2 to 9 events in one statement. The links are chained
// in the database (migrations/010 lethe_chain_links), from the stream's
// head link, with the content digests computed in Go ($9).
const appendSQL = `
WITH cur AS (` + headSQL + `
), ok AS (
    SELECT v, pg_current_xact_id()::text::bigint << 16 AS base, link FROM cur
    WHERE $2::bigint = -2 OR ($2::bigint = -3 AND v >= 0) OR v = $2::bigint
), chained AS (
    SELECT v, base, lethe_chain_links(link, v + 1, base, ` + recordedAtMicros + `, $9::bytea[]) AS links FROM ok
), ins AS (
    INSERT INTO events (position, stream_id, version, event_id, type, data, metadata, subject_refs, recorded_at, actor, link)
    SELECT c.base + e.ord - 1, $1, c.v + e.ord, e.id, e.type, e.data, e.meta, string_to_array(NULLIF(e.refs, ''), ','),
           now(), NULLIF(e.actor, ''), c.links[e.ord]
    FROM chained c, unnest($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[], $7::text[], $8::text[]) WITH ORDINALITY AS e(id, type, data, meta, refs, actor, ord)
    RETURNING version, position
)
SELECT count(*), coalesce(min(version), -1), coalesce(max(version), -1),
       coalesce(min(position), 0), coalesce(max(position), 0)
FROM ins`

// appendArgs holds an append's events as column arrays.
type appendArgs struct {
	ids   []pgtype.UUID
	types []string
	data  [][]byte
	meta  [][]byte
	refs  [][]string // per event
	// refsJoined are refs as comma-joined strings, for appendSQL (SQL
	// arrays cannot be ragged).
	refsJoined []string
	actors     []string
	// digests are the events' content digests (eventstore.ContentDigest),
	// from which the links are chained once the versions, positions and
	// time are known.
	digests [][]byte
}

var emptyObject = []byte("{}")

func (s *Store) newAppendArgs(streamID string, events []eventstore.EventData) (appendArgs, error) {
	a := appendArgs{
		ids:     make([]pgtype.UUID, len(events)),
		types:   make([]string, len(events)),
		data:    make([][]byte, len(events)),
		meta:    make([][]byte, len(events)),
		refs:    make([][]string, len(events)),
		actors:  make([]string, len(events)),
		digests: make([][]byte, len(events)),
	}
	anyRefs := false
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return a, &eventstore.InvalidEventError{Index: i, Reason: err.Error()}
		}
		a.actors[i] = e.Actor
		a.ids[i] = pgtype.UUID{Bytes: e.ID, Valid: true}
		a.types[i] = e.Type
		a.data[i] = e.Data
		a.meta[i] = e.Metadata
		if len(e.Metadata) == 0 {
			a.meta[i] = emptyObject
		}
		if len(e.SubjectRefs) > 0 { // else nil: stored as NULL (migrations/003)
			a.refs[i] = e.SubjectRefs
			anyRefs = true
		}
	}
	a.refsJoined = make([]string, len(events))
	if anyRefs {
		for i, r := range a.refs {
			a.refsJoined[i] = strings.Join(r, ",")
		}
	}
	if len(events) < copyThreshold {
		// COPY computes them while its first round trip is on its way.
		if err := s.computeDigests(streamID, events, &a); err != nil {
			return a, err
		}
	}
	return a, nil
}

// computeDigests sets a.digests (once: retries reuse them).
func (s *Store) computeDigests(streamID string, events []eventstore.EventData, a *appendArgs) error {
	if a.digests[0] != nil {
		return nil
	}
	h, _ := s.hashers.Get().(*eventstore.ChainHasher)
	if h == nil {
		h = new(eventstore.ChainHasher)
	}
	defer s.hashers.Put(h)
	digests := make([]byte, len(events)*eventstore.LinkSize) // one allocation for all
	for i, e := range events {
		d, err := h.ContentDigest(streamID, e.ID, e.Type, e.Data, e.Metadata, e.SubjectRefs, e.Actor)
		if err != nil { // Validate accepted it: a lone surrogate, an exponent out of range
			clear(a.digests)
			return &eventstore.InvalidEventError{Index: i, Reason: err.Error()}
		}
		a.digests[i] = digests[i*eventstore.LinkSize : (i+1)*eventstore.LinkSize : (i+1)*eventstore.LinkSize]
		copy(a.digests[i], d[:])
	}
	return nil
}

// isInvalidValue reports whether an append's SQLSTATE says the client's
// event holds a value PostgreSQL cannot store: untranslatable character
// (\u0000 in jsonb, 22P05), invalid text representation (22P02) or escape
// (22025), invalid byte sequence (NUL or bad UTF-8, 22021), a number jsonb
// cannot hold (1e1000000: numeric value out of range, 22003), a value too
// large for jsonb (54000).
func isInvalidValue(code string) bool {
	switch code {
	case "22P05", "22P02", "22025", "22021", "22003", "54000":
		return true
	}
	return false
}

// AppendToStream implements eventstore.Store.
func (s *Store) AppendToStream(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append: %w", err)
	}
	if !expected.Valid() {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: invalid expected version %d: %w", streamID, int64(expected), eventstore.ErrInvalidEvent)
	}
	if len(events) == 0 || len(events) > eventstore.MaxEventsPerAppend {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %d events (want 1 to %d): %w", streamID, len(events), eventstore.MaxEventsPerAppend, eventstore.ErrTooManyEvents)
	}
	args, err := s.newAppendArgs(streamID, events)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, err)
	}
	for attempt := 0; ; attempt++ {
		var res eventstore.AppendResult
		var n int64
		var err error
		if len(events) == 1 {
			res.StreamID = streamID
			var actor *string
			if args.actors[0] != "" {
				actor = &args.actors[0]
			}
			err = s.pool.QueryRow(ctx, appendOneSQL, streamID, int64(expected), args.ids[0], args.types[0], args.data[0], args.meta[0], args.refs[0], actor, args.digests[0]).
				Scan(&res.FirstVersion, &res.FirstPosition)
			if err == nil {
				n, res.LastVersion, res.LastPosition = 1, res.FirstVersion, res.FirstPosition
			} else if errors.Is(err, pgx.ErrNoRows) {
				err = nil
			}
		} else if len(events) >= copyThreshold {
			res, n, err = s.appendCopy(ctx, streamID, expected, events, &args)
			var invalid *eventstore.InvalidEventError
			if errors.As(err, &invalid) {
				return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, err)
			}
		} else {
			res.StreamID = streamID
			err = s.pool.QueryRow(ctx, appendSQL, streamID, int64(expected), args.ids, args.types, args.data, args.meta, args.refsJoined, args.actors, args.digests).
				Scan(&n, &res.FirstVersion, &res.LastVersion, &res.FirstPosition, &res.LastPosition)
		}
		if err == nil && n == int64(len(events)) {
			s.announceAppend()
			return res, nil
		}
		var pgErr *pgconn.PgError
		raced := false
		switch {
		case err == nil: // expected version did not match
		case errors.As(err, &pgErr) && pgErr.Code == "LT002": // the erasure fence (migrations/002)
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, &eventstore.SubjectFencedError{Ref: pgErr.Detail})
		case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique violation: event id or (stream, version)
			raced = pgErr.ConstraintName == "events_stream_version_pk"
		case errors.As(err, &pgErr) && isInvalidValue(pgErr.Code):
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w: %s", streamID, eventstore.ErrInvalidEvent, pgErr.Message)
		default:
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, err)
		}
		dup, isDup, err := s.checkDuplicate(ctx, streamID, expected, args)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, err)
		}
		if isDup {
			return dup, nil
		}
		if raced && (expected == eventstore.Any || expected == eventstore.StreamExists) && attempt < maxAppendRetries {
			continue // another writer took the next version first: read again
		}
		return eventstore.AppendResult{}, s.conflict(ctx, streamID, expected)
	}
}

// copyThreshold is the batch size from which appends use COPY: three more
// round trips than the single statement, but much cheaper per row.
const copyThreshold = 10

// copyColumns are the columns a COPY sends; copyActorColumns adds actor,
// for a batch with an actor. recorded_at is left to its default, now():
// the transaction's start, the time read with the head and hashed into
// the links. (Each column costs every row of a COPY: a batch without
// actors does not send a column of NULLs.)
var (
	copyColumns      = []string{"position", "stream_id", "version", "event_id", "type", "data", "metadata", "subject_refs", "link"}
	copyActorColumns = append(slices.Clip(copyColumns), "actor")
)

// appendCopy appends a batch in a transaction: it reads the stream's version
// and head link (assigning the transaction id that positions derive from)
// and the transaction's time, checks the expected version, chains the
// links in Go and COPYs the rows. As in the single statement, the
// primary key decides a race with a concurrent writer. It returns n = 0 when
// the expected version does not match.
func (s *Store) appendCopy(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []eventstore.EventData, a *appendArgs) (res eventstore.AppendResult, n int64, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, 0, err
	}
	defer conn.Release() // pgxpool discards a connection left inside a transaction
	// BEGIN and the version read go in one round trip.
	batch := &pgx.Batch{}
	batch.Queue(`BEGIN`)
	batch.Queue(`SELECT cur.v, cur.link, pg_current_xact_id()::text::bigint << 16, now() FROM (`+headSQL+`) cur`, streamID)
	br := conn.SendBatch(ctx, batch)
	// The content digests, while the database answers.
	derr := s.computeDigests(streamID, events, a)
	var current, base int64
	var head []byte
	var at time.Time
	_, err = br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&current, &head, &base, &at)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	rollback := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(rctx, `ROLLBACK`)
	}
	if err == nil {
		err = derr
	}
	if err != nil {
		rollback()
		return res, 0, err
	}
	if !expectationMet(expected, current) {
		rollback()
		return res, 0, nil
	}
	count := len(a.ids)
	links := make([]byte, count*eventstore.LinkSize)
	prev := head
	for i := range count {
		var d [eventstore.LinkSize]byte
		copy(d[:], a.digests[i])
		l := eventstore.ChainLink(prev, current+1+int64(i), base+int64(i), at, d)
		prev = links[i*eventstore.LinkSize : (i+1)*eventstore.LinkSize : (i+1)*eventstore.LinkSize]
		copy(prev, l[:])
	}
	columns := copyColumns
	if slices.ContainsFunc(a.actors, func(s string) bool { return s != "" }) {
		columns = copyActorColumns
	}
	row := make([]any, len(columns))
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"events"}, columns, pgx.CopyFromSlice(count, func(i int) ([]any, error) {
		row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8] =
			base+int64(i), streamID, current+1+int64(i), a.ids[i], a.types[i], a.data[i], a.meta[i], a.refs[i],
			links[i*eventstore.LinkSize:(i+1)*eventstore.LinkSize]
		if len(row) > 9 {
			row[9] = nil
			if a.actors[i] != "" {
				row[9] = a.actors[i]
			}
		}
		return row, nil
	}))
	if err != nil {
		rollback()
		return res, 0, err
	}
	if _, err := conn.Exec(ctx, `COMMIT`); err != nil {
		rollback()
		return res, 0, err
	}
	return eventstore.AppendResult{
		StreamID:      streamID,
		FirstVersion:  current + 1,
		LastVersion:   current + int64(count),
		FirstPosition: base,
		LastPosition:  base + int64(count) - 1,
	}, int64(count), nil
}

// expectationMet is the expected-version rule of appendSQL, in Go.
func expectationMet(expected eventstore.ExpectedVersion, current int64) bool {
	switch expected {
	case eventstore.Any:
		return true
	case eventstore.StreamExists:
		return current >= 0
	}
	return int64(expected) == current
}

// appendOneSQL is appendSQL for the most common append, a single event:
// the same rule with no arrays and no aggregate, which is measurably
// cheaper (make bench), and the link computed inline from the head's link
// and the content digest ($9). It returns no row when the expected version
// does not match.
const appendOneSQL = `
INSERT INTO events (position, stream_id, version, event_id, type, data, metadata, subject_refs, recorded_at, actor, link)
SELECT c.pos, $1, c.v + 1, $3, $4, $5, $6, $7, now(), $8,
       sha256(coalesce(c.link, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
              || int8send(c.v + 1) || int8send(c.pos) || int8send(` + recordedAtMicros + `) || $9::bytea)
FROM (SELECT cur.v, cur.link, pg_current_xact_id()::text::bigint << 16 AS pos FROM (` + headSQL + `) cur) c
WHERE $2::bigint = -2 OR ($2::bigint = -3 AND c.v >= 0) OR c.v = $2::bigint
RETURNING version, position`

const duplicateSQL = `
SELECT e.stream_id, e.version, e.position,
       (e.type = i.type AND e.data = i.data AND e.metadata = i.meta AND e.actor IS NOT DISTINCT FROM NULLIF(i.actor, ''))
FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[], $5::text[]) WITH ORDINALITY AS i(id, type, data, meta, actor, ord)
LEFT JOIN events e ON e.event_id = i.id
ORDER BY i.ord`

// checkDuplicate tells whether the append's events are already stored, by an
// earlier identical append of the same actor. It returns ErrDuplicateEventID
// when some of the ids are stored but not as an identical append — content
// or actor — so that another writer learns nothing of the stored content
// by resending an id (a retry is recognised only for its own writer).
func (s *Store) checkDuplicate(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, a appendArgs) (eventstore.AppendResult, bool, error) {
	rows, err := s.pool.Query(ctx, duplicateSQL, a.ids, a.types, a.data, a.meta, a.actors)
	if err != nil {
		return eventstore.AppendResult{}, false, fmt.Errorf("check event ids: %w", err)
	}
	type stored struct {
		stream   pgtype.Text
		version  pgtype.Int8
		position pgtype.Int8
		same     pgtype.Bool
	}
	var found []stored
	foundAny, identical := false, true
	for rows.Next() {
		var r stored
		if err := rows.Scan(&r.stream, &r.version, &r.position, &r.same); err != nil {
			rows.Close()
			return eventstore.AppendResult{}, false, fmt.Errorf("check event ids: %w", err)
		}
		if r.stream.Valid {
			foundAny = true
		}
		i := len(found)
		if !r.stream.Valid || r.stream.String != streamID || !r.same.Bool ||
			(i > 0 && r.version.Int64 != found[0].version.Int64+int64(i)) {
			identical = false
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return eventstore.AppendResult{}, false, fmt.Errorf("check event ids: %w", err)
	}
	if !foundAny {
		return eventstore.AppendResult{}, false, nil
	}
	if identical {
		first, last := found[0], found[len(found)-1]
		switch {
		case expected == eventstore.Any,
			expected == eventstore.StreamExists && first.version.Int64 > 0,
			expected >= eventstore.NoStream && first.version.Int64 == int64(expected)+1:
			return eventstore.AppendResult{
				StreamID:      streamID,
				FirstVersion:  first.version.Int64,
				LastVersion:   last.version.Int64,
				FirstPosition: first.position.Int64,
				LastPosition:  last.position.Int64,
				Duplicate:     true,
			}, true, nil
		}
		return eventstore.AppendResult{}, false, fmt.Errorf("%w: the events are stored at versions %d-%d, appended with another expected version than %s",
			eventstore.ErrDuplicateEventID, first.version.Int64, last.version.Int64, expected)
	}
	for i, r := range found {
		if r.stream.Valid {
			return eventstore.AppendResult{}, false, fmt.Errorf("%w: event %d (id %s) is already stored with other content or in another place",
				eventstore.ErrDuplicateEventID, i, eventstore.EventID(a.ids[i].Bytes))
		}
	}
	return eventstore.AppendResult{}, false, errors.New("check event ids: inconsistent answer")
}

// conflict builds the WrongExpectedVersionError for a refused append.
func (s *Store) conflict(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) error {
	current, err := s.StreamVersion(ctx, streamID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		current, err = -1, nil
	}
	if err != nil {
		return fmt.Errorf("append to %s: version conflict: %w", streamID, err)
	}
	cerr := &eventstore.WrongExpectedVersionError{StreamID: streamID, Expected: expected, Current: current}
	from := int64(-1)
	switch {
	case expected == eventstore.NoStream:
		from = 0
	case expected >= 0:
		from = int64(expected) + 1
	}
	if from >= 0 && from <= current {
		events, err := s.readStream(ctx, streamID, eventstore.ReadStreamOptions{From: from, Limit: eventstore.MaxConflictEvents + 1})
		if err != nil {
			return fmt.Errorf("append to %s: version conflict: %w", streamID, err)
		}
		if len(events) > eventstore.MaxConflictEvents {
			events, cerr.Truncated = events[:eventstore.MaxConflictEvents], true
		}
		cerr.Events = events
	}
	return cerr
}

// eventColumns are the columns of a read. The last one consults the erasure
// ledger in the same statement, so that a read never serves a subject's data
// once its erasure has committed, whatever the caches of this process say.
const eventColumns = `stream_id, version, position, event_id, type, data, metadata, recorded_at, actor, link, subject_refs,
    CASE WHEN subject_refs IS NULL OR subject_refs = '{}' THEN NULL
         ELSE ARRAY(SELECT x.subject_ref FROM erasures x WHERE x.subject_ref = ANY (subject_refs)) END AS erased_refs`

func scanEvent(row pgx.Row) (eventstore.RecordedEvent, error) {
	var e eventstore.RecordedEvent
	var id pgtype.UUID
	var actor pgtype.Text
	// Data and metadata scan as plain bytes: as json.RawMessage (a
	// json.Unmarshaler) pgx would re-validate every document that
	// PostgreSQL already validated, which dominated read profiles.
	err := row.Scan(&e.StreamID, &e.Version, &e.Position, &id, &e.Type, (*[]byte)(&e.Data), (*[]byte)(&e.Metadata), &e.RecordedAt, &actor, &e.Link, &e.SubjectRefs, &e.ErasedRefs)
	e.ID, e.Actor = id.Bytes, actor.String
	e.RecordedAt = e.RecordedAt.UTC()
	e.Size = len(e.Data) + len(e.Metadata)
	return e, err
}

func collectEvents(rows pgx.Rows, maxBytes int) ([]eventstore.RecordedEvent, error) {
	defer rows.Close()
	var events []eventstore.RecordedEvent
	size := 0
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
		if size += e.Size; maxBytes > 0 && size >= maxBytes {
			break
		}
	}
	return events, rows.Err()
}

func limitOrDefault(n int) int {
	if n <= 0 {
		return eventstore.DefaultReadLimit
	}
	return n
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return nil, fmt.Errorf("read stream: %w", err)
	}
	events, err := s.readStream(ctx, streamID, opts)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	if len(events) == 0 {
		if _, err := s.StreamVersion(ctx, streamID); err != nil {
			return nil, err
		}
	}
	return events, nil
}

func (s *Store) readStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error) {
	rows, err := s.queryStream(ctx, streamID, opts)
	if err != nil {
		return nil, err
	}
	return collectEvents(rows, opts.MaxBytes)
}

func (s *Store) queryStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) (pgx.Rows, error) {
	q := `SELECT ` + eventColumns + ` FROM events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`
	if opts.Backward {
		q = `SELECT ` + eventColumns + ` FROM events WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3`
	}
	return s.pool.Query(ctx, q, streamID, opts.From, limitOrDefault(opts.Limit))
}

// ReadStreamEach is ReadStream handing each event to fn as its row
// arrives, so that the caller's work on an event overlaps the database
// producing the next ones (package forgettable decrypts this way). It
// returns fn's first error, which stops the read, and ErrStreamNotFound as
// ReadStream does.
func (s *Store) ReadStreamEach(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, fn func(eventstore.RecordedEvent) error) error {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return fmt.Errorf("read stream: %w", err)
	}
	rows, err := s.queryStream(ctx, streamID, opts)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", streamID, err)
	}
	n, size := 0, 0
	for rows.Next() {
		e, err := scanEvent(rows)
		if err == nil {
			err = fn(e)
		}
		if err != nil {
			rows.Close()
			return err
		}
		n++
		if size += e.Size; opts.MaxBytes > 0 && size >= opts.MaxBytes {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read stream %s: %w", streamID, err)
	}
	if n == 0 {
		if _, err := s.StreamVersion(ctx, streamID); err != nil {
			return err
		}
	}
	return nil
}

// StreamVersion implements eventstore.Store.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return 0, fmt.Errorf("stream version: %w", err)
	}
	var v pgtype.Int8
	if err := s.pool.QueryRow(ctx, `SELECT max(version) FROM events WHERE stream_id = $1`, streamID).Scan(&v); err != nil {
		return 0, fmt.Errorf("stream version %s: %w", streamID, err)
	}
	if !v.Valid {
		return 0, fmt.Errorf("stream %s: %w", streamID, eventstore.ErrStreamNotFound)
	}
	return v.Int64, nil
}

// EventsByID returns the stored events with these ids, in the order of
// ids; an id not stored gives a zero event (empty StreamID). Package
// forgettable uses it to recognise a retried append whose events were
// sealed again under a newer key version. (Not scoped by stream: on a
// store partitioned by stream it asks every partition; it serves that
// rare retry path only.)
func (s *Store) EventsByID(ctx context.Context, ids []eventstore.EventID) ([]eventstore.RecordedEvent, error) {
	raw := make([][16]byte, len(ids))
	for i, id := range ids {
		raw[i] = id
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id = ANY ($1::uuid[])`, raw)
	if err != nil {
		return nil, fmt.Errorf("events by id: %w", err)
	}
	found, err := collectEvents(rows, 0)
	if err != nil {
		return nil, fmt.Errorf("events by id: %w", err)
	}
	out := make([]eventstore.RecordedEvent, len(ids))
	for _, e := range found {
		for i, id := range ids {
			if e.ID == id {
				out[i] = e
			}
		}
	}
	return out, nil
}

// VersionAt returns the version of the event at position in a stream, or
// ErrStreamNotFound when the stream has no event there: how a stream
// subscription resumes from the position a client last saw (HTTP
// Last-Event-ID). Scoped by stream, like every per-stream query.
func (s *Store) VersionAt(ctx context.Context, streamID string, position int64) (int64, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return 0, fmt.Errorf("version at position: %w", err)
	}
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT version FROM events WHERE stream_id = $1 AND position = $2`, streamID, position).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("stream %s has no event at position %d: %w", streamID, position, eventstore.ErrStreamNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("version at position in %s: %w", streamID, err)
	}
	return v, nil
}

// readAllSQL returns the $all query for the given filters. The horizon and
// the events come from one statement, hence one snapshot: every transaction
// with an id below the snapshot's xmin has ended, and every position derived
// from a later transaction id is at or above the horizon. The last column
// is the highest position committed, visible or not yet.
func readAllSQL(byType, byCategory bool) string {
	var b strings.Builder
	b.WriteString(`
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16 AS horizon)
SELECT h.horizon, (SELECT max(position) FROM events),
       e.stream_id, e.version, e.position, e.event_id, e.type, e.data, e.metadata, e.recorded_at, e.actor, e.link, e.subject_refs, e.erased_refs
FROM h LEFT JOIN LATERAL (
    SELECT ` + eventColumns + ` FROM events
    WHERE position > $1 AND position < h.horizon`)
	n := 2
	if byType {
		n++
		fmt.Fprintf(&b, ` AND type = ANY($%d::text[])`, n)
	}
	if byCategory {
		n++
		fmt.Fprintf(&b, ` AND split_part(stream_id, '-', 1) = ANY($%d::text[])`, n)
	}
	b.WriteString(`
    ORDER BY position LIMIT $2
) e ON true
ORDER BY e.position`)
	return b.String()
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.AllPage, error) {
	limit := limitOrDefault(opts.Limit)
	args := []any{opts.After, limit}
	byType, byCategory := len(opts.Types) > 0, len(opts.Categories) > 0
	if byType {
		args = append(args, opts.Types)
	}
	if byCategory {
		args = append(args, opts.Categories)
	}
	rows, err := s.pool.Query(ctx, readAllSQL(byType, byCategory), args...)
	if err != nil {
		return eventstore.AllPage{}, fmt.Errorf("read $all: %w", err)
	}
	defer rows.Close()
	var page eventstore.AllPage
	var horizon int64
	var maxPosition pgtype.Int8
	size, full := 0, false
	for rows.Next() {
		var (
			e        eventstore.RecordedEvent
			stream   pgtype.Text
			version  pgtype.Int8
			position pgtype.Int8
			id       pgtype.UUID
			typ      pgtype.Text
			at       pgtype.Timestamptz
			actor    pgtype.Text
		)
		if err := rows.Scan(&horizon, &maxPosition, &stream, &version, &position, &id, &typ, (*[]byte)(&e.Data), (*[]byte)(&e.Metadata), &at, &actor, &e.Link, &e.SubjectRefs, &e.ErasedRefs); err != nil {
			return eventstore.AllPage{}, fmt.Errorf("read $all: %w", err)
		}
		if !stream.Valid { // no event: the row only carries the horizon
			continue
		}
		e.StreamID, e.Version, e.Position, e.ID, e.Type, e.RecordedAt, e.Actor = stream.String, version.Int64, position.Int64, id.Bytes, typ.String, at.Time.UTC(), actor.String
		e.Size = len(e.Data) + len(e.Metadata)
		if page.Events == nil {
			// Sized on the first event, not before: an idle poll
			// allocates nothing, and a full page seldom grows.
			page.Events = make([]eventstore.RecordedEvent, 0, min(limit, 1024))
		}
		page.Events = append(page.Events, e)
		if size += e.Size; opts.MaxBytes > 0 && size >= opts.MaxBytes {
			full = true
			break
		}
	}
	if err := rows.Err(); err != nil {
		return eventstore.AllPage{}, fmt.Errorf("read $all: %w", err)
	}
	if full || len(page.Events) == limit {
		page.Next = page.Events[len(page.Events)-1].Position
	} else {
		page.Next = max(opts.After, horizon-1)
		page.HeldBack = maxPosition.Valid && maxPosition.Int64 >= horizon
	}
	return page, nil
}

// readAllEachSQL reads $all after a position up to the visibility horizon
// (see readAllSQL) in one statement, in position order, without sorting:
// the plan walks the position index, so rows stream as they are read.
func readAllEachSQL(withoutData bool) string {
	cols := eventColumns
	if withoutData {
		cols = `stream_id, version, position, event_id, type,
    CASE WHEN left(stream_id, 1) = '$' THEN data END, CASE WHEN left(stream_id, 1) = '$' THEN metadata END,
    recorded_at, actor, link, NULL::text[], NULL::text[]`
	}
	return `SELECT ` + cols + ` FROM events
WHERE position > $1 AND position < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)
ORDER BY position LIMIT $2`
}

// ReadAllEach reads the events of $all after opts.After, up to Limit, in
// position order, handing each to fn as its row arrives: one statement
// instead of a page per round trip, for readers that catch up on a large
// part of the log (projection rebuilds). Like ReadAll it stops at the log's
// visibility horizon when the statement starts, so no event is skipped; it
// returns how many events it read (fewer than Limit: it reached the
// horizon). fn's first error stops the read and is returned.
//
// It runs in a read-only transaction, which takes no transaction id and so
// holds back no other reader's horizon, with JIT compilation off for the
// statement (PostgreSQL would otherwise compile a plan this large before
// returning its first row).
func (s *Store) ReadAllEach(ctx context.Context, opts eventstore.ReadAllEachOptions, fn func(eventstore.RecordedEvent) error) (int, error) {
	if opts.Limit <= 0 {
		return 0, errors.New("read $all: ReadAllEach needs a limit")
	}
	n := 0
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
			return fmt.Errorf("read $all: %w", err)
		}
		rows, err := tx.Query(ctx, readAllEachSQL(opts.WithoutData), opts.After, opts.Limit)
		if err != nil {
			return fmt.Errorf("read $all: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return fmt.Errorf("read $all: %w", err)
			}
			if err := fn(e); err != nil {
				return err
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read $all: %w", err)
		}
		return nil
	})
	return n, err
}

// SubjectEvents reads the events whose personal data is sealed under the
// subject reference ref, for a data subject's access export, in one
// read-only REPEATABLE READ transaction: every statement sees the same
// snapshot, so what footprint is told is exactly what fn is handed. First
// footprint gets the streams (sorted) and the number of events; then fn
// gets the events in position order, a page of at most pageSize at a
// time. Either one's error stops the read and is returned. It walks the
// GIN index on subject_refs, which holds references only, and is not
// scoped by stream (a person's data spans streams): on a log partitioned
// by stream it asks every partition. The transaction takes no transaction
// id; its snapshot holds back vacuum while the export runs.
// subjectPageBytes bounds a page of SubjectEvents by stored bytes.
const subjectPageBytes = 16 << 20

func (s *Store) SubjectEvents(ctx context.Context, ref string, pageSize int, footprint func(streams []string, events int) error, fn func([]eventstore.RecordedEvent) error) error {
	const where = `subject_refs @> ARRAY[$1::text] AND subject_refs IS NOT NULL AND subject_refs <> '{}'`
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT stream_id, count(*) FROM events WHERE `+where+` GROUP BY stream_id ORDER BY stream_id`, ref)
		if err != nil {
			return fmt.Errorf("events of a subject: %w", err)
		}
		var streams []string
		events := 0
		for rows.Next() {
			var stream string
			var n int
			if err := rows.Scan(&stream, &n); err != nil {
				rows.Close()
				return fmt.Errorf("events of a subject: %w", err)
			}
			streams, events = append(streams, stream), events+n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("events of a subject: %w", err)
		}
		if err := footprint(streams, events); err != nil {
			return err
		}
		var after int64
		for read := 0; read < events; {
			rows, err := tx.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE `+where+` AND position > $2 ORDER BY position LIMIT $3`,
				ref, after, limitOrDefault(pageSize))
			if err != nil {
				return fmt.Errorf("events of a subject: %w", err)
			}
			page, err := collectEvents(rows, subjectPageBytes) // a page also ends at 16 MiB
			if err != nil {
				return fmt.Errorf("events of a subject: %w", err)
			}
			if len(page) == 0 {
				return nil
			}
			if err := fn(page); err != nil {
				return err
			}
			read += len(page)
			after = page[len(page)-1].Position
		}
		return nil
	})
}

// ChangeNotifier returns the store's announcements of new events (from
// every process, through LISTEN/NOTIFY), for workers that follow $all
// without a Subscription (projection runners).
func (s *Store) ChangeNotifier() eventstore.ChangeNotifier {
	s.startListening()
	return s.changes
}

// SubscribeToAll returns a catch-up subscription to the global log.
func (s *Store) SubscribeToAll(opts eventstore.SubscribeAllOptions) *eventstore.Subscription {
	s.startListening()
	if opts.SafetyPoll == 0 {
		opts.SafetyPoll = s.safetyPoll
	}
	return eventstore.NewAllSubscription(s, s.changes, opts)
}

// SubscribeToStream returns a catch-up subscription to one stream.
func (s *Store) SubscribeToStream(streamID string, opts eventstore.SubscribeStreamOptions) *eventstore.Subscription {
	s.startListening()
	if opts.SafetyPoll == 0 {
		opts.SafetyPoll = s.safetyPoll
	}
	return eventstore.NewStreamSubscription(s, s.changes, streamID, opts)
}
