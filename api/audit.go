package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
)

// AuditExportFormat names the audit export's format (docs/api.md "Audit
// export").
const AuditExportFormat = wire.AuditExportFormat

// AuditTrail reads the audit trail: the append-only tables that record
// each action (events, access_log, erasures, erasure_completions,
// legal_holds, readmissions, audit_log). api/postgres implements it.
type AuditTrail interface {
	// AuditRecords calls fn with every record q selects, in export order
	// (time, then source, then the source's key), all read in one
	// snapshot, as they arrive: memory stays flat however many there
	// are. fn's record is reused after fn returns. An error from fn stops
	// the read and is returned.
	AuditRecords(ctx context.Context, q AuditQuery, fn func(*AuditRecord) error) error
}

// AuditRecord is one action of the audit trail. It names subjects by
// reference only and carries no personal data.
type AuditRecord struct {
	// ID is "<source table>:<key>" (wire.AuditRecord).
	ID        string
	At        time.Time
	Kind      string
	Actor     string
	RequestID string
	// Stream, FromVersion, ToVersion: an append's (FromVersion and
	// ToVersion are meaningful only when Stream is set).
	Stream      string
	FromVersion int64
	ToVersion   int64
	// Streams: the streams a pii.read showed.
	Streams     []string
	SubjectRefs []string
	// Link is an append's last event's hash-chain link, nil if none.
	Link []byte
	// Details is a compact JSON object, or nil.
	Details []byte
}

// AuditQuery selects audit records. Zero fields select everything.
type AuditQuery struct {
	// From (inclusive) and To (exclusive) bound the records' time.
	From, To time.Time
	// Kinds are wire.AuditKinds values; empty: every kind.
	Kinds []string
	// Actor selects the actions of one actor (see ActorNames).
	Actor string
	// Stream selects the appends to one stream and the pii.read records
	// that showed it; no other kind.
	Stream string
	// SubjectRef (64 lowercase hex digits) selects the records whose
	// subjectRefs hold that reference: the events that carry it (grouped
	// into appends as ever, so an append whose events only partly carry
	// it gives records of those events' versions only; each record keeps
	// every reference of the events it covers), the reads that showed it,
	// its erasure, holds, re-admission, key rotations and erasure
	// reapplications; no kind without subjects (policy and token
	// changes).
	SubjectRef string
}

// AuditFormat is an audit export's encoding: "ndjson" or "csv".
type AuditFormat string

// The audit export's encodings.
const (
	AuditNDJSON AuditFormat = "ndjson"
	AuditCSV    AuditFormat = "csv"
)

// ContentType is the format's media type.
func (f AuditFormat) ContentType() string {
	if f == AuditCSV {
		return "text/csv; charset=utf-8"
	}
	return "application/x-ndjson"
}

// ActorNames are the actor values q.Actor selects. An API token is named
// by its bare id in access_log.token_id (and in rows written before actors
// were "token:<id>" everywhere) and as "token:<id>" in every other table:
// either form selects both. Any other name ("cli:alice") selects itself
// only.
func (q AuditQuery) ActorNames() []string {
	switch a := q.Actor; {
	case a == "":
		return nil
	case strings.HasPrefix(a, "token:") && len(a) > len("token:"):
		return []string{a, strings.TrimPrefix(a, "token:")}
	case !strings.Contains(a, ":"):
		return []string{a, "token:" + a}
	default:
		return []string{a}
	}
}

// KindSelected reports whether q selects records of kind.
func (q AuditQuery) KindSelected(kind string) bool {
	return len(q.Kinds) == 0 || slices.Contains(q.Kinds, kind)
}

// ErrInvalidAuditQuery is returned for bad audit export parameters.
var ErrInvalidAuditQuery = errors.New("invalid audit export parameter")

