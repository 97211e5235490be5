package forgettable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

// plannedField is a field to seal for a subject.
type plannedField struct {
	path    pointer
	subject int // index into plan.subjects
}

type plan struct {
	subjects []string // distinct subject ids of the append
	fields   [][]plannedField
}

// planAppend works out which fields of which events to seal for whom,
// applying protection policies.
func (s *Store) planAppend(ctx context.Context, events []Event) (plan, error) {
	var p plan
	index := map[string]int{}
	p.fields = make([][]plannedField, len(events))
	for i, e := range events {
		if !json.Valid(e.Data) {
			return p, &eventstore.InvalidEventError{Index: i, Reason: "data is not valid JSON"}
		}
		type declaredPath struct {
			ptr     pointer
			subject int
		}
		var declared []declaredPath
		subjects := map[int]bool{}
		for _, pd := range e.PersonalData {
			if err := keystore.ValidateSubject(pd.Subject); err != nil {
				return p, fmt.Errorf("event %d: %w", i, err)
			}
			k, ok := index[pd.Subject]
			if !ok {
				k = len(p.subjects)
				index[pd.Subject] = k
				p.subjects = append(p.subjects, pd.Subject)
			}
			subjects[k] = true
			for _, raw := range pd.Paths {
				ptr, err := parsePointer(raw)
				if err != nil {
					return p, fmt.Errorf("event %d: %w: %v", i, ErrInvalidDeclaration, err)
				}
				declared = append(declared, declaredPath{ptr, k})
			}
		}
		// Before any key is made: the event store would refuse more
		// subjects than this, but only once their keys exist.
		if len(subjects) > eventstore.MaxSubjectsPerEvent {
			return p, fmt.Errorf("event %d: %w: more than %d data subjects in one event", i, ErrInvalidDeclaration, eventstore.MaxSubjectsPerEvent)
		}
		policy, err := s.policyPaths(ctx, e.Type)
		if err != nil {
			return p, err
		}
		if len(declared) == 0 && len(policy) == 0 {
			continue
		}
		// Which of the declared and policy fields the data has: one pass
		// over its bytes, no decoding.
		paths := make([]string, 0, len(declared)+len(policy))
		for _, d := range declared {
			paths = append(paths, d.ptr.String())
		}
		for _, pp := range policy {
			paths = append(paths, pp.String())
		}
		found, err := findFields(e.Data, paths)
		if err != nil {
			return p, &eventstore.InvalidEventError{Index: i, Reason: "data is not valid JSON"}
		}
		var ptrs []pointer
		for j, d := range declared {
			if len(found[j]) == 0 {
				return p, fmt.Errorf("event %d: %w: %s is not a field of the event's data", i, ErrInvalidDeclaration, d.ptr)
			}
			ptrs = append(ptrs, d.ptr)
			p.fields[i] = append(p.fields[i], plannedField{path: d.ptr, subject: d.subject})
		}
		for j, pp := range policy {
			if len(found[len(declared)+j]) == 0 {
				continue // the policy's field is not in this event
			}
			covered := false
			for _, f := range p.fields[i] {
				if pp.hasPrefix(f.path) {
					covered = true
					break
				}
			}
			if covered {
				continue
			}
			if len(subjects) != 1 {
				if len(subjects) == 0 {
					return p, fmt.Errorf("event %d (%s): %w: its protection policy names %s; declare the subject in personalData", i, e.Type, ErrUndeclaredPersonalData, pp)
				}
				return p, fmt.Errorf("event %d (%s): %w: policy field %s is not declared for any of the event's subjects", i, e.Type, ErrUndeclaredPersonalData, pp)
			}
			for k := range subjects {
				ptrs = append(ptrs, pp)
				p.fields[i] = append(p.fields[i], plannedField{path: pp, subject: k})
			}
		}
		if err := checkOverlaps(ptrs); err != nil {
			return p, fmt.Errorf("event %d: %w", i, err)
		}
	}
	return p, nil
}

