package projection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lethe-store/lethe/forgettable"
)

// Appearance is a value a field took, and when it appeared.
type Appearance struct {
	Value      json.RawMessage `json:"value"`
	Version    int64           `json:"version"`
	RecordedAt time.Time       `json:"recordedAt"`
}

// History is every value each field of a stream ever had: the search
// projection ("all the names and phone numbers this lead ever had").
type History struct {
	StreamID string
	// Version is the last event read (-1: none).
	Version int64
	// Fields maps a field's JSON Pointer to its values, oldest first: an
	// entry when the field first appears and each time its value changes.
	// Leaf values only (strings, numbers, booleans, null): objects are
	// walked into, arrays are values.
	Fields map[string][]Appearance
	// Redacted lists the appearances that show null because the value
	// came redacted (forgotten, or restricted for the reader).
	Redacted []Redaction
}

// HistoryOf builds a stream's field history from its events in version
// order.
func HistoryOf(streamID string, events []forgettable.RecordedEvent) (History, error) {
	h := NewHistory(streamID)
	for _, e := range events {
		if err := h.Apply(e); err != nil {
			return *h, err
		}
	}
	return *h, nil
}

// NewHistory returns an empty history of a stream, to Apply events to.
func NewHistory(streamID string) *History {
	return &History{StreamID: streamID, Version: -1, Fields: map[string][]Appearance{}}
}

// Apply adds one event (events must come in version order).
func (h *History) Apply(e forgettable.RecordedEvent) error {
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil || data == nil {
		return fmt.Errorf("event %s: %w", e.ID, ErrInvalidData)
	}
	var walk func(path string, v any) error
	walk = func(path string, v any) error {
		if obj, ok := v.(map[string]any); ok && len(obj) > 0 {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if err := walk(path+"/"+escapeToken(k), obj[k]); err != nil {
					return err
				}
			}
			return nil
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		reason := ""
		for _, r := range e.Redacted {
			if r.Path == path || strings.HasPrefix(path, r.Path+"/") {
				reason = r.Reason
			}
		}
		entries := h.Fields[path]
		if reason == "" && len(entries) > 0 && bytes.Equal(entries[len(entries)-1].Value, raw) && !redactedAt(h.Redacted, path, entries[len(entries)-1].Version) {
			return nil // unchanged
		}
		h.Fields[path] = append(entries, Appearance{Value: raw, Version: e.Version, RecordedAt: e.RecordedAt})
		if reason != "" {
			h.Redacted = append(h.Redacted, Redaction{Path: path, Reason: reason, Version: e.Version})
		}
		return nil
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := walk("/"+escapeToken(k), data[k]); err != nil {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
	}
	h.Version = e.Version
	return nil
}

func redactedAt(rs []Redaction, path string, version int64) bool {
	for _, r := range rs {
		if r.Path == path && r.Version == version {
			return true
		}
	}
	return false
}
