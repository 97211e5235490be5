package forgettable

import (
	"context"
	"fmt"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

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
	return s.events.SubjectEvents(ctx, string(ref), exportPage, func(streams []string, n int) error {
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
