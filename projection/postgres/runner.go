// Package postgres runs persisted projections: read models in PostgreSQL
// tables, kept up to date by a worker that follows the global log ($all)
// with its no-skip guarantee. Each batch's read-model writes and the
// projection's checkpoint commit in one transaction, so a crash or a kill
// never loses or doubles an effect; any number of `lethe serve` processes
// may run the same projections (a session advisory lock makes one apply
// each step). A batch's transaction opens only once its events are opened
// (which may wait on Vault), so a slow Vault holds back no reader of $all.
//
// Erasure reaches every read model: the runner hands each erasure record
// ($lethe-erasures, "subject-fenced" and "subject-erased") to the projection's Forget, in
// order, in the transaction of its batch; events read after an erasure
// show the subject's fields as forgotten.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
)

// Handler applies one event to a read model, in the batch's transaction.
type Handler func(ctx context.Context, tx pgx.Tx, e forgettable.RecordedEvent) error

// Projection is a persisted read model.
type Projection struct {
	// Name identifies the projection and its checkpoint.
	Name string
	// Access is what Apply sees of personal data: forgettable.Restricted
	// (null, the default) or forgettable.Personal (decrypted). A
	// projection that sees personal data must not store it in the clear
	// (use a keyed blind index) and must implement Forget.
	Access forgettable.Access
	// DataFree says Apply reads no event data (only stream, type,
	// version, position and time: counts, funnels): events reach it with
	// Data, Metadata and SubjectRefs empty, nothing is opened, and a
	// rebuild reads only the envelopes of the log.
	DataFree bool
	// Types and Categories, if set, select the events Apply gets.
	Types      []string
	Categories []string
	// Setup, if set, creates the read model's tables if they do not exist
	// (the role needs CREATE on the schema; or create them with a
	// migration and leave Setup nil). It runs before the first batch of
	// each runner and after a Reset.
	Setup func(ctx context.Context, tx pgx.Tx) error
	// Apply applies an event.
	Apply Handler
	// ApplyBatch, if set, is used instead of Apply: it applies a run of
	// events at once (between erasure records, in position order), so a
	// projection can write one statement per batch instead of one per
	// event.
	ApplyBatch func(ctx context.Context, tx pgx.Tx, events []forgettable.RecordedEvent) error
	// Reset empties the read model, for a rebuild from scratch.
	Reset func(ctx context.Context, tx pgx.Tx) error
	// Forget removes what the read model derived from an erased data
	// subject (its reference). Required with Personal access.
	Forget func(ctx context.Context, tx pgx.Tx, subjectRef string) error
}

func (p Projection) validate() error {
	switch {
	case p.Name == "" || len(p.Name) > 100:
		return errors.New("projection: a name of 1 to 100 bytes is needed")
	case (p.Apply == nil && p.ApplyBatch == nil) || p.Reset == nil:
		return fmt.Errorf("projection %s: Apply (or ApplyBatch) and Reset are needed", p.Name)
	case p.Access == forgettable.Personal && p.Forget == nil:
		return fmt.Errorf("projection %s: a projection that sees personal data must implement Forget", p.Name)
	}
	return nil
}

func (p Projection) wants(e eventstore.RecordedEvent) bool {
	if eventstore.IsSystemStream(e.StreamID) {
		return false
	}
	if len(p.Types) > 0 && !slices.Contains(p.Types, e.Type) {
		return false
	}
	return len(p.Categories) == 0 || slices.Contains(p.Categories, eventstore.Category(e.StreamID))
}

// Log is what the runner reads: the raw global log, and the opening of
// events for a projection's access (forgettable.Store).
type Log interface {
	ReadAll(ctx context.Context, opts eventstore.ReadAllOptions) (eventstore.AllPage, error)
}

// Opener opens stored events for a reader; *forgettable.Store implements
// it.
type Opener interface {
	Open(ctx context.Context, events []eventstore.RecordedEvent, access forgettable.Access) ([]forgettable.RecordedEvent, error)
}

