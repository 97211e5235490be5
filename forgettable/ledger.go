package forgettable

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/keystore"
)

// Erasure is an entry of the erasure ledger: a subject's erasure, requested
// and, once its key is destroyed, completed. It holds no personal data: the
// subject is known by its reference only.
type Erasure struct {
	ID          [16]byte
	Ref         keystore.Ref
	RequestedAt time.Time
	Actor       string
	RequestID   string
	Reason      string
	LegalBasis  string
	// Completion is nil until the key was destroyed.
	Completion *ErasureCompletion
}

// ErasureCompletion is what an erasure did.
type ErasureCompletion struct {
	CompletedAt       time.Time
	KeyExisted        bool
	VersionsDestroyed int
	// KeyVerifiedGone: a read after the deletion found neither data nor
	// metadata for the key in Vault.
	KeyVerifiedGone bool
	StreamsAffected int64
	EventsAffected  int64
	// Resumed: the completion was recorded by a call that found the
	// erasure already started, after an earlier attempt was interrupted.
	// KeyExisted and VersionsDestroyed then describe that last call's
	// destroy only: an earlier attempt may have destroyed the key already
	// (KeyVerifiedGone is what proves it is gone).
	Resumed bool
}

// ErrNotErased is returned by Readmit for a subject that is not erased.
var ErrNotErased = errors.New("data subject is not erased")

// ErrErasurePending is returned by Readmit for a subject whose erasure has
// started but not completed (its key not destroyed yet): erase again to
// finish it first.
var ErrErasurePending = errors.New("the data subject's erasure is pending: erase again to complete it before re-admitting")

// Ledger is the erasure ledger, the legal holds and the re-admissions. The
// PostgreSQL implementation is in eventstore/postgres.
type Ledger interface {
	// Erased reports which of refs are erased.
	Erased(ctx context.Context, refs []keystore.Ref) (map[keystore.Ref]bool, error)
	// Successor returns the reference that replaced an erased one when
	// the subject was re-admitted, if it was.
	Successor(ctx context.Context, ref keystore.Ref) (keystore.Ref, bool, error)
	// StartErasure records an erasure request — from then on the subject
	// is fenced — unless ref already has one, which it returns instead
	// (created false). Returns ErrLegalHold, and records nothing, if ref
	// is under legal hold (a pending erasure included: it stays pending),
	// atomically with SetHold.
	StartErasure(ctx context.Context, e Erasure) (stored Erasure, created bool, err error)
	// CompleteErasure records what the erasure did, c.Resumed included
	// (once; later calls keep the first record).
	CompleteErasure(ctx context.Context, id [16]byte, c ErasureCompletion) error
	// ErasureOf returns the erasure of ref, if any.
	ErasureOf(ctx context.Context, ref keystore.Ref) (Erasure, bool, error)
	// Affected counts the streams and events carrying ref's personal data.
	Affected(ctx context.Context, ref keystore.Ref) (streams, events int64, err error)
	// Held reports whether ref is under legal hold.
	Held(ctx context.Context, ref keystore.Ref) (bool, error)
	// SetHold places (held) or releases a legal hold. Placing one on a
	// subject whose erasure has started returns an *ErasureStartedError
	// and records nothing, atomically with StartErasure.
	SetHold(ctx context.Context, ref keystore.Ref, held bool, actor, reason string) error
	// Readmit records that the erased ref's subject continues under
	// successor. Returns ErrNotErased if erased is not erased, and
	// ErrErasurePending if its erasure has not completed.
	Readmit(ctx context.Context, erased, successor keystore.Ref, actor, reason string) error
	// RecordKeyRotation records in the audit trail that actor rotated
	// ref's key to version (requestID may be empty).
	RecordKeyRotation(ctx context.Context, ref keystore.Ref, version int, actor, requestID string) error
}

// Policy is a protection policy: the fields of an event type that are
// always personal data.
type Policy struct {
	EventType string    `json:"eventType"`
	Paths     []string  `json:"paths"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
}

// ErrPolicyNotFound is returned for an event type without a policy.
var ErrPolicyNotFound = errors.New("no protection policy for this event type")

// Policies stores protection policies. The PostgreSQL implementation is in
// eventstore/postgres.
type Policies interface {
	// Policy returns an event type's policy, or ErrPolicyNotFound.
	Policy(ctx context.Context, eventType string) (Policy, error)
	// PutPolicy creates or replaces a policy and records the change
	// (p.UpdatedBy, requestID, which may be empty) in the audit trail,
	// atomically.
	PutPolicy(ctx context.Context, p Policy, requestID string) error
	// DeletePolicy removes a policy and records the change in the audit
	// trail, atomically; ErrPolicyNotFound if there is none.
	DeletePolicy(ctx context.Context, eventType, actor, requestID string) error
	// ListPolicies returns every policy, by event type.
	ListPolicies(ctx context.Context) ([]Policy, error)
}

// ErrErasureStarted is returned (in an *ErasureStartedError) for a legal
// hold on a subject whose erasure has started: a hold must come before the
// erasure request, never after it.
var ErrErasureStarted = errors.New("the data subject's erasure has started")

// ErasureStartedError is SetHold's refusal to hold a subject whose erasure
// has started (pending or completed): the subject is fenced, and their data
// already reads as forgotten. It names the erasure. errors.Is(err,
// ErrErasureStarted) is true for it.
type ErasureStartedError struct {
	Erasure Erasure
}

func (e *ErasureStartedError) Error() string {
	return fmt.Sprintf("%v (erasure %s): a legal hold must be placed before the erasure request", ErrErasureStarted, eventstore.EventID(e.Erasure.ID))
}

// Unwrap makes errors.Is(err, ErrErasureStarted) true.
func (e *ErasureStartedError) Unwrap() error { return ErrErasureStarted }
