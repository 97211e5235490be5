package projection

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/lethe-store/lethe/forgettable"
)

// SchemaVersionKey is the metadata key that holds an event's schema
// version: a positive JSON integer. An event without it is at version 1.
const SchemaVersionKey = "schemaVersion"

// Upcaster errors.
var (
	// ErrBadSchemaVersion is returned when an event's metadata is not a
	// JSON object or its schemaVersion is not a positive integer.
	ErrBadSchemaVersion = errors.New("schemaVersion is not a positive integer")
	// ErrInvalidUpcasters is returned by NewUpcasters for a chain it
	// refuses: no type, From below 1, no Up, two upcasters for the same
	// type and version, or a gap in a type's chain.
	ErrInvalidUpcasters = errors.New("invalid upcasters")
	// ErrBadUpcast is returned when an upcaster's output is unusable: data
	// that is not a JSON object, or a redaction that does not point to a
	// null field of the new data.
	ErrBadUpcast = errors.New("upcaster returned an invalid event")
)

// Upcaster turns an event of Type at schema version From into version
// From+1, on read: stored events are never rewritten.
//
// Personal data stays under its redaction. Up sees the data as the reader
// sees it: personal fields decrypted, or null and listed in redacted
// (forgotten, or restricted for this reader). Whatever Up does to a field,
// it does to the field's redaction: a renamed or moved field keeps its
// redaction at the new path (MoveRedactions), a dropped field drops it
// (DropRedactions). Up must never copy a value that came redacted into a
// field that is not redacted, nor derive a new field from one without
// redacting the new field too. Upcast checks that every redaction Up
// returns points to a null field of the new data (ErrBadUpcast otherwise),
// which catches a redaction left at a path that no longer exists.
//
// Up must be a pure function of its arguments, safe to call from several
// goroutines; it may modify the slices it is given (they are copies). Its
// errors must not carry data values: they end up in logs.
type Upcaster struct {
	// Type is the event type.
	Type string
	// From is the schema version Up reads, from 1.
	From int
	// Up returns the event's data in version From+1's shape, and the
	// redactions re-pointed to where the fields now live.
	Up func(data json.RawMessage, redacted []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error)
}

// Upcasters is a registry of upcaster chains, one per event type. It does
// not change after NewUpcasters and is safe for concurrent use. A nil
// *Upcasters has no upcasters: every type is at version 1 and Upcast
// returns events unchanged.
type Upcasters struct {
	// chains[type][i] upcasts version i+1 to i+2.
	chains map[string][]Upcaster
}

