package eventstore

import (
	"errors"
	"fmt"
)

var (
	// ErrWrongExpectedVersion is returned (wrapped in a
	// *WrongExpectedVersionError) when an append's expected version does not
	// match the stream's current version.
	ErrWrongExpectedVersion = errors.New("wrong expected version")

	// ErrStreamNotFound is returned when a stream has no events.
	ErrStreamNotFound = errors.New("stream not found")

	// ErrInvalidStreamID is returned (wrapped in an *InvalidStreamIDError)
	// for a stream id that is empty, too long or has characters outside the
	// allowed set.
	ErrInvalidStreamID = errors.New("invalid stream id")

	// ErrInvalidEvent is returned for an event that cannot be stored: a
	// missing id or type, data that is not a JSON object, a string the
	// database cannot hold, and so on.
	ErrInvalidEvent = errors.New("invalid event")

	// ErrDuplicateEventID is returned when an append reuses an event id
	// that is already stored with different content or in another place.
	// (Repeating an append with identical events is not an error: see
	// AppendResult.Duplicate.)
	ErrDuplicateEventID = errors.New("event id already used by a different event")

	// ErrTooManyEvents is returned when one append carries more than
	// MaxEventsPerAppend events, or none.
	ErrTooManyEvents = errors.New("invalid number of events in one append")

	// ErrSubjectFenced is returned (wrapped in a *SubjectFencedError) when
	// an append carries personal data of a data subject whose erasure has
	// started: the erasure ledger fences the subject's reference in the
	// append's own statement.
	ErrSubjectFenced = errors.New("event carries personal data of an erased data subject")
)

// SubjectFencedError is the store-level fence: it names the erased subject
// reference an append carried. errors.Is(err, ErrSubjectFenced) is true for
// it. (package forgettable's SubjectGoneError is the domain's answer for a
// subject with nothing left to export.)
type SubjectFencedError struct {
	Ref string
}

func (e *SubjectFencedError) Error() string {
	return fmt.Sprintf("%v (subject reference %s)", ErrSubjectFenced, e.Ref)
}

// Unwrap makes errors.Is(err, ErrSubjectFenced) true.
func (e *SubjectFencedError) Unwrap() error { return ErrSubjectFenced }

// WrongExpectedVersionError is the optimistic-concurrency conflict. It
// carries what the caller needs to decide whether its change still holds.
// errors.Is(err, ErrWrongExpectedVersion) is true for it.
type WrongExpectedVersionError struct {
	StreamID string
	// Expected is the expected version the append was made with.
	Expected ExpectedVersion
	// Current is the stream's version when the append was refused
	// (NoStream if the stream has no events).
	Current int64
	// Events are the events stored after the expected version, oldest
	// first: for an exact expected version v, the events with versions
	// v+1..Current; for NoStream, the stream's events from version 0.
	// At most MaxConflictEvents are returned; Truncated says whether there
	// were more.
	Events    []RecordedEvent
	Truncated bool
}

// MaxConflictEvents bounds the events carried by a WrongExpectedVersionError.
const MaxConflictEvents = 1000

func (e *WrongExpectedVersionError) Error() string {
	return fmt.Sprintf("append to %s: expected version %s, current version %d: %v",
		e.StreamID, e.Expected, e.Current, ErrWrongExpectedVersion)
}

// Unwrap makes errors.Is(err, ErrWrongExpectedVersion) true.
func (e *WrongExpectedVersionError) Unwrap() error { return ErrWrongExpectedVersion }

// InvalidStreamIDError says why a stream id was refused. It does not echo
// the id itself: a badly chosen id may hold personal data.
type InvalidStreamIDError struct {
	Reason string
}

func (e *InvalidStreamIDError) Error() string {
	return fmt.Sprintf("%v: %s", ErrInvalidStreamID, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidStreamID) true.
func (e *InvalidStreamIDError) Unwrap() error { return ErrInvalidStreamID }

// InvalidEventError says which event of an append was refused and why.
type InvalidEventError struct {
	// Index is the event's index in the append call (0-based).
	Index  int
	Reason string
}

func (e *InvalidEventError) Error() string {
	return fmt.Sprintf("%v: event %d: %s", ErrInvalidEvent, e.Index, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidEvent) true.
func (e *InvalidEventError) Unwrap() error { return ErrInvalidEvent }
