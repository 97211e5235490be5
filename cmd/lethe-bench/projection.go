package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
	projpg "github.com/lethe-store/lethe/projection/postgres"
)

// rebuildBatchSize is the runner's BatchSize in the rebuild figures: its
// default. The analytics projection is DataFree (no event data reaches
// it, nothing is opened) and writes one statement per batch (ApplyBatch);
// most of a rebuild's time is the runner's reading of $all
// (docs/benchmarks.md).
const rebuildBatchSize = 1000

// noSnapshots is a snapshot store that has none and keeps none: a Loader
// with it folds every event of the stream on every load.
type noSnapshots struct{}

func (noSnapshots) Latest(context.Context, string, int64, *time.Time) (projection.Snapshot, bool, error) {
	return projection.Snapshot{}, false, nil
}

func (noSnapshots) Save(context.Context, projection.Snapshot) error { return nil }

// sizeLabel names an event count in a figure: 100, 10k, 100k.
func sizeLabel(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

func benchProjection(ctx context.Context, b *bench) ([]figure, error) {
	sh, err := newShredding(ctx, b, nil)
	if err != nil {
		return nil, err
	}
	defer sh.stop()
	events, store := sh.events, sh.store

	// The rebuild runs first, so that $all holds exactly its events.
	rebuildEvents := 100_000
	sizes := []int{100, 10_000, 100_000}
	if b.opts.quick {
		rebuildEvents, sizes = 10_000, []int{100, 1_000, 10_000}
	}
	figs, err := benchRebuild(ctx, b, sh.keys, events, store, rebuildEvents)
	if err != nil {
		return nil, err
	}
	loads, err := benchStateLoad(ctx, b, events, store, sizes)
	return append(figs, loads...), err
}

// rebuildCategories are the categories of the rebuild's $all: the first
// one's events carry three personal fields, sealed.
var rebuildCategories = []struct{ category, eventType string }{
	{"customer", "contact-details-updated"},
	{"order", "order-placed"},
	{"invoice", "invoice-issued"},
	{"shipment", "shipment-dispatched"},
}

// benchRebuild measures a full rebuild of the analytics projection over a
// $all of n events against a raw scan of the same rows.
func benchRebuild(ctx context.Context, b *bench, blinder projpg.Blinder, events *postgres.Store, store *forgettable.Store, n int) ([]figure, error) {
	const streamLen = 1000
	fmt.Fprintf(b.out, "  loading %d events in %d categories for the rebuild...\n", n, len(rebuildCategories))
	loadStart := time.Now()
	for s := 0; s*streamLen < n; s++ {
		c := rebuildCategories[s%len(rebuildCategories)]
		stream := fmt.Sprintf("%s-%d", c.category, s)
		count := min(streamLen, n-s*streamLen)
		var err error
		if s%len(rebuildCategories) == 0 {
			batch := make([]forgettable.Event, count)
			for k := range batch {
				batch[k] = personalEvent(k, stream+"@example.com")
			}
			_, err = store.Append(ctx, stream, eventstore.NoStream, batch...)
		} else {
			batch := make([]eventstore.EventData, count)
			for k := range batch {
				batch[k] = eventstore.EventData{ID: eventstore.NewEventID(), Type: c.eventType, Metadata: meta,
					Data: fmt.Appendf(nil, `{"reference":"%s-%06d","amount":%d.%02d,"currency":"EUR","timestamp":"2020-05-20T12:32:08.24Z","seq":%d}`,
						c.category, k, k%1000, k%100, k)}
			}
			_, err = events.AppendToStream(ctx, stream, eventstore.NoStream, batch...)
		}
		if err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(b.out, "  loaded in %v\n", time.Since(loadStart).Round(time.Second))
	if err := b.vacuum(ctx, "events"); err != nil {
		return nil, err
	}

	runner := projpg.NewRunner(b.pool, events, store, projpg.Options{BatchSize: rebuildBatchSize})
	if err := runner.Register(projpg.Analytics()); err != nil {
		return nil, err
	}
	if err := runner.Register(noopProjection()); err != nil {
		return nil, err
	}
	if err := runner.Register(projpg.Lookup(blinder)); err != nil {
		return nil, err
	}
	rebuild := func(name string) func() error {
		return func() error {
			if err := projpg.RequestRebuild(ctx, b.pool, name, 0); err != nil {
				return err
			}
			applied := 0
			for {
				k, more, err := runner.Step(ctx, name)
				if err != nil {
					return err
				}
				applied += k
				if !more {
					break
				}
			}
			if applied != n {
				return fmt.Errorf("rebuild of %s applied %d events, want %d", name, applied, n)
			}
			if name != projpg.AnalyticsName {
				return nil
			}
			var counted int
			if err := b.pool.QueryRow(ctx, `SELECT coalesce(sum(count), 0) FROM read_analytics`).Scan(&counted); err != nil {
				return err
			}
			if counted != n {
				return fmt.Errorf("analytics counted %d events, want %d", counted, n)
			}
			return nil
		}
	}
	scan := func() error {
		// The log in its order: a scan of $all is by position (an
		// unordered sequential scan is no reading of the log).
		got, err := scanRaw(ctx, b, `SELECT stream_id, version, position, event_id, type, data, metadata, recorded_at FROM events ORDER BY position`)
		if err == nil && got != n {
			err = fmt.Errorf("raw scan read %d rows, want %d", got, n)
		}
		return err
	}
	// Alternate like paired: each rebuild is long, so a round is one of
	// each.
	var base, got, noop, lookup rate
	for range rounds {
		r, err := timed(n, scan)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		base.add(r)
		if r, err = timed(n, rebuild(projpg.AnalyticsName)); err != nil {
			return nil, err
		}
		got.add(r)
		if r, err = timed(n, rebuild(noopName)); err != nil {
			return nil, err
		}
		noop.add(r)
		if r, err = timed(n, rebuild(projpg.LookupName)); err != nil {
			return nil, err
		}
		lookup.add(r)
	}
	f := compare("projection_rebuild_analytics", "events/s", got, fmt.Sprintf("raw_scan_all_%s_rows", sizeLabel(n)), base, 0.5)
	f.Note = fmt.Sprintf("%s events, %d categories, 1/%d sealed; batches of %d; data-free (nothing opened)", sizeLabel(n), len(rebuildCategories), len(rebuildCategories), rebuildBatchSize)
	g := compare("projection_rebuild_noop", "events/s", noop, f.BaselineName, base, 0)
	g.Note = "the same rebuild with an Apply that does nothing: the runner's own cost, events read whole and opened"
	h := compare("projection_rebuild_lookup", "events/s", lookup, f.BaselineName, base, 0)
	h.Note = "the lookup index: sealed fields decrypted (keys cached), every leaf value HMAC'd and inserted"
	return []figure{f, g, h}, nil
}

// noopName is the name of a projection whose Apply does nothing.
const noopName = "bench-noop"

// noopProjection reads $all as the analytics projection does and applies
// nothing: its rebuild is the runner's cost without a read model's. Unlike
// analytics it is not DataFree, so its events are opened (restricted
// access: sealed fields redacted).
func noopProjection() projpg.Projection {
	none := func(context.Context, pgx.Tx) error { return nil }
	return projpg.Projection{Name: noopName, Access: forgettable.Restricted, Setup: none, Reset: none,
		Apply: func(context.Context, pgx.Tx, forgettable.RecordedEvent) error { return nil }}
}

// benchStateLoad measures loading the state of streams of the given sizes
// (ascending, the first the small reference) with and without snapshots.
func benchStateLoad(ctx context.Context, b *bench, events *postgres.Store, store *forgettable.Store, sizes []int) ([]figure, error) {
	const subject = "state-load@example.com"
	fmt.Fprintf(b.out, "  loading streams of %v sealed events for the state loads...\n", sizes)
	loadStart := time.Now()
	for _, size := range sizes {
		stream := "contact-" + sizeLabel(size)
		for v := 0; v < size; v += 1000 {
			batch := make([]forgettable.Event, min(1000, size-v))
			for k := range batch {
				batch[k] = personalEvent(v+k, subject)
			}
			if _, err := store.Append(ctx, stream, eventstore.Exact(int64(v)-1), batch...); err != nil {
				return nil, err
			}
		}
	}
	fmt.Fprintf(b.out, "  loaded in %v\n", time.Since(loadStart).Round(time.Second))
	if err := b.vacuum(ctx, "events"); err != nil {
		return nil, err
	}

	plain := &projection.Loader{Events: events, Snapshots: noSnapshots{}, Opener: store}
	snap := &projection.Loader{Events: events, Snapshots: projpg.NewSnapshots(b.pool), Opener: store, Every: 1000}
	load := func(l *projection.Loader, size int) op {
		return func(ctx context.Context, _, _ int) (int, error) {
			got, err := l.Load(ctx, "contact-"+sizeLabel(size), projection.UpTo{Version: -1}, forgettable.Personal)
			if err != nil {
				return 0, err
			}
			if got.State.Version != int64(size)-1 || len(got.Opened) == 0 {
				return 0, fmt.Errorf("loaded version %d with %d parts opened, want %d and some", got.State.Version, len(got.Opened), size-1)
			}
			return 1, nil
		}
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

	var figs []figure
	for _, size := range sizes {
		// Warm the key cache, and save the snapshot the measured loads
		// start from (streams shorter than Every get none).
		for _, l := range []*projection.Loader{plain, snap} {
			if _, err := load(l, size)(ctx, 0, 0); err != nil {
				return nil, err
			}
		}
		without, with, err := paired(ctx, 1, b.opts.duration, load(plain, size), load(snap, size))
		if err != nil {
			return nil, err
		}
		label := sizeLabel(size)
		f := compare("state_load_"+label+"_snapshot", "loads/s", with, "state_load_"+label+"_no_snapshot", without, 0)
		f.Note = fmt.Sprintf("p50 %s with, %s without", ms(with.percentile(0.5)), ms(without.percentile(0.5)))
		if size < snap.Every {
			f.Note += " (shorter than Every: never snapshotted)"
		}
		figs = append(figs, f)
	}

	// The target: the largest stream, with its snapshot, loads within 2×
	// the time of the smallest. As a rate ratio (as every figure here),
	// that is loads/s of the largest ≥ 0.5 × loads/s of the smallest.
	small, large := sizes[0], sizes[len(sizes)-1]
	r100, rLarge, err := paired(ctx, 1, b.opts.duration, load(snap, small), load(snap, large))
	if err != nil {
		return nil, err
	}
	f := compare(fmt.Sprintf("state_load_%s_snapshot_vs_%s", sizeLabel(large), sizeLabel(small)), "loads/s", rLarge,
		fmt.Sprintf("state_load_%s_snapshot", sizeLabel(small)), r100, 0.5)
	f.Note = fmt.Sprintf("ratio = %s-event time / %s-event time; p50 %s vs %s: time ratio %.2f (target ≤ 2)",
		sizeLabel(small), sizeLabel(large), ms(rLarge.percentile(0.5)), ms(r100.percentile(0.5)),
		float64(rLarge.percentile(0.5))/float64(r100.percentile(0.5)))
	return append(figs, f), nil
}
