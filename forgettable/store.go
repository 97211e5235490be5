package forgettable

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

var (
	// ErrUndeclaredPersonalData is returned for an append whose event type
	// has a protection policy but that does not say whose data it is.
	ErrUndeclaredPersonalData = errors.New("personal data without a data subject")

	// ErrInvalidDeclaration is returned for a bad personal data
	// declaration: a bad JSON pointer, a missing field, overlapping paths.
	ErrInvalidDeclaration = errors.New("invalid personal data declaration")

	// ErrLegalHold is returned by Forget for a subject under legal hold
	// (GDPR Art. 17(3)).
	ErrLegalHold = errors.New("data subject is under legal hold")

	// ErrKeyMissing is returned when an event's key is missing from the
	// key store although the erasure ledger does not say the subject was
	// erased: an integrity problem (a key store restored from an old
	// backup?), never shown as a redaction.
	ErrKeyMissing = errors.New("key missing without an erasure record")
)

// ErasedStreamID is the system stream where every erasure appends a record
// without personal data (type "subject-erased"): the signal projections and
// snapshots follow to drop what they derived from the subject.
const ErasedStreamID = eventstore.SystemStreamPrefix + "lethe-erasures"

// PersonalData declares whose personal data some fields of an event are.
type PersonalData struct {
	// Subject is the data subject's id (an e-mail address, a customer
	// number...). It never leaves the process: Lethe stores only its
	// reference.
	Subject string `json:"subject"`
	// Paths are JSON Pointers (RFC 6901) into the event's data.
	Paths []string `json:"paths"`
}

// Event is an event to append with its personal data declarations.
type Event struct {
	eventstore.EventData
	PersonalData []PersonalData
}

// RecordedEvent is a stored event as a reader sees it: personal fields
// decrypted, or null and listed in Redacted.
type RecordedEvent struct {
	eventstore.RecordedEvent
	Redacted []Redaction
}

// Access says what a reader may see.
type Access int

const (
	// Restricted readers see every personal field as null, with reason
	// "restricted". No key is fetched.
	Restricted Access = iota
	// Personal readers see personal fields decrypted (or "forgotten").
	Personal
)

// Options configures a Store.
type Options struct {
	Logger *slog.Logger
	// PolicyTTL bounds how long a cached protection policy is used without
	// a change announcement (default 2s).
	PolicyTTL time.Duration
	// KeyConcurrency bounds concurrent key fetches of one read (default 8).
	KeyConcurrency int
}

// Store is the Forgettable Payload over an event store: it seals declared
// personal data on append, opens it on read, and forgets subjects.
type Store struct {
	events   eventstore.Store
	keys     keystore.Store
	ledger   Ledger
	policies Policies
	log      *slog.Logger
	opts     Options

	mu          sync.Mutex
	policyCache map[string]policyEntry
	successors  map[keystore.Ref]keystore.Ref // erased ref -> successor, learnt on demand
}

type policyEntry struct {
	paths   []pointer // nil: no policy
	fetched time.Time
}

// New returns a Store.
func New(events eventstore.Store, keys keystore.Store, ledger Ledger, policies Policies, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PolicyTTL <= 0 {
		opts.PolicyTTL = 2 * time.Second
	}
	if opts.KeyConcurrency <= 0 {
		opts.KeyConcurrency = 8
	}
	return &Store{
		events: events, keys: keys, ledger: ledger, policies: policies, log: opts.Logger, opts: opts,
		policyCache: map[string]policyEntry{},
		successors:  map[keystore.Ref]keystore.Ref{},
	}
}

// Events returns the underlying event store.
func (s *Store) Events() eventstore.Store { return s.events }

// PolicyChanged drops an event type's cached policy ("" drops all). Wire it
// to the change announcements of every process.
func (s *Store) PolicyChanged(eventType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if eventType == "" {
		s.policyCache = map[string]policyEntry{}
		return
	}
	delete(s.policyCache, eventType)
}

func (s *Store) policyPaths(ctx context.Context, eventType string) ([]pointer, error) {
	s.mu.Lock()
	e, ok := s.policyCache[eventType]
	s.mu.Unlock()
	if ok && time.Since(e.fetched) < s.opts.PolicyTTL {
		return e.paths, nil
	}
	p, err := s.policies.Policy(ctx, eventType)
	var paths []pointer
	switch {
	case errors.Is(err, ErrPolicyNotFound):
	case err != nil:
		return nil, err
	default:
		for _, raw := range p.Paths {
			ptr, err := parsePointer(raw)
			if err != nil {
				return nil, fmt.Errorf("policy for %s: %w", eventType, err)
			}
			paths = append(paths, ptr)
		}
	}
	s.mu.Lock()
	s.policyCache[eventType] = policyEntry{paths: paths, fetched: time.Now()}
	s.mu.Unlock()
	return paths, nil
}

