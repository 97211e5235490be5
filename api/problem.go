package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/projection"
)

// ProblemTypeBase prefixes every problem type URI. The URIs are stable
// identifiers (clients match on them); docs/api.md lists them.
const ProblemTypeBase = "https://lethe.dev/problems/"

// problemTitles are the titles of the problem types (stable, like the
// types).
var problemTitles = map[string]string{
	"invalid-request":          "Invalid request",
	"invalid-query":            "Invalid query parameter",
	"invalid-stream-id":        "Invalid stream id",
	"invalid-event":            "Invalid event",
	"invalid-personal-data":    "Invalid personal data declaration",
	"too-many-events":          "Too many events",
	"too-many-leaves":          "Too many values",
	"too-many-subjects":        "Too many data subjects",
	"too-many-subscriptions":   "Too many subscriptions",
	"body-too-large":           "Request body too large",
	"event-too-large":          "Event too large",
	"unsupported-media-type":   "Unsupported media type",
	"undeclared-personal-data": "Personal data without a data subject",
	"unauthenticated":          "Unauthenticated",
	"forbidden":                "Forbidden",
	"not-found":                "Not found",
	"stream-not-found":         "Stream not found",
	"policy-not-found":         "Policy not found",
	"token-not-found":          "Token not found",
	"not-erased":               "Subject not erased",
	"erasure-not-found":        "Erasure not found",
	"version-not-found":        "Version not found",
	"projection-not-found":     "Projection not found",
	"method-not-allowed":       "Method not allowed",
	"wrong-expected-version":   "Wrong expected version",
	"duplicate-event-id":       "Duplicate event id",
	"subject-erased":           "Data subject erased",
	"subject-gone":             "Data subject erased: nothing to export",
	"legal-hold":               "Legal hold",
	"erasure-started":          "Erasure started",
	"integrity-error":          "Integrity error",
	"internal":                 "Internal error",
	"key-store-unavailable":    "Key store unavailable",
	"database-unavailable":     "Database unavailable",
	"not-ready":                "Not ready",
}

// retryAfterSeconds is the Retry-After of a 503 (and, in milliseconds,
// the retry field of a subscription's error event): long enough for a
// failover of Vault or PostgreSQL to finish, short enough to notice its end.
const retryAfterSeconds = "5"

// newProblem is the problem document of type name.
func newProblem(r *http.Request, status int, name, detail string) wire.Problem {
	return wire.Problem{Type: ProblemTypeBase + name, Title: problemTitles[name], Status: status, Detail: detail, RequestID: requestID(r)}
}

// problem writes a problem of type name.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, status int, name, detail string) {
	writeProblem(w, r, newProblem(r, status, name, detail))
}

// fail answers an error from the stores with the problem problemOf maps
// it to. Two problems carry more than the mapping gives: a version
// conflict carries the events appended since the expected version, opened
// for the caller, and "subject-gone" names the erasure.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	var conflict *eventstore.WrongExpectedVersionError
	if errors.As(err, &conflict) {
		s.conflict(w, r, conflict)
		return
	}
	writeProblem(w, r, s.problemOf(r, err))
}