// ParseAuditQuery checks the audit export's parameters, as the route and
// `lethe audit export` take them: from and to RFC 3339 times (either may
// be empty), kinds comma-separated or given several times, subjectRef
// empty or 64 lowercase hex digits, format "ndjson" (also when empty) or
// "csv". Errors wrap ErrInvalidAuditQuery and never quote the input.
func ParseAuditQuery(from, to string, kinds []string, actor, stream, subjectRef, format string) (AuditQuery, AuditFormat, error) {
	var q AuditQuery
	bad := func(msg string) (AuditQuery, AuditFormat, error) {
		return AuditQuery{}, "", fmt.Errorf("%w: %s", ErrInvalidAuditQuery, msg)
	}
	var err error
	if from != "" {
		if q.From, err = time.Parse(time.RFC3339Nano, from); err != nil {
			return bad("from: want an RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
		}
	}
	if to != "" {
		if q.To, err = time.Parse(time.RFC3339Nano, to); err != nil {
			return bad("to: want an RFC 3339 time, e.g. 2026-02-01T00:00:00Z")
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		return bad("to is before from")
	}
	for _, k := range kinds {
		for _, kind := range strings.Split(k, ",") {
			kind = strings.TrimSpace(kind)
			if kind == "" {
				continue
			}
			if !slices.Contains(wire.AuditKinds, kind) {
				return bad("kind: an unknown kind (want " + strings.Join(wire.AuditKinds, ", ") + ")")
			}
			if !slices.Contains(q.Kinds, kind) {
				q.Kinds = append(q.Kinds, kind)
			}
		}
	}
	// Export order, whatever the order asked in.
	slices.SortFunc(q.Kinds, func(a, b string) int {
		return slices.Index(wire.AuditKinds, a) - slices.Index(wire.AuditKinds, b)
	})
	if !isStorableText(actor) || len(actor) > 1024 {
		return bad("actor: at most 1,024 bytes of UTF-8 text without NUL")
	}
	q.Actor = actor
	if stream != "" {
		if err := eventstore.ValidateStreamID(stream); err != nil {
			return bad("stream: not a valid stream id")
		}
	}
	q.Stream = stream
	if subjectRef != "" && !isSubjectRef(subjectRef) {
		return bad("subjectRef: want a subject reference, 64 lowercase hex digits (never a subject id)")
	}
	q.SubjectRef = subjectRef
	switch f := AuditFormat(format); f {
	case "", AuditNDJSON:
		return q, AuditNDJSON, nil
	case AuditCSV:
		return q, AuditCSV, nil
	}
	return bad("format: want ndjson or csv")
}

// isSubjectRef reports whether s is a subject reference: 64 lowercase
// hex digits.
func isSubjectRef(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// auditParams are the audit export route's query parameters.
var auditParams = []string{"from", "to", "kind", "actor", "stream", "subjectRef", "format"}

// exportAudit streams the audit export (GET /v1/audit/export). Bad
// parameters are a 400 problem before any byte. Nothing is written until
// the first 64 KiB of records (or the whole export, if smaller) are
// ready, so a failure early on is still a problem document; a failure
// after that aborts the connection: a cut-off export has no summary line.
// The write deadline moves forward with every write, so the server's
// WriteTimeout does not cut a long export.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	if err := checkQuery(qv, auditParams...); err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	for _, name := range []string{"from", "to", "actor", "stream", "subjectRef", "format"} {
		if len(qv[name]) > 1 {
			s.problem(w, r, http.StatusBadRequest, "invalid-query", name+": give it once.")
			return
		}
	}
	q, format, err := ParseAuditQuery(qv.Get("from"), qv.Get("to"), qv["kind"], qv.Get("actor"), qv.Get("stream"), qv.Get("subjectRef"), qv.Get("format"))
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", strings.TrimPrefix(err.Error(), ErrInvalidAuditQuery.Error()+": ")+".")
		return
	}
	if s.opts.Audit == nil {
		s.fail(w, r, errors.New("no audit trail configured"))
		return
	}
	err = s.download(w, r, "audit export", func(dw io.Writer) (bool, error) {
		return WriteAuditExport(r.Context(), s.opts.Audit, q, format, dw, func() error {
			if err := s.stillAuthenticated(r); err != nil {
				return err // revoked while the first bytes were made: 401
			}
			sendDownload(w, format.ContentType(), "audit-export."+string(format))
			return nil
		})
	})
	if err != nil {
		s.fail(w, r, err)
	}
}

