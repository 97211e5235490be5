package forgettable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

// ReadStream reads a stream's events, opened for access. A read of
// personal data of 64 events or more takes the rows as they arrive
// (EventStore.ReadStreamEach), so that events are decrypted while the
// database still sends the next ones.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, access Access) ([]RecordedEvent, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultReadLimit
	}
	if access == Personal && limit >= 64 {
		return s.readStreamEach(ctx, streamID, opts, limit)
	}
	events, err := s.events.ReadStream(ctx, streamID, opts)
	if err != nil {
		return nil, err
	}
	// Read just now, with the ledger's verdict in the same statement.
	return s.open(ctx, s.newOpening(access), events)
}

// readStreamEach opens events on worker goroutines as the rows arrive.
// Events whose keys are not in the key store's cache wait for one
// concurrent batch fetch at the end, as in Open.
func (s *Store) readStreamEach(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, limit int) ([]RecordedEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := s.newOpening(Personal)
	raw := make([]eventstore.RecordedEvent, limit)
	out := make([]RecordedEvent, limit)
	jobs := make(chan int, 256)
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		ow := o.worker()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if errs[w] != nil {
					continue // drain
				}
				if errs[w] = ow.open(i, raw[i], &out[i]); errs[w] != nil {
					cancel()
				}
			}
		}()
	}
	n := 0
	err := s.events.ReadStreamEach(ctx, streamID, opts, func(e eventstore.RecordedEvent) error {
		if n == len(raw) {
			return fmt.Errorf("read stream %s: more rows than the limit %d", streamID, limit)
		}
		raw[n] = e
		jobs <- n
		n++
		return nil
	})
	close(jobs)
	wg.Wait()
	if werr := errors.Join(errs...); werr != nil {
		return nil, werr
	}
	if err != nil {
		return nil, err
	}
	return o.finish(ctx, raw[:n], out[:n])
}

// Page is a page of the global log, opened.
type Page struct {
	Events   []RecordedEvent
	Next     int64
	HeldBack bool
}

// ReadAll reads the global log, opened for access.
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions, access Access) (Page, error) {
	page, err := s.events.ReadAll(ctx, opts)
	if err != nil {
		return Page{}, err
	}
	opened, err := s.open(ctx, s.newOpening(access), page.Events) // the verdict came with the rows
	if err != nil {
		return Page{}, err
	}
	return Page{Events: opened, Next: page.Next, HeldBack: page.HeldBack}, nil
}

// Open decrypts the personal fields of stored events, or redacts them:
// "forgotten" when the erasure ledger (read with the events) says the
// subject was erased, "restricted" for Restricted access. Keys are fetched
// once per (subject, version): events whose keys the key store has cached
// are opened at once, the others after one concurrent fetch of the keys
// they need. It returns an error wrapping keystore.ErrUnavailable when a
// key cannot be had, ErrTampered for a sealed field that does not open, and
// ErrKeyMissing for a key missing without an erasure record: never a
// redaction.
//
// The events may have been read a while ago (a subscription reads ahead,
// a projection's batch waits for its turn): for Personal access, Open asks
// the erasure ledger afresh, in one query, which of their subjects are
// erased, so that nothing is decrypted for a subject whose erasure
// committed after the read — whatever keys this process still caches.
func (s *Store) Open(ctx context.Context, events []eventstore.RecordedEvent, access Access) ([]RecordedEvent, error) {
	if access == Personal {
		var err error
		if events, err = s.withFreshErasures(ctx, events); err != nil {
			return nil, err
		}
	}
	return s.open(ctx, s.newOpening(access), events)
}

// withFreshErasures returns events with the ledger's current verdict: the
// references erased since they were read are added to their ErasedRefs
// (on copies; events is not changed).
func (s *Store) withFreshErasures(ctx context.Context, events []eventstore.RecordedEvent) ([]eventstore.RecordedEvent, error) {
	var refs []keystore.Ref
	for _, e := range events {
		for _, r := range e.SubjectRefs {
			if !slices.Contains(e.ErasedRefs, r) && !slices.Contains(refs, keystore.Ref(r)) {
				refs = append(refs, keystore.Ref(r))
			}
		}
	}
	if len(refs) == 0 {
		return events, nil
	}
	erased, err := s.ledger.Erased(ctx, refs)
	if err != nil {
		return nil, err
	}
	if len(erased) == 0 {
		return events, nil
	}
	out := slices.Clone(events)
	for i, e := range out {
		for _, r := range e.SubjectRefs {
			if erased[keystore.Ref(r)] && !slices.Contains(e.ErasedRefs, r) {
				out[i].ErasedRefs = append(slices.Clip(e.ErasedRefs), r)
			}
		}
	}
	return out, nil
}

func (s *Store) open(ctx context.Context, o *opening, events []eventstore.RecordedEvent) ([]RecordedEvent, error) {
	out := make([]RecordedEvent, len(events))
	workers := workerCount(len(events))
	err := parallel(len(events), workers, func(int) func(i int) error {
		ow := o.worker()
		return func(i int) error { return ow.open(i, events[i], &out[i]) }
	})
	if err != nil {
		return nil, err
	}
	return o.finish(ctx, events, out)
}

// DerivedPart is data copied out of one stored event — fields of a state
// snapshot — with its sealed fields as they were stored: they stay bound to
// that event (and to their paths, which the fields keep).
type DerivedPart struct {
	EventID     eventstore.EventID
	SubjectRefs []string
	// Fields are top-level fields of the event's data, as stored.
	Fields map[string]json.RawMessage
}

// OpenDerived opens the sealed fields of derived parts as Open does for
// events: each part comes back as an event of the stream whose Data holds
// its fields. Whether a subject is forgotten is asked of the erasure
// ledger, in one query, as reads of events learn it from their rows.
func (s *Store) OpenDerived(ctx context.Context, streamID string, parts []DerivedPart, access Access) ([]RecordedEvent, error) {
	var refs []keystore.Ref
	for _, p := range parts {
		for _, r := range p.SubjectRefs {
			if !slices.Contains(refs, keystore.Ref(r)) {
				refs = append(refs, keystore.Ref(r))
			}
		}
	}
	erased := map[keystore.Ref]bool{}
	if len(refs) > 0 {
		var err error
		if erased, err = s.ledger.Erased(ctx, refs); err != nil {
			return nil, err
		}
	}
	events := make([]eventstore.RecordedEvent, len(parts))
	for i, p := range parts {
		data, err := json.Marshal(p.Fields)
		if err != nil {
			return nil, err
		}
		events[i] = eventstore.RecordedEvent{StreamID: streamID, ID: p.EventID, Data: data, SubjectRefs: p.SubjectRefs}
		for _, r := range p.SubjectRefs {
			if erased[keystore.Ref(r)] {
				events[i].ErasedRefs = append(events[i].ErasedRefs, r)
			}
		}
	}
	return s.open(ctx, s.newOpening(access), events) // the ledger was just asked
}
