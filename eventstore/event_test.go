package eventstore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/eventstore"
)

func TestNewEventIDVersionAndVariant(t *testing.T) {
	t.Parallel()
	for range 1000 {
		id := eventstore.NewEventID()
		if got, want := id[6]>>4, byte(7); got != want {
			t.Fatalf("%s: version got %d, want %d", id, got, want)
		}
		if got, want := id[8]>>6, byte(0b10); got != want {
			t.Fatalf("%s: variant bits got %02b, want %02b", id, got, want)
		}
		if id.IsZero() {
			t.Fatalf("NewEventID returned the nil UUID")
		}
	}
}

func TestNewEventIDTimestamp(t *testing.T) {
	t.Parallel()
	before := time.Now().UnixMilli()
	id := eventstore.NewEventID()
	after := time.Now().UnixMilli()
	ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	if ms < before || ms > after {
		t.Errorf("%s: timestamp got %d ms, want between %d and %d", id, ms, before, after)
	}
}

func TestNewEventIDUnique(t *testing.T) {
	t.Parallel()
	const n = 10_000
	seen := make(map[eventstore.EventID]struct{}, n)
	for range n {
		id := eventstore.NewEventID()
		if _, ok := seen[id]; ok {
			t.Fatalf("NewEventID returned %s twice in %d calls", id, n)
		}
		seen[id] = struct{}{}
	}
	if got, want := len(seen), n; got != want {
		t.Errorf("distinct ids: got %d, want %d", got, want)
	}
}

// Ids made in later milliseconds sort after earlier ones, as bytes and as
// text: the 48-bit timestamp prefix is what keeps the index compact.
func TestNewEventIDTimeOrdered(t *testing.T) {
	t.Parallel()
	var prev eventstore.EventID
	for i := range 5 {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		id := eventstore.NewEventID()
		if i > 0 {
			if got := bytes.Compare(prev[:6], id[:6]); got >= 0 {
				t.Errorf("timestamp prefix of %s (later) is not after %s", id, prev)
			}
			if got := bytes.Compare(prev[:], id[:]); got >= 0 {
				t.Errorf("%s (later) does not sort after %s", id, prev)
			}
			if prev.String() >= id.String() {
				t.Errorf("text %s (later) does not sort after %s", id, prev)
			}
		}
		prev = id
	}
}

func TestParseEventIDRoundTrip(t *testing.T) {
	t.Parallel()
	for range 100 {
		id := eventstore.NewEventID()
		s := id.String()
		got, err := eventstore.ParseEventID(s)
		if err != nil {
			t.Fatalf("ParseEventID(%q): %v", s, err)
		}
		if got != id {
			t.Fatalf("ParseEventID(%q): got %s, want %s", s, got, id)
		}
		if s != strings.ToLower(s) {
			t.Errorf("String(): got %q, want lower case", s)
		}
	}
}

func TestParseEventIDAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want eventstore.EventID
	}{
		{"00000000-0000-0000-0000-000000000000", eventstore.EventID{}},
		{"01234567-89ab-cdef-0123-456789abcdef", eventstore.EventID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}},
		{"01234567-89AB-CDEF-0123-456789ABCDEF", eventstore.EventID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}},
		{"FFFFFFFF-ffff-FfFf-fFfF-FFFFFFFFFFFF", eventstore.EventID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		got, err := eventstore.ParseEventID(tt.in)
		if err != nil {
			t.Errorf("ParseEventID(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseEventID(%q): got %s, want %s", tt.in, got, tt.want)
		}
		if got, want := got.String(), strings.ToLower(tt.in); got != want {
			t.Errorf("ParseEventID(%q).String(): got %q, want %q", tt.in, got, want)
		}
	}
}

func TestParseEventIDRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"too short", "01234567-89ab-cdef-0123-456789abcde"},
		{"too long", "01234567-89ab-cdef-0123-456789abcdef0"},
		{"no dashes", "0123456789abcdef0123456789abcdef"},
		{"braces", "{01234567-89ab-cdef-0123-456789abcdef}"},
		{"urn", "urn:uuid:01234567-89ab-cdef-0123-456789abcdef"},
		{"dash moved", "0123456-789ab-cdef-0123-456789abcdef"},
		{"dash replaced", "01234567_89ab-cdef-0123-456789abcdef"},
		{"last dash missing", "01234567-89ab-cdef-0123x456789abcdef"},
		{"bad hex first", "g1234567-89ab-cdef-0123-456789abcdef"},
		{"bad hex last", "01234567-89ab-cdef-0123-456789abcdeg"},
		{"space", "01234567-89ab-cdef-0123-456789abcde "},
		{"plus sign", "+1234567-89ab-cdef-0123-456789abcdef"},
		{"non-ASCII", "01234567-89ab-cdef-0123-456789abcdé"},
		// Extra dashes in place of hex digits: a UUID has exactly four.
		{"extra dash in group 5", "01234567-89ab-cdef-0123-4567--abcdef"},
		{"extra dashes at the start", "--234567-89ab-cdef-0123-456789abcdef"},
		{"extra dashes everywhere", "--------------------------------0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := eventstore.ParseEventID(tt.in)
			if err == nil {
				t.Fatalf("ParseEventID(%q): got %s, nil; want an error", tt.in, id)
			}
			if got, want := id, (eventstore.EventID{}); got != want {
				t.Errorf("id returned with the error: got %s, want the zero id", got)
			}
		})
	}
}

// Bad input is quoted at most 40 characters long: an id field may be
// anything a client sent, and logs and answers should stay short.
func TestParseEventIDErrorTruncatesInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
	}{
		{"long", strings.Repeat("a", 40) + "SECRET-TAIL" + strings.Repeat("b", 1000)},
		{"36 bytes bad hex", "0123456789abcdef0123456789abcdefSECR"},
		{"36 bytes dashes, bad hex", "SECRET67-89ab-cdef-0123-456789abcdef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := eventstore.ParseEventID(tt.in)
			if err == nil {
				t.Fatalf("ParseEventID(%q): got nil, want an error", tt.in)
			}
			msg := err.Error()
			if len(tt.in) > 40 {
				if strings.Contains(msg, tt.in[:41]) {
					t.Errorf("error %q holds more than 40 characters of the input", msg)
				}
				if strings.Contains(msg, "SECRET-TAIL") {
					t.Errorf("error %q holds the input past 40 characters", msg)
				}
				if got, want := len(msg), 200; got > want {
					t.Errorf("error length: got %d, want at most %d", got, want)
				}
			}
			if !strings.Contains(msg, "not a UUID") {
				t.Errorf("error: got %q, want it to say %q", msg, "not a UUID")
			}
		})
	}
}

func TestEventIDIsZero(t *testing.T) {
	t.Parallel()
	if got := (eventstore.EventID{}).IsZero(); !got {
		t.Errorf("EventID{}.IsZero(): got false, want true")
	}
	if got := eventstore.NewEventID().IsZero(); got {
		t.Errorf("NewEventID().IsZero(): got true, want false")
	}
}

func TestEventIDJSON(t *testing.T) {
	t.Parallel()
	type doc struct {
		ID eventstore.EventID `json:"id"`
	}
	id := eventstore.NewEventID()
	b, err := json.Marshal(doc{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"id":"`+id.String()+`"}`; got != want {
		t.Errorf("json.Marshal: got %s, want %s", got, want)
	}
	var back doc
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	if got, want := back.ID, id; got != want {
		t.Errorf("round trip: got %s, want %s", got, want)
	}

	// Upper case is accepted on the way in.
	var upper doc
	if err := json.Unmarshal([]byte(`{"id":"`+strings.ToUpper(id.String())+`"}`), &upper); err != nil {
		t.Fatalf("json.Unmarshal upper case: %v", err)
	}
	if got, want := upper.ID, id; got != want {
		t.Errorf("upper case: got %s, want %s", got, want)
	}

	// As a map key (encoding.TextMarshaler).
	m := map[eventstore.EventID]int{id: 1}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var mback map[eventstore.EventID]int
	if err := json.Unmarshal(b, &mback); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	if got, want := mback[id], 1; got != want {
		t.Errorf("map round trip: got %d, want %d", got, want)
	}
}

func TestEventIDUnmarshalTextRefuses(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"id":"not-a-uuid"}`,
		`{"id":""}`,
		`{"id":"0123456789abcdef0123456789abcdef"}`,
	} {
		prev := eventstore.NewEventID()
		v := struct {
			ID eventstore.EventID `json:"id"`
		}{ID: prev}
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("json.Unmarshal(%s): got nil, want an error", in)
		}
		if got, want := v.ID, prev; got != want {
			t.Errorf("json.Unmarshal(%s) changed the id on error: got %s, want %s", in, got, want)
		}
	}
	var id eventstore.EventID
	if err := id.UnmarshalText([]byte("zz")); err == nil {
		t.Errorf("UnmarshalText(zz): got nil, want an error")
	}
	// A JSON number is not a UUID text.
	if err := json.Unmarshal([]byte(`12`), &id); err == nil {
		t.Errorf("json.Unmarshal(12): got nil, want an error")
	}
}

