package lead

import (
	"fmt"
	"time"
)

// Command is something a user asks of a lead. Decide checks it against the
// lead's current state and returns the events that record it: none when
// there is nothing to do. Decide does not fill in the events' Version,
// event-id and (after lead-initialized) lead-id: the Handler does (see
// Decide).
type Command interface {
	Decide(l Lead) ([]Event, error)
}

// Decide runs cmd on l and returns its events numbered after l: Version
// and event-id l.Version+1, +2..., lead-id l.ID unless the command set it.
func Decide(l Lead, cmd Command) ([]Event, error) {
	events, err := cmd.Decide(l)
	if err != nil {
		return nil, err
	}
	for i := range events {
		events[i].Version = l.Version + 1 + int64(i)
		events[i].Data.EventID = events[i].Version
		if events[i].Data.LeadID == 0 {
			events[i].Data.LeadID = l.ID
		}
	}
	return events, nil
}

// InitializeLead creates a lead: lead-initialized.
type InitializeLead struct {
	// LeadID is the seed's lead-id (12 for the stream lead-12).
	LeadID      int64
	FirstName   string
	LastName    string
	PhoneNumber string
	// At is when it happened; zero: now.
	At time.Time
}

// Decide needs a lead that does not exist yet, an id, a name and a phone
// number.
func (c InitializeLead) Decide(l Lead) ([]Event, error) {
	if l.Exists() {
		return nil, ErrExists
	}
	if c.LeadID <= 0 || c.FirstName == "" && c.LastName == "" || c.PhoneNumber == "" {
		return nil, fmt.Errorf("%w: a new lead needs a lead id, a name and a phone number", ErrInvalid)
	}
	return []Event{{Type: TypeInitialized, Data: Data{LeadID: c.LeadID,
		FirstName: &c.FirstName, LastName: &c.LastName, PhoneNumber: &c.PhoneNumber, Timestamp: at(c.At)}}}, nil
}

// RecordContact records that the lead was contacted: contacted.
type RecordContact struct {
	At time.Time // zero: now
}

// Decide needs an existing lead.
func (c RecordContact) Decide(l Lead) ([]Event, error) {
	if !l.Exists() {
		return nil, ErrNotFound
	}
	return []Event{{Type: TypeContacted, Data: Data{Timestamp: at(c.At)}}}, nil
}

// SetFollowup sets when to contact the lead again: followup-set.
type SetFollowup struct {
	On time.Time
	At time.Time // zero: now
}

// Decide needs a lead that is not converted, and a follow-up after At.
func (c SetFollowup) Decide(l Lead) ([]Event, error) {
	switch {
	case !l.Exists():
		return nil, ErrNotFound
	case l.Status == StatusConverted:
		return nil, ErrConverted
	}
	ts := at(c.At)
	if !c.On.After(ts.Time) {
		return nil, fmt.Errorf("%w: the follow-up must come after the time it is set", ErrInvalid)
	}
	return []Event{{Type: TypeFollowupSet, Data: Data{FollowupOn: &Time{c.On}, Timestamp: ts}}}, nil
}

// UpdateContactDetails changes the lead's name or phone number:
// contact-details-updated with the fields given ("" leaves a field as it
// is), as in the seed, where the unchanged first name comes along.
type UpdateContactDetails struct {
	FirstName   string
	LastName    string
	PhoneNumber string
	At          time.Time // zero: now
}

// Decide needs an existing lead and at least one field; when every field
// given already has that value, there is nothing to do (no event).
func (c UpdateContactDetails) Decide(l Lead) ([]Event, error) {
	if !l.Exists() {
		return nil, ErrNotFound
	}
	if c.FirstName == "" && c.LastName == "" && c.PhoneNumber == "" {
		return nil, fmt.Errorf("%w: no contact detail given", ErrInvalid)
	}
	e := Event{Type: TypeContactDetailsUpdated, Data: Data{Timestamp: at(c.At)}}
	for _, f := range []struct {
		v   string
		dst **string
	}{{c.FirstName, &e.Data.FirstName}, {c.LastName, &e.Data.LastName}, {c.PhoneNumber, &e.Data.PhoneNumber}} {
		if f.v != "" {
			v := f.v
			*f.dst = &v
		}
	}
	if len(changes(l, e)) == 0 {
		return nil, nil
	}
	return []Event{e}, nil
}

// SubmitOrder records the lead's order: order-submitted.
type SubmitOrder struct {
	PaymentDeadline time.Time
	At              time.Time // zero: now
}

// Decide needs a lead that is not converted, no order pending, and a
// deadline after At.
func (c SubmitOrder) Decide(l Lead) ([]Event, error) {
	switch {
	case !l.Exists():
		return nil, ErrNotFound
	case l.Status == StatusConverted:
		return nil, ErrConverted
	case l.Status == StatusPendingPayment:
		return nil, ErrOrderPending
	}
	ts := at(c.At)
	if !c.PaymentDeadline.After(ts.Time) {
		return nil, fmt.Errorf("%w: the payment deadline must come after the order", ErrInvalid)
	}
	return []Event{{Type: TypeOrderSubmitted, Data: Data{PaymentDeadline: &Time{c.PaymentDeadline}, Timestamp: ts}}}, nil
}

// ConfirmPayment records the payment of the pending order, which converts
// the lead: payment-confirmed, status "converted".
type ConfirmPayment struct {
	At time.Time // zero: now
}

// Decide needs an order pending payment.
func (c ConfirmPayment) Decide(l Lead) ([]Event, error) {
	switch {
	case !l.Exists():
		return nil, ErrNotFound
	case l.Status == StatusConverted:
		return nil, ErrConverted
	case l.Status != StatusPendingPayment:
		return nil, ErrNoOrder
	}
	return []Event{{Type: TypePaymentConfirmed, Data: Data{Status: StatusConverted, Timestamp: at(c.At)}}}, nil
}

// at is a command's time: t, or now.
func at(t time.Time) Time {
	if t.IsZero() {
		t = time.Now()
	}
	return Time{t.UTC()}
}
