package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
)

// readBody reads a JSON request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		s.problem(w, r, http.StatusUnsupportedMediaType, "unsupported-media-type", "Send JSON: Content-Type: application/json.")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.limits.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.fail(w, r, err)
		} else {
			s.problem(w, r, http.StatusBadRequest, "invalid-request", "The request body could not be read.")
		}
		return nil, false
	}
	return body, true
}

// decodeBody decodes a JSON request body into T: unknown fields, trailing
// data and wrong types are 400 invalid-request. An empty body is T's zero
// value when emptyOK.
func decodeBody[T any](s *Server, w http.ResponseWriter, r *http.Request, emptyOK bool) (T, bool) {
	var zero T
	body, ok := s.readBody(w, r)
	if !ok {
		return zero, false
	}
	if len(body) == 0 && emptyOK {
		return zero, true
	}
	v, err := wire.Decode[T](body)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-request", "Malformed JSON body: "+jsonError(err))
		return zero, false
	}
	return v, true
}

// jsonError describes a decoding error without quoting the input (which may
// be personal data: a subject id used as a key, say).
func jsonError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var strict *wire.DecodeError
	switch {
	case errors.As(err, &strict):
		return strict.Error() + "."
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d.", syntax.Offset)
	case errors.As(err, &typ):
		// Field is the path of the document's own field names, not input.
		if typ.Field != "" {
			return fmt.Sprintf("field %s: want %s.", typ.Field, typ.Type)
		}
		return fmt.Sprintf("want %s.", typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends too early."
	case errors.Is(err, wire.ErrBadExpectedVersion), errors.Is(err, wire.ErrTrailingData):
		return err.Error() + "."
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// wire.Decode refuses unknown fields first; should encoding/json
		// still find one, its message quotes the key: not passed on.
		return wire.ErrUnknownField.Error() + "."
	}
	return "not a valid request document."
}

// pathParam returns a route parameter, percent-decoded. chi matches on the
// raw path when the request's path has escapes (a subject "a%40b" or "a%2Fb"),
// and then hands the parameter over still encoded: decode it once, so that
// "casey.davis%40example.com" names casey.davis@example.com.
func pathParam(r *http.Request, name string) (string, error) {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, nil
	}
	d, err := url.PathUnescape(v)
	if err != nil {
		return "", fmt.Errorf("%s: bad percent-encoding", name)
	}
	return d, nil
}

// param is pathParam answering 400 itself; ok false means answered.
func (s *Server) param(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v, err := pathParam(r, name)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-request", err.Error()+".")
		return "", false
	}
	return v, true
}

// streamParam is the stream id of the route, checked.
func (s *Server) streamParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := s.param(w, r, "streamId")
	if !ok {
		return "", false
	}
	if err := eventstore.ValidateStreamID(id); err != nil {
		s.fail(w, r, err)
		return "", false
	}
	return id, true
}

// readableStream is streamParam for the routes that read a stream: Lethe's
// own streams ($lethe-erasures: subject references, actors, counts) are
// never shown on them, whoever asks; they answer as a stream without
// events. Erasure receipts are /v1/erasures' (admin, auditor).
func (s *Server) readableStream(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := s.streamParam(w, r)
	if ok && eventstore.IsSystemStream(id) {
		s.fail(w, r, fmt.Errorf("%s: %w", id, eventstore.ErrStreamNotFound))
		return "", false
	}
	return id, ok
}

// withoutSystem leaves out the events of Lethe's own streams: $all as
// readers see it (a page's Next still covers them).
func withoutSystem(events []forgettable.RecordedEvent) []forgettable.RecordedEvent {
	return slices.DeleteFunc(events, func(e forgettable.RecordedEvent) bool { return eventstore.IsSystemStream(e.StreamID) })
}

// access is what the caller may see of personal data.
func access(r *http.Request) forgettable.Access {
	if p, ok := principalFrom(r.Context()); ok && p.Has(wire.RolePIIReader) {
		return forgettable.Personal
	}
	return forgettable.Restricted
}

