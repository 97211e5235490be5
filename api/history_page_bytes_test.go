package api_test

import (
	"context"
	"sync"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// streamPages passes every call through to the real store and records the
// stored sizes of the pages of stream reads.
type streamPages struct {
	api.Events
	mu    sync.Mutex
	pages [][]int
}

func (s *streamPages) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, access forgettable.Access) ([]forgettable.RecordedEvent, error) {
	events, err := s.Events.ReadStream(ctx, streamID, opts, access)
	sizes := make([]int, len(events))
	for i, e := range events {
		sizes[i] = e.Size
	}
	s.mu.Lock()
	s.pages = append(s.pages, sizes)
	s.mu.Unlock()
	return events, err
}

// MaxPageBytes bounds "a read's memory, whatever its limit" (api/limits.go)
// and docs/api.md gives the reason: "a page of 1,000 events of 1 MiB each is
// a gigabyte in memory". The folds (GET /v1/streams/{id}/history and
// /state, any reader token) read their stream in pages bounded the same
// way. (Found by review: readUpTo read pages of 1,000 events with no
// byte bound.)
func TestHistoryReadsPagesBoundedInBytes(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	tk := d.tokens(d.server())
	ctx := testenv.Context(t)
	maxBytes := 3 * appendSized(t, d, tk.writer, "order-1", 10)
	spy := &streamPages{}
	hs := d.server(withLimits(func(l *api.Limits) { l.MaxPageBytes = maxBytes }), func(o *api.Options) {
		spy.Events = o.Events
		o.Events = spy
	})
	reader := client.New(hs.URL, tk.secrets[wire.RoleReader], hs.Client())
	h, err := reader.History(ctx, "order-1", client.StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 9 {
		t.Fatalf("history at version %d, want 9", h.Version)
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	for _, p := range spy.pages {
		total := 0
		for _, s := range p {
			total += s
		}
		if len(p) > 0 && total-p[len(p)-1] >= maxBytes {
			t.Errorf("the history route read a page of %d events, %d bytes stored, with MaxPageBytes %d", len(p), total, maxBytes)
		}
	}
}
