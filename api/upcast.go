package api

import (
	"context"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
)

// upcasting is Events with the upcasters applied to everything read: reads,
// the global log, conflicts, subscriptions, state and history all see
// every event in its type's current shape.
type upcasting struct {
	Events
	u *projection.Upcasters
}

func (e upcasting) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, access forgettable.Access) ([]forgettable.RecordedEvent, error) {
	events, err := e.Events.ReadStream(ctx, streamID, opts, access)
	if err != nil {
		return nil, err
	}
	return e.u.UpcastAll(events)
}

func (e upcasting) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions, access forgettable.Access) (forgettable.Page, error) {
	page, err := e.Events.ReadAll(ctx, opts, access)
	if err != nil {
		return page, err
	}
	page.Events, err = e.u.UpcastAll(page.Events)
	return page, err
}

func (e upcasting) Open(ctx context.Context, events []eventstore.RecordedEvent, access forgettable.Access) ([]forgettable.RecordedEvent, error) {
	opened, err := e.Events.Open(ctx, events, access)
	if err != nil {
		return nil, err
	}
	return e.u.UpcastAll(opened)
}
