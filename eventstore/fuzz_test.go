package eventstore_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
)

// Event ids come from clients: parsing must never panic, and whatever it
// accepts must be the canonical text of the id it returns.
func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{
		"",
		"01234567-89ab-cdef-0123-456789abcdef",
		"01234567-89AB-CDEF-0123-456789ABCDEF",
		"00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		"0123456789abcdef0123456789abcdef",
		"{01234567-89ab-cdef-0123-456789abcdef}",
		"01234567-89ab-cdef-0123-4567--abcdef",
		"--234567-89ab-cdef-0123-456789abcdef",
		"01234567-89ab-cdef-0123-456789abcdé",
		"g1234567-89ab-cdef-0123-456789abcdef",
		strings.Repeat("-", 36),
		eventstore.NewEventID().String(),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := eventstore.ParseEventID(s)
		if err != nil {
			if id != (eventstore.EventID{}) {
				t.Errorf("ParseEventID(%q): got %s with error %v, want the zero id", s, id, err)
			}
			// At most 40 bytes of the input are quoted (%q: up to 4
			// characters a byte), so the message does not grow with it.
			if got, want := len(err.Error()), 40*4+100; got > want {
				t.Errorf("ParseEventID(%q): error is %d bytes, want at most %d: %q", s, got, want, err)
			}
			return
		}
		text := id.String()
		if got, want := text, strings.ToLower(s); got != want {
			t.Errorf("ParseEventID(%q).String(): got %q, want %q", s, got, want)
		}
		back, err := eventstore.ParseEventID(text)
		if err != nil {
			t.Fatalf("ParseEventID(%q) (from String()): %v", text, err)
		}
		if got, want := back, id; got != want {
			t.Errorf("ParseEventID(%q): got %s, want %s", text, got, want)
		}
	})
}

func isStreamIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == ':' || c == '@'
}

// Stream ids come from URLs and request bodies.
func FuzzValidateStreamID(f *testing.F) {
	for _, s := range []string{
		"", "a", "lead-12", "$erasure", "$", "$all", "$$", "-x", "lead 12",
		"order.v2:line@3", "jane.doe@example.com", "léad", "lead\x00",
		strings.Repeat("x", eventstore.MaxStreamIDLength),
		strings.Repeat("x", eventstore.MaxStreamIDLength+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := eventstore.ValidateStreamID(id)
		if err != nil {
			// The reason may quote one offending character, never the id:
			// its length does not grow with the id's.
			if got, want := len(err.Error()), 120; got > want {
				t.Errorf("ValidateStreamID(%q): error %q is %d bytes, want at most %d", id, err, got, want)
			}
			return
		}
		if n := len(id); n < 1 || n > eventstore.MaxStreamIDLength {
			t.Fatalf("ValidateStreamID(%q) accepted %d bytes, want 1..%d", id, n, eventstore.MaxStreamIDLength)
		}
		if id == eventstore.AllStreamID {
			t.Fatalf("ValidateStreamID accepted %q", id)
		}
		rest := strings.TrimPrefix(id, eventstore.SystemStreamPrefix)
		if rest == "" {
			t.Fatalf("ValidateStreamID(%q): accepted an id with nothing after the prefix", id)
		}
		if c := rest[0]; !isStreamIDByte(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@' {
			t.Errorf("ValidateStreamID(%q): accepted a first character %q", id, c)
		}
		for i := 0; i < len(rest); i++ {
			if !isStreamIDByte(rest[i]) {
				t.Errorf("ValidateStreamID(%q): accepted byte %q", id, rest[i])
			}
		}
	})
}

// Event data and metadata are client bytes.
func FuzzEventDataValidate(f *testing.F) {
	for _, s := range []struct {
		typ            string
		data, metadata string
	}{
		{"lead-initialized", `{"status":"new"}`, ``},
		{"lead-initialized", `{}`, `{"correlationId":"x"}`},
		{"x", " \n{}", " "},
		{"x", `[]`, ``},
		{"x", `null`, `null`},
		{"x", `{"a":`, ``},
		{"x", `{}{}`, ``},
		{"x", "{\"a\":\"\xff\"}", ``},
		{"x", `{"a":"\u0000"}`, ``},
		{"", ``, ``},
		{"with space", `{}`, ``},
	} {
		f.Add(s.typ, []byte(s.data), []byte(s.metadata))
	}
	id := eventstore.NewEventID()
	f.Fuzz(func(t *testing.T, typ string, data, metadata []byte) {
		e := eventstore.EventData{ID: id, Type: typ, Data: data, Metadata: metadata}
		if err := e.Validate(); err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("Validate accepted data %q, which is not valid JSON", data)
		}
		// JSON allows whitespace before the value.
		if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatalf("Validate accepted data %q, which is not a JSON object", data)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			t.Fatalf("Validate accepted data %q, which does not decode as an object: %v", data, err)
		}
		if len(metadata) > 0 {
			if trimmed := bytes.TrimLeft(metadata, " \t\r\n"); !json.Valid(metadata) || len(trimmed) == 0 || trimmed[0] != '{' {
				t.Fatalf("Validate accepted metadata %q, which is not a JSON object", metadata)
			}
		}
		if typ == "" || len(typ) > eventstore.MaxEventTypeLength {
			t.Fatalf("Validate accepted type %q (%d bytes)", typ, len(typ))
		}
		for i := 0; i < len(typ); i++ {
			if c := typ[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("Validate accepted type %q with byte %q", typ, c)
			}
		}
	})
}