// Options configure a Runner.
type Options struct {
	Logger *slog.Logger
	// BatchSize is the most events of $all one batch reads (default 1,000),
	// and BatchBytes the most bytes (default 16 MiB): a batch ends after
	// the event whose data and metadata, as stored, reach it.
	BatchSize  int
	BatchBytes int
	// Idle is how long a caught-up projection waits before looking again
	// when no change is announced (default 1s).
	Idle time.Duration
	// Changes, if set, wakes caught-up projections when events are
	// appended (eventstore/postgres Store.ChangeNotifier).
	Changes eventstore.ChangeNotifier
	// Upcasters, if set, give Apply every event in its type's current
	// shape.
	Upcasters *projection.Upcasters
}

// Runner applies registered projections.
type Runner struct {
	pool   *pgxpool.Pool
	log    Log
	opener Opener
	opts   Options
	logger *slog.Logger

	mu          sync.Mutex
	projections map[string]Projection
	setUp       map[string]bool
	busy        map[string]bool // the last batch was full: more to apply at once
}

// NewRunner returns a runner reading log and opening events with opener.
func NewRunner(pool *pgxpool.Pool, log Log, opener Opener, opts Options) *Runner {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 16 << 20
	}
	if opts.Idle <= 0 {
		opts.Idle = time.Second
	}
	return &Runner{pool: pool, log: log, opener: opener, opts: opts, logger: opts.Logger,
		projections: map[string]Projection{}, setUp: map[string]bool{}, busy: map[string]bool{}}
}

// Register adds a projection.
func (r *Runner) Register(p Projection) error {
	if err := p.validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.projections[p.Name]; dup {
		return fmt.Errorf("projection %s: registered twice", p.Name)
	}
	r.projections[p.Name] = p
	return nil
}

// Names returns the registered projections' names, sorted.
func (r *Runner) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.projections {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ErrUnknownProjection is returned for a name no projection is registered
// under.
var ErrUnknownProjection = projection.ErrUnknownProjection

// errBusy: another runner holds the projection's checkpoint.
var errBusy = errors.New("projection busy in another process")

// Run applies every registered projection until ctx ends, each on its own
// goroutine: a batch as soon as there is something to apply, else a wait
// for a change announcement or Idle.
func (r *Runner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, name := range r.Names() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx, name)
		}()
	}
	wg.Wait()
}