// Append seals the declared personal data of events and appends them. It
// fails closed: if a key cannot be had (keystore.ErrUnavailable), nothing is
// written. Appending personal data of an erased subject that was not
// re-admitted returns keystore.ErrForgotten. Other errors are those of
// eventstore.Store.AppendToStream.
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...Event) (eventstore.AppendResult, error) {
	p, err := s.planAppend(ctx, events)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, err)
	}
	refs := make([]keystore.Ref, len(p.subjects))
	for i, subject := range p.subjects {
		if refs[i], err = s.keys.SubjectRef(ctx, subject); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, err)
		}
	}
	for attempt := 0; ; attempt++ {
		current := make([]keystore.Ref, len(refs))
		for i, r := range refs {
			current[i] = s.knownSuccessor(r)
		}
		var res eventstore.AppendResult
		data, err := s.sealAll(ctx, streamID, events, p, current)
		if err == nil {
			// Its errors already name the stream.
			res, err = s.events.AppendToStream(ctx, streamID, expected, data...)
			if errors.Is(err, eventstore.ErrDuplicateEventID) {
				// Sealed again under a newer key version (a rotation, or
				// another server), an identical retry differs in bytes:
				// compare what the events say instead. A failure to
				// compare (Vault or the database down) is that error,
				// not a conflict.
				same, ok, cerr := s.sameAsStored(ctx, streamID, expected, events, data)
				switch {
				case cerr != nil:
					return eventstore.AppendResult{}, fmt.Errorf("append to %s: compare with the stored events: %w", streamID, cerr)
				case ok:
					return same, nil
				}
			}
		} else {
			err = fmt.Errorf("append to %s: %w", streamID, err)
		}
		// Either the key store (a key created for an erased reference)
		// or the database (its fence) found an erased subject.
		var erased *eventstore.SubjectFencedError
		if !errors.As(err, &erased) {
			return res, err
		}
		if attempt > 3 {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, keystore.ErrForgotten)
		}
		// A subject was erased. If it was re-admitted, its data goes
		// under the successor reference; otherwise it is refused.
		if !s.learnSuccessor(ctx, keystore.Ref(erased.Ref)) {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", streamID, keystore.ErrForgotten)
		}
	}
}

// sameAsStored reports whether events, refused as duplicates, are already
// stored as an identical append by the same actor: same stream,
// consecutive versions that fit expected, same types, metadata and actor,
// the same fields sealed for the same subjects, and the same data once
// opened. It returns the earlier append's result. Events stored by another
// actor are never opened: a writer that did not write them learns nothing
// of their content by resending their ids (the answer is the same
// conflict whatever it sends). An error is one of the event store or the
// key store: no answer either way.
func (s *Store) sameAsStored(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []Event, sealed []eventstore.EventData) (eventstore.AppendResult, bool, error) {
	ids := make([]eventstore.EventID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	stored, err := s.events.EventsByID(ctx, ids)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	for i, e := range stored {
		if e.StreamID != streamID || e.Version != stored[0].Version+int64(i) || e.Type != events[i].Type || e.Actor != events[i].Actor ||
			!slices.Equal(e.SubjectRefs, sealed[i].SubjectRefs) || !sameJSON(e.Metadata, sealed[i].Metadata) {
			return eventstore.AppendResult{}, false, nil
		}
		if !sameSealing(e.Data, sealed[i].Data) {
			return eventstore.AppendResult{}, false, nil
		}
	}
	switch first := stored[0].Version; {
	case expected == eventstore.Any, expected == eventstore.StreamExists && first > 0,
		expected >= eventstore.NoStream && first == int64(expected)+1:
	default:
		return eventstore.AppendResult{}, false, nil
	}
	opened, err := s.Open(ctx, stored, Personal)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	for i, e := range opened {
		if len(e.Redacted) > 0 || !sameJSON(e.Data, events[i].Data) {
			return eventstore.AppendResult{}, false, nil
		}
	}
	last := stored[len(stored)-1]
	return eventstore.AppendResult{StreamID: streamID, FirstVersion: stored[0].Version, LastVersion: last.Version,
		FirstPosition: stored[0].Position, LastPosition: last.Position, Duplicate: true}, true, nil
}

// sameJSON compares two JSON documents by meaning (key order, spacing);
// empty means {}.
func sameJSON(a, b []byte) bool {
	norm := func(x []byte) ([]byte, bool) {
		if len(x) == 0 {
			x = []byte("{}")
		}
		v, err := decodeJSON(x)
		if err != nil {
			return nil, false
		}
		out, err := encodeJSON(v)
		return out, err == nil
	}
	na, oka := norm(a)
	nb, okb := norm(b)
	return oka && okb && string(na) == string(nb)
}

// sameSealing reports whether two stored forms seal the same fields for
// the same subjects (each path with its subject reference; the key
// versions may differ).
func sameSealing(a, b []byte) bool {
	sealing := func(data []byte) (map[string][keystore.RefSize]byte, bool) {
		spans, err := scanSealed(data)
		if err != nil {
			return nil, false
		}
		out := make(map[string][keystore.RefSize]byte, len(spans))
		for _, sp := range spans {
			k, err := envelopeKey(data[sp.start+1 : sp.end-1])
			if err != nil {
				return nil, false
			}
			if _, dup := out[sp.path]; dup {
				return nil, false
			}
			out[sp.path] = k.ref
		}
		return out, true
	}
	sa, oka := sealing(a)
	sb, okb := sealing(b)
	return oka && okb && maps.Equal(sa, sb)
}

// knownSuccessor follows the re-admissions learnt so far.
func (s *Store) knownSuccessor(r keystore.Ref) keystore.Ref {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < 100; i++ {
		next, ok := s.successors[r]
		if !ok {
			return r
		}
		r = next
	}
	return r
}

// learnSuccessor looks up whether an erased ref was re-admitted.
func (s *Store) learnSuccessor(ctx context.Context, erased keystore.Ref) bool {
	next, ok, err := s.ledger.Successor(ctx, erased)
	if err != nil || !ok {
		if err != nil {
			s.log.Warn("look up re-admission", "subject_ref", erased, "err", err)
		}
		return false
	}
	s.mu.Lock()
	s.successors[erased] = next
	s.mu.Unlock()
	return true
}

// SubjectRef returns a subject's current reference (after re-admissions):
// how receipts, holds and logs name the subject.
func (s *Store) SubjectRef(ctx context.Context, subject string) (keystore.Ref, error) {
	return s.currentRef(ctx, subject)
}

// currentRef resolves a subject's reference through its re-admissions,
// asking the ledger.
func (s *Store) currentRef(ctx context.Context, subject string) (keystore.Ref, error) {
	ref, err := s.keys.SubjectRef(ctx, subject)
	if err != nil {
		return "", err
	}
	for range 100 {
		next, ok, err := s.ledger.Successor(ctx, ref)
		if err != nil {
			return "", err
		}
		if !ok {
			return ref, nil
		}
		ref = next
	}
	return "", errors.New("re-admission chain too long")
}

// postCreateTimeout bounds the check that follows a key's creation.
const postCreateTimeout = 30 * time.Second

// destroyIfErased follows the creation of r's key: if the subject was
// erased meanwhile, the key is destroyed again — an erased reference must
// never keep a key (Erase writes the ledger before it destroys the key;
// this check comes after the creation). It runs detached from the
// request: a caller that goes away after the key was created must not
// leave it behind. Returns a *eventstore.SubjectFencedError for an erased
// subject.
func (s *Store) destroyIfErased(ctx context.Context, r keystore.Ref) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), postCreateTimeout)
	defer cancel()
	erased, err := s.ledger.Erased(ctx, []keystore.Ref{r})
	if err != nil {
		return err
	}
	if !erased[r] {
		return nil
	}
	if _, err := s.keys.Destroy(ctx, r); err != nil {
		return err
	}
	return &eventstore.SubjectFencedError{Ref: string(r)}
}

