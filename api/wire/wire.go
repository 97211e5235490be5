// Package wire holds the JSON documents of Lethe's HTTP API v1, shared by
// the server (package api) and the Go client (package api/client). It
// depends on the standard library only. docs/api.md and docs/openapi.yaml
// describe the same documents.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Expected versions with a name. Any other value is the exact version the
// stream must be at (-1: the stream must not exist).
const (
	// ExpectedAny appends whatever the stream's version ("any").
	ExpectedAny int64 = -2
	// ExpectedNoStream: the stream must not exist (-1).
	ExpectedNoStream int64 = -1
	// ExpectedExists: the stream must exist, at any version ("exists").
	ExpectedExists int64 = -3
)

// ExpectedVersion is an append's concurrency check: a version number, -1
// (no stream), "any" or "exists". The zero value is "any".
type ExpectedVersion struct {
	v   int64
	set bool
}

// Exact returns the expected version v (-1: the stream must not exist).
func Exact(v int64) ExpectedVersion { return ExpectedVersion{v: v, set: true} }

// Any is the expected version "any".
func Any() ExpectedVersion { return ExpectedVersion{v: ExpectedAny, set: true} }

// Exists is the expected version "exists".
func Exists() ExpectedVersion { return ExpectedVersion{v: ExpectedExists, set: true} }

// Value returns the version, or ExpectedAny, ExpectedExists.
func (e ExpectedVersion) Value() int64 {
	if !e.set {
		return ExpectedAny
	}
	return e.v
}

// MarshalJSON writes a number, "any" or "exists".
func (e ExpectedVersion) MarshalJSON() ([]byte, error) {
	switch v := e.Value(); v {
	case ExpectedAny:
		return []byte(`"any"`), nil
	case ExpectedExists:
		return []byte(`"exists"`), nil
	default:
		return strconv.AppendInt(nil, v, 10), nil
	}
}

// ErrBadExpectedVersion is returned for an expectedVersion that is neither
// a version (-1 or more), "any" nor "exists".
var ErrBadExpectedVersion = errors.New(`expectedVersion must be a version number (-1: no stream), "any" or "exists"`)

// UnmarshalJSON reads a whole number of -1 or more, "any" or "exists".
func (e *ExpectedVersion) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"any"`:
		*e = Any()
		return nil
	case `"exists"`:
		*e = Exists()
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || v < -1 {
		return ErrBadExpectedVersion
	}
	*e = Exact(v)
	return nil
}

// AppendRequest is the body of POST /v1/streams/{streamId}/events.
type AppendRequest struct {
	ExpectedVersion ExpectedVersion `json:"expectedVersion"`
	Events          []NewEvent      `json:"events"`
}

// NewEvent is an event to append.
type NewEvent struct {
	// ID is the event's UUID, chosen by the client: retrying an append
	// with the same ids is safe (idempotent).
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// PersonalData says whose personal data which fields of Data are;
	// those fields are encrypted under the subject's key.
	PersonalData []PersonalData `json:"personalData,omitempty"`
}

// PersonalData declares that the fields at Paths (JSON Pointers into the
// event's data) are Subject's personal data.
type PersonalData struct {
	Subject string   `json:"subject"`
	Paths   []string `json:"paths"`
}

// AppendResult answers a successful append: 201, or 200 for a retried
// identical append (nothing written again).
type AppendResult struct {
	StreamID      string `json:"streamId"`
	FirstVersion  int64  `json:"firstVersion"`
	LastVersion   int64  `json:"lastVersion"`
	FirstPosition int64  `json:"firstPosition"`
	LastPosition  int64  `json:"lastPosition"`
}

// Event is a stored event as the caller may see it.
type Event struct {
	ID         string          `json:"id"`
	StreamID   string          `json:"streamId"`
	Version    int64           `json:"version"`
	Position   int64           `json:"position"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	Metadata   json.RawMessage `json:"metadata"`
	RecordedAt time.Time       `json:"recordedAt"`
	// Redacted lists the personal fields shown as null, and why. Always
	// present; empty when nothing is redacted.
	Redacted []Redaction `json:"redacted"`
}

// Redaction says why a personal field shows null.
type Redaction struct {
	Path string `json:"path"`
	// Reason is ReasonForgotten or ReasonRestricted.
	Reason string `json:"reason"`
}

// Redaction reasons.
const (
	// ReasonForgotten: the data subject was erased.
	ReasonForgotten = "forgotten"
	// ReasonRestricted: the caller may not read personal data.
	ReasonRestricted = "restricted"
)

// StreamPage answers GET /v1/streams/{streamId}/events.
type StreamPage struct {
	Events []Event `json:"events"`
	// Next is the version to pass as from for the next page, in the same
	// direction; null at the end of the stream.
	Next *int64 `json:"next"`
}