// ValidatePolicy checks a protection policy: an event type as events may
// have (printable ASCII without spaces, at most
// eventstore.MaxEventTypeLength bytes), at least one path, valid JSON
// Pointers without NUL characters that do not overlap. Returns an error
// wrapping ErrInvalidDeclaration.
func ValidatePolicy(p Policy) error {
	if p.EventType == "" || len(p.Paths) == 0 {
		return fmt.Errorf("%w: a policy needs an event type and at least one path", ErrInvalidDeclaration)
	}
	if len(p.EventType) > eventstore.MaxEventTypeLength {
		return fmt.Errorf("%w: event type longer than %d bytes", ErrInvalidDeclaration, eventstore.MaxEventTypeLength)
	}
	for i := 0; i < len(p.EventType); i++ {
		if c := p.EventType[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: event type must be printable ASCII without spaces", ErrInvalidDeclaration)
		}
	}
	var ptrs []pointer
	for _, raw := range p.Paths {
		if strings.IndexByte(raw, 0) >= 0 {
			return fmt.Errorf("%w: a path holds a NUL character (\\u0000)", ErrInvalidDeclaration)
		}
		ptr, err := parsePointer(raw)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidDeclaration, err)
		}
		ptrs = append(ptrs, ptr)
	}
	return checkOverlaps(ptrs)
}

// PutPolicy validates and stores a protection policy, changed by
// p.UpdatedBy in the request requestID (may be empty): the audit trail
// records both.
func (s *Store) PutPolicy(ctx context.Context, p Policy, requestID string) error {
	if err := ValidatePolicy(p); err != nil {
		return err
	}
	if err := s.policies.PutPolicy(ctx, p, requestID); err != nil {
		return err
	}
	s.PolicyChanged(p.EventType)
	return nil
}

// DeletePolicy removes a protection policy; actor and requestID (may be
// empty) go to the audit trail.
func (s *Store) DeletePolicy(ctx context.Context, eventType, actor, requestID string) error {
	if err := s.policies.DeletePolicy(ctx, eventType, actor, requestID); err != nil {
		return err
	}
	s.PolicyChanged(eventType)
	return nil
}