func (s *Server) appendEvents(w http.ResponseWriter, r *http.Request) {
	streamID, ok := s.streamParam(w, r)
	if !ok {
		return
	}
	if eventstore.IsSystemStream(streamID) {
		s.problem(w, r, http.StatusBadRequest, "invalid-stream-id", "Streams starting with "+eventstore.SystemStreamPrefix+" are Lethe's own: they cannot be appended to.")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	expected, events, bad := decodeAppend(body, s.limits)
	if bad != nil {
		s.problem(w, r, bad.status, bad.name, bad.detail)
		return
	}
	// Who appends, for the audit trail: "token:<id>", as the erasure
	// ledger names a token.
	by := actor(r)
	for i := range events {
		events[i].Actor = by
	}
	res, err := s.opts.Events.Append(r.Context(), streamID, expected, events...)
	if err != nil {
		s.fail(w, r, err) // a version conflict answers with the events since
		return
	}
	status := http.StatusCreated
	if res.Duplicate {
		status = http.StatusOK
	} else {
		s.metrics.appended.Add(float64(len(events)))
	}
	writeJSON(w, status, wire.AppendResult{StreamID: res.StreamID, FirstVersion: res.FirstVersion, LastVersion: res.LastVersion,
		FirstPosition: res.FirstPosition, LastPosition: res.LastPosition})
}

// badRequest is a client error found before the store is asked.
type badRequest struct {
	status       int
	name, detail string
}

// decodeAppend decodes and checks an append request body. It never
// panics, whatever the input (it is fuzzed); what it accepts, the store
// checks again (stream id, event types, JSON objects, declarations).
func decodeAppend(body []byte, limits Limits) (eventstore.ExpectedVersion, []forgettable.Event, *badRequest) {
	req, err := wire.Decode[wire.AppendRequest](body)
	if err != nil {
		return 0, nil, &badRequest{http.StatusBadRequest, "invalid-request", "Malformed JSON body: " + jsonError(err)}
	}
	if len(req.Events) == 0 {
		return 0, nil, &badRequest{http.StatusBadRequest, "invalid-request", "events: at least one event is needed."}
	}
	if len(req.Events) > limits.MaxEventsPerAppend {
		return 0, nil, &badRequest{http.StatusBadRequest, "too-many-events", fmt.Sprintf("At most %d events per append; this one has %d.", limits.MaxEventsPerAppend, len(req.Events))}
	}
	events := make([]forgettable.Event, len(req.Events))
	leaves, subjects := 0, map[string]bool{}
	for i, e := range req.Events {
		if e.ID == "" {
			return 0, nil, &badRequest{http.StatusBadRequest, "invalid-event", fmt.Sprintf("events[%d].id: every event needs a UUID (it makes retries safe).", i)}
		}
		id, err := eventstore.ParseEventID(e.ID)
		if err != nil {
			return 0, nil, &badRequest{http.StatusBadRequest, "invalid-event", fmt.Sprintf("events[%d].id: not a UUID.", i)}
		}
		if n := len(e.Data) + len(e.Metadata); n > limits.MaxEventBytes {
			return 0, nil, &badRequest{http.StatusRequestEntityTooLarge, "event-too-large", fmt.Sprintf("events[%d]: data and metadata take %d bytes, the limit is %s.", i, n, formatBytes(int64(limits.MaxEventBytes)))}
		}
		if len(e.Data) == 0 || string(e.Data) == "null" {
			return 0, nil, &badRequest{http.StatusBadRequest, "invalid-event", fmt.Sprintf("events[%d].data: a JSON object is needed.", i)}
		}
		n := countLeaves(e.Data)
		if n > limits.MaxLeavesPerEvent {
			return 0, nil, &badRequest{http.StatusBadRequest, "too-many-leaves", fmt.Sprintf("events[%d].data: %d values (strings, numbers, booleans and nulls), the limit is %d per event.", i, n, limits.MaxLeavesPerEvent)}
		}
		if leaves += n; leaves > limits.MaxLeavesPerAppend {
			return 0, nil, &badRequest{http.StatusBadRequest, "too-many-leaves", fmt.Sprintf("events[0..%d].data: more than %d values (strings, numbers, booleans and nulls) in one append; split it.", i, limits.MaxLeavesPerAppend)}
		}
		if string(e.Metadata) == "null" {
			e.Metadata = nil
		}
		if hasNUL(e.Data) || hasNUL(e.Metadata) {
			return 0, nil, &badRequest{http.StatusBadRequest, "invalid-event", fmt.Sprintf("events[%d]: data and metadata cannot hold a NUL character (\\u0000).", i)}
		}
		events[i] = forgettable.Event{EventData: eventstore.EventData{ID: id, Type: e.Type, Data: e.Data, Metadata: e.Metadata}}
		for j, pd := range e.PersonalData {
			if pd.Subject == "" || len(pd.Paths) == 0 {
				return 0, nil, &badRequest{http.StatusBadRequest, "invalid-personal-data", fmt.Sprintf("events[%d].personalData[%d]: a subject and at least one path are needed.", i, j)}
			}
			events[i].PersonalData = append(events[i].PersonalData, forgettable.PersonalData{Subject: pd.Subject, Paths: pd.Paths})
			if subjects[pd.Subject] = true; len(subjects) > limits.MaxSubjectsPerAppend {
				return 0, nil, &badRequest{http.StatusBadRequest, "too-many-subjects", fmt.Sprintf("events[%d].personalData[%d]: more than %d data subjects in one append; split it.", i, j, limits.MaxSubjectsPerAppend)}
			}
		}
		if err := events[i].EventData.Validate(); err != nil {
			return 0, nil, &badRequest{http.StatusBadRequest, "invalid-event", fmt.Sprintf("events[%d]: %v", i, err)}
		}
	}
	return eventstore.ExpectedVersion(req.ExpectedVersion.Value()), events, nil
}

// hasNUL reports whether the JSON text b (valid JSON) holds a string with
// U+0000, which PostgreSQL cannot store: only the escape \u0000 can write
// one.
func hasNUL(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // the escaped character: \\ does not start an escape
	}
	return false
}

