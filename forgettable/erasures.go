package forgettable

import (
	"errors"
	"time"

	"github.com/lethe-store/lethe/eventstore"
)

// ErasureDeadline is when the one month of GDPR Art. 12(3) ends for an
// erasure request that Lethe recorded at requestedAt: one calendar month
// later, in UTC, at the same time of day; when that month has no such day,
// its last day (31 January: 28 or 29 February), as Regulation 1182/71 counts
// periods in months. PostgreSQL computes the same instant as
// (requested_at AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC'.
func ErasureDeadline(requestedAt time.Time) time.Time {
	t := requestedAt.UTC()
	y, m, d := t.Date()
	next := time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC) // normalises December
	if last := time.Date(next.Year(), next.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day(); d > last {
		d = last
	}
	return time.Date(next.Year(), next.Month(), d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// Deadline is ErasureDeadline of the erasure's request time.
func (e Erasure) Deadline() time.Time { return ErasureDeadline(e.RequestedAt) }

// Overdue reports whether the erasure missed its deadline: completed after
// it, or still pending at now, past it.
func (e Erasure) Overdue(now time.Time) bool {
	if e.Completion != nil {
		return e.Completion.CompletedAt.After(e.Deadline())
	}
	return now.After(e.Deadline())
}

// ErasureStatus selects erasures by their state.
type ErasureStatus string

// The states an erasure listing can select.
const (
	// ErasuresAll selects every erasure.
	ErasuresAll ErasureStatus = ""
	// ErasuresPending selects the erasures without a completion (the key
	// not destroyed yet).
	ErasuresPending ErasureStatus = "pending"
	// ErasuresCompleted selects the completed erasures.
	ErasuresCompleted ErasureStatus = "completed"
	// ErasuresOverdue selects the erasures that missed their deadline:
	// completed after it, or pending past it.
	ErasuresOverdue ErasureStatus = "overdue"
)

// ErasureStatuses lists the states a listing can select, ErasuresAll
// excepted.
var ErasureStatuses = []ErasureStatus{ErasuresPending, ErasuresCompleted, ErasuresOverdue}

// ErasureQuery selects a page of the erasure ledger, newest request first
// (request time, then erasure id, both descending).
type ErasureQuery struct {
	Status ErasureStatus
	// From and To bound the request time: From <= requestedAt < To. A
	// zero time is no bound.
	From, To time.Time
	// After, if set, continues a listing: the page starts with the
	// erasure that follows After in the order above.
	After *ErasureCursor
	// Limit is the most erasures to return (at least 1).
	Limit int
	// Now is the instant an erasure still pending is judged overdue at.
	Now time.Time
}

// ErasureCursor is a place in an erasure listing: the last erasure seen.
type ErasureCursor struct {
	RequestedAt time.Time
	ID          [16]byte
}

// Cursor returns the place of e in an erasure listing.
func (e Erasure) Cursor() ErasureCursor { return ErasureCursor{RequestedAt: e.RequestedAt, ID: e.ID} }

// ErasureRecord is one of an erasure's records in ErasedStreamID: the
// signal that persisted projections follow to drop what they derived from
// the subject.
type ErasureRecord struct {
	EventID eventstore.EventID
	// Type is SubjectFencedType or "subject-erased".
	Type       string
	Position   int64
	RecordedAt time.Time
}

// ErasureProof is what Lethe holds about an erasure, without personal
// data: the ledger entry, the erasure's records in ErasedStreamID and the
// streams whose events carry the subject's reference (their personal
// fields are the ones the erasure shredded).
type ErasureProof struct {
	Erasure
	// Records are in log (position) order: subject-fenced when the
	// subject was fenced, subject-erased once the key was destroyed.
	Records []ErasureRecord
	// Streams are stream ids in byte order, a page of them: those after
	// the streamsAfter asked for, at most the limit asked for.
	Streams []string
	// MoreStreams says that more streams follow the last of Streams.
	MoreStreams bool
}

// ErrErasureNotFound is returned for an erasure id the ledger does not
// hold.
var ErrErasureNotFound = errors.New("no such erasure")

// ErasureRecordIDs returns the event ids of an erasure's two records in
// ErasedStreamID: the subject-fenced record's (the erasure id with its
// first byte inverted) and the subject-erased record's (the erasure id).
func ErasureRecordIDs(erasureID [16]byte) (fenced, erased eventstore.EventID) {
	fenced, erased = erasureID, erasureID
	fenced[0] ^= 0xff
	return fenced, erased
}
