package projection

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
)

// Snapshot is a generic fold's state at a version, as stored: folded from
// the events as stored, so that personal fields hold their sealed
// envelopes, under the subjects' keys — erasing a subject shreds its
// fields in every snapshot too. Each field remembers the event it came
// from: its envelopes are bound to that event (docs/envelope.md).
type Snapshot struct {
	StreamID  string          `json:"streamId"`
	Version   int64           `json:"version"`
	UpdatedAt time.Time       `json:"updatedAt"`
	Types     []string        `json:"types"`
	Fields    []SnapshotField `json:"fields"`
}

// SnapshotField is a top-level field of a snapshot's state.
type SnapshotField struct {
	Name    string          `json:"name"`
	Value   json.RawMessage `json:"value"`
	Version int64           `json:"version"`
	Event   string          `json:"event"`
	// SubjectRefs are the subjects of the event the value came from.
	SubjectRefs []string `json:"subjectRefs,omitempty"`
}

// SubjectRefs lists the subjects whose sealed data the snapshot may hold.
func (s Snapshot) SubjectRefs() []string {
	var out []string
	for _, f := range s.Fields {
		for _, r := range f.SubjectRefs {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Snapshot returns the fold's state as a snapshot.
func (f *Fold) Snapshot() Snapshot {
	s := Snapshot{StreamID: f.streamID, Version: f.version, UpdatedAt: f.updatedAt, Types: slices.Clone(f.types)}
	for _, k := range f.order {
		fl := f.fields[k]
		s.Fields = append(s.Fields, SnapshotField{Name: k, Value: fl.value, Version: fl.version, Event: fl.event.String(), SubjectRefs: fl.refs})
	}
	return s
}

// FoldFrom returns a generic fold that continues from a snapshot.
func FoldFrom(s Snapshot) (*Fold, error) {
	f := NewFold(s.StreamID)
	f.version, f.updatedAt, f.types = s.Version, s.UpdatedAt, slices.Clone(s.Types)
	for _, sf := range s.Fields {
		id, err := eventstore.ParseEventID(sf.Event)
		if err != nil {
			return nil, fmt.Errorf("snapshot of %s: field %s: %w", s.StreamID, sf.Name, err)
		}
		f.order = append(f.order, sf.Name)
		f.fields[sf.Name] = field{value: sf.Value, version: sf.Version, event: id, refs: sf.SubjectRefs}
	}
	return f, nil
}

// RawStream reads a stream's events as stored (eventstore.Store).
type RawStream interface {
	ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.RecordedEvent, error)
}

// SnapshotStore keeps snapshots; projection/postgres implements it.
type SnapshotStore interface {
	// Latest returns the newest snapshot of a stream at or before
	// maxVersion, and recorded at or before at if at is not nil.
	Latest(ctx context.Context, streamID string, maxVersion int64, at *time.Time) (Snapshot, bool, error)
	Save(ctx context.Context, s Snapshot) error
}

// DerivedOpener opens sealed fields copied out of their events
// (forgettable.Store).
type DerivedOpener interface {
	OpenDerived(ctx context.Context, streamID string, parts []forgettable.DerivedPart, access forgettable.Access) ([]forgettable.RecordedEvent, error)
}

// Loader loads a stream's state with snapshots: the newest snapshot before
// the point asked for, plus the stored events after it, folded sealed and
// opened once at the end. It saves a snapshot when it folded at least
// Every events past the newest one (default 1,000).
type Loader struct {
	Events    RawStream
	Snapshots SnapshotStore
	Opener    DerivedOpener
	Every     int
	// Page is the read page size (default 1,000).
	Page int
}

// UpTo bounds a load: a version (-1: none) and/or a time.
type UpTo struct {
	Version int64
	At      *time.Time
}

// Loaded is a state and what opening it disclosed.
type Loaded struct {
	State State
	// LastVersion is the stream's last version seen (to tell a version
	// past the end).
	LastVersion int64
	// Opened are the fields' source parts as opened: their SubjectRefs
	// minus ErasedRefs are the subjects whose personal data the state
	// shows decrypted.
	Opened []forgettable.RecordedEvent
	// Folded counts the events read past the snapshot.
	Folded int
}

// Load folds a stream up to u and opens its personal fields for access.
// It returns eventstore.ErrStreamNotFound for a stream without events.
func (l *Loader) Load(ctx context.Context, streamID string, u UpTo, access forgettable.Access) (Loaded, error) {
	every, page := l.Every, l.Page
	if every <= 0 {
		every = 1000
	}
	if page <= 0 {
		page = 1000
	}
	maxVersion := u.Version
	if maxVersion < 0 {
		maxVersion = eventstore.EndOfStream - 1
	}
	fold := NewFold(streamID)
	snap, ok, err := l.Snapshots.Latest(ctx, streamID, maxVersion, u.At)
	if err != nil {
		return Loaded{}, err
	}
	if ok {
		if fold, err = FoldFrom(snap); err != nil {
			return Loaded{}, err
		}
	}
	out := Loaded{LastVersion: fold.version}
	for from := fold.version + 1; ; {
		events, err := l.Events.ReadStream(ctx, streamID, eventstore.ReadStreamOptions{From: from, Limit: page})
		if err != nil {
			return Loaded{}, err
		}
		if len(events) == 0 && from == 0 {
			return Loaded{}, fmt.Errorf("stream %s: %w", streamID, eventstore.ErrStreamNotFound)
		}
		stop := len(events) < page
		for _, e := range events {
			out.LastVersion = e.Version
			if (u.Version >= 0 && e.Version > u.Version) || (u.At != nil && e.RecordedAt.After(*u.At)) {
				// The first event past the bound ends the fold, as for
				// reads without snapshots.
				stop = true
				break
			}
			if err := fold.Apply(forgettable.RecordedEvent{RecordedEvent: e}); err != nil {
				return Loaded{}, err
			}
			out.Folded++
		}
		if stop {
			break
		}
		from = events[len(events)-1].Version + 1
	}
	if out.Folded >= every && fold.version >= 0 {
		if err := l.Snapshots.Save(ctx, fold.Snapshot()); err != nil {
			return Loaded{}, fmt.Errorf("save snapshot of %s: %w", streamID, err)
		}
	}
	// Open the sealed fields, one part per source event.
	var parts []forgettable.DerivedPart
	index := map[eventstore.EventID]int{}
	for _, k := range fold.order {
		fl := fold.fields[k]
		if !bytes.Contains(fl.value, []byte(forgettable.EnvelopePrefix)) {
			continue
		}
		i, ok := index[fl.event]
		if !ok {
			i = len(parts)
			index[fl.event] = i
			parts = append(parts, forgettable.DerivedPart{EventID: fl.event, SubjectRefs: fl.refs, Fields: map[string]json.RawMessage{}})
		}
		parts[i].Fields[k] = fl.value
	}
	if len(parts) > 0 {
		opened, err := l.Opener.OpenDerived(ctx, streamID, parts, access)
		if err != nil {
			return Loaded{}, err
		}
		for i, p := range opened {
			var values map[string]json.RawMessage
			if err := json.Unmarshal(p.Data, &values); err != nil {
				return Loaded{}, fmt.Errorf("open snapshot of %s: %w", streamID, err)
			}
			for k := range parts[i].Fields {
				fl := fold.fields[k]
				fl.value = values[k]
				fl.redacted = nil
				prefix := "/" + escapeToken(k)
				for _, r := range p.Redacted {
					if r.Path == prefix || len(r.Path) > len(prefix) && r.Path[:len(prefix)+1] == prefix+"/" {
						fl.redacted = append(fl.redacted, r)
					}
				}
				fold.fields[k] = fl
			}
		}
		out.Opened = opened
	}
	out.State = fold.State()
	return out, nil
}
