package lead

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lethe-store/lethe/api/client"
)

// Errors of the lead's rules and of Handle. Handle wraps them with the
// stream id; match them with errors.Is.
var (
	// ErrNotFound: the command needs a lead, and the stream has no events.
	ErrNotFound = errors.New("no such lead")
	// ErrExists: InitializeLead on a lead that exists.
	ErrExists = errors.New("the lead exists already")
	// ErrInvalid: a command with missing or impossible values.
	ErrInvalid = errors.New("invalid command")
	// ErrConverted: the lead is converted (paid); it takes no follow-up or
	// order any more.
	ErrConverted = errors.New("the lead is converted")
	// ErrOrderPending: SubmitOrder while an order waits for its payment.
	ErrOrderPending = errors.New("an order is pending payment")
	// ErrNoOrder: ConfirmPayment without an order pending payment.
	ErrNoOrder = errors.New("no order pending payment")
	// ErrRestricted: the Handler's token cannot read personal data (it
	// lacks the pii-reader role), so it cannot decide on the lead.
	ErrRestricted = errors.New("personal data restricted: the token needs the pii-reader role")
	// ErrUnknownEvent: the stream holds an event type this package does
	// not know.
	ErrUnknownEvent = errors.New("unknown event type")
)

// ConflictError is a real conflict: events appended concurrently changed a
// fact that the command changes too (both set the phone number, say).
// Deciding again on top would silently overwrite the other writer's
// change, so Handle leaves it to the caller. It unwraps to the server's
// *client.Conflict.
type ConflictError struct {
	StreamID string
	// Facts are the facts both the command and the concurrent events
	// change.
	Facts []Fact
	// Concurrent are the events appended since the state the command was
	// decided on.
	Concurrent []Event
	// Current is the lead with the concurrent events folded in.
	Current Lead

	conflict *client.Conflict
}

// Error names the stream and the facts, never their values (they may be
// personal data).
func (e *ConflictError) Error() string {
	facts := make([]string, len(e.Facts))
	for i, f := range e.Facts {
		facts[i] = string(f)
	}
	return fmt.Sprintf("%s: changed concurrently by %d event(s) (%s): decide again", e.StreamID, len(e.Concurrent), strings.Join(facts, ", "))
}

// Unwrap returns the server's answer, a *client.Conflict.
func (e *ConflictError) Unwrap() error {
	if e.conflict == nil {
		return nil
	}
	return e.conflict
}