// LogPage answers GET /v1/events.
type LogPage struct {
	Events []Event `json:"events"`
	// Next is the position to pass as fromPosition to continue: every
	// matching event before it has been returned. It may be past the
	// last event returned (filtered reads skip what does not match).
	Next int64 `json:"next"`
}

// Conflict is the problem document of a 409 version conflict, with the
// events appended since the expected version (at most a page).
type Conflict struct {
	Problem
	CurrentVersion *int64  `json:"currentVersion"`
	Events         []Event `json:"events"`
	// Truncated: more events were appended since than Events holds.
	Truncated bool `json:"truncated,omitempty"`
}

// Problem is an RFC 9457 problem details document. Type is a stable URI
// clients match on; docs/api.md lists them.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"requestId,omitempty"`
	// ErasureID names the erasure behind a 410 subject-gone (a
	// subject export) and a 409 erasure-started (a legal hold).
	ErasureID string `json:"erasureId,omitempty"`
	// Checks are the readiness checks of a 503 not-ready.
	Checks []CheckResult `json:"checks,omitempty"`
}

// CheckResult is a readiness check's outcome in /readyz answers.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Error makes a problem an error (the client returns it).
func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
	}
	return fmt.Sprintf("%d %s", p.Status, p.Title)
}

// EraseRequest is the optional body of POST /v1/subjects/{subject}/erase.
type EraseRequest struct {
	Reason     string `json:"reason,omitempty"`
	LegalBasis string `json:"legalBasis,omitempty"`
}

// ErasureReceipt proves an erasure: it names the subject by its opaque
// reference only.
type ErasureReceipt struct {
	ErasureID   string    `json:"erasureId"`
	SubjectRef  string    `json:"subjectRef"`
	RequestedAt time.Time `json:"requestedAt"`
	Actor       string    `json:"actor"`
	RequestID   string    `json:"requestId,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	LegalBasis  string    `json:"legalBasis,omitempty"`
	// Status is "completed", or "pending" when the key could not be
	// destroyed yet (the subject is fenced; erase again to finish).
	Status     string             `json:"status"`
	Completion *ErasureCompletion `json:"completion"`
	// CompletedAt is Completion's time; null while pending.
	CompletedAt *time.Time `json:"completedAt"`
	// Deadline ends the one month of GDPR Art. 12(3), counted from
	// RequestedAt (when Lethe recorded the request): one calendar month
	// later in UTC, or the last day of that month if it has no such day.
	Deadline time.Time `json:"deadline"`
	// Overdue: completed after Deadline, or still pending past it.
	Overdue bool `json:"overdue"`

	// The proof's details: in GET /v1/erasures/{erasureId} and GET
	// /v1/subjects/{subject}/erasure, not in lists and erase answers.
	ErasureProof
}

// ErasureCompletion is what an erasure did.
type ErasureCompletion struct {
	CompletedAt time.Time `json:"completedAt"`
	// SubjectKnown: the subject had a key or events when the erasure ran.
	// False for a subject Lethe never saw: the erasure is recorded (and
	// fences the subject) all the same, but there was nothing to erase.
	SubjectKnown         bool `json:"subjectKnown"`
	KeyExisted           bool `json:"keyExisted"`
	KeyVersionsDestroyed int  `json:"keyVersionsDestroyed"`
	// KeyVerifiedGone: a read after the deletion found neither data nor
	// metadata for the key in Vault.
	KeyVerifiedGone bool  `json:"keyVerifiedGone"`
	StreamsAffected int64 `json:"streamsAffected"`
	EventsAffected  int64 `json:"eventsAffected"`
	// Resumed: completed by a call that found the erasure already started
	// (an earlier attempt was interrupted). KeyExisted and
	// KeyVersionsDestroyed then describe the last attempt only; an earlier
	// one may have destroyed the key. Absent when false.
	Resumed bool `json:"resumed,omitempty"`
}

// HoldRequest is the optional body of PUT/DELETE
// /v1/subjects/{subject}/hold.
type HoldRequest struct {
	Reason string `json:"reason,omitempty"`
}

// Hold answers the legal hold routes.
type Hold struct {
	SubjectRef string `json:"subjectRef"`
	Held       bool   `json:"held"`
}

// Policy is a protection policy: the fields of an event type that are
// always personal data.
type Policy struct {
	EventType string    `json:"eventType"`
	Paths     []string  `json:"paths"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
}

// PolicyRequest is the body of PUT /v1/policies/{eventType}.
type PolicyRequest struct {
	Paths []string `json:"paths"`
}

