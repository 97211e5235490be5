package postgres_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	"github.com/lethe-store/lethe/internal/testenv"
)

// ReadAllEach reads $all in position order up to its limit; WithoutData
// leaves user events' data out and keeps system streams' (erasure records
// are read by projections that read nothing else).
func TestReadAllEach(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	for _, stream := range []string{"order-1", "$lethe-test", "order-2", "order-1"} {
		sealed := eventstoretest.Event("placed", "n", 2)
		sealed.SubjectRefs = []string{strings.Repeat("ab", 32)} // as if a field were sealed for a subject
		if _, err := s.AppendToStream(ctx, stream, eventstore.Any, eventstoretest.Event("placed", "n", 1), sealed); err != nil {
			t.Fatal(err)
		}
	}
	// The horizon is the cluster's: a transaction of a test running
	// beside this one can hold the events back for a moment.
	var all []eventstore.RecordedEvent
	var n int
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		all = all[:0]
		n, err = s.ReadAllEach(ctx, eventstore.ReadAllEachOptions{Limit: 100}, func(e eventstore.RecordedEvent) error {
			all = append(all, e)
			return nil
		})
		if err != nil || n == 8 {
			break
		}
	}
	if err != nil || n != 8 || len(all) != 8 {
		t.Fatalf("read %d (%d handed over), %v; want 8", n, len(all), err)
	}
	for i, e := range all {
		if i > 0 && e.Position <= all[i-1].Position {
			t.Fatalf("event %d at position %d after %d", i, e.Position, all[i-1].Position)
		}
		if len(e.Data) == 0 || len(e.Metadata) == 0 || (i%2 == 1) != (len(e.SubjectRefs) == 1) {
			t.Fatalf("event %d: data %s, metadata %s, subject refs %v", i, e.Data, e.Metadata, e.SubjectRefs)
		}
	}

	var bare []eventstore.RecordedEvent
	n, err = s.ReadAllEach(ctx, eventstore.ReadAllEachOptions{After: all[0].Position, Limit: 5, WithoutData: true}, func(e eventstore.RecordedEvent) error {
		bare = append(bare, e)
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("read %d, %v; want the limit, 5", n, err)
	}
	for i, e := range bare {
		want := all[i+1]
		if e.ID != want.ID || e.StreamID != want.StreamID || e.Version != want.Version || e.Position != want.Position || e.Type != want.Type || !e.RecordedAt.Equal(want.RecordedAt) {
			t.Fatalf("event %d: %+v, want the envelope of %+v", i, e, want)
		}
		system := eventstore.IsSystemStream(e.StreamID)
		if system && (!bytes.Equal(e.Data, want.Data) || !bytes.Equal(e.Metadata, want.Metadata)) {
			t.Errorf("system event %d lost its data: %s", i, e.Data)
		}
		if !system && (e.Data != nil || e.Metadata != nil || e.SubjectRefs != nil || e.ErasedRefs != nil) {
			t.Errorf("user event %d came with data: %s %s", i, e.Data, e.Metadata)
		}
	}

	stop := errors.New("stop")
	calls := 0
	if _, err := s.ReadAllEach(ctx, eventstore.ReadAllEachOptions{Limit: 100}, func(eventstore.RecordedEvent) error {
		calls++
		return stop
	}); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("fn's error: got %v after %d calls, want it at once", err, calls)
	}
	if _, err := s.ReadAllEach(ctx, eventstore.ReadAllEachOptions{}, func(eventstore.RecordedEvent) error { return nil }); err == nil {
		t.Error("a read without a limit was accepted")
	}
}
