package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/postgres"
)

// baselineDDL is the raw baseline: the same columns as the events table,
// with no constraint, no index and no trigger.
const baselineDDL = `
CREATE TABLE IF NOT EXISTS %s (
    position bigint, stream_id text, version bigint, event_id uuid, type text,
    data jsonb, metadata jsonb, recorded_at timestamptz DEFAULT now()
)`

var baselineColumns = []string{"position", "stream_id", "version", "event_id", "type", "data", "metadata"}

// payload is a typical small event, like the seed's contact-details-updated.
func payload(i int) []byte {
	return fmt.Appendf(nil, `{"first-name":"Casey","last-name":"Davis","phone-number":"555-%04d","timestamp":"2020-05-20T12:32:08.24Z","seq":%d}`, i%10000, i)
}

var meta = []byte(`{"correlation-id":"c0ffee"}`)

func eventData(i int) eventstore.EventData {
	return eventstore.EventData{ID: eventstore.NewEventID(), Type: "contact-details-updated", Data: payload(i), Metadata: meta}
}

// baselineRow is one row for the raw baseline, built like an event.
func baselineRow(pos int64, stream string, version int64, i int) []any {
	return []any{pos, stream, version, pgtype.UUID{Bytes: eventstore.NewEventID(), Valid: true}, "contact-details-updated", payload(i), meta}
}

func (b *bench) createBaseline(ctx context.Context, table string) error {
	_, err := b.pool.Exec(ctx, fmt.Sprintf(baselineDDL, table))
	return err
}