func (r *Runner) run(ctx context.Context, name string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		var changed <-chan struct{}
		if r.opts.Changes != nil {
			changed = r.opts.Changes.Changes()
		}
		n, more, err := r.Step(ctx, name)
		switch {
		case err != nil && ctx.Err() == nil && !errors.Is(err, errBusy):
			r.logger.Warn("projection batch failed; retrying", "projection", name, "err", err, "in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		case n > 0 || more:
			backoff = 100 * time.Millisecond
			continue
		}
		backoff = 100 * time.Millisecond
		timer := time.NewTimer(r.opts.Idle)
		select {
		case <-ctx.Done():
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Step applies one batch of a projection: the events of $all after its
// checkpoint, up to BatchSize. It returns how many events reached Apply or
// Forget, and whether the log had a full batch (more may follow at once).
// Another process holding the projection's checkpoint makes it return
// (0, false, nil) at once.
func (r *Runner) Step(ctx context.Context, name string) (applied int, more bool, err error) {
	r.mu.Lock()
	p, ok := r.projections[name]
	r.mu.Unlock()
	if !ok {
		return 0, false, fmt.Errorf("%s: %w", name, ErrUnknownProjection)
	}
	applied, more, err = r.step(ctx, p)
	if errors.Is(err, errBusy) {
		return 0, false, nil
	}
	if err != nil && ctx.Err() == nil {
		// The checkpoint row says the batch failed; no error text (a
		// handler's error might quote data): the log has it.
		_, _ = r.pool.Exec(ctx, `UPDATE projection_checkpoints SET last_error = $2, updated_at = now() WHERE name = $1`,
			p.Name, "the last batch failed at "+time.Now().UTC().Format(time.RFC3339)+"; see the server log")
	}
	return applied, more, err
}

func (r *Runner) step(ctx context.Context, p Projection) (applied int, more bool, err error) {
	// A look without a transaction first (see idle), unless the last
	// batch was full: catching up, there is more.
	r.mu.Lock()
	busy := r.busy[p.Name]
	r.mu.Unlock()
	if !busy {
		idle, err := r.idle(ctx, p.Name)
		if err != nil || idle {
			return 0, false, err
		}
	}
	c, err := r.claim(ctx, p)
	if err != nil {
		return 0, false, err
	}
	defer r.unclaim(ctx, c, p)
	at := checkpoint{}
	if err := c.QueryRow(ctx, `SELECT position, reset_requested FROM projection_checkpoints WHERE name = $1`, p.Name).Scan(&at.pos, &at.reset); err != nil {
		return 0, false, fmt.Errorf("projection %s: checkpoint: %w", p.Name, err)
	}
	if log, ok := r.log.(allStreamer); ok && (busy || at.reset) {
		applied, more, err = r.catchUp(ctx, c, p, at, log)
	} else {
		applied, more, err = r.page(ctx, c, p, at)
	}
	if err != nil {
		return applied, false, err
	}
	r.mu.Lock()
	r.busy[p.Name] = more
	r.mu.Unlock()
	// Held-back events are not "more": the runner waits for a change or
	// Idle rather than spinning while an older transaction stays open.
	return applied, more, nil
}

// checkpoint is where a projection stands: the position of the last event
// it has applied, and whether a rebuild is requested.
type checkpoint struct {
	pos   int64
	reset bool
}

// claim takes the projection for this runner: a session advisory lock on
// a connection of the pool, kept for the Step, or errBusy if a runner in
// another process holds it. An advisory lock takes no transaction id, so
// a batch waiting on Vault (opening events for a projection with personal
// access, key fetches and their retries included) holds back no reader of
// $all: the batch's transaction opens only once the events are opened, to
// write them (see commit).
func (r *Runner) claim(ctx context.Context, p Projection) (*pgxpool.Conn, error) {
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", p.Name, err)
	}
	var got bool
	if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended('lethe.projection:' || $1, 0))`, p.Name).Scan(&got); err != nil {
		c.Release()
		return nil, fmt.Errorf("projection %s: claim: %w", p.Name, err)
	}
	if !got {
		c.Release()
		return nil, errBusy
	}
	return c, nil
}

// unclaim releases the projection's advisory lock and the connection; a
// connection whose lock cannot be released is closed (which releases it).
func (r *Runner) unclaim(ctx context.Context, c *pgxpool.Conn, p Projection) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended('lethe.projection:' || $1, 0))`, p.Name); err != nil {
		_ = c.Conn().Close(ctx)
	}
	c.Release()
}

// errMoved: the checkpoint is no longer where the batch was read from (a
// rebuild was requested meanwhile); the batch is dropped, the next Step
// starts from the new checkpoint.
var errMoved = errors.New("checkpoint moved")

// page applies one page of $all after the checkpoint (ReadAll).
func (r *Runner) page(ctx context.Context, c *pgxpool.Conn, p Projection, at checkpoint) (applied int, more bool, err error) {
	page, err := r.log.ReadAll(ctx, eventstore.ReadAllOptions{After: at.pos, Limit: r.opts.BatchSize, MaxBytes: r.opts.BatchBytes})
	if err != nil {
		return 0, false, fmt.Errorf("projection %s: read $all: %w", p.Name, err)
	}
	applied, err = r.commit(ctx, c, p, at, page.Events, page.Next)
	if errors.Is(err, errMoved) {
		return 0, false, nil
	}
	full := len(page.Events) == r.opts.BatchSize || (len(page.Events) > 0 && page.Next == page.Events[len(page.Events)-1].Position)
	return applied, full, err
}

// allStreamer reads $all in one statement (eventstore/postgres Store).
type allStreamer interface {
	ReadAllEach(ctx context.Context, opts eventstore.ReadAllEachOptions, fn func(eventstore.RecordedEvent) error) (int, error)
}