// checkOverlaps refuses paths of which one is another or inside another:
// a field is sealed once, whole. Linear in the paths' tokens: each path's
// prefixes are looked up in a set.
func checkOverlaps(ptrs []pointer) error {
	seen := make(map[string]int, len(ptrs))
	for i, p := range ptrs {
		k := p.String()
		if j, dup := seen[k]; dup {
			return fmt.Errorf("%w: paths %s and %s overlap", ErrInvalidDeclaration, ptrs[j], p)
		}
		seen[k] = i
	}
	for _, p := range ptrs {
		var b strings.Builder
		for _, t := range p[:len(p)-1] {
			b.WriteByte('/')
			b.WriteString(escapeToken(t))
			if j, ok := seen[b.String()]; ok {
				return fmt.Errorf("%w: paths %s and %s overlap", ErrInvalidDeclaration, ptrs[j], p)
			}
		}
	}
	return nil
}

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
				// compare what the events say instead.
				if same, ok := s.sameAsStored(ctx, streamID, expected, events, data); ok {
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

// byID is an event store that finds events by id (eventstore/postgres).
type byID interface {
	EventsByID(ctx context.Context, ids []eventstore.EventID) ([]eventstore.RecordedEvent, error)
}

// sameAsStored reports whether events, refused as duplicates, are already
// stored as an identical append: same stream, consecutive versions that
// fit expected, same types and metadata, the same fields sealed for the
// same subjects, and the same data once opened. It returns the earlier
// append's result.
func (s *Store) sameAsStored(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events []Event, sealed []eventstore.EventData) (eventstore.AppendResult, bool) {
	finder, ok := s.events.(byID)
	if !ok {
		return eventstore.AppendResult{}, false
	}
	ids := make([]eventstore.EventID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	stored, err := finder.EventsByID(ctx, ids)
	if err != nil {
		return eventstore.AppendResult{}, false
	}
	for i, e := range stored {
		if e.StreamID != streamID || e.Version != stored[0].Version+int64(i) || e.Type != events[i].Type ||
			!slices.Equal(e.SubjectRefs, sealed[i].SubjectRefs) || !sameJSON(e.Metadata, sealed[i].Metadata) {
			return eventstore.AppendResult{}, false
		}
		if !sameSealing(e.Data, sealed[i].Data) {
			return eventstore.AppendResult{}, false
		}
	}
	switch first := stored[0].Version; {
	case expected == eventstore.Any, expected == eventstore.StreamExists && first > 0,
		expected >= eventstore.NoStream && first == int64(expected)+1:
	default:
		return eventstore.AppendResult{}, false
	}
	opened, err := s.Open(ctx, stored, Personal)
	if err != nil {
		return eventstore.AppendResult{}, false
	}
	for i, e := range opened {
		if len(e.Redacted) > 0 || !sameJSON(e.Data, events[i].Data) {
			return eventstore.AppendResult{}, false
		}
	}
	last := stored[len(stored)-1]
	return eventstore.AppendResult{StreamID: streamID, FirstVersion: stored[0].Version, LastVersion: last.Version,
		FirstPosition: stored[0].Position, LastPosition: last.Position, Duplicate: true}, true
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

// Policy returns an event type's protection policy, or ErrPolicyNotFound.
func (s *Store) Policy(ctx context.Context, eventType string) (Policy, error) {
	return s.policies.Policy(ctx, eventType)
}

// ListPolicies returns every protection policy, by event type.
func (s *Store) ListPolicies(ctx context.Context) ([]Policy, error) {
	return s.policies.ListPolicies(ctx)
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
			// A key was just created: if the subject was erased
			// meanwhile, destroy it again — an erased reference must
			// never keep a key. (Erase writes the ledger before it
			// destroys the key; this check comes after the creation.)
			erased, err := s.ledger.Erased(ctx, []keystore.Ref{r})
			if err != nil {
				return nil, err
			}
			if erased[r] {
				if _, err := s.keys.Destroy(ctx, r); err != nil {
					return nil, err
				}
				return nil, &eventstore.SubjectFencedError{Ref: string(r)}
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

// ReadStream reads a stream's events, opened for access. When the event
// store can hand rows over as they arrive (ReadStreamEach), events are
// decrypted while the database still sends the next ones.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, access Access) ([]RecordedEvent, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = eventstore.DefaultReadLimit
	}
	if each, ok := s.events.(streamEacher); ok && access == Personal && limit >= 64 {
		return s.readStreamEach(ctx, each, streamID, opts, limit)
	}
	events, err := s.events.ReadStream(ctx, streamID, opts)
	if err != nil {
		return nil, err
	}
	return s.Open(ctx, events, access)
}

// streamEacher is an event store that hands a stream's rows over as they
// arrive; eventstore/postgres implements it.
type streamEacher interface {
	ReadStreamEach(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, fn func(eventstore.RecordedEvent) error) error
}

// readStreamEach opens events on worker goroutines as the rows arrive.
// Events whose keys are not in the key store's cache wait for one
// concurrent batch fetch at the end, as in Open.
func (s *Store) readStreamEach(ctx context.Context, each streamEacher, streamID string, opts eventstore.ReadStreamOptions, limit int) ([]RecordedEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := s.newOpening(Personal)
	raw := make([]eventstore.RecordedEvent, limit)
	out := make([]RecordedEvent, limit)
	jobs := make(chan int, 256)
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		ow := o.worker()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if errs[w] != nil {
					continue // drain
				}
				if errs[w] = ow.open(i, raw[i], &out[i]); errs[w] != nil {
					cancel()
				}
			}
		}()
	}
	n := 0
	err := each.ReadStreamEach(ctx, streamID, opts, func(e eventstore.RecordedEvent) error {
		if n == len(raw) {
			return fmt.Errorf("read stream %s: more rows than the limit %d", streamID, limit)
		}
		raw[n] = e
		jobs <- n
		n++
		return nil
	})
	close(jobs)
	wg.Wait()
	if werr := errors.Join(errs...); werr != nil {
		return nil, werr
	}
	if err != nil {
		return nil, err
	}
	return o.finish(ctx, raw[:n], out[:n])
}

// Page is a page of the global log, opened.
type Page struct {
	Events   []RecordedEvent
	Next     int64
	HeldBack bool
}

// ReadAll reads the global log, opened for access.
func (s *Store) ReadAll(ctx context.Context, opts eventstore.ReadAllOptions, access Access) (Page, error) {
	page, err := s.events.ReadAll(ctx, opts)
	if err != nil {
		return Page{}, err
	}
	opened, err := s.Open(ctx, page.Events, access)
	if err != nil {
		return Page{}, err
	}
	return Page{Events: opened, Next: page.Next, HeldBack: page.HeldBack}, nil
}

