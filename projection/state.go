// Package projection derives read models from a stream's events as a
// reader sees them — personal fields decrypted, or null and redacted — so
// that a forgotten subject disappears from every derived view at once:
// the state of a stream at any version or time, and the history of every
// field. It depends on the domain packages only.
package projection

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
)

// Redaction is a field of a derived view shown as null, and why: the
// event (version) the field's value came from had it redacted.
type Redaction struct {
	Path    string `json:"path"`
	Reason  string `json:"reason"`
	Version int64  `json:"version"`
}

// State is a stream's state folded from its events up to Version.
type State struct {
	StreamID string
	// Version is the last event folded (-1: none).
	Version int64
	// UpdatedAt is the recording time of the last event folded.
	UpdatedAt time.Time
	// EventTypes are the event types folded, in the order first seen.
	EventTypes []string
	// State is the folded state: a JSON object.
	State json.RawMessage
	// Redacted lists the fields of State that show null because the value
	// they hold came redacted.
	Redacted []Redaction
}

// Folder folds a stream's events into a state: register one for a
// category to replace the generic fold. Apply gets events in version
// order, as the reader may see them (personal fields null when redacted),
// and returns the new state.
type Folder interface {
	// Fold folds events over state (nil: the initial state) and returns
	// the new state, a JSON object.
	Fold(state json.RawMessage, events []forgettable.RecordedEvent) (json.RawMessage, error)
}

// FolderFunc adapts a function to Folder.
type FolderFunc func(state json.RawMessage, events []forgettable.RecordedEvent) (json.RawMessage, error)

// Fold calls f.
func (f FolderFunc) Fold(state json.RawMessage, events []forgettable.RecordedEvent) (json.RawMessage, error) {
	return f(state, events)
}

// Folder errors.
var (
	// ErrInvalidData is returned when an event's data is not a JSON
	// object (stored events always are).
	ErrInvalidData = errors.New("event data is not a JSON object")
	// ErrUnknownProjection is returned for a persisted projection that is
	// not registered (or not running in this server).
	ErrUnknownProjection = errors.New("no such projection")
	// ErrRebuildAhead is returned for a rebuild from a position past the
	// projection's checkpoint: it would skip events, erasure records
	// included, and its receipts would say it had reached erasures it
	// never applied. A rebuild from a position moves a projection back.
	ErrRebuildAhead = errors.New("a rebuild from a position may only move a projection back: from scratch (0) or from a position at or before its checkpoint")
)

// Fold is the generic fold: each event's top-level data fields merged over
// the previous state, the last write wins. A field whose last write was
// redacted (the whole field or a part of it) is listed in Redacted with
// the version it came from.
type Fold struct {
	streamID  string
	version   int64
	updatedAt time.Time
	types     []string
	order     []string // field names in first-write order
	fields    map[string]field
}

type field struct {
	value    json.RawMessage
	version  int64
	redacted []forgettable.Redaction // of this field's last write
	event    eventstore.EventID      // the event of the last write
	refs     []string                // that event's subject references
}

// NewFold returns an empty generic fold of a stream.
func NewFold(streamID string) *Fold {
	return &Fold{streamID: streamID, version: -1, fields: map[string]field{}}
}

// Apply folds one event (events must come in version order).
func (f *Fold) Apply(e forgettable.RecordedEvent) error {
	var data map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil || data == nil {
		return fmt.Errorf("event %s: %w", e.ID, ErrInvalidData)
	}
	// Object keys in the order they appear, for a stable state.
	keys, err := objectKeys(e.Data)
	if err != nil {
		return fmt.Errorf("event %s: %w", e.ID, ErrInvalidData)
	}
	for _, k := range keys {
		if _, seen := f.fields[k]; !seen {
			f.order = append(f.order, k)
		}
		prefix := "/" + escapeToken(k)
		var red []forgettable.Redaction
		for _, r := range e.Redacted {
			if r.Path == prefix || strings.HasPrefix(r.Path, prefix+"/") {
				red = append(red, r)
			}
		}
		f.fields[k] = field{value: data[k], version: e.Version, redacted: red, event: e.ID, refs: e.SubjectRefs}
	}
	if !slices.Contains(f.types, e.Type) {
		f.types = append(f.types, e.Type)
	}
	f.version, f.updatedAt = e.Version, e.RecordedAt
	return nil
}

// State returns the state folded so far.
func (f *Fold) State() State {
	var b bytes.Buffer
	b.WriteByte('{')
	var redacted []Redaction
	for i, k := range f.order {
		fl := f.fields[k]
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		b.Write(name)
		b.WriteByte(':')
		b.Write(fl.value)
		for _, r := range fl.redacted {
			redacted = append(redacted, Redaction{Path: r.Path, Reason: r.Reason, Version: fl.version})
		}
	}
	b.WriteByte('}')
	slices.SortFunc(redacted, func(a, b Redaction) int { return strings.Compare(a.Path, b.Path) })
	return State{StreamID: f.streamID, Version: f.version, UpdatedAt: f.updatedAt, EventTypes: slices.Clone(f.types),
		State: json.RawMessage(b.Bytes()), Redacted: redacted}
}

// objectKeys returns the keys of a JSON object in order, each once (the
// last occurrence of a duplicate wins, as in jsonb).
func objectKeys(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, ErrInvalidData
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := t.(string)
		if !ok {
			return nil, ErrInvalidData
		}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func escapeToken(t string) string {
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}
