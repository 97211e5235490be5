package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
)

// AuditTrail is api.AuditTrail on PostgreSQL: it reads the audit trail
// from the append-only tables that record each action
// (migrations/009_audit.sql), with one statement in one read-only
// snapshot. Nothing is written twice to be exported.
type AuditTrail struct {
	pool *pgxpool.Pool
}

var _ api.AuditTrail = (*AuditTrail)(nil)

// NewAuditTrail returns the audit trail on pool.
func NewAuditTrail(pool *pgxpool.Pool) *AuditTrail { return &AuditTrail{pool: pool} }

// auditSource is one table of the audit trail: a SELECT of the common
// columns (see auditColumns), given its conditions.
type auditSource struct {
	kinds []string // the kinds it holds
	// at is the column the time bounds apply to.
	at string
	// actor is the column the actor filter applies to.
	actor string
	// stream is its condition for a stream filter ($n the stream id);
	// empty: the source has no stream, so a stream filter leaves it out.
	stream string
	// subject is its condition for a subject filter ($n the reference,
	// given as %[1]d); empty: the source names no subjects, so a subject
	// filter leaves it out.
	subject string
	// kind is its condition on the kinds asked for, if it holds several
	// ($n the kinds); empty: every selected kind of it.
	kind   string
	selekt string // SELECT ... FROM ... (no WHERE)
}

// The common columns of every source, in order: the time, the source's
// rank (wire.AuditKinds order), its key as a number and as text, the kind,
// actor, request id, stream, version, streams, subject references, link,
// method and route (pii.read), a count (pii.read) and details (a JSON
// object built by PostgreSQL, for the rare kinds).
//
// The order of the export: at, then rank, then the key — an append's
// events are adjacent (they share at and rank, and their positions follow
// each other), and are grouped here into one record.
var auditSources = []auditSource{
	{kinds: []string{wire.AuditAppend}, at: "recorded_at", actor: "actor", stream: "stream_id = $%d",
		// As SubjectEvents asks it: the partial GIN index's predicate
		// spelt out, so that the planner can use the index.
		subject: `subject_refs @> ARRAY[$%[1]d::text] AND subject_refs IS NOT NULL AND subject_refs <> '{}'`, selekt: `
SELECT recorded_at, 0::int2, position, ''::text, 'append'::text, actor, NULL::text, stream_id, version,
       NULL::text[], subject_refs, link, NULL::text, NULL::text, NULL::bigint, NULL::jsonb
FROM events`},
	{kinds: []string{wire.AuditPIIRead}, at: "at", actor: "token_id", stream: "stream_ids @> ARRAY[$%d]::text[]",
		subject: "subject_refs @> ARRAY[$%[1]d::text]", selekt: `
SELECT at, 1::int2, id, ''::text, 'pii.read'::text, token_id, request_id, NULL::text, NULL::bigint,
       stream_ids, subject_refs, NULL::bytea, method, route, events::bigint, NULL::jsonb
FROM access_log`},
	{kinds: []string{wire.AuditErasureRequested}, at: "requested_at", actor: "actor", subject: "subject_ref = $%[1]d::text", selekt: `
SELECT requested_at, 2::int2, 0::bigint, erasure_id::text, 'erasure.requested'::text, actor, request_id, NULL::text, NULL::bigint,
       NULL::text[], ARRAY[subject_ref]::text[], NULL::bytea, NULL::text, NULL::text, NULL::bigint,
       jsonb_strip_nulls(jsonb_build_object('erasureId', erasure_id, 'reason', nullif(reason, ''),
                                            'legalBasis', nullif(legal_basis, '')))
FROM erasures`},
	{kinds: []string{wire.AuditErasureCompleted}, at: "c.completed_at", actor: "e.actor", subject: "e.subject_ref = $%[1]d::text", selekt: `
SELECT c.completed_at, 3::int2, 0::bigint, c.erasure_id::text, 'erasure.completed'::text, e.actor, e.request_id, NULL::text, NULL::bigint,
       NULL::text[], ARRAY[e.subject_ref]::text[], NULL::bytea, NULL::text, NULL::text, NULL::bigint,
       jsonb_build_object('erasureId', c.erasure_id, 'keyExisted', c.key_existed,
                          'keyVersionsDestroyed', c.versions_destroyed, 'keyVerifiedGone', c.key_verified_gone,
                          'streamsAffected', c.streams_affected, 'eventsAffected', c.events_affected)
       || CASE WHEN c.resumed THEN '{"resumed": true}'::jsonb ELSE '{}'::jsonb END
FROM erasure_completions c JOIN erasures e USING (erasure_id)`},
	{kinds: []string{wire.AuditHoldPlaced, wire.AuditHoldReleased}, at: "at", actor: "actor", subject: "subject_ref = $%[1]d::text",
		kind: "held = ($%d::text[] @> ARRAY['hold.placed'])", selekt: `
SELECT at, 4::int2, id, ''::text, (CASE WHEN held THEN 'hold.placed' ELSE 'hold.released' END)::text, actor, NULL::text, NULL::text, NULL::bigint,
       NULL::text[], ARRAY[subject_ref]::text[], NULL::bytea, NULL::text, NULL::text, NULL::bigint,
       jsonb_strip_nulls(jsonb_build_object('reason', nullif(reason, '')))
FROM legal_holds`},
	{kinds: []string{wire.AuditReadmission}, at: "at", actor: "actor",
		subject: "(erased_ref = $%[1]d::text OR successor_ref = $%[1]d::text)", selekt: `
SELECT at, 5::int2, 0::bigint, erased_ref::text, 'readmission'::text, actor, NULL::text, NULL::text, NULL::bigint,
       NULL::text[], ARRAY[erased_ref, successor_ref]::text[], NULL::bytea, NULL::text, NULL::text, NULL::bigint,
       jsonb_strip_nulls(jsonb_build_object('erasedRef', erased_ref, 'successorRef', successor_ref,
                                            'reason', nullif(reason, '')))
FROM readmissions`},
	{kinds: []string{wire.AuditKeyRotated, wire.AuditPolicyPut, wire.AuditPolicyDeleted, wire.AuditTokenCreated, wire.AuditTokenRevoked, wire.AuditErasureReapplied},
		// Policy and token changes have no subject_refs: a subject filter
		// leaves them out.
		at: "at", actor: "actor", subject: "subject_refs @> ARRAY[$%[1]d::text]", kind: "kind = ANY ($%d::text[])", selekt: `
SELECT at, 6::int2, id, ''::text, kind, actor, request_id, NULL::text, NULL::bigint,
       NULL::text[], subject_refs::text[], NULL::bytea, NULL::text, NULL::text, NULL::bigint, details
FROM audit_log`},
}