// Open decrypts the personal fields of stored events, or redacts them:
// "forgotten" when the erasure ledger (read with the events) says the
// subject was erased, "restricted" for Restricted access. Keys are fetched
// once per (subject, version): events whose keys the key store has cached
// are opened at once, the others after one concurrent fetch of the keys
// they need. It returns an error wrapping keystore.ErrUnavailable when a
// key cannot be had, ErrTampered for a sealed field that does not open, and
// ErrKeyMissing for a key missing without an erasure record: never a
// redaction.
func (s *Store) Open(ctx context.Context, events []eventstore.RecordedEvent, access Access) ([]RecordedEvent, error) {
	return s.open(ctx, s.newOpening(access), events)
}

func (s *Store) open(ctx context.Context, o *opening, events []eventstore.RecordedEvent) ([]RecordedEvent, error) {
	out := make([]RecordedEvent, len(events))
	workers := workerCount(len(events))
	err := parallel(len(events), workers, func(int) func(i int) error {
		ow := o.worker()
		return func(i int) error { return ow.open(i, events[i], &out[i]) }
	})
	if err != nil {
		return nil, err
	}
	return o.finish(ctx, events, out)
}

// DerivedPart is data copied out of one stored event — fields of a state
// snapshot — with its sealed fields as they were stored: they stay bound to
// that event (and to their paths, which the fields keep).
type DerivedPart struct {
	EventID     eventstore.EventID
	SubjectRefs []string
	// Fields are top-level fields of the event's data, as stored.
	Fields map[string]json.RawMessage
}

// OpenDerived opens the sealed fields of derived parts as Open does for
// events: each part comes back as an event of the stream whose Data holds
// its fields. Whether a subject is forgotten is asked of the erasure
// ledger, in one query, as reads of events learn it from their rows.
func (s *Store) OpenDerived(ctx context.Context, streamID string, parts []DerivedPart, access Access) ([]RecordedEvent, error) {
	var refs []keystore.Ref
	for _, p := range parts {
		for _, r := range p.SubjectRefs {
			if !slices.Contains(refs, keystore.Ref(r)) {
				refs = append(refs, keystore.Ref(r))
			}
		}
	}
	erased := map[keystore.Ref]bool{}
	if len(refs) > 0 {
		var err error
		if erased, err = s.ledger.Erased(ctx, refs); err != nil {
			return nil, err
		}
	}
	events := make([]eventstore.RecordedEvent, len(parts))
	for i, p := range parts {
		data, err := json.Marshal(p.Fields)
		if err != nil {
			return nil, err
		}
		events[i] = eventstore.RecordedEvent{StreamID: streamID, ID: p.EventID, Data: data, SubjectRefs: p.SubjectRefs}
		for _, r := range p.SubjectRefs {
			if erased[keystore.Ref(r)] {
				events[i].ErasedRefs = append(events[i].ErasedRefs, r)
			}
		}
	}
	return s.Open(ctx, events, access)
}

// keyCache is a key store that can answer from memory without I/O;
// keystore/vault implements it.
type keyCache interface {
	CachedKey(ref keystore.Ref, version int) (keystore.Key, bool)
}

// errDeferred marks a field whose key is not at hand yet.
var errDeferred = errors.New("key not at hand")

// opening is the state of one read's opening: the AEADs of the keys seen
// so far, and the events waiting for a key.
type opening struct {
	s      *Store
	access Access
	cache  keyCache // nil if the key store has none
	// only, if set, is the one subject whose fields open (a subject's
	// access export): the others' are restricted.
	only *[keystore.RefSize]byte

	mu       sync.RWMutex
	aeads    map[keyID]cipher.AEAD
	missing  map[keyID]bool
	deferred []int
}

func (s *Store) newOpening(access Access) *opening {
	o := &opening{s: s, access: access, aeads: map[keyID]cipher.AEAD{}, missing: map[keyID]bool{}}
	o.cache, _ = s.keys.(keyCache)
	return o
}

// openWorker opens events on one goroutine, reusing its buffers.
type openWorker struct {
	o      *opening
	fo     *fieldOpener
	erased []string // the event being opened's erased references
	arena  []byte
}

func (o *opening) worker() *openWorker {
	w := &openWorker{o: o}
	w.fo = newFieldOpener(w.source)
	return w
}

// source is the key source of the event being opened.
func (w *openWorker) source(k keyID) (cipher.AEAD, string, error) {
	o := w.o
	// Another subject's field in a subject's export is restricted, erased
	// or not: the export does not tell whether someone else was erased.
	if o.only != nil && k.ref != *o.only {
		return nil, ReasonRestricted, nil
	}
	if len(w.erased) > 0 && containsRef(w.erased, k.ref) {
		return nil, ReasonForgotten, nil
	}
	if o.access != Personal {
		return nil, ReasonRestricted, nil
	}
	o.mu.RLock()
	a, ok := o.aeads[k]
	o.mu.RUnlock()
	if ok {
		return a, "", nil
	}
	if o.cache != nil {
		if key, ok := o.cache.CachedKey(k.request().ref, k.version); ok {
			a, err := newAEAD(key)
			if err != nil {
				return nil, "", err
			}
			o.mu.Lock()
			o.aeads[k] = a
			o.mu.Unlock()
			return a, "", nil
		}
	}
	o.mu.Lock()
	o.missing[k] = true
	o.mu.Unlock()
	return nil, "", errDeferred
}

