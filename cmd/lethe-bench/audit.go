package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/eventstore"
)

// auditChildCommand makes lethe-bench the audit suite's child process: it
// exports the audit trail of the database named by $LETHE_BENCH_AUDIT_DSN
// to a discarding writer and prints what it did as JSON. A process of its
// own, so that its peak RSS is the export's.
const auditChildCommand = "-audit-export-child"

// auditChildReport is what the child prints.
type auditChildReport struct {
	Records int64   `json:"records"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// countingWriter discards what it is given, and counts it.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func auditChild(ctx context.Context, stdout io.Writer) error {
	cfg, err := pgxpool.ParseConfig(os.Getenv("LETHE_BENCH_AUDIT_DSN"))
	if err != nil {
		return err
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return err
	}
	var w countingWriter
	var records int64
	trail := countingTrail{apipg.NewAuditTrail(pool), &records}
	start := time.Now()
	if _, err := api.WriteAuditExport(ctx, trail, api.AuditQuery{}, api.AuditNDJSON, &w, nil); err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(auditChildReport{Records: records, Bytes: w.n, Seconds: time.Since(start).Seconds()})
}

// countingTrail counts the records it hands over.
type countingTrail struct {
	api.AuditTrail
	n *int64
}

func (c countingTrail) AuditRecords(ctx context.Context, q api.AuditQuery, fn func(*api.AuditRecord) error) error {
	return c.AuditTrail.AuditRecords(ctx, q, func(r *api.AuditRecord) error { *c.n++; return fn(r) })
}

// auditLoad generates the audit trail's records quickly, with COPY: of
// every 10 records, 9 are appends (a quarter of them of 3 events, the rest
// of 1; half with a subject reference; each with an actor and a link) and
// 1 a pii.read (an access log row). Record k is at base + k×100 µs.
type auditLoad struct {
	base     time.Time
	versions map[string]int64
	tokens   []string
}

const auditStreams = 50_000

func (l *auditLoad) stream(k int) string { return "lead-" + strconv.Itoa(k%auditStreams) }

func (l *auditLoad) ref(k int) string {
	sum := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(k%auditStreams)))
	return fmt.Sprintf("%x", sum)
}

func (l *auditLoad) at(k int) time.Time { return l.base.Add(time.Duration(k) * 100 * time.Microsecond) }

// load adds records [from, to) and returns how many are appends' events.
func (l *auditLoad) load(ctx context.Context, pool *pgxpool.Pool, from, to int) (int64, error) {
	type row = []any
	var (
		k      = from
		events []row // the current append's rows
	)
	next := func() bool {
		for len(events) == 0 {
			if k >= to {
				return false
			}
			if k%10 == 9 {
				k++
				continue
			}
			stream := l.stream(k)
			n := 1
			if k%4 == 0 {
				n = 3
			}
			var refs []string
			if k%2 == 0 {
				refs = []string{l.ref(k)}
			}
			xid := int64(1_000_000 + k)
			for i := range n {
				v := l.versions[stream]
				l.versions[stream] = v + 1
				link := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(xid<<16+int64(i))))
				events = append(events, row{xid<<16 + int64(i), stream, v, pgtype.UUID{Bytes: eventstore.NewEventID(), Valid: true},
					"contact-details-updated", []byte(`{"seq":` + strconv.Itoa(k) + `}`), []byte(`{}`), refs, l.at(k),
					l.tokens[k%len(l.tokens)], link[:]})
			}
			k++
		}
		return true
	}
	var cur row
	copied, err := pool.CopyFrom(ctx, pgx.Identifier{"events"},
		[]string{"position", "stream_id", "version", "event_id", "type", "data", "metadata", "subject_refs", "recorded_at", "actor", "link"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if !next() {
				return nil, nil
			}
			cur, events = events[0], events[1:]
			return cur, nil
		}))
	if err != nil {
		return 0, fmt.Errorf("copy events: %w", err)
	}
	r := from
	_, err = pool.CopyFrom(ctx, pgx.Identifier{"access_log"},
		[]string{"at", "token_id", "method", "route", "request_id", "stream_ids", "subject_refs", "events"},
		pgx.CopyFromFunc(func() ([]any, error) {
			for r < to && r%10 != 9 {
				r++
			}
			if r >= to {
				return nil, nil
			}
			k := r
			r++
			return row{l.at(k), l.tokens[k%len(l.tokens)], "GET", "/v1/streams/{streamId}/events", "lethe-bench/" + strconv.Itoa(k),
				[]string{l.stream(k)}, []string{l.ref(k)}, 3}, nil
		}))
	if err != nil {
		return 0, fmt.Errorf("copy access log: %w", err)
	}
	return copied, nil
}

// auditBaselineSQL reads the same rows as the export, in the same order,
// with plain pgx: no grouping of appends, no formatting, no digest.
const auditBaselineSQL = `
SELECT recorded_at AS at, 0::int2 AS rank, position AS key, stream_id, version, actor, NULL::text AS request_id,
       NULL::text[] AS streams, subject_refs, link
FROM events
UNION ALL
SELECT at, 1::int2, id, NULL, events::bigint, token_id, request_id, stream_ids, subject_refs, NULL
FROM access_log
ORDER BY at, rank, key`

func (b *bench) rawAuditScan(ctx context.Context) (int64, error) {
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
		return 0, err
	}
	rows, err := tx.Query(ctx, auditBaselineSQL)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		n             int64
		at            time.Time
		rank          int16
		key           int64
		stream, actor pgtype.Text
		reqID         pgtype.Text
		version       pgtype.Int8
		streams, refs []string
		link          []byte
	)
	for rows.Next() {
		if err := rows.Scan(&at, &rank, &key, &stream, &version, &actor, &reqID, &streams, &refs, &link); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// childDSN names the bench's database for the child process; the
// password, if any, goes in the environment.
func (b *bench) childDSN() (dsn string, env []string) {
	c := b.pool.Config().ConnConfig
	dsn = fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.Host, c.Port, c.User, c.Database)
	if c.Password != "" {
		env = append(env, "PGPASSWORD="+c.Password)
	}
	return dsn, env
}

// runAuditChild runs one export in a child process; it returns the
// child's report and its peak RSS in bytes.
func (b *bench) runAuditChild(ctx context.Context) (auditChildReport, int64, error) {
	self, err := os.Executable()
	if err != nil {
		return auditChildReport{}, 0, err
	}
	dsn, env := b.childDSN()
	cmd := exec.CommandContext(ctx, self, auditChildCommand)
	cmd.Env = append(append(os.Environ(), "LETHE_BENCH_AUDIT_DSN="+dsn), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return auditChildReport{}, 0, fmt.Errorf("audit export child: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	var rep auditChildReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return rep, 0, fmt.Errorf("audit export child printed %q: %w", out.String(), err)
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024 // kilobytes on Linux
	}
	return rep, rss, nil
}

// benchAudit loads audit records and exports them (NDJSON) in a child
// process, at two sizes, against a raw scan of the same rows.
func benchAudit(ctx context.Context, b *bench) ([]figure, error) {
	sizes := []int{100_000, 1_000_000}
	exportRounds := 2
	if b.opts.quick {
		sizes, exportRounds = []int{2_000, 20_000}, 1
	}
	l := &auditLoad{base: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), versions: map[string]int64{},
		tokens: []string{"5b1f0c7e-3f6a-4c39-8c1e-0f1e2d3c4b5a", "a3c9e2f1-7d4b-4e8a-9b6c-1d2e3f4a5b6c", "cli:operator"}}
	var figs []figure
	loaded := 0
	for _, n := range sizes {
		fmt.Fprintf(b.out, "  loading audit records %d to %d...\n", loaded, n)
		start := time.Now()
		if _, err := l.load(ctx, b.pool, loaded, n); err != nil {
			return nil, err
		}
		loaded = n
		if err := b.vacuum(ctx, "events", "access_log"); err != nil {
			return nil, err
		}
		var rows int64
		if err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM access_log)`).Scan(&rows); err != nil {
			return nil, err
		}
		fmt.Fprintf(b.out, "  loaded in %v: %d rows\n", time.Since(start).Round(time.Second), rows)

		var base, got rate
		var peak int64
		var bytesOut int64
		for range exportRounds {
			t0 := time.Now()
			scanned, err := b.rawAuditScan(ctx)
			if err != nil {
				return nil, fmt.Errorf("raw scan: %w", err)
			}
			if scanned != rows {
				return nil, fmt.Errorf("raw scan read %d rows, want %d", scanned, rows)
			}
			base.add(rate{units: int64(n), elapsed: time.Since(t0)})
			rep, rss, err := b.runAuditChild(ctx)
			if err != nil {
				return nil, err
			}
			if rep.Records != int64(n) {
				return nil, fmt.Errorf("the export wrote %d records, want %d", rep.Records, n)
			}
			got.add(rate{units: rep.Records, elapsed: time.Duration(rep.Seconds * float64(time.Second))})
			peak, bytesOut = max(peak, rss), rep.Bytes
		}
		label := sizeLabel(n)
		f := compare("audit_export_"+label+"_records", "records/s", got, "raw_scan_same_"+label+"_rows", base, 0)
		f.Note = fmt.Sprintf("%d rows, %.0f MiB of NDJSON", rows, float64(bytesOut)/(1<<20))
		figs = append(figs, f,
			figure{Name: "audit_export_" + label + "_peak_rss", Value: float64(peak) / (1 << 20), Unit: "MiB",
				Note: "the child process's rusage Maxrss"})
	}
	return figs, nil
}