// auditSourceNames are the sources' names in record ids, by rank.
var auditSourceNames = []string{"events:", "access_log:", "erasures:", "erasure_completions:", "legal_holds:", "readmissions:", "audit_log:"}

// auditQuery builds the export's statement and its arguments.
func auditQuery(q api.AuditQuery) (string, []any) {
	var (
		args     []any
		branches []string
	)
	arg := func(v any) int {
		args = append(args, v)
		return len(args)
	}
	// Parameters shared by the branches.
	var from, to, actors, stream, subject, kinds int
	if !q.From.IsZero() {
		from = arg(q.From)
	}
	if !q.To.IsZero() {
		to = arg(q.To)
	}
	if names := q.ActorNames(); names != nil {
		actors = arg(names)
	}
	if q.Stream != "" {
		stream = arg(q.Stream)
	}
	if q.SubjectRef != "" {
		subject = arg(q.SubjectRef)
	}
	for _, src := range auditSources {
		var selected []string
		for _, k := range src.kinds {
			if q.KindSelected(k) {
				selected = append(selected, k)
			}
		}
		if len(selected) == 0 || (q.Stream != "" && src.stream == "") || (q.SubjectRef != "" && src.subject == "") {
			continue
		}
		var where []string
		if from > 0 {
			where = append(where, fmt.Sprintf("%s >= $%d", src.at, from))
		}
		if to > 0 {
			where = append(where, fmt.Sprintf("%s < $%d", src.at, to))
		}
		if actors > 0 {
			where = append(where, fmt.Sprintf("%s = ANY ($%d::text[])", src.actor, actors))
		}
		if stream > 0 {
			where = append(where, fmt.Sprintf(src.stream, stream))
		}
		if subject > 0 {
			where = append(where, fmt.Sprintf(src.subject, subject))
		}
		if src.kind != "" && len(selected) < len(src.kinds) {
			if kinds == 0 {
				kinds = arg(q.Kinds)
			}
			where = append(where, fmt.Sprintf(src.kind, kinds))
		}
		b := "(" + strings.TrimSpace(src.selekt)
		if len(where) > 0 {
			b += "\nWHERE " + strings.Join(where, " AND ")
		}
		branches = append(branches, b+")")
	}
	if len(branches) == 0 {
		return "", nil
	}
	// The first branch names the columns.
	return `SELECT * FROM (` + strings.Join(branches, "\nUNION ALL\n") + `) AS audit (at, rank, knum, ktext, kind, actor, request_id, stream,
  version, streams, subject_refs, link, method, route, n, details)
ORDER BY at, rank, knum, ktext COLLATE "C"`, args
}

