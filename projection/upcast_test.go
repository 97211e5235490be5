package projection_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
)

// The seed's contact details, evolved:
//
//	v1 {"first-name", "last-name", "phone-number"}  (the seed as stored)
//	v2 {"name": {"first", "last"}, "phone"}
//	v3 v2 + "phone-type" ("unknown" for older events)
//
// lead-initialized carries the same fields and evolves with it.
var evolvedTypes = []string{"lead-initialized", "contact-details-updated"}

// nameV2 restructures the name and renames the phone number. It re-points
// the redactions in place, on the slice it is given: Upcast must have
// handed it a copy.
func nameV2(data json.RawMessage, redacted []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, errors.New("data is not an object")
	}
	name, err := json.Marshal(map[string]json.RawMessage{"first": m["first-name"], "last": m["last-name"]})
	if err != nil {
		return nil, nil, err
	}
	m["name"], m["phone"] = name, m["phone-number"]
	delete(m, "first-name")
	delete(m, "last-name")
	delete(m, "phone-number")
	out, err := json.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	moves := map[string]string{"/first-name": "/name/first", "/last-name": "/name/last", "/phone-number": "/phone"}
	for i, r := range redacted {
		if to, ok := moves[r.Path]; ok {
			redacted[i].Path = to
		}
	}
	return out, redacted, nil
}

// phoneTypeV3 adds the phone's type, unknown for events written before.
func phoneTypeV3(data json.RawMessage, redacted []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, errors.New("data is not an object")
	}
	if _, ok := m["phone-type"]; !ok {
		m["phone-type"] = json.RawMessage(`"unknown"`)
	}
	out, err := json.Marshal(m)
	return out, redacted, err
}

func mustUpcasters(t testing.TB) *projection.Upcasters {
	t.Helper()
	var us []projection.Upcaster
	for _, typ := range evolvedTypes {
		// Registered in any order.
		us = append(us, projection.Upcaster{Type: typ, From: 2, Up: phoneTypeV3}, projection.Upcaster{Type: typ, From: 1, Up: nameV2})
	}
	u, err := projection.NewUpcasters(us...)
	if err != nil {
		t.Fatalf("NewUpcasters: %v", err)
	}
	return u
}

// seedLead returns the seed's lead stream as read; forgotten, casey's
// fields are null and redacted as after her erasure.
func seedLead(forgotten bool) []forgettable.RecordedEvent {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []forgettable.RecordedEvent
	for i, e := range eventstoretest.SeedLead {
		data := e.Data
		var red []forgettable.Redaction
		if forgotten && (i == 0 || i == 3) {
			var m map[string]any
			_ = json.Unmarshal([]byte(data), &m)
			for _, f := range []string{"first-name", "last-name", "phone-number"} {
				m[f] = nil
				red = append(red, forgettable.Redaction{Path: "/" + f, Reason: forgettable.ReasonForgotten})
			}
			b, _ := json.Marshal(m)
			data = string(b)
		}
		out = append(out, event(i, e.Type, data, "", red))
		out[i].RecordedAt = t0.Add(time.Duration(i) * time.Hour)
	}
	return out
}

func event(version int, typ, data, metadata string, red []forgettable.Redaction) forgettable.RecordedEvent {
	e := forgettable.RecordedEvent{RecordedEvent: eventstore.RecordedEvent{
		StreamID: "lead-12", Version: int64(version), Position: int64(100 + version), ID: eventstore.NewEventID(),
		Type: typ, Data: json.RawMessage(data)}, Redacted: red}
	if metadata != "" {
		e.Metadata = json.RawMessage(metadata)
	}
	return e
}

func mustUpcast(t *testing.T, u *projection.Upcasters, e forgettable.RecordedEvent) forgettable.RecordedEvent {
	t.Helper()
	got, err := u.Upcast(e)
	if err != nil {
		t.Fatalf("Upcast(%s v%d): %v", e.Type, e.Version, err)
	}
	return got
}