// deadlineWriter pushes the connection's write deadline forward before
// each write: a long export is bounded per write, not as a whole. Before
// each write it checks that the download may go on (its token is not
// revoked: a lookup in the authentication cache, which a revocation
// clears at once).
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
	check   func() error
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.check != nil {
		if err := d.check(); err != nil {
			return 0, err
		}
	}
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

// startWriter calls begin before the first byte reaches w.
type startWriter struct {
	w       io.Writer
	begin   func() error
	started bool
}

func (s *startWriter) Write(p []byte) (int, error) {
	if !s.started {
		if s.begin != nil {
			if err := s.begin(); err != nil {
				return 0, err
			}
		}
		s.started = true
	}
	return s.w.Write(p)
}

// auditBufferSize is how much of the export is gathered before it is
// written (and, on the route, before the answer is committed).
const auditBufferSize = 64 << 10

// WriteAuditExport writes the audit export of q (format
// lethe-audit-export/1, docs/api.md) to w as the records are read: the
// route GET /v1/audit/export and `lethe audit export`. begin, if not nil,
// runs before the first byte reaches w (the route sends its headers
// there). It reports whether anything reached w: an error after that
// leaves an export without its summary line, which a reader must take for
// cut off.
func WriteAuditExport(ctx context.Context, trail AuditTrail, q AuditQuery, format AuditFormat, w io.Writer, begin func() error) (started bool, err error) {
	generatedAt := time.Now().UTC()
	sw := &startWriter{w: w, begin: begin}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(h, sw), auditBufferSize)
	var count int64
	var cw *csv.Writer
	var fields []string
	var buf []byte
	if format == AuditCSV {
		cw = csv.NewWriter(bw)
		if err := cw.Write(wire.AuditCSVHeader); err != nil {
			return false, err
		}
		fields = make([]string, len(wire.AuditCSVHeader))
	}
	err = trail.AuditRecords(ctx, q, func(rec *AuditRecord) error {
		count++
		if cw != nil {
			buf = csvFields(buf[:0], fields, rec)
			return cw.Write(fields)
		}
		b := appendAuditNDJSON(bw.AvailableBuffer(), rec)
		_, err := bw.Write(b)
		return err
	})
	if err == nil && cw != nil {
		cw.Flush()
		err = cw.Error()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return sw.started, fmt.Errorf("audit export: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if cw != nil {
		details, err := json.Marshal(wire.AuditCSVSummary{Format: AuditExportFormat, Count: count, SHA256: sum})
		if err != nil {
			return sw.started, err
		}
		last := csv.NewWriter(sw)
		_ = last.Write([]string{"", "", wire.AuditSummaryKind, "", "", "", "", "", "", "", string(details)})
		last.Flush()
		return true, last.Error()
	}
	summary := wire.AuditSummary{Format: AuditExportFormat, Count: count, SHA256: sum, Kinds: q.Kinds,
		Actor: q.Actor, Stream: q.Stream, SubjectRef: q.SubjectRef, GeneratedAt: generatedAt, Complete: true}
	if len(summary.Kinds) == 0 {
		summary.Kinds = wire.AuditKinds
	}
	if !q.From.IsZero() {
		from := q.From.UTC()
		summary.From = &from
	}
	if !q.To.IsZero() {
		to := q.To.UTC()
		summary.To = &to
	}
	line, err := json.Marshal(wire.AuditSummaryLine{Summary: &summary})
	if err != nil {
		return sw.started, err
	}
	_, err = sw.Write(append(line, '\n'))
	return true, err
}

