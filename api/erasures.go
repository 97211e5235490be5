package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
)

// ErasureLedger reads the erasure ledger and the log for the erasure
// proofs; eventstore/postgres.Ledger implements it.
type ErasureLedger interface {
	// ListErasures returns a page of the ledger, newest request first.
	ListErasures(ctx context.Context, q forgettable.ErasureQuery) ([]forgettable.Erasure, error)
	// ErasureProof returns an erasure with its records and a page of its
	// streams; an error wrapping forgettable.ErrErasureNotFound if there
	// is no such erasure.
	ErasureProof(ctx context.Context, id [16]byte, streamsAfter string, streamsLimit int) (forgettable.ErasureProof, error)
}

// MaxReceiptStreams bounds the streams of one erasure receipt (the
// streamsLimit query parameter); more are paged with streamsAfter.
const MaxReceiptStreams = 1000

// ErasureSummary is an erasure's ledger entry as the API shows it: an
// entry of GET /v1/erasures, the answer of an erase. now is the instant a
// pending erasure is judged overdue at.
func ErasureSummary(e forgettable.Erasure, now time.Time) wire.ErasureReceipt {
	out := wire.ErasureReceipt{ErasureID: uuidString(e.ID), SubjectRef: string(e.Ref), RequestedAt: e.RequestedAt, Actor: e.Actor,
		RequestID: e.RequestID, Reason: e.Reason, LegalBasis: e.LegalBasis, Status: "pending",
		Deadline: e.Deadline(), Overdue: e.Overdue(now)}
	if c := e.Completion; c != nil {
		out.Status = "completed"
		out.CompletedAt = &c.CompletedAt
		out.Completion = &wire.ErasureCompletion{CompletedAt: c.CompletedAt, SubjectKnown: c.KeyExisted || c.EventsAffected > 0,
			KeyExisted: c.KeyExisted, KeyVersionsDestroyed: c.VersionsDestroyed,
			KeyVerifiedGone: c.KeyVerifiedGone, StreamsAffected: c.StreamsAffected, EventsAffected: c.EventsAffected,
			Resumed: c.Resumed}
	}
	return out
}

// ErasureReceipt is the full receipt of an erasure (GET
// /v1/erasures/{erasureId}, GET /v1/subjects/{subject}/erasure, lethe
// erasures get): the summary, the erasure's records in the log, the page
// of streams p holds, and for each projection of projections (their
// statuses, read after p) whether it is clean of the erasure.
func ErasureReceipt(p forgettable.ErasureProof, projections []projection.Status, now time.Time) wire.ErasureReceipt {
	out := ErasureSummary(p.Erasure, now)
	out.Records = make([]wire.ErasureRecord, len(p.Records))
	for i, r := range p.Records {
		out.Records[i] = wire.ErasureRecord{StreamID: forgettable.ErasedStreamID, EventID: r.EventID.String(), Type: r.Type,
			Position: r.Position, RecordedAt: r.RecordedAt}
	}
	out.Streams = slices.Clip(append([]string{}, p.Streams...))
	if p.MoreStreams && len(p.Streams) > 0 {
		out.StreamsNext = p.Streams[len(p.Streams)-1]
	}
	// Every record of the erasure makes the runner call the projection's
	// Forget, and no event applied after the last one can bring the
	// subject's data back (the ledger fences it): a checkpoint at or past
	// the last record is a read model clean of the erasure. Without a
	// record, no projection has been told.
	last := int64(-1)
	if n := len(p.Records); n > 0 {
		last = p.Records[n-1].Position
	}
	out.Projections = make([]wire.ErasureProjection, len(projections))
	for i, st := range projections {
		out.Projections[i] = wire.ErasureProjection{Name: st.Name, Position: st.Position, RebuildPending: st.RebuildPending,
			Cleaned: last >= 0 && st.Position >= last}
	}
	return out
}

// receipt builds the full receipt of erasure id, with a page of its
// streams and the statuses of this server's projections.
func (s *Server) receipt(ctx context.Context, id [16]byte, streamsAfter string, streamsLimit int) (wire.ErasureReceipt, error) {
	if s.opts.Erasures == nil {
		return wire.ErasureReceipt{}, errors.New("erasure receipt: the server has no erasure ledger (api.Options.Erasures)")
	}
	p, err := s.opts.Erasures.ErasureProof(ctx, id, streamsAfter, streamsLimit)
	if err != nil {
		return wire.ErasureReceipt{}, err
	}
	var statuses []projection.Status
	if s.opts.ReadModels != nil {
		if statuses, err = s.opts.ReadModels.Statuses(ctx); err != nil {
			return wire.ErasureReceipt{}, err
		}
	}
	return ErasureReceipt(p, statuses, time.Now()), nil
}