// catchUpBatches is how many batches one catch-up run reads at most: a
// bound on a Step's work (and on how long its read holds a snapshot).
const catchUpBatches = 100

// catchUp applies the log after the checkpoint while reading it, for a
// projection that is behind (rebuilding, or its last batch was full): one
// statement (ReadAllEach) streams up to catchUpBatches batches, which
// apply as they arrive, each committed with its checkpoint as a page's
// would be. A rebuild request meanwhile stops the run. Memory is bounded:
// the read waits while two batches are ready and not yet applied.
func (r *Runner) catchUp(ctx context.Context, c *pgxpool.Conn, p Projection, at checkpoint, log allStreamer) (applied int, more bool, err error) {
	limit := r.opts.BatchSize * catchUpBatches
	readCtx, cancel := context.WithCancel(ctx)
	batches := make(chan []eventstore.RecordedEvent, 2)
	var read int
	var readErr error
	go func() {
		defer close(batches)
		batch := make([]eventstore.RecordedEvent, 0, r.opts.BatchSize)
		size := 0
		send := func() error {
			select {
			case batches <- batch:
				batch, size = make([]eventstore.RecordedEvent, 0, r.opts.BatchSize), 0
				return nil
			case <-readCtx.Done():
				return readCtx.Err()
			}
		}
		read, readErr = log.ReadAllEach(readCtx, eventstore.ReadAllEachOptions{After: at.pos, Limit: limit, WithoutData: p.DataFree},
			func(e eventstore.RecordedEvent) error {
				batch, size = append(batch, e), size+e.Size
				if len(batch) < r.opts.BatchSize && size < r.opts.BatchBytes {
					return nil
				}
				return send()
			})
		if readErr == nil && len(batch) > 0 {
			readErr = send()
		}
	}()
	defer func() {
		cancel()
		for range batches { // let the read end
		}
	}()
	first := true
	for batch := range batches {
		first = false
		last := batch[len(batch)-1].Position
		n, err := r.commit(ctx, c, p, at, batch, last)
		if errors.Is(err, errMoved) {
			return applied, false, nil
		}
		if err != nil {
			return applied, false, err
		}
		applied, at = applied+n, checkpoint{pos: last}
	}
	// The channel is closed: the read has ended and set read and readErr.
	if readErr != nil {
		return applied, false, fmt.Errorf("projection %s: read $all: %w", p.Name, readErr)
	}
	if first && at.reset { // nothing to read: the reset commits alone
		if _, err := r.commit(ctx, c, p, at, nil, at.pos); err != nil && !errors.Is(err, errMoved) {
			return 0, false, err
		}
	}
	return applied, read == limit, nil
}