// auditTimeFormat is the records' time: RFC 3339, UTC, microseconds (what
// PostgreSQL keeps), always six digits.
const auditTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// appendAuditNDJSON appends rec as one NDJSON line, its fields in a fixed
// order, empty ones left out.
func appendAuditNDJSON(b []byte, rec *AuditRecord) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, rec.ID)
	b = append(b, `,"at":"`...)
	b = rec.At.UTC().AppendFormat(b, auditTimeFormat)
	b = append(b, `","kind":`...)
	b = appendJSONString(b, rec.Kind)
	if rec.Actor != "" {
		b = append(b, `,"actor":`...)
		b = appendJSONString(b, rec.Actor)
	}
	if rec.RequestID != "" {
		b = append(b, `,"requestId":`...)
		b = appendJSONString(b, rec.RequestID)
	}
	if rec.Stream != "" {
		b = append(b, `,"stream":`...)
		b = appendJSONString(b, rec.Stream)
		b = append(b, `,"fromVersion":`...)
		b = strconv.AppendInt(b, rec.FromVersion, 10)
		b = append(b, `,"toVersion":`...)
		b = strconv.AppendInt(b, rec.ToVersion, 10)
	}
	if len(rec.Streams) > 0 {
		b = append(b, `,"streams":`...)
		b = appendJSONStrings(b, rec.Streams)
	}
	if len(rec.SubjectRefs) > 0 {
		b = append(b, `,"subjectRefs":`...)
		b = appendJSONStrings(b, rec.SubjectRefs)
	}
	if len(rec.Link) > 0 {
		b = append(b, `,"link":"`...)
		b = hex.AppendEncode(b, rec.Link)
		b = append(b, '"')
	}
	if len(rec.Details) > 2 { // not {}
		b = append(b, `,"details":`...)
		b = append(b, rec.Details...)
	}
	return append(b, "}\n"...)
}

// csvFields fills fields with rec's columns (wire.AuditCSVHeader), using
// buf for the details; it returns buf.
func csvFields(buf []byte, fields []string, rec *AuditRecord) []byte {
	fields[0] = rec.ID
	fields[1] = rec.At.UTC().Format(auditTimeFormat)
	fields[2] = rec.Kind
	fields[3] = rec.Actor
	fields[4] = rec.RequestID
	fields[5], fields[6], fields[7] = "", "", ""
	if rec.Stream != "" {
		fields[5] = rec.Stream
		fields[6] = strconv.FormatInt(rec.FromVersion, 10)
		fields[7] = strconv.FormatInt(rec.ToVersion, 10)
	}
	fields[8] = strings.Join(rec.SubjectRefs, " ")
	fields[9] = hex.EncodeToString(rec.Link)
	// The details, with a pii.read's streams in them.
	details := rec.Details
	if len(details) <= 2 {
		details = nil
	}
	if len(rec.Streams) > 0 {
		if details == nil {
			buf = append(buf, '{')
		} else {
			buf = append(buf, details[:len(details)-1]...)
			buf = append(buf, ',')
		}
		buf = append(buf, `"streams":`...)
		buf = appendJSONStrings(buf, rec.Streams)
		buf = append(buf, '}')
		details = buf
	}
	fields[10] = string(details)
	for i, f := range fields {
		fields[i] = noFormula(f)
	}
	return buf
}

// noFormula neutralises a CSV cell that a spreadsheet would read as a
// formula (OWASP's "CSV injection"): one starting with = + - @, a tab or
// a carriage return gets a leading single quote. Request ids and actors
// come from clients and operators; the other columns never start so.
func noFormula(cell string) string {
	if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
		return "'" + cell
	}
	return cell
}

func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it without HTML escaping: quotes, backslashes, control
// characters, U+2028 and U+2029; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