func TestEventIDMarshalText(t *testing.T) {
	t.Parallel()
	id := eventstore.EventID{0xde, 0xad, 0xbe, 0xef, 0, 1, 0x70, 2, 0x80, 3, 4, 5, 6, 7, 8, 9}
	b, err := id.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "deadbeef-0001-7002-8003-040506070809"; got != want {
		t.Errorf("MarshalText: got %q, want %q", got, want)
	}
	if got, want := id.String(), "deadbeef-0001-7002-8003-040506070809"; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
}

// validEvent is an event that Validate accepts.
func validEvent() eventstore.EventData {
	return eventstore.EventData{
		ID:   eventstore.NewEventID(),
		Type: "lead-initialized",
		Data: json.RawMessage(`{"status":"new"}`),
	}
}

func TestEventDataValidateAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*eventstore.EventData)
	}{
		{"plain", func(*eventstore.EventData) {}},
		{"empty object", func(e *eventstore.EventData) { e.Data = json.RawMessage(`{}`) }},
		{"leading whitespace", func(e *eventstore.EventData) { e.Data = json.RawMessage(" \t\r\n{}") }},
		{"trailing whitespace", func(e *eventstore.EventData) { e.Data = json.RawMessage("{}\n") }},
		{"nested", func(e *eventstore.EventData) { e.Data = json.RawMessage(`{"a":{"b":[1,2,{"c":null}]}}`) }},
		{"metadata object", func(e *eventstore.EventData) { e.Metadata = json.RawMessage(`{"correlationId":"x"}`) }},
		{"metadata empty", func(e *eventstore.EventData) { e.Metadata = json.RawMessage{} }},
		{"type punctuation", func(e *eventstore.EventData) { e.Type = "Lead.Initialized/v2:x_y-z!~" }},
		{"type one byte", func(e *eventstore.EventData) { e.Type = "x" }},
		{"type max length", func(e *eventstore.EventData) { e.Type = strings.Repeat("t", eventstore.MaxEventTypeLength) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := validEvent()
			tt.modify(&e)
			if err := e.Validate(); err != nil {
				t.Errorf("Validate(): got %v, want nil", err)
			}
		})
	}
}

func TestEventDataValidateRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*eventstore.EventData)
		want   string
	}{
		{"missing id", func(e *eventstore.EventData) { e.ID = eventstore.EventID{} }, "missing id"},
		{"missing type", func(e *eventstore.EventData) { e.Type = "" }, "missing type"},
		{"type too long", func(e *eventstore.EventData) { e.Type = strings.Repeat("t", eventstore.MaxEventTypeLength+1) }, "type longer than 200 bytes"},
		{"type with space", func(e *eventstore.EventData) { e.Type = "lead initialized" }, "type must be printable ASCII without spaces"},
		{"type with tab", func(e *eventstore.EventData) { e.Type = "lead\tinitialized" }, "type must be printable ASCII without spaces"},
		{"type with NUL", func(e *eventstore.EventData) { e.Type = "lead\x00" }, "type must be printable ASCII without spaces"},
		{"type with DEL", func(e *eventstore.EventData) { e.Type = "lead\x7f" }, "type must be printable ASCII without spaces"},
		{"type non-ASCII", func(e *eventstore.EventData) { e.Type = "lead-créé" }, "type must be printable ASCII without spaces"},
		{"data missing", func(e *eventstore.EventData) { e.Data = nil }, "data must be a JSON object"},
		{"data whitespace only", func(e *eventstore.EventData) { e.Data = json.RawMessage("  ") }, "data must be a JSON object"},
		{"data array", func(e *eventstore.EventData) { e.Data = json.RawMessage(`[{}]`) }, "data must be a JSON object"},
		{"data string", func(e *eventstore.EventData) { e.Data = json.RawMessage(`"{}"`) }, "data must be a JSON object"},
		{"data null", func(e *eventstore.EventData) { e.Data = json.RawMessage(`null`) }, "data must be a JSON object"},
		{"data number", func(e *eventstore.EventData) { e.Data = json.RawMessage(`1`) }, "data must be a JSON object"},
		{"data truncated", func(e *eventstore.EventData) { e.Data = json.RawMessage(`{"a":1`) }, "data must be a JSON object"},
		{"data two objects", func(e *eventstore.EventData) { e.Data = json.RawMessage(`{}{}`) }, "data must be a JSON object"},
		{"data trailing comma", func(e *eventstore.EventData) { e.Data = json.RawMessage(`{"a":1,}`) }, "data must be a JSON object"},
		{"metadata array", func(e *eventstore.EventData) { e.Metadata = json.RawMessage(`[]`) }, "metadata must be a JSON object"},
		{"metadata null", func(e *eventstore.EventData) { e.Metadata = json.RawMessage(`null`) }, "metadata must be a JSON object"},
		{"metadata invalid", func(e *eventstore.EventData) { e.Metadata = json.RawMessage(`{`) }, "metadata must be a JSON object"},
		{"metadata whitespace", func(e *eventstore.EventData) { e.Metadata = json.RawMessage(` `) }, "metadata must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := validEvent()
			tt.modify(&e)
			err := e.Validate()
			if err == nil {
				t.Fatalf("Validate(): got nil, want %q", tt.want)
			}
			if got, want := err.Error(), tt.want; got != want {
				t.Errorf("Validate(): got %q, want %q", got, want)
			}
		})
	}
}

