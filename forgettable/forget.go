package forgettable

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

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
// Returns ErrLegalHold for a subject under legal hold (a pending erasure then
// stays pending: no erasure completes while a hold exists), and an error wrapping
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
	// The ledger refuses to start (or resume) an erasure of a held
	// subject, under the lock that SetHold takes too.
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