// Roles a token may hold.
const (
	RoleWriter    = "writer"
	RoleReader    = "reader"
	RolePIIReader = "pii-reader"
	RoleAdmin     = "admin"
	RoleAuditor   = "auditor"
)

// Roles lists every role.
var Roles = []string{RoleWriter, RoleReader, RolePIIReader, RoleAdmin, RoleAuditor}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// Token describes an API token; Secret is set only once, when it is
// created.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Roles     []string   `json:"roles"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	// Secret is the bearer token itself: shown once, stored only as a
	// hash.
	Secret string `json:"token,omitempty"`
}

// TokenList answers GET /v1/tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// Errors of Decode's strict checks. Decode returns them inside a
// *DecodeError that says where in the body the problem is; none quotes
// the input (it may be personal data).
var (
	// ErrUnknownField: a key that is not exactly (case-sensitively) one of
	// the document's field names.
	ErrUnknownField = errors.New("an unknown field (field names are case-sensitive)")
	// ErrDuplicateField: a key given twice in the same object.
	ErrDuplicateField = errors.New("a field given twice")
	// ErrNULCharacter: a string holds U+0000, which Lethe cannot store.
	ErrNULCharacter = errors.New(`a string holds a NUL character (\u0000)`)
	// ErrTrailingData: something follows the JSON document.
	ErrTrailingData = errors.New("trailing data after the JSON document")
)

// DecodeError is a strict check's refusal at a byte offset of the body.
type DecodeError struct {
	// Offset is the byte offset just after the refused key or string.
	Offset int64
	Err    error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("%v at byte %d", e.Err, e.Offset) }

// Unwrap returns the sentinel (ErrUnknownField...).
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode reads exactly one JSON document of type T from b. It is strict
// where encoding/json is lenient: every object key must be exactly one of
// T's JSON field names (encoding/json matches keys case-insensitively)
// and appear at most once per object (encoding/json lets the last one
// win), and no string may hold a NUL character. The contents of
// json.RawMessage fields (an event's data and metadata: the user's own
// JSON) are not checked. Trailing data is refused (ErrTrailingData).
func Decode[T any](b []byte) (T, error) {
	var v T
	if err := checkStrict(b, reflect.TypeFor[T]()); err != nil {
		return v, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, ErrTrailingData
	}
	return v, nil
}

// checkStrict walks the first JSON document of b along t. It stops at a
// value whose shape does not match t: encoding/json refuses it next.
func checkStrict(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // no number is converted: none can fail here
	if err := walk(dec, t); err != errOtherShape {
		return err
	}
	return nil
}

// errOtherShape stops checkStrict at a value of the wrong shape.
var errOtherShape = errors.New("not the shape of the document")

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// walk checks the next value of dec as a value of type t.
func walk(dec *json.Decoder, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType || reflect.PointerTo(t).Implements(unmarshalerType) {
		// The user's own JSON (data, metadata), or a type that checks
		// its value itself (expectedVersion).
		var skip json.RawMessage
		return dec.Decode(&skip)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok := tok.(type) {
	case string:
		if strings.IndexByte(tok, 0) >= 0 {
			return &DecodeError{Offset: dec.InputOffset(), Err: ErrNULCharacter}
		}
		return nil
	case json.Delim:
		switch {
		case tok == '{' && t.Kind() == reflect.Struct:
			return walkObject(dec, fieldsOf(t))
		case tok == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
			for dec.More() {
				if err := walk(dec, t.Elem()); err != nil {
					return err
				}
			}
		default:
			// A shape T does not have: encoding/json refuses it next.
			return errOtherShape
		}
		_, err := dec.Token() // the closing delimiter
		return err
	}
	return nil
}

// walkObject checks the keys and values of an object whose '{' was read,
// and reads its '}'.
func walkObject(dec *json.Decoder, fields map[string]reflect.Type) error {
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		ft, known := fields[key]
		switch {
		case !known:
			return &DecodeError{Offset: dec.InputOffset(), Err: ErrUnknownField}
		case seen[key]:
			return &DecodeError{Offset: dec.InputOffset(), Err: ErrDuplicateField}
		}
		seen[key] = true
		if err := walk(dec, ft); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

// structFields caches fieldsOf.
var structFields sync.Map // reflect.Type -> map[string]reflect.Type

// fieldsOf returns the JSON field names of struct type t, and their types,
// as encoding/json names them (tag name, else the Go name; embedded
// structs without a tag name promote their fields).
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := structFields.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || len(sf.Index) > 1 && !promoted(t, sf.Index) {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			continue // its fields are promoted (VisibleFields lists them)
		}
		if name == "" {
			name = sf.Name
		}
		fields[name] = sf.Type
	}
	structFields.Store(t, fields)
	return fields
}

