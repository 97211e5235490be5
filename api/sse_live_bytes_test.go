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

// openBatches passes every call through to the real store and records the
// stored sizes of the batches a subscription's live phase opens (sendLive
// opens each batch it sends, once).
type openBatches struct {
	api.Events
	mu      sync.Mutex
	batches [][]int
}

func (o *openBatches) Open(ctx context.Context, events []eventstore.RecordedEvent, access forgettable.Access) ([]forgettable.RecordedEvent, error) {
	sizes := make([]int, len(events))
	for i, e := range events {
		sizes[i] = e.Size
	}
	o.mu.Lock()
	o.batches = append(o.batches, sizes)
	o.mu.Unlock()
	return o.Events.Open(ctx, events, access)
}

// Limits.MaxPageBytes says each batch of a subscription ends after the
// event that brings it to the bound (docs/api.md: "Subscriptions read in
// batches bounded the same way"), in the live phase too. (Found by review:
// the live phase's store reads were bounded by a fixed 16 MiB and
// nextBatch by 500 events only, so an operator's smaller bound was ignored
// once a subscriber was live.)
func TestLiveSubscriptionBatchesAreBoundedInBytes(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	tk := d.tokens(d.server())
	ctx := testenv.Context(t)
	size := appendSized(t, d, tk.writer, "order-0", 1)
	maxBytes := 3 * size

	spy := &openBatches{}
	hs := d.server(withLimits(func(l *api.Limits) { l.MaxPageBytes = maxBytes }), func(o *api.Options) {
		spy.Events = o.Events
		o.Events = spy
	})
	reader := client.New(hs.URL, tk.secrets[wire.RoleReader], hs.Client())
	sub, err := reader.SubscribeAll(ctx, 0, "", nil, []string{"order"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for {
		ev, err := sub.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == "caught-up" {
			break
		}
	}
	// Live: ten events of the same size in one append.
	var evs []wire.NewEvent
	for i := range 10 {
		evs = append(evs, sizedEvent(i+1))
	}
	if _, err := tk.writer.Append(ctx, "order-1", wire.Exact(-1), evs...); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 10; {
		ev, err := sub.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == "" {
			got++
		}
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	for _, b := range spy.batches {
		total := 0
		for _, s := range b {
			total += s
		}
		if len(b) > 0 && total-b[len(b)-1] >= maxBytes {
			t.Errorf("a live batch of %d events, %d bytes stored, with MaxPageBytes %d (events of %d bytes): want it to end at the event that reaches the bound (3 events)",
				len(b), total, maxBytes, size)
		}
	}
}