// commit applies a batch of $all read after at and moves the checkpoint
// to next. The events are opened first, outside any transaction (opening
// may wait on Vault); then one transaction locks the checkpoint, checks
// it is still at (errMoved if not), runs Setup and Reset as needed,
// applies the batch, moves the checkpoint and commits. A batch's commit
// need not wait for the WAL flush: the checkpoint and the read model
// commit together, so a crash that loses the last batches loses both, and
// the runner applies them again.
func (r *Runner) commit(ctx context.Context, c *pgxpool.Conn, p Projection, at checkpoint, events []eventstore.RecordedEvent, next int64) (int, error) {
	opened, err := r.open(ctx, p, events)
	if err != nil {
		return 0, err
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("projection %s: %w", p.Name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var now checkpoint
	if _, err = tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err == nil {
		err = tx.QueryRow(ctx, `SELECT position, reset_requested FROM projection_checkpoints WHERE name = $1 FOR UPDATE`, p.Name).Scan(&now.pos, &now.reset)
	}
	if err != nil {
		return 0, fmt.Errorf("projection %s: lock checkpoint: %w", p.Name, err)
	}
	if now != at {
		return 0, errMoved
	}
	if err := r.prepare(ctx, tx, p, at.reset); err != nil {
		return 0, err
	}
	applied, err := r.apply(ctx, tx, p, events, opened)
	if err != nil {
		return 0, err
	}
	var lastAt *time.Time
	if len(events) > 0 {
		lastAt = &events[len(events)-1].RecordedAt
	}
	_, err = tx.Exec(ctx, `UPDATE projection_checkpoints SET position = $2, reset_requested = false, events_applied = events_applied + $3,
		last_event_at = coalesce($4, last_event_at), updated_at = now(), last_error = '' WHERE name = $1`, p.Name, next, applied, lastAt)
	if err != nil {
		return 0, fmt.Errorf("projection %s: checkpoint: %w", p.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("projection %s: commit: %w", p.Name, err)
	}
	r.mu.Lock()
	r.setUp[p.Name] = true
	r.mu.Unlock()
	return applied, nil
}

// prepare runs the projection's Setup before this runner's first batch,
// and Reset (then Setup again) when a rebuild is requested.
func (r *Runner) prepare(ctx context.Context, tx pgx.Tx, p Projection, reset bool) error {
	r.mu.Lock()
	setUp := r.setUp[p.Name]
	r.mu.Unlock()
	if (!setUp || reset) && p.Setup != nil {
		if err := p.Setup(ctx, tx); err != nil {
			return fmt.Errorf("projection %s: setup: %w", p.Name, err)
		}
	}
	if !reset {
		return nil
	}
	if err := p.Reset(ctx, tx); err != nil {
		return fmt.Errorf("projection %s: reset: %w", p.Name, err)
	}
	if p.Setup != nil {
		if err := p.Setup(ctx, tx); err != nil {
			return fmt.Errorf("projection %s: setup: %w", p.Name, err)
		}
	}
	return nil
}

// open returns the events of a batch that the projection wants, opened for
// its access and upcast; for a data-free projection, their envelopes.
func (r *Runner) open(ctx context.Context, p Projection, events []eventstore.RecordedEvent) ([]forgettable.RecordedEvent, error) {
	wanted := make([]eventstore.RecordedEvent, 0, len(events))
	for _, e := range events {
		if p.wants(e) {
			wanted = append(wanted, e)
		}
	}
	if p.DataFree {
		opened := make([]forgettable.RecordedEvent, len(wanted))
		for i := range wanted {
			o := &opened[i].RecordedEvent
			*o = wanted[i]
			o.Data, o.Metadata, o.SubjectRefs, o.ErasedRefs = nil, nil, nil, nil
		}
		return opened, nil
	}
	opened, err := r.opener.Open(ctx, wanted, p.Access)
	if err == nil {
		opened, err = r.opts.Upcasters.UpcastAll(opened)
	}
	if err != nil {
		return nil, fmt.Errorf("projection %s: open events: %w", p.Name, err)
	}
	return opened, nil
}

// apply hands a batch of $all to a projection in tx: the events it wants
// (opened, from open) to Apply or ApplyBatch, and the erasure records to
// Forget, in position order. It returns how many events reached Apply or
// Forget.
func (r *Runner) apply(ctx context.Context, tx pgx.Tx, p Projection, events []eventstore.RecordedEvent, opened []forgettable.RecordedEvent) (applied int, err error) {
	// opened[from:k] are the events not applied yet (ApplyBatch): a run
	// between erasure records.
	from, k := 0, 0
	flush := func() error {
		if from == k {
			return nil
		}
		run := opened[from:k:k]
		if err := p.ApplyBatch(ctx, tx, run); err != nil {
			return fmt.Errorf("projection %s: events %s to %s: %w", p.Name, run[0].ID, run[len(run)-1].ID, err)
		}
		applied += len(run)
		from = k
		return nil
	}
	for i := range events {
		e := &events[i]
		switch {
		case e.StreamID == forgettable.ErasedStreamID && (e.Type == "subject-erased" || e.Type == forgettable.SubjectFencedType):
			ref, err := erasedRef(*e)
			if err != nil {
				return 0, fmt.Errorf("projection %s: erasure record %s: %w", p.Name, e.ID, err)
			}
			if p.Forget == nil {
				continue
			}
			if err := flush(); err != nil {
				return 0, err
			}
			if err := p.Forget(ctx, tx, ref); err != nil {
				return 0, fmt.Errorf("projection %s: forget: %w", p.Name, err)
			}
			applied++
		case k < len(opened) && opened[k].ID == e.ID:
			if p.ApplyBatch == nil {
				if err := p.Apply(ctx, tx, opened[k]); err != nil {
					return 0, fmt.Errorf("projection %s: event %s: %w", p.Name, e.ID, err)
				}
				applied++
				from = k + 1
			}
			k++
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return applied, nil
}

// idle reports whether a projection has nothing to do, looking without a
// transaction: an idle projection takes no lock and no transaction id
// (which would hold back $all readers). It creates the checkpoint row of a
// new projection.
func (r *Runner) idle(ctx context.Context, name string) (bool, error) {
	var pos int64
	var reset bool
	err := r.pool.QueryRow(ctx, `SELECT position, reset_requested FROM projection_checkpoints WHERE name = $1`, name).Scan(&pos, &reset)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := r.pool.Exec(ctx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`, name); err != nil {
			return false, fmt.Errorf("projection %s: checkpoint: %w", name, err)
		}
		return false, nil
	case err != nil:
		return false, fmt.Errorf("projection %s: checkpoint: %w", name, err)
	case reset:
		return false, nil
	}
	next, err := r.log.ReadAll(ctx, eventstore.ReadAllOptions{After: pos, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("projection %s: read $all: %w", name, err)
	}
	return len(next.Events) == 0, nil
}

// erasedRef reads the subject reference of an erasure record.
func erasedRef(e eventstore.RecordedEvent) (string, error) {
	var rec struct {
		SubjectRef string `json:"subjectRef"`
	}
	if err := json.Unmarshal(e.Data, &rec); err != nil || len(rec.SubjectRef) != 64 {
		return "", errors.New("no subject reference")
	}
	return rec.SubjectRef, nil
}

// RequestRebuild makes a projection start over: from scratch (Reset, then
// every event from the start of $all) or, with from > 0, from a position
// without a reset. Any runner of the projection picks it up at its next
// batch.
//
// A position past the projection's checkpoint is refused
// (projection.ErrRebuildAhead): the projection would skip the events in
// between, erasure records included, and erasure receipts would count it
// as having reached them.
func RequestRebuild(ctx context.Context, pool *pgxpool.Pool, name string, from int64) error {
	if from == 0 {
		_, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, position, reset_requested) VALUES ($1, 0, true)
			ON CONFLICT (name) DO UPDATE SET position = 0, reset_requested = true, updated_at = now()`, name)
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", name, err)
		}
		return nil
	}
	tag, err := pool.Exec(ctx, `UPDATE projection_checkpoints SET position = $2, reset_requested = false, updated_at = now()
		WHERE name = $1 AND position >= $2`, name, from)
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rebuild %s from %d: %w", name, from, projection.ErrRebuildAhead)
	}
	return nil
}

// MaxLag caps the lag count of a projection.Status.
const MaxLag = 10_000

// Statuses returns the progress of every projection with a checkpoint.
func Statuses(ctx context.Context, pool *pgxpool.Pool) ([]projection.Status, error) {
	rows, err := pool.Query(ctx, `SELECT c.name, c.position, c.events_applied, c.last_event_at, c.updated_at, c.reset_requested, c.last_error,
		(SELECT count(*) FROM (SELECT 1 FROM events e WHERE e.position > c.position LIMIT $1) l)
		FROM projection_checkpoints c ORDER BY c.name`, MaxLag)
	if err != nil {
		return nil, fmt.Errorf("projection status: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (projection.Status, error) {
		var s projection.Status
		err := row.Scan(&s.Name, &s.Position, &s.EventsApplied, &s.LastEventAt, &s.UpdatedAt, &s.RebuildPending, &s.LastError, &s.Lag)
		return s, err
	})
}