// promoted reports whether the field at index (in a struct embedded in t)
// is promoted by encoding/json: every struct on the way is embedded
// without a JSON name.
func promoted(t reflect.Type, index []int) bool {
	for _, i := range index[:len(index)-1] {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.Anonymous || name != "" || sf.Type.Kind() != reflect.Struct {
			return false
		}
		t = sf.Type
	}
	return true
}

// FieldRedaction is a field of a derived view (state, history) shown as
// null: the value it came from, in event Version, was redacted.
type FieldRedaction struct {
	Path    string `json:"path"`
	Reason  string `json:"reason"`
	Version int64  `json:"version"`
}

// StreamState answers GET /v1/streams/{streamId}/state: the stream's
// state folded from its events up to Version (-1: before its first event).
type StreamState struct {
	StreamID string `json:"streamId"`
	Version  int64  `json:"version"`
	// UpdatedAt is the recording time of the last event folded (absent
	// before the first).
	UpdatedAt *time.Time `json:"updatedAt,omitempty"`
	// EventTypes are the types of the events folded, in the order first
	// seen.
	EventTypes []string        `json:"eventTypes"`
	State      json.RawMessage `json:"state"`
	// Redacted lists the fields of State that are null because the value
	// they hold came redacted. Always present.
	Redacted []FieldRedaction `json:"redacted"`
}

// FieldValue is a value a field took, and when it appeared.
type FieldValue struct {
	Value      json.RawMessage `json:"value"`
	Version    int64           `json:"version"`
	RecordedAt time.Time       `json:"recordedAt"`
}

// StreamHistory answers GET /v1/streams/{streamId}/history: every value
// each field ever had (keyed by JSON Pointer), oldest first.
type StreamHistory struct {
	StreamID string                  `json:"streamId"`
	Version  int64                   `json:"version"`
	Fields   map[string][]FieldValue `json:"fields"`
	Redacted []FieldRedaction        `json:"redacted"`
}

// LookupResult answers GET /v1/lookup.
type LookupResult struct {
	Streams []string `json:"streams"`
}

// DayCounts are a day's event counts by type.
type DayCounts struct {
	Day    string           `json:"day"`
	Counts map[string]int64 `json:"counts"`
}

// Analytics answers GET /v1/analytics/{category}: event counts per day
// (the day events were recorded, UTC) and in total, by event type.
type Analytics struct {
	Category string           `json:"category"`
	Days     []DayCounts      `json:"days"`
	Totals   map[string]int64 `json:"totals"`
}

// ProjectionStatus is a persisted projection's progress.
type ProjectionStatus struct {
	Name string `json:"name"`
	// Position: every event of the global log up to it has been applied.
	Position      int64      `json:"position"`
	EventsApplied int64      `json:"eventsApplied"`
	LastEventAt   *time.Time `json:"lastEventAt,omitempty"`
	UpdatedAt     time.Time  `json:"updatedAt"`
	// Lag counts the events after Position (capped at 10,000).
	Lag            int64  `json:"lag"`
	RebuildPending bool   `json:"rebuildPending"`
	LastError      string `json:"lastError,omitempty"`
}

// ProjectionList answers GET /v1/projections.
type ProjectionList struct {
	Projections []ProjectionStatus `json:"projections"`
}

// RebuildRequest is the optional body of POST
// /v1/projections/{name}/rebuild: from scratch (fromPosition 0, the
// default: the read model is emptied first) or from a position.
type RebuildRequest struct {
	FromPosition int64 `json:"fromPosition,omitempty"`
}

// SubjectExport is a data subject's access export
// (GET /v1/subjects/{subject}/export, format "lethe-subject-export/1"):
// every event carrying the subject's personal data, in position order,
// with their fields decrypted and other subjects' fields null (reason
// "restricted"). docs/gdpr.md documents it.
type SubjectExport struct {
	Format      string    `json:"format"`
	SubjectRef  string    `json:"subjectRef"`
	GeneratedAt time.Time `json:"generatedAt"`
	// Streams are the streams holding the subject's events, sorted.
	Streams []string        `json:"streams"`
	Events  []ExportedEvent `json:"events"`
	Count   int             `json:"count"`
	// Complete is true at the end of a whole export: a document without
	// it was cut off.
	Complete bool `json:"complete"`
}

// ExportedEvent is an event of a subject access export: the event as the
// subject may see it, and its link in its stream's hash chain, so that
// `lethe verify --file` can check that the store still holds the event as
// it was when exported (docs/architecture.md "The hash chain").
type ExportedEvent struct {
	Event
	// Link is the event's hash-chain link as stored (64 hex digits);
	// absent for an event stored before links existed.
	Link string `json:"link,omitempty"`
}