func jsonEqual(t *testing.T, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

const (
	contactV2 = `{"name":{"first":"Casey","last":"Davis"},"phone":"555-8101","timestamp":"2020-05-20T12:32:08.24Z"}`
	contactV3 = `{"name":{"first":"Casey","last":"Davis"},"phone":"555-8101","phone-type":"unknown","timestamp":"2020-05-20T12:32:08.24Z"}`
	mobileV3  = `{"name":{"first":"Casey","last":"Davis"},"phone":"555-8101","phone-type":"mobile","timestamp":"2020-05-20T12:32:08.24Z"}`
)

func TestUpcastersCurrent(t *testing.T) {
	u := mustUpcasters(t)
	for typ, want := range map[string]int{"contact-details-updated": 3, "lead-initialized": 3, "contacted": 1, "": 1} {
		if got := u.Current(typ); got != want {
			t.Errorf("Current(%q) = %d, want %d", typ, got, want)
		}
	}
	var none *projection.Upcasters
	if got := none.Current("contact-details-updated"); got != 1 {
		t.Errorf("nil Current = %d, want 1", got)
	}
}

// v1 and v2 events read as v3; a v3 event is returned as stored.
func TestUpcastVersions(t *testing.T) {
	u := mustUpcasters(t)
	v1 := eventstoretest.SeedLead[3].Data
	tests := []struct {
		name, data, metadata string
		wantData, wantMeta   string
	}{
		{"v1 without schemaVersion", v1, "", contactV3, `{"schemaVersion":3}`},
		{"v1 with empty metadata", v1, `{}`, contactV3, `{"schemaVersion":3}`},
		{"v1 declared", v1, `{"schemaVersion":1}`, contactV3, `{"schemaVersion":3}`},
		{"v2", contactV2, `{"schemaVersion":2}`, contactV3, `{"schemaVersion":3}`},
		{"v3", mobileV3, `{"schemaVersion":3}`, mobileV3, `{"schemaVersion":3}`},
		{"newer writer", `{"whatever":1}`, `{"schemaVersion":4}`, `{"whatever":1}`, `{"schemaVersion":4}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := event(3, "contact-details-updated", tt.data, tt.metadata, nil)
			got := mustUpcast(t, u, e)
			if !jsonEqual(t, got.Data, []byte(tt.wantData)) {
				t.Errorf("data = %s, want %s", got.Data, tt.wantData)
			}
			if string(got.Metadata) != tt.wantMeta {
				t.Errorf("metadata = %s, want %s", got.Metadata, tt.wantMeta)
			}
			if got.ID != e.ID || got.Version != e.Version || got.Position != e.Position || got.Type != e.Type || got.StreamID != e.StreamID {
				t.Errorf("event identity changed: got %+v, want %+v", got.RecordedEvent, e.RecordedEvent)
			}
			if len(got.Redacted) != 0 {
				t.Errorf("redacted = %v, want none", got.Redacted)
			}
		})
	}
}

// An event at the current version, or of a type without upcasters, is
// returned as it is: same bytes.
func TestUpcastUnchanged(t *testing.T) {
	u := mustUpcasters(t)
	for _, e := range []forgettable.RecordedEvent{
		event(3, "contact-details-updated", mobileV3, `{"schemaVersion": 3, "correlationId": "c-1"}`, nil),
		event(1, "contacted", `{"timestamp":"2020-05-20T12:32:08.24Z"}`, "", nil),
		// Metadata of types without upcasters is not even read.
		event(1, "contacted", `{"timestamp":"2020-05-20T12:32:08.24Z"}`, `{"schemaVersion":"two"}`, nil),
	} {
		got := mustUpcast(t, u, e)
		if !reflect.DeepEqual(got, e) {
			t.Errorf("Upcast(%s %s) = %+v, want it unchanged", e.Type, e.Metadata, got)
		}
	}
}

// Other metadata keys keep their place and bytes; schemaVersion is set in
// place, or added last. Only the top-level key is the schema version.
func TestUpcastMetadata(t *testing.T) {
	u := mustUpcasters(t)
	v1 := eventstoretest.SeedLead[3].Data
	tests := []struct{ metadata, want string }{
		{`{"correlationId":"c-1","schemaVersion":1,"tags":["a<b",2.50],"nested":{"schemaVersion":9}}`,
			`{"correlationId":"c-1","schemaVersion":3,"tags":["a<b",2.50],"nested":{"schemaVersion":9}}`},
		{` { "correlationId" : "c-1" , "causationId": null } `, `{"correlationId":"c-1","causationId":null,"schemaVersion":3}`},
		{`{"schemaVersion":2,"x":{"y":[1,{"z":true}]}}`, `{"schemaVersion":3,"x":{"y":[1,{"z":true}]}}`},
		{`{"a&b":"<tag>"}`, `{"a&b":"<tag>","schemaVersion":3}`},
		{`null`, `{"schemaVersion":3}`},
	}
	for _, tt := range tests {
		data := v1
		if strings.Contains(tt.metadata, `"schemaVersion":2`) {
			data = contactV2
		}
		got := mustUpcast(t, u, event(3, "contact-details-updated", data, tt.metadata, nil))
		if string(got.Metadata) != tt.want {
			t.Errorf("metadata %s upcast = %s, want %s", tt.metadata, got.Metadata, tt.want)
		}
	}
}

func TestSchemaVersion(t *testing.T) {
	for _, tt := range []struct {
		metadata string
		want     int
	}{
		{"", 1}, {"null", 1}, {"{}", 1}, {`{"correlationId":"c-1"}`, 1},
		{`{"schemaVersion":1}`, 1}, {`{"schemaVersion": 12 }`, 12}, {`{"nested":{"schemaVersion":5}}`, 1},
		{`{"schemaVersion":1,"schemaVersion":2}`, 2}, // the last wins, as in jsonb
	} {
		got, err := projection.SchemaVersion(json.RawMessage(tt.metadata))
		if err != nil || got != tt.want {
			t.Errorf("SchemaVersion(%s) = %d, %v, want %d", tt.metadata, got, err, tt.want)
		}
	}
}

// A schemaVersion that is not a positive integer is an error, for
// SchemaVersion and for Upcast of a type with upcasters.
func TestBadSchemaVersion(t *testing.T) {
	u := mustUpcasters(t)
	for _, metadata := range []string{
		`{"schemaVersion":0}`, `{"schemaVersion":-1}`, `{"schemaVersion":"2"}`, `{"schemaVersion":1.5}`,
		`{"schemaVersion":2.0}`, `{"schemaVersion":1e0}`, `{"schemaVersion":01}`, `{"schemaVersion":null}`,
		`{"schemaVersion":true}`, `{"schemaVersion":[2]}`, `{"schemaVersion":99999999999999999999999}`,
		`[]`, `"v2"`, `{"schemaVersion":`, `{"schemaVersion":2}x`,
	} {
		if v, err := projection.SchemaVersion(json.RawMessage(metadata)); !errors.Is(err, projection.ErrBadSchemaVersion) {
			t.Errorf("SchemaVersion(%s) = %d, %v, want ErrBadSchemaVersion", metadata, v, err)
		}
		e := event(3, "contact-details-updated", eventstoretest.SeedLead[3].Data, metadata, nil)
		_, err := u.Upcast(e)
		if !errors.Is(err, projection.ErrBadSchemaVersion) {
			t.Errorf("Upcast with metadata %s: %v, want ErrBadSchemaVersion", metadata, err)
			continue
		}
		if !strings.Contains(err.Error(), e.ID.String()) || strings.Contains(err.Error(), "Casey") {
			t.Errorf("error %q: want the event id and no data", err)
		}
	}
}

// Redactions follow their fields: a forgotten v1 event reads as v3 with
// its nulls and redactions at the new paths.
func TestUpcastKeepsRedactions(t *testing.T) {
	u := mustUpcasters(t)
	forgotten := seedLead(true)[3]
	before := slices.Clone(forgotten.Redacted)
	beforeData := string(forgotten.Data)
	got := mustUpcast(t, u, forgotten)
	want := `{"name":{"first":null,"last":null},"phone":null,"phone-type":"unknown","timestamp":"2020-05-20T12:32:08.24Z"}`
	if !jsonEqual(t, got.Data, []byte(want)) {
		t.Errorf("data = %s, want %s", got.Data, want)
	}
	wantRed := []forgettable.Redaction{
		{Path: "/name/first", Reason: forgettable.ReasonForgotten},
		{Path: "/name/last", Reason: forgettable.ReasonForgotten},
		{Path: "/phone", Reason: forgettable.ReasonForgotten},
	}
	if !reflect.DeepEqual(got.Redacted, wantRed) {
		t.Errorf("redacted = %v, want %v", got.Redacted, wantRed)
	}
	// nameV2 re-points in place: the caller's event must not change.
	if !reflect.DeepEqual(forgotten.Redacted, before) || string(forgotten.Data) != beforeData || forgotten.Metadata != nil {
		t.Errorf("input changed: %s %s %v", forgotten.Data, forgotten.Metadata, forgotten.Redacted)
	}

	// One field restricted, the others visible: only it is redacted.
	partial := event(3, "contact-details-updated",
		`{"first-name":"Casey","last-name":"Davis","phone-number":null,"timestamp":"2020-05-20T12:32:08.24Z"}`, "",
		[]forgettable.Redaction{{Path: "/phone-number", Reason: forgettable.ReasonRestricted}})
	got = mustUpcast(t, u, partial)
	if want := []forgettable.Redaction{{Path: "/phone", Reason: forgettable.ReasonRestricted}}; !reflect.DeepEqual(got.Redacted, want) {
		t.Errorf("redacted = %v, want %v", got.Redacted, want)
	}
	var m map[string]any
	_ = json.Unmarshal(got.Data, &m)
	if m["phone"] != nil || m["name"].(map[string]any)["first"] != "Casey" {
		t.Errorf("data = %s", got.Data)
	}
}

func TestMoveAndDropRedactions(t *testing.T) {
	red := []forgettable.Redaction{
		{Path: "/address", Reason: "forgotten"}, {Path: "/address/city", Reason: "forgotten"},
		{Path: "/addresses", Reason: "restricted"}, {Path: "/phone", Reason: "forgotten"},
	}
	orig := slices.Clone(red)
	moved := projection.MoveRedactions(red, "/address", "/contact/home")
	want := []forgettable.Redaction{
		{Path: "/contact/home", Reason: "forgotten"}, {Path: "/contact/home/city", Reason: "forgotten"},
		{Path: "/addresses", Reason: "restricted"}, {Path: "/phone", Reason: "forgotten"},
	}
	if !reflect.DeepEqual(moved, want) {
		t.Errorf("MoveRedactions = %v, want %v", moved, want)
	}
	dropped := projection.DropRedactions(red, "/address")
	want = []forgettable.Redaction{{Path: "/addresses", Reason: "restricted"}, {Path: "/phone", Reason: "forgotten"}}
	if !reflect.DeepEqual(dropped, want) {
		t.Errorf("DropRedactions = %v, want %v", dropped, want)
	}
	if !reflect.DeepEqual(red, orig) {
		t.Errorf("input changed: %v", red)
	}
}

func TestNewUpcastersRefuses(t *testing.T) {
	up := func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
		return d, r, nil
	}
	tests := []struct {
		name string
		us   []projection.Upcaster
		msg  string
	}{
		{"no type", []projection.Upcaster{{From: 1, Up: up}}, "no type"},
		{"from 0", []projection.Upcaster{{Type: "t", From: 0, Up: up}}, "versions start at 1"},
		{"from -1", []projection.Upcaster{{Type: "t", From: -1, Up: up}}, "versions start at 1"},
		{"no Up", []projection.Upcaster{{Type: "t", From: 1}}, "no Up function"},
		{"duplicate", []projection.Upcaster{{Type: "t", From: 1, Up: up}, {Type: "t", From: 1, Up: up}}, "two upcasters for t from version 1"},
		{"gap", []projection.Upcaster{{Type: "t", From: 1, Up: up}, {Type: "t", From: 3, Up: up}}, "t has upcasters from versions [1 3] but none from version 2"},
		{"no version 1", []projection.Upcaster{{Type: "t", From: 2, Up: up}}, "none from version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := projection.NewUpcasters(tt.us...)
			if !errors.Is(err, projection.ErrInvalidUpcasters) || u != nil {
				t.Fatalf("NewUpcasters = %v, %v, want ErrInvalidUpcasters", u, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want it to say %q", err, tt.msg)
			}
		})
	}
	// Types are independent chains; none at all is fine.
	if _, err := projection.NewUpcasters(projection.Upcaster{Type: "a", From: 1, Up: up}, projection.Upcaster{Type: "b", From: 1, Up: up}); err != nil {
		t.Errorf("two types: %v", err)
	}
	if u, err := projection.NewUpcasters(); err != nil || u.Current("a") != 1 {
		t.Errorf("no upcasters: %v", err)
	}
}

// Upcast refuses output that would lose a redaction or misplace one, and
// wraps an upcaster's error; no error carries a data value.
func TestUpcastBadUpcaster(t *testing.T) {
	forgotten := seedLead(true)[3]
	tests := []struct {
		name string
		up   func(json.RawMessage, []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error)
		is   error
		msg  string
	}{
		{"redaction not re-pointed", func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			out, _, err := nameV2(d, nil) // moves the fields, forgets the redactions
			return out, r, err
		}, projection.ErrBadUpcast, "redaction /first-name points to no field"},
		{"value under a redaction", func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return json.RawMessage(`{"first-name":"Casey","last-name":null,"phone-number":null}`), r, nil
		}, projection.ErrBadUpcast, "redaction /first-name points to a value that is not null"},
		{"bad pointer", func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return d, []forgettable.Redaction{{Path: "first-name", Reason: "forgotten"}}, nil
		}, projection.ErrBadUpcast, "not a JSON Pointer"},
		{"not an object", func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return json.RawMessage(`["Casey"]`), nil, nil
		}, projection.ErrBadUpcast, "data is not a JSON object"},
		{"invalid JSON", func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return json.RawMessage(`{"a":`), nil, nil
		}, projection.ErrBadUpcast, "data is not a JSON object"},
		{"upcaster error", func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return nil, nil, errInvalidPhone
		}, errInvalidPhone, "contact-details-updated v1 to v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := projection.NewUpcasters(projection.Upcaster{Type: "contact-details-updated", From: 1, Up: tt.up})
			if err != nil {
				t.Fatal(err)
			}
			e := forgotten
			if tt.name == "not an object" || tt.name == "upcaster error" {
				e = seedLead(false)[3]
			}
			got, err := u.Upcast(e)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Upcast = %s, %v, want %v", got.Data, err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), e.ID.String()) {
				t.Errorf("error %q, want the event id and %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), "Casey") || strings.Contains(err.Error(), "555-8101") {
				t.Errorf("error %q carries data", err)
			}
			if _, err := u.UpcastAll([]forgettable.RecordedEvent{seedLead(false)[1], e}); !errors.Is(err, tt.is) {
				t.Errorf("UpcastAll: %v, want %v", err, tt.is)
			}
		})
	}
}

var errInvalidPhone = errors.New("phone number has no area code")

func TestNilUpcasters(t *testing.T) {
	var u *projection.Upcasters
	events := seedLead(true)
	for _, e := range events {
		got, err := u.Upcast(e)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("nil Upcast(%s) = %+v, %v", e.Type, got, err)
		}
	}
	got, err := u.UpcastAll(events)
	if err != nil || !reflect.DeepEqual(got, events) {
		t.Errorf("nil UpcastAll = %v, %v", got, err)
	}
}

// The generic fold over upcast events gives the v3 shape; after casey's
// erasure, the state's nulls are listed at their new paths.
func TestFoldUpcastSeedLead(t *testing.T) {
	u := mustUpcasters(t)
	events, err := u.UpcastAll(seedLead(false))
	if err != nil {
		t.Fatal(err)
	}
	f := projection.NewFold("lead-12")
	for _, e := range events {
		if err := f.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"name":{"first":"Casey","last":"Davis"},"phone":"555-8101","phone-type":"unknown","timestamp":"2020-05-27T12:38:44.12Z",
		"followup-on":"2020-05-27T12:00:00.00Z","payment-deadline":"2020-05-30T12:02:12.51Z","status":"converted"}`
	s := f.State()
	if !jsonEqual(t, s.State, []byte(want)) {
		t.Errorf("state = %s, want %s", s.State, want)
	}
	if bytes.Contains(s.State, []byte("first-name")) || len(s.Redacted) != 0 || s.Version != 6 {
		t.Errorf("state = %s, redacted %v, version %d", s.State, s.Redacted, s.Version)
	}

	events, err = u.UpcastAll(seedLead(true))
	if err != nil {
		t.Fatal(err)
	}
	f = projection.NewFold("lead-12")
	for _, e := range events {
		if err := f.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	s = f.State()
	wantRed := []projection.Redaction{
		{Path: "/name/first", Reason: forgettable.ReasonForgotten, Version: 3},
		{Path: "/name/last", Reason: forgettable.ReasonForgotten, Version: 3},
		{Path: "/phone", Reason: forgettable.ReasonForgotten, Version: 3},
	}
	if !reflect.DeepEqual(s.Redacted, wantRed) {
		t.Errorf("redacted = %v, want %v", s.Redacted, wantRed)
	}

	// The search projection finds every name the lead had, at the new path.
	h, err := projection.HistoryOf("lead-12", mustUpcastAll(t, u, seedLead(false)))
	if err != nil {
		t.Fatal(err)
	}
	var last []string
	for _, a := range h.Fields["/name/last"] {
		last = append(last, string(a.Value))
	}
	if want := []string{`"David"`, `"Davis"`}; !reflect.DeepEqual(last, want) {
		t.Errorf("history of /name/last = %v, want %v", last, want)
	}
}

func mustUpcastAll(t *testing.T, u *projection.Upcasters, events []forgettable.RecordedEvent) []forgettable.RecordedEvent {
	t.Helper()
	out, err := u.UpcastAll(events)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// One registry, shared events, many readers (run with -race).
func TestUpcastConcurrent(t *testing.T) {
	u := mustUpcasters(t)
	inputs := [][]forgettable.RecordedEvent{seedLead(false), seedLead(true)}
	var wants [][]forgettable.RecordedEvent
	for _, in := range inputs {
		wants = append(wants, mustUpcastAll(t, u, in))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := (g + i) % len(inputs)
				got, err := u.UpcastAll(inputs[k])
				if err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(got, wants[k]) {
					errs <- fmt.Errorf("goroutine %d: upcast differs", g)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkUpcast(b *testing.B) {
	u := mustUpcasters(b)
	e := seedLead(true)[3]
	e.Metadata = json.RawMessage(`{"correlationId":"c-1"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.Upcast(e); err != nil {
			b.Fatal(err)
		}
	}
}

// Redaction paths are JSON Pointers: escaped keys and array elements.
func TestUpcastRedactionPointers(t *testing.T) {
	same := func(d json.RawMessage, r []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
		return d, r, nil
	}
	u, err := projection.NewUpcasters(projection.Upcaster{Type: "t", From: 1, Up: same})
	if err != nil {
		t.Fatal(err)
	}
	data := `{"a/b":null,"phones":[null,"555-0100"],"c~d":{"e":null},"f":"x"}`
	for _, tt := range []struct {
		path string
		ok   bool
	}{
		{"/a~1b", true}, {"/phones/0", true}, {"/c~0d/e", true},
		{"/phones/1", false}, {"/phones/2", false}, {"/phones/00", false}, {"/phones/-", false},
		{"/c~2d", false}, {"/a/b", false}, {"/f/g", false}, {"", false},
	} {
		e := event(0, "t", data, "", []forgettable.Redaction{{Path: tt.path, Reason: forgettable.ReasonRestricted}})
		_, err := u.Upcast(e)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, projection.ErrBadUpcast)) {
			t.Errorf("redaction %q: %v, want ok %v", tt.path, err, tt.ok)
		}
	}
}

// An upcaster's own error may quote the data (strconv's do): it stays
// reachable with errors.Is, never printed.
func TestUpcasterErrorTextNotShown(t *testing.T) {
	sentinel := errors.New(`parsing "555-2951": invalid syntax`)
	u, err := projection.NewUpcasters(projection.Upcaster{Type: "t", From: 1,
		Up: func(json.RawMessage, []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return nil, nil, fmt.Errorf("phone: %w", sentinel)
		}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Upcast(event(0, "t", `{"phone":"555-2951"}`, "", nil))
	if !errors.Is(err, sentinel) || strings.Contains(err.Error(), "555") {
		t.Errorf("err = %v", err)
	}
}