// NewUpcasters returns a registry of the given upcasters, in any order.
// Each type's chain must start at version 1 and have no gaps (upcasters
// From 1 and 3 without 2 are refused): every stored version must reach
// the current one. Returns an error wrapping ErrInvalidUpcasters.
func NewUpcasters(us ...Upcaster) (*Upcasters, error) {
	byType := map[string]map[int]Upcaster{}
	for i, up := range us {
		switch {
		case up.Type == "":
			return nil, fmt.Errorf("%w: upcaster %d has no type", ErrInvalidUpcasters, i)
		case up.From < 1:
			return nil, fmt.Errorf("%w: upcaster %d (%s): From is %d, versions start at 1", ErrInvalidUpcasters, i, up.Type, up.From)
		case up.Up == nil:
			return nil, fmt.Errorf("%w: upcaster %d (%s from %d) has no Up function", ErrInvalidUpcasters, i, up.Type, up.From)
		}
		if byType[up.Type] == nil {
			byType[up.Type] = map[int]Upcaster{}
		}
		if _, dup := byType[up.Type][up.From]; dup {
			return nil, fmt.Errorf("%w: two upcasters for %s from version %d", ErrInvalidUpcasters, up.Type, up.From)
		}
		byType[up.Type][up.From] = up
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	slices.Sort(types)
	u := &Upcasters{chains: make(map[string][]Upcaster, len(byType))}
	for _, t := range types {
		chain := make([]Upcaster, len(byType[t]))
		for from := 1; from <= len(chain); from++ {
			up, ok := byType[t][from]
			if !ok {
				have := make([]int, 0, len(chain))
				for f := range byType[t] {
					have = append(have, f)
				}
				slices.Sort(have)
				return nil, fmt.Errorf("%w: %s has upcasters from versions %v but none from version %d: the chain must run from 1 without gaps",
					ErrInvalidUpcasters, t, have, from)
			}
			chain[from-1] = up
		}
		u.chains[t] = chain
	}
	return u, nil
}

// Current returns the schema version of eventType that upcast events
// have, and that new events of the type should carry in metadata: 1 plus
// the number of upcasters of the type.
func (u *Upcasters) Current(eventType string) int {
	if u == nil {
		return 1
	}
	return len(u.chains[eventType]) + 1
}

// Upcast returns e in its type's current shape: the chain applied from
// e's schema version, the redactions re-pointed, and metadata's
// schemaVersion set to the current version (other metadata keys kept, in
// their order). e itself is not modified.
//
// An event already at the current version, of a type without upcasters
// (its metadata is then not read at all), or from a newer writer (a
// version above Current: a reader that has not been upgraded yet, or an
// upcaster kept by clients only) is returned unchanged; its metadata
// still says its version, see SchemaVersion.
//
// Returns an error wrapping ErrBadSchemaVersion for bad metadata,
// ErrBadUpcast for unusable output of an upcaster, or an upcaster's own
// error. Errors name the event by id, type and versions, never by value.
func (u *Upcasters) Upcast(e forgettable.RecordedEvent) (forgettable.RecordedEvent, error) {
	if u == nil {
		return e, nil
	}
	chain := u.chains[e.Type]
	if len(chain) == 0 {
		return e, nil
	}
	from, err := SchemaVersion(e.Metadata)
	if err != nil {
		return forgettable.RecordedEvent{}, fmt.Errorf("upcast event %s (%s): %w", e.ID, e.Type, err)
	}
	current := len(chain) + 1
	if from >= current {
		return e, nil
	}
	// Copies: Up may modify what it gets, and e may be shared.
	data := bytes.Clone(e.Data)
	redacted := slices.Clone(e.Redacted)
	for v := from; v < current; v++ {
		d, r, err := chain[v-1].Up(data, redacted)
		if err != nil {
			return forgettable.RecordedEvent{}, fmt.Errorf("upcast event %s (%s v%d to v%d): %w", e.ID, e.Type, v, v+1, upcasterError{err})
		}
		if err := checkUpcast(d, r); err != nil {
			return forgettable.RecordedEvent{}, fmt.Errorf("upcast event %s (%s v%d to v%d): %w: %s", e.ID, e.Type, v, v+1, ErrBadUpcast, err)
		}
		data, redacted = d, r
	}
	meta, err := setSchemaVersion(e.Metadata, current)
	if err != nil {
		return forgettable.RecordedEvent{}, fmt.Errorf("upcast event %s (%s): %w", e.ID, e.Type, err)
	}
	out := e
	out.Data, out.Metadata, out.Redacted = data, meta, redacted
	return out, nil
}

// UpcastAll upcasts events (see Upcast) into a new slice, in order; a nil
// *Upcasters returns events itself. On an error it returns nil and the
// first error.
func (u *Upcasters) UpcastAll(events []forgettable.RecordedEvent) ([]forgettable.RecordedEvent, error) {
	if u == nil {
		return events, nil
	}
	out := make([]forgettable.RecordedEvent, len(events))
	for i, e := range events {
		up, err := u.Upcast(e)
		if err != nil {
			return nil, err
		}
		out[i] = up
	}
	return out, nil
}

// SchemaVersion returns the schema version an event's metadata declares:
// its schemaVersion key, 1 when absent (or when metadata is empty or
// null). Returns an error wrapping ErrBadSchemaVersion when metadata is
// not a JSON object or schemaVersion is not a positive integer ("2"
// as a string, 2.0, 0 and null are refused).
func SchemaVersion(metadata json.RawMessage) (int, error) {
	members, err := objectMembers(metadata)
	if err != nil {
		return 0, err
	}
	for _, m := range members {
		if m.key == SchemaVersionKey {
			return parseSchemaVersion(m.value)
		}
	}
	return 1, nil
}

// MoveRedactions returns a copy of redacted with each redaction at the
// JSON Pointer from, or inside it, moved to the same place under to: what
// an upcaster that renames or moves the field from returns. from and to
// are JSON Pointers ("/first-name", "/name/first").
func MoveRedactions(redacted []forgettable.Redaction, from, to string) []forgettable.Redaction {
	out := slices.Clone(redacted)
	for i, r := range out {
		switch {
		case r.Path == from:
			out[i].Path = to
		case strings.HasPrefix(r.Path, from+"/"):
			out[i].Path = to + r.Path[len(from):]
		}
	}
	return out
}

// DropRedactions returns a copy of redacted without the redactions at
// the JSON Pointer path or inside it: what an upcaster that drops the
// field returns.
func DropRedactions(redacted []forgettable.Redaction, path string) []forgettable.Redaction {
	out := make([]forgettable.Redaction, 0, len(redacted))
	for _, r := range redacted {
		if r.Path != path && !strings.HasPrefix(r.Path, path+"/") {
			out = append(out, r)
		}
	}
	return out
}

// checkUpcast checks an upcaster's output: data is a JSON object and each
// redaction points to a null in it. Its errors name paths, never values.
func checkUpcast(data json.RawMessage, redacted []forgettable.Redaction) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(data) {
		return errors.New("data is not a JSON object")
	}
	if len(redacted) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return errors.New("data is not a JSON object")
	}
	for _, r := range redacted {
		v, ok, err := lookup(doc, r.Path)
		switch {
		case err != nil:
			return fmt.Errorf("redaction path %q is not a JSON Pointer", r.Path)
		case !ok:
			return fmt.Errorf("redaction %s points to no field: re-point or drop it with the field", r.Path)
		case v != nil:
			return fmt.Errorf("redaction %s points to a value that is not null", r.Path)
		}
	}
	return nil
}

