package eventstore

import "context"

// DefaultReadLimit is the page size used when a read's Limit is 0.
const DefaultReadLimit = 1000

// EndOfStream, as ReadStreamOptions.From with Backward, reads from the
// stream's last event.
const EndOfStream int64 = 1<<63 - 1

// ReadStreamOptions selects events of one stream.
type ReadStreamOptions struct {
	// From is the first version to return (inclusive). Reading backward,
	// it is the highest version to return; use EndOfStream for the last.
	From int64
	// Backward reads from From towards version 0.
	Backward bool
	// Limit is the most events to return; 0 means DefaultReadLimit.
	Limit int
	// MaxBytes, if > 0, bounds a page by size as well: the read stops
	// after the event that brings the page's data and metadata (as
	// stored) to MaxBytes or more. The first event always comes.
	MaxBytes int
}

// ReadAllOptions selects events of the global log.
type ReadAllOptions struct {
	// After is a position: only events after it are returned. 0 reads
	// from the start.
	After int64
	// Limit is the most events to return; 0 means DefaultReadLimit.
	Limit int
	// Types, if not empty, keeps only events of these types.
	Types []string
	// Categories, if not empty, keeps only events of streams in these
	// categories (see Category).
	Categories []string
	// MaxBytes, if > 0, bounds a page by size as well: the read stops
	// after the event that brings the page's data and metadata (as
	// stored) to MaxBytes or more, and Next is that event's position.
	MaxBytes int
}

// ReadAllEachOptions select a read of $all in one statement (a store's
// ReadAllEach: eventstore/postgres), for readers catching up on a large
// part of the log.
type ReadAllEachOptions struct {
	// After is a position: only events after it are read.
	After int64
	// Limit is the most events to read (required: a read holds one
	// snapshot while it runs, which holds back vacuum, so it is bounded).
	Limit int
	// WithoutData leaves SubjectRefs and ErasedRefs empty, and Data and
	// Metadata for events of user streams: for readers that use only the
	// envelope (stream, type, version, position, time), such as counts.
	// Events of system streams ($-prefixed: erasure records, few) keep
	// their data and metadata.
	WithoutData bool
}

// AllPage is one page of the global log.
type AllPage struct {
	// Events are in position order.
	Events []RecordedEvent
	// Next is the position to pass as After to continue. It may be past
	// the last returned event: up to the log's visibility horizon when the
	// page is not full, so that a filtered reader does not scan the same
	// non-matching events again. Every event with a position up to Next
	// that matches the options has been returned.
	Next int64
	// HeldBack is true when events are already committed past Next but not
	// readable yet, because an older transaction (which may still append
	// before them) is running. Read again shortly; no notification may
	// announce the moment they become readable.
	HeldBack bool
}

// Store is an append-only event store.
type Store interface {
	// AppendToStream appends events to a stream, atomically, if the
	// stream's version matches expected. It returns an error wrapping
	// ErrInvalidStreamID, ErrInvalidEvent or ErrTooManyEvents for bad
	// input, a *WrongExpectedVersionError on a version conflict, and
	// ErrDuplicateEventID when an event id is already used by a different
	// event. Repeating an identical append succeeds with Duplicate set.
	AppendToStream(ctx context.Context, streamID string, expected ExpectedVersion, events ...EventData) (AppendResult, error)

	// ReadStream reads a stream's events in version order (or reverse
	// order when reading backward). It returns ErrStreamNotFound if the
	// stream has no events.
	ReadStream(ctx context.Context, streamID string, opts ReadStreamOptions) ([]RecordedEvent, error)

	// StreamVersion returns the version of a stream's last event, or
	// ErrStreamNotFound.
	StreamVersion(ctx context.Context, streamID string) (int64, error)

	// ReadAll reads the global log in position order. It never returns
	// an event whose position is followed by a gap that a transaction
	// still in flight could fill: see AllPage.Next.
	ReadAll(ctx context.Context, opts ReadAllOptions) (AllPage, error)
}
