package forgettable

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

var (
	// ErrUndeclaredPersonalData is returned for an append whose event type
	// has a protection policy but that does not say whose data it is.
	ErrUndeclaredPersonalData = errors.New("personal data without a data subject")

	// ErrInvalidDeclaration is returned for a bad personal data
	// declaration: a bad JSON pointer, a missing field, overlapping paths.
	ErrInvalidDeclaration = errors.New("invalid personal data declaration")

	// ErrLegalHold is returned by Forget for a subject under legal hold
	// (GDPR Art. 17(3)).
	ErrLegalHold = errors.New("data subject is under legal hold")

	// ErrKeyMissing is returned when an event's key is missing from the
	// key store although the erasure ledger does not say the subject was
	// erased: an integrity problem (a key store restored from an old
	// backup?), never shown as a redaction.
	ErrKeyMissing = errors.New("key missing without an erasure record")
)

// ErasedStreamID is the system stream where every erasure appends a record
// without personal data (type "subject-erased"): the signal projections and
// snapshots follow to drop what they derived from the subject.
const ErasedStreamID = eventstore.SystemStreamPrefix + "lethe-erasures"

// PersonalData declares whose personal data some fields of an event are.
type PersonalData struct {
	// Subject is the data subject's id (an e-mail address, a customer
	// number...). It never leaves the process: Lethe stores only its
	// reference.
	Subject string `json:"subject"`
	// Paths are JSON Pointers (RFC 6901) into the event's data.
	Paths []string `json:"paths"`
}

// Event is an event to append with its personal data declarations.
type Event struct {
	eventstore.EventData
	PersonalData []PersonalData
}

// RecordedEvent is a stored event as a reader sees it: personal fields
// decrypted, or null and listed in Redacted.
type RecordedEvent struct {
	eventstore.RecordedEvent
	Redacted []Redaction
}

// Access says what a reader may see.
type Access int

const (
	// Restricted readers see every personal field as null, with reason
	// "restricted". No key is fetched.
	Restricted Access = iota
	// Personal readers see personal fields decrypted (or "forgotten").
	Personal
)

// Options configures a Store.
type Options struct {
	Logger *slog.Logger
	// PolicyTTL bounds how long a cached protection policy is used without
	// a change announcement (default 2s).
	PolicyTTL time.Duration
	// KeyConcurrency bounds concurrent key fetches of one read (default 8).
	KeyConcurrency int
}

// EventStore is what a Store needs of the event store: eventstore.Store,
// and three reads that the Forgettable Payload relies on.
// eventstore/postgres.Store implements it.
type EventStore interface {
	eventstore.Store
	// EventsByID returns the stored events with these ids, in the order
	// given; an id not stored gives a zero event (empty StreamID). Append
	// recognises a retried append with it.
	EventsByID(ctx context.Context, ids []eventstore.EventID) ([]eventstore.RecordedEvent, error)
	// ReadStreamEach is ReadStream handing events to fn as the rows
	// arrive, so that a read decrypts while the database still sends.
	ReadStreamEach(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, fn func(eventstore.RecordedEvent) error) error
	// SubjectEvents reads, in one snapshot and position order, every event
	// sealed under the subject reference ref, pageSize at a time, after
	// calling footprint with the streams (sorted) and the count they make:
	// a subject's access export.
	SubjectEvents(ctx context.Context, ref string, pageSize int, footprint func(streams []string, events int) error, fn func([]eventstore.RecordedEvent) error) error
}

// Store is the Forgettable Payload over an event store: it seals declared
// personal data on append, opens it on read, and forgets subjects.
type Store struct {
	events   EventStore
	keys     keystore.Store
	cache    keyCache // keys, if it caches; nil otherwise
	ledger   Ledger
	policies Policies
	log      *slog.Logger
	opts     Options

	mu          sync.Mutex
	policyCache map[string]policyEntry
	successors  map[keystore.Ref]keystore.Ref // erased ref -> successor, learnt on demand
}

// New returns a Store. If keys can answer from a cache without I/O
// (CachedKey, as keystore/vault does), reads use it.
func New(events EventStore, keys keystore.Store, ledger Ledger, policies Policies, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PolicyTTL <= 0 {
		opts.PolicyTTL = 2 * time.Second
	}
	if opts.KeyConcurrency <= 0 {
		opts.KeyConcurrency = 8
	}
	cache, _ := keys.(keyCache)
	return &Store{
		events: events, keys: keys, cache: cache, ledger: ledger, policies: policies, log: opts.Logger, opts: opts,
		policyCache: map[string]policyEntry{},
		successors:  map[keystore.Ref]keystore.Ref{},
	}
}

// Events returns the underlying event store.
func (s *Store) Events() eventstore.Store { return s.events }