// problemOf is the one mapping of errors to problems: every error answer
// (a response, an SSE error event) goes through it. Client errors say
// what is wrong; server errors are logged and answered with the request id
// only (their text could name internals). No error text holds personal
// data: the stores name subjects by reference only.
func (s *Server) problemOf(r *http.Request, err error) wire.Problem {
	var (
		tooLarge *http.MaxBytesError
		conflict *eventstore.WrongExpectedVersionError
		gone     *forgettable.SubjectGoneError
		past     versionNotFound
		started  *forgettable.ErasureStartedError
	)
	p := func(status int, name, detail string) wire.Problem { return newProblem(r, status, name, detail) }
	switch {
	case errors.As(err, &tooLarge):
		return p(http.StatusRequestEntityTooLarge, "body-too-large", "The request body is larger than the limit of "+formatBytes(tooLarge.Limit)+".")
	case errors.Is(err, ErrUnauthenticated):
		return p(http.StatusUnauthorized, "unauthenticated", "The token is missing, unknown or revoked.")
	case errors.As(err, &conflict):
		return p(http.StatusConflict, "wrong-expected-version", conflictDetail(conflict))
	case errors.As(err, &past):
		return p(http.StatusNotFound, "version-not-found", past.Error())
	case errors.As(err, &gone):
		return naming(gone.Erasure, p(http.StatusGone, "subject-gone", "The data subject was erased: none of their personal data is left to export. "+
			"The erasure receipt: GET /v1/subjects/{subject}/erasure."))
	case errors.Is(err, eventstore.ErrInvalidStreamID):
		return p(http.StatusBadRequest, "invalid-stream-id", err.Error())
	case errors.Is(err, forgettable.ErrInvalidDeclaration):
		// Fixed text: the error names paths by the data's own keys,
		// which may be personal data.
		return p(http.StatusBadRequest, "invalid-personal-data", "A personal data declaration or policy is invalid: "+
			"each names a subject and JSON Pointers (starting with /) to fields the event's data has, no path inside another, "+
			"at most 64 subjects per event.")
	case errors.Is(err, keystore.ErrInvalidSubject):
		return p(http.StatusBadRequest, "invalid-personal-data", "Invalid data subject id.")
	case errors.Is(err, forgettable.ErrReservedValue):
		return p(http.StatusBadRequest, "invalid-event", `A string value of the event's data starts with "lethe:v", which is reserved for sealed fields.`)
	case errors.Is(err, eventstore.ErrInvalidEvent):
		return p(http.StatusBadRequest, "invalid-event", err.Error())
	case errors.Is(err, eventstore.ErrTooManyEvents):
		return p(http.StatusBadRequest, "too-many-events", err.Error())
	case errors.Is(err, forgettable.ErrUndeclaredPersonalData):
		return p(http.StatusUnprocessableEntity, "undeclared-personal-data", err.Error())
	case errors.Is(err, eventstore.ErrStreamNotFound):
		return p(http.StatusNotFound, "stream-not-found", "The stream has no events.")
	case errors.Is(err, forgettable.ErrErasureNotFound):
		return p(http.StatusNotFound, "erasure-not-found", "The erasure ledger has no erasure with this id.")
	case errors.Is(err, forgettable.ErrPolicyNotFound):
		return p(http.StatusNotFound, "policy-not-found", "This event type has no protection policy.")
	case errors.Is(err, projection.ErrRebuildAhead):
		return p(http.StatusBadRequest, "invalid-request", "fromPosition: a rebuild from a position moves a projection back (0: from scratch, or a position "+
			"at or before its checkpoint); a later one would skip events, erasure records included.")
	case errors.Is(err, projection.ErrUnknownProjection):
		return p(http.StatusNotFound, "projection-not-found", "This server runs no such projection.")
	case errors.Is(err, ErrTokenNotFound):
		return p(http.StatusNotFound, "token-not-found", "No such token.")
	case errors.Is(err, ErrInvalidRole), errors.Is(err, ErrInvalidTokenName):
		return p(http.StatusBadRequest, "invalid-request", err.Error())
	case errors.Is(err, eventstore.ErrDuplicateEventID):
		return p(http.StatusConflict, "duplicate-event-id", err.Error())
	case errors.Is(err, eventstore.ErrSubjectFenced), errors.Is(err, keystore.ErrForgotten):
		return p(http.StatusConflict, "subject-erased",
			"The data subject was erased: their personal data cannot be appended unless an admin re-admits them (lethe subject readmit).")
	case errors.As(err, &started):
		return naming(started.Erasure, p(http.StatusConflict, "erasure-started", "The data subject's erasure has started (it completes when erased again if it is pending): "+
			"a legal hold must be placed before the erasure request."))
	case errors.Is(err, forgettable.ErrLegalHold):
		return p(http.StatusConflict, "legal-hold", "The data subject is under legal hold (GDPR Art. 17(3)); release the hold first.")
	case errors.Is(err, keystore.ErrUnavailable):
		s.log.Warn("key store unavailable", "route", routePattern(r), "request_id", requestID(r), "err", err)
		return p(http.StatusServiceUnavailable, "key-store-unavailable", "The key store (Vault) cannot be reached; nothing was written. Retry later.")
	case databaseUnavailable(err):
		s.log.Warn("database unavailable", "route", routePattern(r), "request_id", requestID(r), "err", err)
		return p(http.StatusServiceUnavailable, "database-unavailable", "The database (PostgreSQL) cannot be reached, or the connection broke: "+
			"a write may or may not have been committed. Retry later; an append retried with the same event ids is never written twice.")
	case errors.Is(err, forgettable.ErrTampered), errors.Is(err, forgettable.ErrKeyMissing):
		s.log.Error("integrity error", "route", routePattern(r), "request_id", requestID(r), "err", err)
		return p(http.StatusInternalServerError, "integrity-error", "Stored personal data failed an integrity check; an operator must look at the server log for this request id.")
	default:
		s.log.Error("request failed", "route", routePattern(r), "request_id", requestID(r), "err", err)
		return p(http.StatusInternalServerError, "internal", "Internal error; quote the request id.")
	}
}

// naming is p naming the erasure behind it.
func naming(e forgettable.Erasure, p wire.Problem) wire.Problem {
	p.ErasureID = uuidString(e.ID)
	return p
}

func formatBytes(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return itoa(n>>20) + " MiB"
	case n%(1<<10) == 0:
		return itoa(n>>10) + " KiB"
	}
	return itoa(n) + " bytes"
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p wire.Problem) {
	if p.RequestID == "" {
		p.RequestID = requestID(r)
	}
	if p.Status == http.StatusServiceUnavailable {
		// A dependency is down: Vault and PostgreSQL fail over in seconds.
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	writeDocument(w, p.Status, "application/problem+json", p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeDocument(w, status, "application/json", v)
}

func writeDocument(w http.ResponseWriter, status int, contentType string, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<token>", not "\u003ctoken\u003e": this is not HTML
	err := enc.Encode(v)
	if err != nil {
		// Only a bug gets here: answer without the document.
		http.Error(w, `{"type":"`+ProblemTypeBase+`internal","title":"Internal error","status":500}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// isJSONContentType accepts application/json, any +json type, and no
// Content-Type at all.
func isJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