func TestWrongExpectedVersionError(t *testing.T) {
	t.Parallel()
	conflict := &eventstore.WrongExpectedVersionError{
		StreamID: "lead-12",
		Expected: eventstore.Exact(3),
		Current:  5,
		Events:   []eventstore.RecordedEvent{{StreamID: "lead-12", Version: 4}, {StreamID: "lead-12", Version: 5}},
	}
	if got, want := conflict.Error(), "append to lead-12: expected version 3, current version 5: wrong expected version"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
	for name, err := range map[string]error{
		"bare":         conflict,
		"wrapped once": fmt.Errorf("handle command: %w", conflict),
		"wrapped twice": fmt.Errorf("http: %w",
			fmt.Errorf("handle command: %w", conflict)),
		"joined": errors.Join(errors.New("other"), conflict),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
				t.Errorf("errors.Is(%v, ErrWrongExpectedVersion): got false, want true", err)
			}
			for _, other := range []error{eventstore.ErrInvalidEvent, eventstore.ErrStreamNotFound, eventstore.ErrInvalidStreamID} {
				if errors.Is(err, other) {
					t.Errorf("errors.Is(%v, %v): got true, want false", err, other)
				}
			}
			var we *eventstore.WrongExpectedVersionError
			if !errors.As(err, &we) {
				t.Fatalf("errors.As(%v, *WrongExpectedVersionError): got false, want true", err)
			}
			if got, want := we.Current, int64(5); got != want {
				t.Errorf("Current: got %d, want %d", got, want)
			}
			if got, want := len(we.Events), 2; got != want {
				t.Errorf("len(Events): got %d, want %d", got, want)
			}
		})
	}

	// The no-stream sentinel reads as such.
	e := &eventstore.WrongExpectedVersionError{StreamID: "s", Expected: eventstore.NoStream, Current: 0}
	if got, want := e.Error(), "append to s: expected version no stream (-1), current version 0: wrong expected version"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
}

func TestInvalidEventError(t *testing.T) {
	t.Parallel()
	ie := &eventstore.InvalidEventError{Index: 2, Reason: "missing type"}
	if got, want := ie.Error(), "invalid event: event 2: missing type"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
	for name, err := range map[string]error{
		"bare":          ie,
		"wrapped once":  fmt.Errorf("append lead-12: %w", ie),
		"wrapped twice": fmt.Errorf("http: %w", fmt.Errorf("append lead-12: %w", ie)),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !errors.Is(err, eventstore.ErrInvalidEvent) {
				t.Errorf("errors.Is(%v, ErrInvalidEvent): got false, want true", err)
			}
			if errors.Is(err, eventstore.ErrWrongExpectedVersion) {
				t.Errorf("errors.Is(%v, ErrWrongExpectedVersion): got true, want false", err)
			}
			var got *eventstore.InvalidEventError
			if !errors.As(err, &got) {
				t.Fatalf("errors.As(%v, *InvalidEventError): got false, want true", err)
			}
			if got.Index != 2 || got.Reason != "missing type" {
				t.Errorf("got {%d %q}, want {2 %q}", got.Index, got.Reason, "missing type")
			}
		})
	}
}
