package eventstore

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// EventID identifies an event: a UUID, unique in the whole store. Clients
// choose it, which makes appends safe to retry.
type EventID [16]byte

// NewEventID returns a new random, time-ordered event id (UUID version 7,
// RFC 9562), which keeps the database's event id index compact.
func NewEventID() EventID {
	var id EventID
	_, _ = rand.Read(id[:]) // never fails (crypto/rand documents it)
	binary.BigEndian.PutUint64(id[:8], uint64(time.Now().UnixMilli())<<16|binary.BigEndian.Uint64(id[:8])&0xffff)
	id[6] = id[6]&0x0f | 0x70 // version 7
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

// ParseEventID parses the canonical text form of a UUID
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, any case).
func ParseEventID(s string) (EventID, error) {
	var id EventID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("event id %q: not a UUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", truncate(s, 40))
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 { // the dashes, checked above
			i++
			continue
		}
		if _, err := hex.Decode(id[j:j+1], []byte(s[i:i+2])); err != nil {
			return EventID{}, fmt.Errorf("event id %q: not a UUID: bad hex digit", truncate(s, 40))
		}
		i += 2
		j++
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// IsZero reports whether id is the nil UUID, which is not a valid event id.
func (id EventID) IsZero() bool { return id == EventID{} }

// String returns the canonical lowercase text form.
func (id EventID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// MarshalText implements encoding.TextMarshaler.
func (id EventID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *EventID) UnmarshalText(b []byte) error {
	v, err := ParseEventID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// MaxEventTypeLength is the longest event type accepted, in bytes.
const MaxEventTypeLength = 200

// MaxEventsPerAppend is the most events one append may carry. (The
// PostgreSQL store derives positions from the transaction id and the event's
// index in its append: see docs/architecture.md.)
const MaxEventsPerAppend = 1 << 16

// EventData is an event to append.
type EventData struct {
	// ID is chosen by the client (see NewEventID). Required.
	ID EventID
	// Type names what happened, e.g. "lead-initialized". Required.
	Type string
	// Data is the event's payload: a JSON object. Required.
	Data json.RawMessage
	// Metadata is optional: a JSON object (correlation ids and the like),
	// stored as {} when empty.
	Metadata json.RawMessage
	// SubjectRefs are the references (64 lowercase hex digits, see package
	// keystore) of the data subjects whose sealed personal data the event
	// carries. Package forgettable sets them; never put subject ids here.
	// The store indexes them and refuses the append, with a
	// *SubjectFencedError, if one of them has been erased.
	SubjectRefs []string
	// Actor is who appends the event, for the audit trail: an API token's
	// id, "cli:USER", an erasure's actor. Optional; never personal data.
	// It is part of the event's hash-chain link, not of its content: a
	// retry by another actor is still the same append.
	Actor string
}

// MaxSubjectsPerEvent bounds an event's SubjectRefs.
const MaxSubjectsPerEvent = 64

// Validate checks what can be checked without a database.
func (e EventData) Validate() error {
	switch {
	case e.ID.IsZero():
		return fmt.Errorf("missing id")
	case e.Type == "":
		return fmt.Errorf("missing type")
	case len(e.Type) > MaxEventTypeLength:
		return fmt.Errorf("type longer than %d bytes", MaxEventTypeLength)
	}
	for i := 0; i < len(e.Type); i++ {
		if c := e.Type[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("type must be printable ASCII without spaces")
		}
	}
	if !utf8.Valid(e.Data) || !utf8.Valid(e.Metadata) {
		return fmt.Errorf("data and metadata must be UTF-8")
	}
	if !isJSONObject(e.Data) {
		return fmt.Errorf("data must be a JSON object")
	}
	if len(e.Metadata) > 0 && !isJSONObject(e.Metadata) {
		return fmt.Errorf("metadata must be a JSON object")
	}
	if len(e.SubjectRefs) > MaxSubjectsPerEvent {
		return fmt.Errorf("more than %d subject references", MaxSubjectsPerEvent)
	}
	for i, r := range e.SubjectRefs {
		if !isSubjectRef(r) {
			return fmt.Errorf("subject reference %d is not 64 lowercase hex digits (never put a subject id here)", i)
		}
		for _, q := range e.SubjectRefs[:i] {
			if q == r {
				return fmt.Errorf("subject reference %d is listed twice", i)
			}
		}
	}
	return nil
}

func isSubjectRef(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isJSONObject(b json.RawMessage) bool {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	StreamID string
	// Version is the event's place in its stream, from 0.
	Version int64
	// Position is the event's place in the global log: unique, growing
	// with commit order, not consecutive.
	Position int64
	ID       EventID
	Type     string
	Data     json.RawMessage
	Metadata json.RawMessage
	// RecordedAt is the time the appending transaction started (UTC).
	// Events of one append share it; it is not guaranteed to grow with
	// Position.
	RecordedAt time.Time
	// SubjectRefs are the data subjects whose sealed personal data the
	// event carries (see EventData.SubjectRefs).
	SubjectRefs []string
	// ErasedRefs are those of SubjectRefs that the erasure ledger said
	// were erased when the event was read, in the same statement: a
	// reader never needs a cache, a broadcast or Vault to know it.
	ErasedRefs []string
	// Actor is who appended the event (EventData.Actor); empty when the
	// writer named none.
	Actor string
	// Link is the event's link in its stream's hash chain (ChainLink):
	// 32 bytes, or nil for an event stored before links existed.
	Link []byte
	// Size is the bytes of Data and Metadata as stored (sealed personal
	// fields included), set by reads: what a read's MaxBytes counts. It
	// stays the stored size when Data is opened.
	Size int
}

// AppendResult describes a successful append.
type AppendResult struct {
	StreamID      string
	FirstVersion  int64
	LastVersion   int64
	FirstPosition int64
	LastPosition  int64
	// Duplicate is true when the events were already stored by an
	// earlier, identical append: nothing was written this time, and the
	// versions and positions are those of the earlier append.
	Duplicate bool
}