// receiptQuery reads the streams page of a receipt route: streamsAfter and
// streamsLimit.
func receiptQuery(q url.Values) (after string, limit int, err error) {
	if err := checkQuery(q, "streamsAfter", "streamsLimit"); err != nil {
		return "", 0, err
	}
	n, err := queryInt(q, "streamsLimit", MaxReceiptStreams, 1, MaxReceiptStreams)
	return q.Get("streamsAfter"), int(n), err
}

func (s *Server) getErasure(w http.ResponseWriter, r *http.Request) {
	raw, ok := s.param(w, r, "erasureId")
	if !ok {
		return
	}
	id, err := eventstore.ParseEventID(raw)
	if err != nil {
		// Not the parser's text: it quotes the input.
		s.problem(w, r, http.StatusBadRequest, "invalid-request", "The erasure id is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).")
		return
	}
	after, limit, err := receiptQuery(r.URL.Query())
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	out, err := s.receipt(r.Context(), id, after, limit)
	if err != nil { // an unknown id: 404 erasure-not-found
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listErasures(w http.ResponseWriter, r *http.Request) {
	q, err := s.erasureQuery(r.URL.Query())
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	if s.opts.Erasures == nil {
		s.fail(w, r, errors.New("list erasures: the server has no erasure ledger (api.Options.Erasures)"))
		return
	}
	limit := q.Limit
	q.Limit++ // one more: is there a next page?
	es, err := s.opts.Erasures.ListErasures(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.ErasureList{Erasures: make([]wire.ErasureReceipt, 0, min(len(es), limit))}
	if len(es) > limit {
		es = es[:limit]
		next := EncodeErasureCursor(es[limit-1].Cursor())
		out.Next = &next
	}
	for _, e := range es {
		out.Erasures = append(out.Erasures, ErasureSummary(e, q.Now))
	}
	writeJSON(w, http.StatusOK, out)
}

// erasureQuery reads the query of GET /v1/erasures: status, from, to,
// limit, cursor.
func (s *Server) erasureQuery(v url.Values) (forgettable.ErasureQuery, error) {
	q := forgettable.ErasureQuery{Now: time.Now()}
	if err := checkQuery(v, "status", "from", "to", "limit", "cursor"); err != nil {
		return q, err
	}
	if v.Has("status") {
		q.Status = forgettable.ErasureStatus(v.Get("status"))
		if !slices.Contains(forgettable.ErasureStatuses, q.Status) {
			return q, errors.New("status: want pending, completed or overdue")
		}
	}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if !v.Has(b.name) {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v.Get(b.name))
		if err != nil {
			return q, fmt.Errorf("%s: want an RFC 3339 time, e.g. 2026-11-01T00:00:00Z", b.name)
		}
		*b.t = t
	}
	n, err := s.limit(v)
	if err != nil {
		return q, err
	}
	q.Limit = n
	if v.Has("cursor") {
		c, err := DecodeErasureCursor(v.Get("cursor"))
		if err != nil {
			return q, err
		}
		q.After = &c
	}
	return q, nil
}

// errBadCursor: a cursor this server did not make.
var errBadCursor = errors.New("cursor: not a cursor of this listing (pass a next as it came)")

// EncodeErasureCursor makes the opaque cursor of GET /v1/erasures: the
// request time (microseconds, PostgreSQL's precision) and id of the last
// erasure of a page, base64url.
func EncodeErasureCursor(c forgettable.ErasureCursor) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c.RequestedAt.UnixMicro()))
	copy(b[8:], c.ID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// DecodeErasureCursor reads a cursor of EncodeErasureCursor.
func DecodeErasureCursor(s string) (forgettable.ErasureCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 24 {
		return forgettable.ErasureCursor{}, errBadCursor
	}
	c := forgettable.ErasureCursor{RequestedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8]))).UTC()}
	copy(c.ID[:], b[8:])
	return c, nil
}
