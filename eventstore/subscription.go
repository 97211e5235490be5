package eventstore

import (
	"context"
	"errors"
	"time"
)

// ChangeNotifier tells subscriptions when new events may have been
// committed. Changes returns a channel that is closed at the next change
// (or at once if a change happened since the previous call's channel was
// closed); a subscription takes the channel before it reads, so a change that
// lands while it reads is never lost.
type ChangeNotifier interface {
	Changes() <-chan struct{}
}

// DefaultSafetyPoll is how often an idle subscription re-reads even when no
// change was announced: a safety net for lost notifications and for writers
// outside Lethe, not the way events are normally delivered.
const DefaultSafetyPoll = 2 * time.Second

// subscriptionPage and subscriptionPageBytes bound the batches of
// subscription reads, by events and by stored bytes.
const (
	subscriptionPage      = 500
	subscriptionPageBytes = 16 << 20
)

// Subscription is a catch-up subscription: it delivers the stored events
// after its starting point in order, then follows new events as they are
// committed. It is not safe for concurrent use.
type Subscription struct {
	// fetch reads the next page; heldBack says that more events are
	// committed but not readable yet (see AllPage.HeldBack).
	fetch      func(ctx context.Context) (events []RecordedEvent, heldBack bool, err error)
	changes    ChangeNotifier
	safetyPoll time.Duration
	buf        []RecordedEvent
	checkpoint func() int64
}

// SubscribeAllOptions starts a subscription to the global log.
type SubscribeAllOptions struct {
	// After is the position after which to start (0: from the beginning).
	// To resume, pass the position of the last event processed.
	After int64
	// Types and Categories filter as in ReadAllOptions.
	Types      []string
	Categories []string
	// SafetyPoll overrides DefaultSafetyPoll.
	SafetyPoll time.Duration
	// MaxBytes bounds each batch read by stored bytes, as ReadAllOptions'
	// does (0: 16 MiB).
	MaxBytes int
}

// NewAllSubscription returns a subscription to the global log of store,
// woken by changes. Stores usually offer it as a method.
func NewAllSubscription(store Store, changes ChangeNotifier, opts SubscribeAllOptions) *Subscription {
	after := opts.After
	read := ReadAllOptions{Types: opts.Types, Categories: opts.Categories, Limit: subscriptionPage, MaxBytes: bytesOrDefault(opts.MaxBytes)}
	return &Subscription{
		changes:    changes,
		safetyPoll: pollOrDefault(opts.SafetyPoll),
		fetch: func(ctx context.Context) ([]RecordedEvent, bool, error) {
			read.After = after
			page, err := store.ReadAll(ctx, read)
			if err != nil {
				return nil, false, err
			}
			after = page.Next
			return page.Events, page.HeldBack, nil
		},
		checkpoint: func() int64 { return after },
	}
}

// SubscribeStreamOptions starts a subscription to one stream.
type SubscribeStreamOptions struct {
	// From is the first version to deliver (0: the whole stream). To
	// resume, pass the version after the last event processed.
	From int64
	// SafetyPoll overrides DefaultSafetyPoll.
	SafetyPoll time.Duration
	// MaxBytes bounds each batch read by stored bytes, as
	// ReadStreamOptions' does (0: 16 MiB).
	MaxBytes int
}

// NewStreamSubscription returns a subscription to one stream of store, woken
// by changes. A stream that does not exist yet is waited for.
func NewStreamSubscription(store Store, changes ChangeNotifier, streamID string, opts SubscribeStreamOptions) *Subscription {
	next := opts.From
	maxBytes := bytesOrDefault(opts.MaxBytes)
	return &Subscription{
		changes:    changes,
		safetyPoll: pollOrDefault(opts.SafetyPoll),
		fetch: func(ctx context.Context) ([]RecordedEvent, bool, error) {
			events, err := store.ReadStream(ctx, streamID, ReadStreamOptions{From: next, Limit: subscriptionPage, MaxBytes: maxBytes})
			if errors.Is(err, ErrStreamNotFound) {
				return nil, false, nil
			}
			if err != nil {
				return nil, false, err
			}
			if n := len(events); n > 0 {
				next = events[n-1].Version + 1
			}
			return events, false, nil
		},
		checkpoint: func() int64 { return next },
	}
}

func bytesOrDefault(n int) int {
	if n <= 0 {
		return subscriptionPageBytes
	}
	return n
}

func pollOrDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultSafetyPoll
	}
	return d
}

// Next returns the next event, waiting for one to be committed if the
// subscription has caught up. It returns ctx's error when ctx ends, and a
// store error as is; after an error, Next may be called again and resumes
// where it stopped.
func (s *Subscription) Next(ctx context.Context) (RecordedEvent, error) {
	heldBackWait := time.Duration(0)
	for len(s.buf) == 0 {
		changed := s.changes.Changes()
		events, heldBack, err := s.fetch(ctx)
		if err != nil {
			return RecordedEvent{}, err
		}
		if len(events) > 0 {
			s.buf = events
			break
		}
		wait := s.safetyPoll
		if heldBack {
			// Committed events wait behind an older transaction,
			// maybe in another database of the cluster, whose end
			// nobody announces: look again soon, backing off.
			heldBackWait = min(max(2*heldBackWait, time.Millisecond), 100*time.Millisecond, s.safetyPoll)
			wait = heldBackWait
		}
		timer := time.NewTimer(wait)
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return RecordedEvent{}, ctx.Err()
		}
		timer.Stop()
	}
	e := s.buf[0]
	s.buf[0] = RecordedEvent{}
	s.buf = s.buf[1:]
	return e, nil
}

// Buffered returns how many events were read from the store but not yet
// returned by Next. Zero after Next means the subscription is caught up
// with what the store could show at its last read.
func (s *Subscription) Buffered() int { return len(s.buf) }

// Checkpoint returns how far the subscription has read: for the global log,
// a position (events up to it that match the filter have been read, though
// Buffered ones are not yet returned); for a stream, the next version to
// read.
func (s *Subscription) Checkpoint() int64 { return s.checkpoint() }