// AuditRecords implements api.AuditTrail. It reads in one READ ONLY,
// REPEATABLE READ transaction (it takes no transaction id, so it holds
// back no $all reader, but it does hold back vacuum while it runs);
// PostgreSQL orders the rows, and they are handed to fn as they arrive.
func (a *AuditTrail) AuditRecords(ctx context.Context, q api.AuditQuery, fn func(*api.AuditRecord) error) error {
	sql, args := auditQuery(q)
	if sql == "" {
		return nil // a stream or subject filter with kinds that have none
	}
	tx, err := a.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// A long ordered read: JIT compilation would only add its own time.
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	defer rows.Close()

	var (
		rec, app api.AuditRecord     // the record of the row; the append being gathered
		pending  bool                // app holds an append not handed over yet
		appXact  int64               // the append's position >> 16
		appRefs  map[string]struct{} // app's SubjectRefs, once it has several events with some
		rank     int16
		knum     int64
		ktext    string
		actor    pgtype.Text
		reqID    pgtype.Text
		stream   pgtype.Text
		version  pgtype.Int8
		streams  []string
		refs     []string
		link     []byte
		method   pgtype.Text
		route    pgtype.Text
		n        pgtype.Int8
		details  []byte
		idBuf    []byte
		piiBuf   []byte
	)
	flush := func() error {
		if !pending {
			return nil
		}
		pending = false
		return fn(&app)
	}
	for rows.Next() {
		if err := rows.Scan(&rec.At, &rank, &knum, &ktext, &rec.Kind, &actor, &reqID, &stream, &version,
			&streams, &refs, &link, &method, &route, &n, &details); err != nil {
			return fmt.Errorf("audit trail: %w", err)
		}
		if rank == 0 { // an event: one append's events are adjacent
			// One record for one actor's consecutive events of one append
			// (the Go API lets each event of an append name its actor, and
			// an actor filter leaves out the others'; a subject filter
			// leaves out the events without the reference, so an append
			// whose events carry it only in part gives a record for each
			// run of consecutive versions that do).
			if pending && app.Stream == stream.String && app.At.Equal(rec.At) && knum>>16 == appXact &&
				app.Actor == actor.String && version.Int64 == app.ToVersion+1 {
				app.ToVersion = version.Int64
				app.Link = append(app.Link[:0], link...)
				if len(refs) > 0 && appRefs == nil {
					// A set, not a scan of the list: an append may carry
					// tens of thousands of references.
					appRefs = make(map[string]struct{}, len(app.SubjectRefs)+len(refs))
					for _, r := range app.SubjectRefs {
						appRefs[r] = struct{}{}
					}
				}
				for _, r := range refs {
					if _, seen := appRefs[r]; !seen {
						appRefs[r] = struct{}{}
						app.SubjectRefs = append(app.SubjectRefs, r)
					}
				}
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			app = api.AuditRecord{ID: "events:" + strconv.FormatInt(knum, 10), At: rec.At, Kind: rec.Kind, Actor: actor.String,
				Stream: stream.String, FromVersion: version.Int64, ToVersion: version.Int64,
				SubjectRefs: slices.Clone(refs), Link: slices.Clone(link)}
			appXact, pending, appRefs = knum>>16, true, nil
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		idBuf = append(idBuf[:0], auditSourceNames[rank]...)
		if ktext != "" {
			idBuf = append(idBuf, ktext...)
		} else {
			idBuf = strconv.AppendInt(idBuf, knum, 10)
		}
		rec.ID = string(idBuf)
		rec.Actor, rec.RequestID, rec.Stream = actor.String, reqID.String, ""
		rec.Streams, rec.SubjectRefs, rec.Link = streams, refs, nil
		rec.Details = details
		if rank == 1 { // pii.read: its details are built here
			rec.Actor = tokenActor(rec.Actor)
			piiBuf = piiReadDetails(piiBuf[:0], method, route, n)
			rec.Details = piiBuf
		} else if len(details) > 0 {
			rec.Details, err = compactJSON(details)
			if err != nil {
				return fmt.Errorf("audit trail: %s details: %w", rec.ID, err)
			}
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	return nil
}

// piiReadDetails is a pii.read's details: the method, the route pattern
// and the number of events shown.
func piiReadDetails(b []byte, method, route pgtype.Text, n pgtype.Int8) []byte {
	b = append(b, '{')
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	if method.Valid {
		field("method")
		b = appendJSONString(b, method.String)
	}
	if route.Valid {
		field("route")
		b = appendJSONString(b, route.String)
	}
	if n.Valid {
		field("events")
		b = strconv.AppendInt(b, n.Int64, 10)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: printable ASCII as it is
// (route patterns, methods), anything else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// compactJSON removes PostgreSQL's spaces from a jsonb object's text.
func compactJSON(b []byte) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(b))
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	if out.Len() == 0 || out.Bytes()[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	return out.Bytes(), nil
}

// tokenActor names an access_log row's token as every other source names
// one: access_log.token_id holds a token's bare id (or "cli:USER" for the
// command line), the export says "token:<id>".
func tokenActor(tokenID string) string {
	if tokenID == "" || strings.Contains(tokenID, ":") {
		return tokenID
	}
	return "token:" + tokenID
}
