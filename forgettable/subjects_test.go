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
func TestTwoSubjectsColdCache(t *testing.T) {
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
		if m := decode(t, evs[0].Data); m["from"] != "Ann" || m["to"] != "Bob" || len(evs[0].Redacted) != 0 {
			t.Errorf("%s: data = %s, redacted %v", tc.name, evs[0].Data, evs[0].Redacted)
		}
	}
}

// sameAsStored compares the set of subject references and the set of
// sealed paths, but not which subject each path is sealed for: a "retry"
// that declares the fields the other way round is accepted as a duplicate,
// although erasing bob would now leave the field the retry says is bob's
// readable.
func TestRetryWithSwappedSubjectsIsNotADuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.instance()
	ctx := testenv.Context(t)
	id := eventstore.NewEventID()
	data := json.RawMessage(`{"from":"Ann","to":"Bob"}`)
	first := forgettable.Event{EventData: eventstore.EventData{ID: id, Type: "transfer", Data: data},
		PersonalData: []forgettable.PersonalData{
			{Subject: "ann@example.com", Paths: []string{"/from"}},
			{Subject: "bob@example.com", Paths: []string{"/to"}},
		}}
	if _, err := s.Append(ctx, "transfer-2", eventstore.NoStream, first); err != nil {
		t.Fatal(err)
	}
	swapped := first
	swapped.PersonalData = []forgettable.PersonalData{
		{Subject: "ann@example.com", Paths: []string{"/to"}},
		{Subject: "bob@example.com", Paths: []string{"/from"}},
	}
	res, err := s.Append(ctx, "transfer-2", eventstore.NoStream, swapped)
	if err == nil {
		t.Fatalf("append with the subjects swapped = %+v, nil; want ErrDuplicateEventID", res)
	}
}
