package lead

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The event types of a lead's stream: the seed's.
const (
	TypeInitialized           = "lead-initialized"
	TypeContacted             = "contacted"
	TypeFollowupSet           = "followup-set"
	TypeContactDetailsUpdated = "contact-details-updated"
	TypeOrderSubmitted        = "order-submitted"
	TypePaymentConfirmed      = "payment-confirmed"
)

// The personal fields of a lead's events, as JSON Pointers: the name and
// phone fields of lead-initialized and contact-details-updated.
const (
	PathFirstName   = "/first-name"
	PathLastName    = "/last-name"
	PathPhoneNumber = "/phone-number"
)

// Status is where a lead stands in the sales funnel.
type Status string

// A lead's statuses. The seed writes only "converted" (in
// payment-confirmed); the others follow from the events.
const (
	StatusNew            Status = "new-lead"
	StatusFollowupSet    Status = "followup-set"
	StatusPendingPayment Status = "pending-payment"
	StatusConverted      Status = "converted"
)

// TimeLayout is the seed's timestamp format: UTC, hundredths of a second
// ("2020-05-27T12:00:00.00Z").
const TimeLayout = "2006-01-02T15:04:05.00Z07:00"

// Time is a timestamp in event data, written in TimeLayout.
type Time struct{ time.Time }

// MarshalJSON writes t in TimeLayout, in UTC.
func (t Time) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(TimeLayout))
}

// UnmarshalJSON reads an RFC 3339 time (null leaves t as it is).
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// Data is an event's data in the seed's JSON. Every event has lead-id,
// event-id (the event's version, as in the seed) and timestamp; the other
// fields depend on the type. A personal field that came redacted is nil,
// and listed in the Event's Redacted.
type Data struct {
	LeadID          int64   `json:"lead-id"`
	EventID         int64   `json:"event-id"`
	FirstName       *string `json:"first-name,omitempty"`
	LastName        *string `json:"last-name,omitempty"`
	PhoneNumber     *string `json:"phone-number,omitempty"`
	FollowupOn      *Time   `json:"followup-on,omitempty"`
	PaymentDeadline *Time   `json:"payment-deadline,omitempty"`
	Status          Status  `json:"status,omitempty"`
	Timestamp       Time    `json:"timestamp"`
}

// Event is one event of a lead's stream.
type Event struct {
	// Version is the event's version in the stream.
	Version int64
	Type    string
	Data    Data
	// Redacted maps each personal field that came as null to why:
	// wire.ReasonForgotten (the person was erased) or
	// wire.ReasonRestricted (the reader lacks pii-reader).
	Redacted map[string]string
}

// personal returns the personal fields the event carries (JSON Pointers).
func (e Event) personal() []string {
	var paths []string
	for _, f := range []struct {
		path string
		v    *string
	}{{PathFirstName, e.Data.FirstName}, {PathLastName, e.Data.LastName}, {PathPhoneNumber, e.Data.PhoneNumber}} {
		if f.v != nil {
			paths = append(paths, f.path)
		}
	}
	return paths
}

// Lead is a lead's state: its events folded in order.
type Lead struct {
	// Version is the last event folded; -1: the lead does not exist.
	Version int64
	// ID is the seed's lead-id, set by lead-initialized.
	ID int64

	FirstName   string
	LastName    string
	PhoneNumber string
	// Redacted maps a personal field (PathFirstName...) whose current
	// value is unknown to why: wire.ReasonForgotten after the person was
	// erased. Such a field reads "".
	Redacted map[string]string

	Status Status
	// FollowupOn is when to call again (zero: no follow-up set).
	FollowupOn time.Time
	// PaymentDeadline is the submitted order's (zero: no order).
	PaymentDeadline time.Time
	// Contacts counts the contacted events; LastContacted is the last.
	Contacts      int
	LastContacted time.Time
	// UpdatedAt is the timestamp of the last event.
	UpdatedAt time.Time
}

// New returns a lead that does not exist yet (version -1).
func New() Lead { return Lead{Version: -1} }

// Exists reports whether the lead has been initialized.
func (l Lead) Exists() bool { return l.Version >= 0 }

// Fold projects a stream's events, in version order, into a Lead. Folding
// the first n events gives the lead as it was at version n-1.
func Fold(events ...Event) (Lead, error) {
	l := New()
	for _, e := range events {
		var err error
		if l, err = l.Apply(e); err != nil {
			return l, err
		}
	}
	return l, nil
}

