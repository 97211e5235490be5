package forgettable

import (
	"context"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

// keyCache is a key store that can answer from memory without I/O
// (keystore/vault implements it). New checks for it once: without it,
// every key of a read is fetched.
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
	o.cache = s.cache
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