// sealAll builds the events to store: personal fields sealed, subject
// references set.
func (s *Store) sealAll(ctx context.Context, streamID string, events []Event, p plan, refs []keystore.Ref) ([]eventstore.EventData, error) {
	keys := make([]keystore.Key, len(refs))
	for i, r := range refs {
		k, created, err := s.keys.CurrentKey(ctx, r)
		if err != nil {
			return nil, err
		}
		if created {
			if err := s.destroyIfErased(ctx, r); err != nil {
				return nil, err
			}
		}
		keys[i] = k
	}
	out := make([]eventstore.EventData, len(events))
	sealers := map[keyRequest]*sealer{}
	for i, e := range events {
		out[i] = e.EventData
		if len(p.fields[i]) == 0 {
			if err := checkNoReserved(e.Data); err != nil {
				return nil, &eventstore.InvalidEventError{Index: i, Reason: err.Error()}
			}
			out[i].SubjectRefs = nil
			continue
		}
		fields := make([]sealField, len(p.fields[i]))
		var subjectRefs []string
		for j, f := range p.fields[i] {
			fields[j] = sealField{path: f.path, key: keys[f.subject]}
			if r := string(refs[f.subject]); !slices.Contains(subjectRefs, r) {
				subjectRefs = append(subjectRefs, r)
			}
		}
		sealed, err := sealWith(e.Data, streamID, e.ID, fields, sealers)
		if err != nil {
			if errors.Is(err, ErrReservedValue) {
				return nil, &eventstore.InvalidEventError{Index: i, Reason: err.Error()}
			}
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		sort.Strings(subjectRefs)
		out[i].Data = sealed
		out[i].SubjectRefs = subjectRefs
	}
	return out, nil
}