// Apply returns the lead with one more event folded in. The event must be
// the next version. It returns an error wrapping ErrUnknownEvent for an
// event type it does not know.
func (l Lead) Apply(e Event) (Lead, error) {
	if e.Version != l.Version+1 {
		return l, fmt.Errorf("event version %d does not follow version %d", e.Version, l.Version)
	}
	d := e.Data
	switch e.Type {
	case TypeInitialized:
		l.ID = d.LeadID
		l.Status = StatusNew
		l.setPersonal(e)
	case TypeContacted:
		l.Contacts++
		l.LastContacted = d.Timestamp.Time
	case TypeFollowupSet:
		if d.FollowupOn != nil {
			l.FollowupOn = d.FollowupOn.Time
		}
		if l.Status == StatusNew {
			l.Status = StatusFollowupSet
		}
	case TypeContactDetailsUpdated:
		l.setPersonal(e)
	case TypeOrderSubmitted:
		if d.PaymentDeadline != nil {
			l.PaymentDeadline = d.PaymentDeadline.Time
		}
		l.Status = StatusPendingPayment
	case TypePaymentConfirmed:
		l.Status = StatusConverted
		if d.Status != "" {
			l.Status = d.Status
		}
	default:
		return l, fmt.Errorf("%w %q at version %d", ErrUnknownEvent, e.Type, e.Version)
	}
	l.Version = e.Version
	l.UpdatedAt = d.Timestamp.Time
	return l, nil
}

// setPersonal takes the name and phone fields the event carries; a
// redacted one makes the field unknown.
func (l *Lead) setPersonal(e Event) {
	l.Redacted = maps.Clone(l.Redacted) // l is a copy: never change the caller's map
	for _, f := range []struct {
		path string
		v    *string
		dst  *string
	}{
		{PathFirstName, e.Data.FirstName, &l.FirstName},
		{PathLastName, e.Data.LastName, &l.LastName},
		{PathPhoneNumber, e.Data.PhoneNumber, &l.PhoneNumber},
	} {
		if reason, ok := e.Redacted[f.path]; ok {
			*f.dst = ""
			if l.Redacted == nil {
				l.Redacted = map[string]string{}
			}
			l.Redacted[f.path] = reason
		} else if f.v != nil {
			*f.dst = *f.v
			delete(l.Redacted, f.path)
		}
	}
}

// Fact is a piece of a lead's state that a command overwrites. Two writers
// that change the same fact at the same time conflict: the second would
// overwrite the first without having seen it. Changes to different facts
// merge: the command is decided again on top of the other's events.
// Contacts add up and are no fact: two "contacted" never conflict.
type Fact string

// The facts of a lead.
const (
	// FactLead: that the lead exists (lead-initialized).
	FactLead Fact = "lead"
	// FactName: the first or last name.
	FactName Fact = "name"
	// FactPhone: the phone number.
	FactPhone Fact = "phone-number"
	// FactFollowup: the follow-up date.
	FactFollowup Fact = "followup"
	// FactOrder: the order and its payment.
	FactOrder Fact = "order"
)

// changes returns the facts an event changes on the lead before it. A
// contact-details update changes only the fields whose value differs (a
// form that sends the unchanged first name along does not change the
// name); a value that is unknown (redacted) counts as changed.
func changes(before Lead, e Event) []Fact {
	switch e.Type {
	case TypeInitialized:
		return []Fact{FactLead, FactName, FactPhone}
	case TypeFollowupSet:
		return []Fact{FactFollowup}
	case TypeOrderSubmitted, TypePaymentConfirmed:
		return []Fact{FactOrder}
	case TypeContactDetailsUpdated:
		var facts []Fact
		if differs(before, e, PathFirstName, before.FirstName, e.Data.FirstName) ||
			differs(before, e, PathLastName, before.LastName, e.Data.LastName) {
			facts = append(facts, FactName)
		}
		if differs(before, e, PathPhoneNumber, before.PhoneNumber, e.Data.PhoneNumber) {
			facts = append(facts, FactPhone)
		}
		return facts
	}
	return nil // contacted
}

func differs(before Lead, e Event, path, old string, v *string) bool {
	if _, ok := e.Redacted[path]; ok {
		return true
	}
	if v == nil {
		return false
	}
	_, unknown := before.Redacted[path]
	return unknown || *v != old
}

// foldChanges folds events into l and returns the new lead and the facts
// the events changed, in the order they were first changed.
func foldChanges(l Lead, events []Event) (Lead, []Fact, error) {
	var facts []Fact
	for _, e := range events {
		for _, f := range changes(l, e) {
			if !slices.Contains(facts, f) {
				facts = append(facts, f)
			}
		}
		var err error
		if l, err = l.Apply(e); err != nil {
			return l, nil, err
		}
	}
	return l, facts, nil
}