// open opens event e (number i of the read) into out, or defers it until
// its keys are fetched.
func (w *openWorker) open(i int, e eventstore.RecordedEvent, out *RecordedEvent) error {
	out.RecordedEvent = e
	if len(e.SubjectRefs) == 0 {
		return nil
	}
	if cap(w.arena)-len(w.arena) < len(e.Data) {
		w.arena = make([]byte, 0, max(64<<10, len(e.Data)))
	}
	dst := w.arena[len(w.arena):len(w.arena):cap(w.arena)]
	w.erased = e.ErasedRefs
	data, redacted, err := w.fo.open(e.Data, e.StreamID, e.ID, dst)
	w.erased = nil
	if errors.Is(err, errDeferred) {
		w.o.mu.Lock()
		w.o.deferred = append(w.o.deferred, i)
		w.o.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("event %s: %w", e.ID, err)
	}
	if len(data) > 0 && cap(dst) > 0 && &data[:1][0] == &dst[:1][0] {
		w.arena = w.arena[:len(w.arena)+len(data)]
		data = data[:len(data):len(data)]
	}
	out.Data = json.RawMessage(data)
	out.Redacted = redacted
	return nil
}

// finish fetches the keys the deferred events need, concurrently, and
// opens those events.
func (o *opening) finish(ctx context.Context, events []eventstore.RecordedEvent, out []RecordedEvent) ([]RecordedEvent, error) {
	if len(o.deferred) == 0 {
		return out, nil
	}
	erased := map[keystore.Ref]bool{}
	for _, e := range events {
		for _, r := range e.ErasedRefs {
			erased[keystore.Ref(r)] = true
		}
	}
	var need []keyRequest
	for k := range o.missing {
		if r := k.request(); !erased[r.ref] {
			need = append(need, r)
		}
	}
	keys, err := o.s.fetchKeys(ctx, need, erased)
	if err != nil {
		return nil, err
	}
	for r, k := range keys {
		a, err := newAEAD(k)
		if err != nil {
			return nil, err
		}
		var id keyID
		copy(id.ref[:], r.ref.Bytes())
		id.version = r.version
		o.aeads[id] = a
	}
	// Keys found missing are of subjects erased since the events were
	// read: their fields are forgotten.
	var gone []string
	for r := range erased {
		gone = append(gone, string(r))
	}
	w := o.worker()
	o.cache = nil // what is not in aeads now is an error, not a deferral
	deferred := o.deferred
	o.deferred = nil
	for _, i := range deferred {
		e := events[i]
		e.ErasedRefs = gone
		if err := w.open(i, e, &out[i]); err != nil {
			return nil, err
		}
		// The event's erased references: those the row said, and those
		// found erased since.
		out[i].ErasedRefs = nil
		for _, r := range events[i].SubjectRefs {
			if erased[keystore.Ref(r)] {
				out[i].ErasedRefs = append(out[i].ErasedRefs, r)
			}
		}
	}
	if len(o.deferred) > 0 {
		return nil, fmt.Errorf("event %s: no key fetched for one of its fields", events[o.deferred[0]].ID)
	}
	return out, nil
}

// containsRef reports whether refs (hex) holds the reference ref (bytes).
func containsRef(refs []string, ref [keystore.RefSize]byte) bool {
	var h [2 * keystore.RefSize]byte
	hex.Encode(h[:], ref[:])
	for _, r := range refs {
		if r == string(h[:]) {
			return true
		}
	}
	return false
}

// workerCount is how many goroutines parallel should use for n items: one
// per core, when n is large enough to pay for them.
func workerCount(n int) int {
	return max(1, min(runtime.GOMAXPROCS(0), n/64))
}

