package lead

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
)

// DefaultMaxAttempts is the number of appends Handle tries per command when
// Handler.MaxAttempts is 0.
const DefaultMaxAttempts = 3

// Handler runs commands on leads kept in Lethe.
type Handler struct {
	// Client calls Lethe with a token that has the writer and pii-reader
	// roles.
	Client *client.Client
	// Subject returns the data subject whose personal data a lead's names
	// and phone numbers are: the person's id in your system, e.g. the e-mail
	// address the lead came with. It must give the same subject for every
	// event of a stream: erasing that subject then forgets all of them.
	Subject func(streamID string) string
	// MaxAttempts bounds the appends of one command when concurrent
	// writers keep getting in first (0: DefaultMaxAttempts).
	MaxAttempts int
}

// Result is what Handle did.
type Result struct {
	// Lead is the lead after the command (or as last loaded, on an
	// error).
	Lead Lead
	// Events are the events appended; none when the command had nothing
	// to do.
	Events []Event
	// Attempts is the number of appends tried: 2 or more when concurrent
	// events were merged.
	Attempts int
}

// Handle runs the aggregate loop for one command on the lead in streamID:
// load and fold its events, decide, append with the expected version = the
// version loaded. On a version conflict it folds the concurrent events;
// if they change none of the facts the command changes, it decides again
// on top of them and appends again, up to MaxAttempts appends. Otherwise
// it returns a *ConflictError.
//
// The command's own errors (ErrNotFound, ErrConverted...) and
// ErrRestricted come back wrapped with the stream id; errors the server
// answers are *wire.Problem (client.ProblemType(err) == "subject-erased"
// when the lead's person was erased and the command carries their data).
func (h *Handler) Handle(ctx context.Context, streamID string, cmd Command) (Result, error) {
	l, err := h.Load(ctx, streamID)
	if err != nil {
		return Result{}, err
	}
	maxAttempts := h.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	for attempt := 1; ; attempt++ {
		events, err := Decide(l, cmd)
		if err != nil {
			return Result{Lead: l, Attempts: attempt - 1}, fmt.Errorf("%s: %w", streamID, err)
		}
		if len(events) == 0 {
			return Result{Lead: l, Attempts: attempt - 1}, nil
		}
		after, ours, err := foldChanges(l, events)
		if err != nil {
			return Result{Lead: l, Attempts: attempt - 1}, fmt.Errorf("%s: %w", streamID, err)
		}
		out, err := h.newEvents(streamID, events)
		if err != nil {
			return Result{Lead: l, Attempts: attempt - 1}, err
		}
		_, err = h.Client.Append(ctx, streamID, wire.Exact(l.Version), out...)
		if err == nil {
			return Result{Lead: after, Events: events, Attempts: attempt}, nil
		}
		var conflict *client.Conflict
		if !errors.As(err, &conflict) {
			return Result{Lead: l, Attempts: attempt}, fmt.Errorf("append to %s: %w", streamID, err)
		}
		concurrent, err := h.concurrent(ctx, streamID, l.Version, conflict)
		if err != nil {
			return Result{Lead: l, Attempts: attempt}, err
		}
		current, theirs, err := foldChanges(l, concurrent)
		if err != nil {
			return Result{Lead: l, Attempts: attempt}, fmt.Errorf("%s: %w", streamID, err)
		}
		var both []Fact
		for _, f := range ours {
			if slices.Contains(theirs, f) {
				both = append(both, f)
			}
		}
		if len(both) > 0 {
			return Result{Lead: current, Attempts: attempt},
				&ConflictError{StreamID: streamID, Facts: both, Concurrent: concurrent, Current: current, conflict: conflict}
		}
		if attempt >= maxAttempts {
			return Result{Lead: current, Attempts: attempt},
				fmt.Errorf("%s: still conflicting after %d appends: %w", streamID, attempt, conflict)
		}
		l = current // and decide again on top
	}
}

// Load reads a lead's stream and folds it. A stream without events is a
// lead that does not exist (version -1).
func (h *Handler) Load(ctx context.Context, streamID string) (Lead, error) {
	events, err := h.Events(ctx, streamID)
	if err != nil {
		return New(), err
	}
	l, err := Fold(events...)
	if err != nil {
		return New(), fmt.Errorf("%s: %w", streamID, err)
	}
	return l, nil
}

// Events reads a lead's events (none if the stream does not exist). Fold
// a prefix of them to see the lead at a past version.
func (h *Handler) Events(ctx context.Context, streamID string) ([]Event, error) {
	return h.readFrom(ctx, streamID, 0)
}

// readFrom reads a stream's events from a version on, page by page.
func (h *Handler) readFrom(ctx context.Context, streamID string, from int64) ([]Event, error) {
	var events []Event
	for {
		page, err := h.Client.ReadStream(ctx, streamID, client.ReadOptions{From: client.Version(from)})
		if client.ProblemType(err) == "stream-not-found" {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", streamID, err)
		}
		for _, we := range page.Events {
			e, err := fromWire(we)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", streamID, err)
			}
			events = append(events, e)
		}
		if page.Next == nil {
			return events, nil
		}
		from = *page.Next
	}
}

// concurrent returns the events appended after version, as the conflict
// answer carries them (read from the stream if it had to leave some out).
func (h *Handler) concurrent(ctx context.Context, streamID string, version int64, c *client.Conflict) ([]Event, error) {
	if c.Truncated || len(c.Events) == 0 {
		return h.readFrom(ctx, streamID, version+1)
	}
	events := make([]Event, 0, len(c.Events))
	for _, we := range c.Events {
		e, err := fromWire(we)
		if err != nil {
			return nil, fmt.Errorf("%s: concurrent events: %w", streamID, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// fromWire decodes an event read from Lethe. Personal data hidden from the
// token (restricted) is ErrRestricted: the lead cannot be decided on.
func fromWire(we wire.Event) (Event, error) {
	e := Event{Version: we.Version, Type: we.Type}
	if err := json.Unmarshal(we.Data, &e.Data); err != nil {
		return e, fmt.Errorf("event %d (%s): %w", we.Version, we.Type, err)
	}
	for _, r := range we.Redacted {
		if r.Reason == wire.ReasonRestricted {
			return e, ErrRestricted
		}
		if e.Redacted == nil {
			e.Redacted = map[string]string{}
		}
		e.Redacted[r.Path] = r.Reason
	}
	return e, nil
}

// newEvents turns decided events into an append's events, with their
// name and phone fields declared personal data of the lead's subject.
func (h *Handler) newEvents(streamID string, events []Event) ([]wire.NewEvent, error) {
	out := make([]wire.NewEvent, len(events))
	for i, e := range events {
		data, err := json.Marshal(e.Data)
		if err != nil {
			return nil, err
		}
		out[i] = wire.NewEvent{ID: eventstore.NewEventID().String(), Type: e.Type, Data: data}
		if paths := e.personal(); len(paths) > 0 {
			subject := ""
			if h.Subject != nil {
				subject = h.Subject(streamID)
			}
			if subject == "" {
				return nil, fmt.Errorf("%s: %s carries personal data but the Handler has no subject for the lead", streamID, e.Type)
			}
			out[i].PersonalData = []wire.PersonalData{{Subject: subject, Paths: paths}}
		}
	}
	return out, nil
}
