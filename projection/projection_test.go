package projection_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
)

func stateAt(t *testing.T, events []forgettable.RecordedEvent, version int) (projection.State, map[string]any) {
	t.Helper()
	f := projection.NewFold("lead-12")
	for _, e := range events[:version+1] {
		if err := f.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	s := f.State()
	var m map[string]any
	if err := json.Unmarshal(s.State, &m); err != nil {
		t.Fatalf("state %s: %v", s.State, err)
	}
	return s, m
}

// The seed's lead at version 2 and 6, as mission.md tells it.
func TestGenericFoldSeedLead(t *testing.T) {
	events := seedLead(false)
	s, m := stateAt(t, events, 2)
	if m["first-name"] != "Casey" || m["last-name"] != "David" || m["phone-number"] != "555-2951" || m["followup-on"] != "2020-05-27T12:00:00.00Z" || s.Version != 2 {
		t.Errorf("version 2: %v", m)
	}
	if !reflect.DeepEqual(s.EventTypes, []string{"lead-initialized", "contacted", "followup-set"}) || !s.UpdatedAt.Equal(events[2].RecordedAt) {
		t.Errorf("version 2: types %v, updated %v", s.EventTypes, s.UpdatedAt)
	}
	_, m = stateAt(t, events, 6)
	if m["last-name"] != "Davis" || m["phone-number"] != "555-8101" || m["status"] != "converted" || m["timestamp"] != "2020-05-27T12:38:44.12Z" {
		t.Errorf("version 6: %v", m)
	}
	if s, _ := stateAt(t, events, 0); len(s.Redacted) != 0 {
		t.Errorf("redacted %v", s.Redacted)
	}
}

// After the erasure the state keeps its shape: personal fields null,
// listed with the version their (forgotten) value came from.
func TestGenericFoldForgotten(t *testing.T) {
	s, m := stateAt(t, seedLead(true), 6)
	if v, ok := m["first-name"]; !ok || v != nil || m["status"] != "converted" {
		t.Errorf("state %v", m)
	}
	want := []projection.Redaction{{"/first-name", "forgotten", 3}, {"/last-name", "forgotten", 3}, {"/phone-number", "forgotten", 3}}
	if !reflect.DeepEqual(s.Redacted, want) {
		t.Errorf("redacted %v, want %v", s.Redacted, want)
	}
	// A later plain write of a field replaces the redacted value.
	events := seedLead(true)
	events = append(events, forgettable.RecordedEvent{RecordedEvent: eventstore.RecordedEvent{Version: 7, Type: "renamed", ID: eventstore.NewEventID(),
		Data: json.RawMessage(`{"last-name":"Smith"}`)}})
	s, m = stateAt(t, events, 7)
	if m["last-name"] != "Smith" || len(s.Redacted) != 2 {
		t.Errorf("after a new write: %v %v", m, s.Redacted)
	}
}

func TestHistorySeedLead(t *testing.T) {
	h, err := projection.HistoryOf("lead-12", seedLead(false))
	if err != nil {
		t.Fatal(err)
	}
	values := func(path string) []string {
		var out []string
		for _, a := range h.Fields[path] {
			out = append(out, string(a.Value))
		}
		return out
	}
	if got := values("/last-name"); !reflect.DeepEqual(got, []string{`"David"`, `"Davis"`}) {
		t.Errorf("last names %v", got)
	}
	if got := values("/phone-number"); !reflect.DeepEqual(got, []string{`"555-2951"`, `"555-8101"`}) {
		t.Errorf("phones %v", got)
	}
	if got := values("/first-name"); !reflect.DeepEqual(got, []string{`"Casey"`}) {
		t.Errorf("first names %v (an unchanged value appears once)", got)
	}
	if a := h.Fields["/last-name"][1]; a.Version != 3 || h.Version != 6 || len(h.Redacted) != 0 {
		t.Errorf("Davis appeared at %d; history at %d; redacted %v", a.Version, h.Version, h.Redacted)
	}

	f, err := projection.HistoryOf("lead-12", seedLead(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/first-name", "/last-name", "/phone-number"} {
		if len(f.Fields[p]) != 2 || string(f.Fields[p][0].Value) != "null" || string(f.Fields[p][1].Value) != "null" {
			t.Errorf("%s after erasure: %+v", p, f.Fields[p])
		}
	}
	if len(f.Redacted) != 6 || f.Redacted[0].Reason != "forgotten" {
		t.Errorf("redacted %v", f.Redacted)
	}
}

// A fold continued from its snapshot ends where the uninterrupted fold
// does, field sources included.
func TestSnapshotRoundTrip(t *testing.T) {
	events := seedLead(false)
	whole := projection.NewFold("lead-12")
	half := projection.NewFold("lead-12")
	for i, e := range events {
		if err := whole.Apply(e); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			_ = half.Apply(e)
		}
	}
	raw, err := json.Marshal(half.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap projection.Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		t.Fatal(err)
	}
	cont, err := projection.FoldFrom(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events[3:] {
		if err := cont.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	a, b := whole.State(), cont.State()
	if string(a.State) != string(b.State) || a.Version != b.Version || !reflect.DeepEqual(a.EventTypes, b.EventTypes) || !a.UpdatedAt.Equal(b.UpdatedAt) {
		t.Errorf("continued %+v, whole %+v", b, a)
	}
	if !reflect.DeepEqual(whole.Snapshot(), cont.Snapshot()) {
		t.Errorf("snapshots differ:\n%+v\n%+v", whole.Snapshot(), cont.Snapshot())
	}
}
