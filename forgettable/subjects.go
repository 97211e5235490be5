package forgettable

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/lethe-store/lethe/keystore"
)

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