func benchAppend(ctx context.Context, b *bench) ([]figure, error) {
	store := postgres.New(b.pool, postgres.Options{})
	defer store.Close()
	if err := b.createBaseline(ctx, "baseline_insert"); err != nil {
		return nil, err
	}
	var figs []figure
	var pos int64
	nextPos := func() int64 { pos++; return pos } // only the baseline's own counter: not under test

	for _, workers := range []int{1, 8} {
		base, lethe, err := paired(ctx, workers, b.opts.duration, func(ctx context.Context, w, i int) (int, error) {
			_, err := b.pool.Exec(ctx, `INSERT INTO baseline_insert (position, stream_id, version, event_id, type, data, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				baselineRow(int64(w)<<40|int64(i), fmt.Sprintf("lead-%d", w), int64(i), i)...)
			return 1, err
		}, func(ctx context.Context, w, i int) (int, error) {
			// Each writer appends to its own stream, guarded by the
			// version it last wrote (the aggregate loop).
			_, err := store.AppendToStream(ctx, fmt.Sprintf("single%d-%d", workers, w), eventstore.Exact(int64(i)-1), eventData(i))
			return 1, err
		})
		if err != nil {
			return nil, err
		}
		target := 0.0
		if workers == 8 {
			target = 0.6
		}
		f := compare(fmt.Sprintf("append_1_event_%dw", workers), "events/s", lethe,
			fmt.Sprintf("raw_insert_1_row_%dw", workers), base, target)
		f.Note = fmt.Sprintf("p50 %v p99 %v", lethe.percentile(0.5).Round(time.Microsecond), lethe.percentile(0.99).Round(time.Microsecond))
		figs = append(figs, f)
	}

	// 100-event batches, against COPY of 100 rows per transaction.
	if err := b.createBaseline(ctx, "baseline_copy"); err != nil {
		return nil, err
	}
	base, lethe, err := paired(ctx, 1, b.opts.duration, func(ctx context.Context, w, i int) (int, error) {
		rows := make([][]any, 100)
		for k := range rows {
			rows[k] = baselineRow(nextPos(), fmt.Sprintf("batch-%d", i), int64(k), k)
		}
		_, err := b.pool.CopyFrom(ctx, pgx.Identifier{"baseline_copy"}, baselineColumns, pgx.CopyFromRows(rows))
		return 100, err
	}, func(ctx context.Context, w, i int) (int, error) {
		evs := make([]eventstore.EventData, 100)
		for k := range evs {
			evs[k] = eventData(k)
		}
		_, err := store.AppendToStream(ctx, fmt.Sprintf("batch-%d", i), eventstore.NoStream, evs...)
		return 100, err
	})
	if err != nil {
		return nil, err
	}
	figs = append(figs, compare("append_100_events_batch", "events/s", lethe, "raw_copy_100_rows", base, 0.5))
	return figs, nil
}

func benchRead(ctx context.Context, b *bench) ([]figure, error) {
	store := postgres.New(b.pool, postgres.Options{})
	defer store.Close()
	var figs []figure

	// One 10,000-event stream, read whole, page by page.
	const streamLen = 10_000
	for v := 0; v < streamLen; v += 1000 {
		evs := make([]eventstore.EventData, 1000)
		for k := range evs {
			evs[k] = eventData(v + k)
		}
		if _, err := store.AppendToStream(ctx, "long-1", eventstore.Exact(int64(v)-1), evs...); err != nil {
			return nil, err
		}
	}
	if err := b.createBaseline(ctx, "baseline_stream"); err != nil {
		return nil, err
	}
	rows := make([][]any, streamLen)
	for k := range rows {
		rows[k] = baselineRow(int64(k), "long-1", int64(k), k)
	}
	if _, err := b.pool.CopyFrom(ctx, pgx.Identifier{"baseline_stream"}, baselineColumns, pgx.CopyFromRows(rows)); err != nil {
		return nil, err
	}
	if err := b.vacuum(ctx, "events", "baseline_stream"); err != nil {
		return nil, err
	}
	base, lethe, err := paired(ctx, 1, b.opts.duration, func(ctx context.Context, _, _ int) (int, error) {
		return scanRaw(ctx, b, `SELECT stream_id, version, position, event_id, type, data, metadata, recorded_at FROM baseline_stream`)
	}, func(ctx context.Context, _, _ int) (int, error) {
		n := 0
		for from := int64(0); ; {
			evs, err := store.ReadStream(ctx, "long-1", eventstore.ReadStreamOptions{From: from})
			if err != nil {
				return 0, err
			}
			n += len(evs)
			if len(evs) < eventstore.DefaultReadLimit {
				return n, nil
			}
			from = evs[len(evs)-1].Version + 1
		}
	})
	if err != nil {
		return nil, err
	}
	f := compare("read_stream_10k_events", "events/s", lethe, "raw_select_10k_rows", base, 0)
	f.Note = fmt.Sprintf("pages of %d", eventstore.DefaultReadLimit)
	figs = append(figs, f)

	// $all: scan the whole log.
	total := b.opts.scanEvents
	fmt.Fprintf(b.out, "  loading %d events for the $all scan...\n", total)
	loadStart := time.Now()
	for v := 0; v < total-streamLen; v += 1000 {
		evs := make([]eventstore.EventData, min(1000, total-streamLen-v))
		for k := range evs {
			evs[k] = eventData(v + k)
		}
		if _, err := store.AppendToStream(ctx, fmt.Sprintf("scan-%d", v/1000), eventstore.NoStream, evs...); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(b.out, "  loaded in %v\n", time.Since(loadStart).Round(time.Second))
	if err := b.createBaseline(ctx, "baseline_scan"); err != nil {
		return nil, err
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO baseline_scan SELECT position, stream_id, version, event_id, type, data, metadata, recorded_at FROM events`); err != nil {
		return nil, err
	}
	if err := b.vacuum(ctx, "events", "baseline_scan"); err != nil {
		return nil, err
	}
	var n int
	baseRate, err := timed(total, func() error {
		var err error
		n, err = scanRaw(ctx, b, `SELECT stream_id, version, position, event_id, type, data, metadata, recorded_at FROM baseline_scan`)
		return err
	})
	if err != nil {
		return nil, err
	}
	if n != total {
		return nil, fmt.Errorf("baseline scanned %d rows, want %d", n, total)
	}
	n = 0
	letheRate, err := timed(total, func() error {
		after := int64(0)
		for {
			page, err := store.ReadAll(ctx, eventstore.ReadAllOptions{After: after, Limit: eventstore.DefaultReadLimit})
			if err != nil {
				return err
			}
			n += len(page.Events)
			if len(page.Events) == 0 && !page.HeldBack {
				return nil
			}
			after = page.Next
		}
	})
	if err != nil {
		return nil, err
	}
	if n != total {
		return nil, fmt.Errorf("$all scan read %d events, want %d", n, total)
	}
	f = compare(fmt.Sprintf("scan_all_%d_events", total), "events/s", letheRate, fmt.Sprintf("raw_select_%d_rows", total), baseRate, 0)
	f.Note = fmt.Sprintf("pages of %d", eventstore.DefaultReadLimit)
	figs = append(figs, f)
	return figs, nil
}

// scanRaw reads every row of a query with plain pgx, decoding the same
// columns the store decodes.
func scanRaw(ctx context.Context, b *bench, sql string) (int, error) {
	rows, err := b.pool.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			stream        string
			version, pos  int64
			id            pgtype.UUID
			typ           string
			data, metaRaw json.RawMessage
			at            time.Time
		)
		if err := rows.Scan(&stream, &version, &pos, &id, &typ, (*[]byte)(&data), (*[]byte)(&metaRaw), &at); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// vacuum sets the visibility map and statistics, so that both sides of a
// read comparison start from the same state.
func (b *bench) vacuum(ctx context.Context, tables ...string) error {
	for _, t := range tables {
		if _, err := b.pool.Exec(ctx, "VACUUM ANALYZE "+t); err != nil {
			return err
		}
	}
	return nil
}