// conflict answers 409 with the problem problemOf maps a version conflict
// to, and the events appended since the expected version, opened for the
// caller.
func (s *Server) conflict(w http.ResponseWriter, r *http.Request, c *eventstore.WrongExpectedVersionError) {
	doc := wire.Conflict{Problem: s.problemOf(r, c), Events: []wire.Event{}, Truncated: c.Truncated}
	if c.Current >= 0 {
		cur := c.Current
		doc.CurrentVersion = &cur
	}
	if len(c.Events) > 0 {
		opened, err := s.open(r, c.Events)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		doc.Events = opened
	}
	writeDocument(w, http.StatusConflict, "application/problem+json", doc)
}

// conflictDetail says what a version conflict found.
func conflictDetail(c *eventstore.WrongExpectedVersionError) string {
	if c.Current >= 0 {
		return fmt.Sprintf("Expected version %s, the stream is at %d.", c.Expected, c.Current)
	}
	return fmt.Sprintf("Expected version %s, the stream does not exist.", c.Expected)
}

// open opens stored events for the caller, records the access if personal
// data was decrypted, and converts them.
func (s *Server) open(r *http.Request, events []eventstore.RecordedEvent) ([]wire.Event, error) {
	a := access(r)
	opened, err := s.opts.Events.Open(r.Context(), events, a)
	if err != nil {
		return nil, err
	}
	if err := s.recordAccess(r.Context(), r, a, opened); err != nil {
		return nil, err
	}
	return toWire(opened), nil
}