// parallel runs fn(0..n-1) on workers goroutines, item i on worker
// i%workers; worker(w) returns worker w's fn. It returns the errors joined.
func parallel(n, workers int, worker func(w int) func(i int) error) error {
	if workers < 2 {
		fn := worker(0)
		for i := range n {
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		fn := worker(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fetchKeys gets the keys of need concurrently. A key the key store does
// not have is looked up in the ledger again: if the subject's erasure
// committed after the events were read, it is forgotten (added to erased);
// otherwise it is ErrKeyMissing.
func (s *Store) fetchKeys(ctx context.Context, need []keyRequest, erased map[keystore.Ref]bool) (map[keyRequest]keystore.Key, error) {
	keys := make(map[keyRequest]keystore.Key, len(need))
	if len(need) == 0 {
		return keys, nil
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		missing  []keystore.Ref
	)
	sem := make(chan struct{}, s.opts.KeyConcurrency)
	for _, r := range need {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			k, err := s.keys.Key(ctx, r.ref, r.version)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				keys[r] = k
			case errors.Is(err, keystore.ErrKeyNotFound):
				missing = append(missing, r.ref)
			case firstErr == nil:
				firstErr = err
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if len(missing) > 0 {
		now, err := s.ledger.Erased(ctx, missing)
		if err != nil {
			return nil, err
		}
		for _, r := range missing {
			if !now[r] {
				return nil, fmt.Errorf("subject %s: %w", r, ErrKeyMissing)
			}
			erased[r] = true
		}
	}
	return keys, nil
}

// ErasureRequest is who asks to erase a subject, and why.
type ErasureRequest struct {
	Actor      string
	RequestID  string
	Reason     string
	LegalBasis string
}

// Forget erases a data subject (GDPR Art. 17): it records the erasure in
// the ledger (from then on no append carries the subject's data and no read
// shows it, in any process), tells every process to drop the subject's
// cached key, destroys the key in the key store permanently and verifies it
// is gone, appends a record without personal data to ErasedStreamID, and
// returns the receipt. It is idempotent: a second call returns the first
// erasure's receipt (completing it if the first call was interrupted).
// Returns ErrLegalHold for a subject under legal hold, and an error wrapping
// keystore.ErrUnavailable if the key store cannot be reached — the subject is
// then fenced already, and calling Forget again finishes the erasure.
func (s *Store) Forget(ctx context.Context, subject string, req ErasureRequest) (Erasure, error) {
	ref, err := s.currentRef(ctx, subject)
	if err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	return s.ForgetRef(ctx, ref, req)
}

// ForgetRef is Forget for a subject known by its reference.
func (s *Store) ForgetRef(ctx context.Context, ref keystore.Ref, req ErasureRequest) (Erasure, error) {
	if req.Actor == "" {
		return Erasure{}, errors.New("forget: the request needs an actor")
	}
	existing, ok, err := s.ledger.ErasureOf(ctx, ref)
	if err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	if ok && existing.Completion != nil {
		return existing, nil
	}
	if !ok {
		held, err := s.ledger.Held(ctx, ref)
		if err != nil {
			return Erasure{}, fmt.Errorf("forget: %w", err)
		}
		if held {
			return Erasure{}, fmt.Errorf("forget %s: %w", ref, ErrLegalHold)
		}
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80 // UUID v4
	e, created, err := s.ledger.StartErasure(ctx, Erasure{ID: id, Ref: ref, Actor: req.Actor, RequestID: req.RequestID, Reason: req.Reason, LegalBasis: req.LegalBasis})
	if err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	// Not created: an earlier (or concurrent) call started this erasure and
	// may have destroyed the key already, so this call's destroy report
	// alone may not say what there was. The completion says so.
	resumed := !created
	// Tell the read models now, before the key store is asked: if Vault is
	// down, the erasure stays pending, but nothing derived from the
	// subject may outlive the fence.
	if err := s.appendFenceRecord(ctx, e); err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	s.keys.Invalidate(ref)
	report, err := s.keys.Destroy(ctx, ref)
	if err != nil {
		return Erasure{}, fmt.Errorf("forget %s: the subject is fenced, but its key is not destroyed yet (call again): %w", ref, err)
	}
	streams, events, err := s.ledger.Affected(ctx, ref)
	if err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	completion := ErasureCompletion{
		CompletedAt: time.Now().UTC(), KeyExisted: report.Existed, VersionsDestroyed: report.VersionsDestroyed,
		KeyVerifiedGone: report.Verified, StreamsAffected: streams, EventsAffected: events, Resumed: resumed,
	}
	if err := s.appendErasureRecord(ctx, e, completion); err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	if err := s.ledger.CompleteErasure(ctx, e.ID, completion); err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	done, _, err := s.ledger.ErasureOf(ctx, ref)
	if err != nil {
		return Erasure{}, fmt.Errorf("forget: %w", err)
	}
	return done, nil
}

// appendErasureRecord appends the erasure's record, without personal data,
// to ErasedStreamID. The event id is the erasure id, so a repeated call
// appends nothing twice.
func (s *Store) appendErasureRecord(ctx context.Context, e Erasure, c ErasureCompletion) error {
	record := map[string]any{
		"erasureId":       eventstore.EventID(e.ID).String(),
		"subjectRef":      e.Ref,
		"requestedAt":     e.RequestedAt,
		"actor":           e.Actor,
		"requestId":       e.RequestID,
		"keyExisted":      c.KeyExisted,
		"keyVerifiedGone": c.KeyVerifiedGone,
		"streamsAffected": c.StreamsAffected,
		"eventsAffected":  c.EventsAffected,
	}
	if c.Resumed {
		record["resumed"] = true // as in the receipt: keyExisted is this attempt's
	}
	data, err := json.Marshal(record)
	if err != nil {
		return err
	}
	_, err = s.events.AppendToStream(ctx, ErasedStreamID, eventstore.Any, eventstore.EventData{ID: e.ID, Type: "subject-erased", Data: data, Actor: e.Actor})
	if errors.Is(err, eventstore.ErrDuplicateEventID) {
		return nil // recorded by an earlier, interrupted call (its completion time differed)
	}
	return err
}

// SubjectFencedType is the type of the record, in ErasedStreamID, of an
// erasure's start: the subject is fenced, its key not destroyed yet.
// Read models drop what they derived from the subject on it as on
// "subject-erased".
const SubjectFencedType = "subject-fenced"

// appendFenceRecord appends the record, without personal data, that an
// erasure started. Its event id is derived from the erasure id, so a
// repeated call appends nothing twice.
func (s *Store) appendFenceRecord(ctx context.Context, e Erasure) error {
	data, err := json.Marshal(map[string]any{
		"erasureId":   eventstore.EventID(e.ID).String(),
		"subjectRef":  e.Ref,
		"requestedAt": e.RequestedAt,
	})
	if err != nil {
		return err
	}
	id, _ := ErasureRecordIDs(e.ID) // not the erasure id: that one names the "subject-erased" record
	_, err = s.events.AppendToStream(ctx, ErasedStreamID, eventstore.Any, eventstore.EventData{ID: id, Type: SubjectFencedType, Data: data, Actor: e.Actor})
	if errors.Is(err, eventstore.ErrDuplicateEventID) {
		return nil
	}
	return err
}

// Erasure returns the erasure of a subject's current reference, if any.
func (s *Store) Erasure(ctx context.Context, subject string) (Erasure, bool, error) {
	// The current generation: after a re-admission, the earlier erasure is
	// history, not the subject's status.
	ref, err := s.currentRef(ctx, subject)
	if err != nil {
		return Erasure{}, false, err
	}
	return s.ledger.ErasureOf(ctx, ref)
}

// SubjectGoneError is ExportSubject's answer for a subject whose current
// generation is erased: nothing of them is left to export, and the erasure
// says why. It matches keystore.ErrForgotten. (The append fence is
// eventstore.SubjectFencedError.)
type SubjectGoneError struct {
	Erasure Erasure
}

func (e *SubjectGoneError) Error() string { return "data subject erased" }

// Unwrap makes errors.Is(err, keystore.ErrForgotten) true.
func (e *SubjectGoneError) Unwrap() error { return keystore.ErrForgotten }

// subjectEvents reads the events sealed under a subject reference, in
// one snapshot (eventstore/postgres Store).
type subjectEvents interface {
	SubjectEvents(ctx context.Context, ref string, pageSize int, footprint func(streams []string, events int) error, fn func([]eventstore.RecordedEvent) error) error
}

// exportPage is how many events a subject export reads at a time.
const exportPage = 500

// Footprint is where a subject's sealed data is, as a subject export
// found it before reading any: what an access log records.
type Footprint struct {
	Ref     keystore.Ref
	Streams []string
	Events  int
}

// erasedMeanwhile is the error of an export whose subject was erased while
// it ran: the erasure (so that the answer names it), or the ledger's error
// if it cannot be read.
func (s *Store) erasedMeanwhile(ctx context.Context, ref keystore.Ref) error {
	e, ok, err := s.ledger.ErasureOf(ctx, ref)
	if err != nil {
		return fmt.Errorf("subject export: %w", err)
	}
	if !ok {
		return fmt.Errorf("subject export: the ledger says the subject is erased but has no erasure for it")
	}
	return &SubjectGoneError{Erasure: e}
}

// ExportSubject is a data subject's access export (GDPR Art. 15 and 20):
// it hands fn, in position order, every event of every stream that carries
// personal data of the subject's current generation, with that subject's
// fields decrypted and every other subject's fields null (listed in
// Redacted, reason "restricted").
//
// Before any event is opened it finds the subject's footprint and calls
// record with it (an access log entry must precede the disclosure); the
// footprint and the events come from one snapshot, so the export holds
// exactly the events the footprint counts. It returns a *SubjectGoneError
// for an erased subject (its data is gone; the events of generations
// erased before a re-admission are not exported either), or an error
// wrapping keystore.ErrUnavailable when a key cannot be had: never a
// partial export presented as whole. Memory stays flat: it reads and hands
// over a page at a time.
func (s *Store) ExportSubject(ctx context.Context, subject string, record func(Footprint) error, fn func(RecordedEvent) error) error {
	find, ok := s.events.(subjectEvents)
	if !ok {
		return errors.New("subject export: the event store cannot find events by subject")
	}
	ref, err := s.currentRef(ctx, subject)
	if err != nil {
		return fmt.Errorf("subject export: %w", err)
	}
	if e, erased, err := s.ledger.ErasureOf(ctx, ref); err != nil {
		return fmt.Errorf("subject export: %w", err)
	} else if erased {
		return &SubjectGoneError{Erasure: e}
	}
	var only [keystore.RefSize]byte
	copy(only[:], ref.Bytes())
	return find.SubjectEvents(ctx, string(ref), exportPage, func(streams []string, n int) error {
		return record(Footprint{Ref: ref, Streams: streams, Events: n})
	}, func(page []eventstore.RecordedEvent) error {
		// The pages come from a snapshot taken when the export began, so
		// their erased_refs cannot show an erasure committed since: the
		// ledger is asked afresh for each page, as a read asks it with
		// every statement. Erased while the export ran: the rest is gone.
		erased, err := s.ledger.Erased(ctx, []keystore.Ref{ref})
		if err != nil {
			return fmt.Errorf("subject export: %w", err)
		}
		if erased[ref] {
			return s.erasedMeanwhile(ctx, ref)
		}
		o := s.newOpening(Personal)
		o.only = &only
		opened, err := s.open(ctx, o, page)
		if err != nil {
			return fmt.Errorf("subject export: %w", err)
		}
		for _, e := range opened {
			if containsRef(e.ErasedRefs, only) {
				return s.erasedMeanwhile(ctx, ref)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetHold places (held true) or releases a legal hold on a subject.
func (s *Store) SetHold(ctx context.Context, subject string, held bool, actor, reason string) error {
	ref, err := s.currentRef(ctx, subject)
	if err != nil {
		return fmt.Errorf("legal hold: %w", err)
	}
	return s.ledger.SetHold(ctx, ref, held, actor, reason)
}

// Readmit lets an erased subject have personal data again, under a new
// reference and a new key: what was erased stays unreadable. Returns
// ErrNotErased for a subject that is not erased.
func (s *Store) Readmit(ctx context.Context, subject, actor, reason string) (keystore.Ref, error) {
	ref, err := s.currentRef(ctx, subject)
	if err != nil {
		return "", fmt.Errorf("readmit: %w", err)
	}
	var b [keystore.RefSize]byte
	_, _ = rand.Read(b[:])
	successor, err := keystore.RefFromBytes(b[:])
	if err != nil {
		return "", err
	}
	if err := s.ledger.Readmit(ctx, ref, successor, actor, reason); err != nil {
		return "", fmt.Errorf("readmit: %w", err)
	}
	s.mu.Lock()
	s.successors[ref] = successor
	s.mu.Unlock()
	return successor, nil
}

// RotateKey adds a new version of a subject's key; new appends use it,
// older events stay readable with the versions they were sealed with. The
// audit trail records the rotation (subject reference, new version, actor
// and requestID, which may be empty) once the key store made it: should
// that record fail, the error says so, and the key is rotated all the
// same (rotating again records the next version).
func (s *Store) RotateKey(ctx context.Context, subject, actor, requestID string) (int, error) {
	if actor == "" {
		return 0, errors.New("rotate key: the request needs an actor")
	}
	ref, err := s.currentRef(ctx, subject)
	if err != nil {
		return 0, fmt.Errorf("rotate key: %w", err)
	}
	erased, err := s.ledger.Erased(ctx, []keystore.Ref{ref})
	if err != nil {
		return 0, fmt.Errorf("rotate key: %w", err)
	}
	if erased[ref] {
		return 0, fmt.Errorf("rotate key: %w", keystore.ErrForgotten)
	}
	k, err := s.keys.Rotate(ctx, ref)
	if err != nil {
		return 0, fmt.Errorf("rotate key: %w", err)
	}
	if err := s.ledger.RecordKeyRotation(ctx, ref, k.Version(), actor, requestID); err != nil {
		return k.Version(), fmt.Errorf("rotate key: rotated to version %d, but not recorded in the audit trail: %w", k.Version(), err)
	}
	return k.Version(), nil
}