// lookup returns the value at the JSON Pointer p in doc (decoded with
// UseNumber), and whether it exists.
func lookup(doc any, p string) (any, bool, error) {
	if p == "" || p[0] != '/' {
		return nil, false, errors.New("not a JSON Pointer")
	}
	cur := doc
	for _, tok := range strings.Split(p[1:], "/") {
		if strings.Contains(tok, "~") {
			if strings.Contains(strings.NewReplacer("~0", "", "~1", "").Replace(tok), "~") {
				return nil, false, errors.New("not a JSON Pointer")
			}
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		}
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false, nil
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) || (len(tok) > 1 && tok[0] == '0') {
				return nil, false, nil
			}
			cur = c[i]
		default:
			return nil, false, nil
		}
	}
	return cur, true, nil
}

type member struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the members of a JSON object in order, each key
// once (a duplicate's last value wins, in the first one's place, as in
// jsonb). Empty or null metadata has no members.
func objectMembers(b json.RawMessage) ([]member, error) {
	if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("%w: metadata is not a JSON object", ErrBadSchemaVersion)
	}
	var members []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: metadata is not valid JSON", ErrBadSchemaVersion)
		}
		k, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("%w: metadata is not valid JSON", ErrBadSchemaVersion)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: metadata is not valid JSON", ErrBadSchemaVersion)
		}
		if i := slices.IndexFunc(members, func(m member) bool { return m.key == k }); i >= 0 {
			members[i].value = v
		} else {
			members = append(members, member{k, v})
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: metadata is not valid JSON", ErrBadSchemaVersion)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: metadata is not valid JSON", ErrBadSchemaVersion)
	}
	return members, nil
}

// parseSchemaVersion parses a schemaVersion value: a JSON integer, 1 or
// more, written without fraction, exponent or leading zeros.
func parseSchemaVersion(v json.RawMessage) (int, error) {
	s := string(bytes.TrimSpace(v))
	if s == "" || s[0] < '1' || s[0] > '9' || strings.Trim(s, "0123456789") != "" {
		return 0, ErrBadSchemaVersion
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, ErrBadSchemaVersion
	}
	return n, nil
}

// setSchemaVersion returns metadata with schemaVersion set to v: replaced
// in place, or added last; other members keep their order and bytes.
func setSchemaVersion(metadata json.RawMessage, v int) (json.RawMessage, error) {
	members, err := objectMembers(metadata)
	if err != nil {
		return nil, err
	}
	val := json.RawMessage(strconv.Itoa(v))
	if i := slices.IndexFunc(members, func(m member) bool { return m.key == SchemaVersionKey }); i >= 0 {
		members[i].value = val
	} else {
		members = append(members, member{SchemaVersionKey, val})
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(&b, m.key)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return json.RawMessage(b.Bytes()), nil
}

// writeString writes s as a JSON string, without HTML escaping (as the
// API's documents).
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}

// upcasterError is an upcaster's own error, kept for errors.Is and
// errors.As but never printed: its text could quote the data it was
// upcasting (`parsing "555-2951"`), and errors reach logs.
type upcasterError struct{ err error }

func (e upcasterError) Error() string {
	return fmt.Sprintf("the upcaster failed (%T; its text is not shown)", e.err)
}

func (e upcasterError) Unwrap() error { return e.err }