// recordAccess writes the access log entry of a response that carries
// decrypted personal data, before the response is sent: if it cannot be
// recorded, the data is not served.
func (s *Server) recordAccess(ctx context.Context, r *http.Request, a forgettable.Access, events []forgettable.RecordedEvent) error {
	var t accessTally
	t.add(a, events)
	return s.record(ctx, r, &t)
}

// accessTally gathers what a response discloses: the events with
// decrypted personal data, their streams and their subjects' references.
type accessTally struct {
	streams, refs []string
	events        int
	// always: record even if nothing was decrypted (a subject export
	// with no events still tells that the subject has none).
	always bool
}

func (t *accessTally) add(a forgettable.Access, events []forgettable.RecordedEvent) {
	if a != forgettable.Personal {
		return
	}
	for _, e := range events {
		decrypted := false
		for _, ref := range e.SubjectRefs {
			if !slices.Contains(e.ErasedRefs, ref) {
				decrypted = true
				if !slices.Contains(t.refs, ref) {
					t.refs = append(t.refs, ref)
				}
			}
		}
		if decrypted {
			t.events++
			if !slices.Contains(t.streams, e.StreamID) {
				t.streams = append(t.streams, e.StreamID)
			}
		}
	}
}

// record writes the tally to the access log, if anything personal was
// decrypted; it must succeed before the response is sent.
func (s *Server) record(ctx context.Context, r *http.Request, t *accessTally) error {
	if t.events == 0 && len(t.streams) == 0 && !t.always {
		return nil
	}
	if s.opts.AccessLog == nil {
		return errors.New("no access log configured: personal data is not served")
	}
	p, _ := principalFrom(r.Context())
	slices.Sort(t.streams)
	slices.Sort(t.refs)
	err := s.opts.AccessLog.RecordAccess(ctx, AccessRecord{At: time.Now().UTC(), TokenID: p.TokenID, Method: r.Method, Route: routePattern(r),
		RequestID: requestID(r), StreamIDs: t.streams, SubjectRefs: t.refs, Events: t.events})
	if err != nil {
		return fmt.Errorf("record access: %w", err)
	}
	s.metrics.accessRecorded.Inc()
	return nil
}

func toWire(events []forgettable.RecordedEvent) []wire.Event {
	out := make([]wire.Event, len(events))
	for i, e := range events {
		out[i] = toWireEvent(e)
	}
	return out
}

func toWireEvent(e forgettable.RecordedEvent) wire.Event {
	w := wire.Event{ID: e.ID.String(), StreamID: e.StreamID, Version: e.Version, Position: e.Position, Type: e.Type,
		Data: e.Data, Metadata: e.Metadata, RecordedAt: e.RecordedAt, Redacted: make([]wire.Redaction, len(e.Redacted))}
	if len(w.Metadata) == 0 {
		w.Metadata = json.RawMessage("{}")
	}
	for j, red := range e.Redacted {
		w.Redacted[j] = wire.Redaction{Path: red.Path, Reason: red.Reason}
	}
	return w
}

// queryInt reads an integer query parameter within [min, max].
func queryInt(q url.Values, name string, def, lo, hi int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: want a whole number from %d to %d", name, lo, hi)
	}
	return n, nil
}

func (s *Server) limit(q url.Values) (int, error) {
	n, err := queryInt(q, "limit", int64(s.limits.DefaultPageSize), 1, int64(s.limits.MaxPageSize))
	return int(n), err
}

// checkQuery refuses query parameters a route does not know: a typo
// (fromPostion) must not silently read from the start. The error does not
// quote the unknown name (it is the client's input). It also refuses
// values no stored text can hold (a NUL character, bytes that are not
// UTF-8): they match nothing, and PostgreSQL refuses them in a query.
func checkQuery(q url.Values, known ...string) error {
	for k, vs := range q {
		if !slices.Contains(known, k) {
			return fmt.Errorf("an unknown query parameter (this route takes %v)", known)
		}
		for _, v := range vs {
			if !isStorableText(v) {
				return fmt.Errorf("%s: not UTF-8 text, or holds a NUL character", k)
			}
		}
	}
	return nil
}

