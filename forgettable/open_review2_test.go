package forgettable_test

import (
	"encoding/json"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// An event with the personal data of two subjects, read by a process whose
// cache holds neither key: the first sealed field defers the event, the
// scan stops there, and the second subject's key is never asked for.
func TestReview2TwoSubjectsColdCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.instance()
	ctx := testenv.Context(t)
	ev := forgettable.Event{
		EventData: eventstore.EventData{ID: eventstore.NewEventID(), Type: "transfer",
			Data: json.RawMessage(`{"from":"Ann","to":"Bob"}`)},
		PersonalData: []forgettable.PersonalData{
			{Subject: "ann@example.com", Paths: []string{"/from"}},
			{Subject: "bob@example.com", Paths: []string{"/to"}},
		},
	}
	if _, err := w.Append(ctx, "transfer-1", eventstore.NoStream, ev); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		read func(s *instance) ([]forgettable.RecordedEvent, error)
	}{
		{"ReadStream (streaming path)", func(s *instance) ([]forgettable.RecordedEvent, error) {
			return s.ReadStream(ctx, "transfer-1", eventstore.ReadStreamOptions{}, forgettable.Personal)
		}},
		{"ReadStream (Open path)", func(s *instance) ([]forgettable.RecordedEvent, error) {
			return s.ReadStream(ctx, "transfer-1", eventstore.ReadStreamOptions{Limit: 10}, forgettable.Personal)
		}},
		{"Open", func(s *instance) ([]forgettable.RecordedEvent, error) {
			raw, err := s.Events().ReadStream(ctx, "transfer-1", eventstore.ReadStreamOptions{})
			if err != nil {
				return nil, err
			}
			return s.Open(ctx, raw, forgettable.Personal)
		}},
	} {
		cold := e.instance()
		evs, err := tc.read(cold)
		if err != nil {
			t.Errorf("%s, cold cache: %v", tc.name, err)
			continue
		}
		if got := string(evs[0].Data); got != `{"from":"Ann","to":"Bob"}` && got != `{"from": "Ann", "to": "Bob"}` {
			t.Errorf("%s: data = %s", tc.name, got)
		}
	}
}