// isStorableText reports whether PostgreSQL can store v as text: UTF-8
// without NUL characters.
func isStorableText(v string) bool {
	return utf8.ValidString(v) && strings.IndexByte(v, 0) < 0
}

func (s *Server) readStream(w http.ResponseWriter, r *http.Request) {
	streamID, ok := s.readableStream(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	opts, err := s.streamQuery(q)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	limit := opts.Limit
	opts.Limit = limit + 1 // one more: is there a next page?
	opts.MaxBytes = s.limits.MaxPageBytes
	a := access(r)
	events, err := s.opts.Events.ReadStream(r.Context(), streamID, opts, a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page := wire.StreamPage{}
	events, page.Next = streamPage(events, limit, s.limits.MaxPageBytes, opts.Backward)
	if err := s.recordAccess(r.Context(), r, a, events); err != nil {
		s.fail(w, r, err)
		return
	}
	page.Events = toWire(events)
	s.metrics.read.Add(float64(len(events)))
	writeJSON(w, http.StatusOK, page)
}

// streamPage cuts a read of a stream (limit+1 events asked, at most
// maxBytes) to a page: at most limit events, ending after the one that
// brings the page to maxBytes, and the version the next page starts at.
// A page cut by size has a next version even when the stream ends there
// (the next page is then empty).
func streamPage(events []forgettable.RecordedEvent, limit, maxBytes int, backward bool) ([]forgettable.RecordedEvent, *int64) {
	size := 0
	for i := range min(len(events), limit) {
		if size += events[i].Size; size < maxBytes {
			continue
		}
		var next int64
		switch {
		case i+1 < len(events):
			next = events[i+1].Version
		case backward && events[i].Version == 0:
			return events[:i+1], nil
		case backward:
			next = events[i].Version - 1
		default:
			next = events[i].Version + 1
		}
		return events[:i+1], &next
	}
	if len(events) > limit {
		next := events[limit].Version
		return events[:limit], &next
	}
	return events, nil
}

func (s *Server) streamQuery(q url.Values) (eventstore.ReadStreamOptions, error) {
	var opts eventstore.ReadStreamOptions
	if err := checkQuery(q, "from", "limit", "direction"); err != nil {
		return opts, err
	}
	switch q.Get("direction") {
	case "", "forward":
	case "backward":
		opts.Backward = true
	default:
		return opts, errors.New("direction: want forward or backward")
	}
	def := int64(0)
	if opts.Backward {
		def = eventstore.EndOfStream
	}
	from, err := queryInt(q, "from", def, 0, eventstore.EndOfStream)
	if err != nil {
		return opts, err
	}
	opts.From = from
	opts.Limit, err = s.limit(q)
	return opts, err
}

func (s *Server) readAll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := fromPosition(q, "limit")
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	limit, err := s.limit(q)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	a := access(r)
	page, err := s.opts.Events.ReadAll(r.Context(), eventstore.ReadAllOptions{After: max(from-1, 0), Limit: limit,
		Types: q["type"], Categories: q["category"], MaxBytes: s.limits.MaxPageBytes}, a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page.Events = withoutSystem(page.Events)
	if err := s.recordAccess(r.Context(), r, a, page.Events); err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.LogPage{Events: toWire(page.Events), Next: page.Next + 1}
	s.metrics.read.Add(float64(len(page.Events)))
	writeJSON(w, http.StatusOK, out)
}

// fromPosition checks the query of a route of the global log ($all: its
// filters type and category, and the others it takes) and reads its
// fromPosition (0 without).
func fromPosition(q url.Values, others ...string) (int64, error) {
	known := append(append([]string{"fromPosition"}, others...), "type", "category")
	if err := checkQuery(q, known...); err != nil {
		return 0, err
	}
	return queryInt(q, "fromPosition", 0, 0, 1<<62)
}
