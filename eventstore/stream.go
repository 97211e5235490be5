package eventstore

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxStreamIDLength is the longest stream id accepted, in bytes.
const MaxStreamIDLength = 200

// SystemStreamPrefix starts the ids of streams that Lethe itself writes
// (for example the erasure records). The HTTP API refuses client appends to
// them; the Go API accepts them so that Lethe's own packages can write.
const SystemStreamPrefix = "$"

// AllStreamID names the global log in APIs that take a stream id.
const AllStreamID = "$all"

// ValidateStreamID reports whether id may name a stream. A stream id is 1 to
// MaxStreamIDLength bytes of ASCII letters, digits and the characters
// "-", "_", ".", ":" and "@"; it starts with a letter or a digit, or with
// SystemStreamPrefix for Lethe's own streams. "$all" is reserved.
//
// Stream ids are stored and logged in the clear: they must not hold personal
// data (use an opaque id such as "lead-12", not an e-mail address).
func ValidateStreamID(id string) error {
	switch {
	case id == "":
		return &InvalidStreamIDError{Reason: "empty"}
	case len(id) > MaxStreamIDLength:
		return &InvalidStreamIDError{Reason: fmt.Sprintf("longer than %d bytes", MaxStreamIDLength)}
	case id == AllStreamID:
		return &InvalidStreamIDError{Reason: AllStreamID + " is the global log, not a stream"}
	}
	start := 0
	if strings.HasPrefix(id, SystemStreamPrefix) {
		start = len(SystemStreamPrefix)
		if len(id) == start {
			return &InvalidStreamIDError{Reason: "nothing after " + SystemStreamPrefix}
		}
	}
	if !isAlnum(id[start]) {
		return &InvalidStreamIDError{Reason: "must start with a letter or a digit"}
	}
	for i := start; i < len(id); i++ {
		c := id[i]
		if isAlnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@' {
			continue
		}
		if c >= 0x80 {
			return &InvalidStreamIDError{Reason: fmt.Sprintf("non-ASCII byte 0x%02x at byte %d is not allowed (letters, digits, - _ . : @)", c, i)}
		}
		return &InvalidStreamIDError{Reason: fmt.Sprintf("character %s at byte %d is not allowed (letters, digits, - _ . : @)", strconv.QuoteRune(rune(c)), i)}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// IsSystemStream reports whether id names one of Lethe's own streams.
func IsSystemStream(id string) bool { return strings.HasPrefix(id, SystemStreamPrefix) }

// Category returns a stream's category: the part of its id before the first
// "-" ("lead" for "lead-12"), or the whole id if it has no "-".
func Category(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

// ExpectedVersion guards an append (optimistic concurrency). It is either
// an exact version (0 or more, see Exact) or one of Any, NoStream and
// StreamExists.
type ExpectedVersion int64

const (
	// NoStream expects the stream to have no events yet. Its value, -1, is
	// also the version of a stream with no events.
	NoStream ExpectedVersion = -1
	// Any appends whatever the stream's version is.
	Any ExpectedVersion = -2
	// StreamExists expects the stream to have at least one event.
	StreamExists ExpectedVersion = -3
)

// invalidExpected is what Exact returns for a version below -1.
const invalidExpected ExpectedVersion = -1 << 63

// Exact expects the stream's last event to have version v. Exact(-1) is
// NoStream. A v below -1 gives an expected version that is not Valid (it
// never silently means Any or StreamExists): appends with it fail.
func Exact(v int64) ExpectedVersion {
	if v < -1 {
		return invalidExpected
	}
	return ExpectedVersion(v)
}

// Valid reports whether e is an exact version, Any, NoStream or StreamExists.
func (e ExpectedVersion) Valid() bool { return e >= StreamExists }

// String returns "any", "no stream (-1)", "stream exists" or the exact
// version.
func (e ExpectedVersion) String() string {
	switch e {
	case Any:
		return "any"
	case NoStream:
		return "no stream (-1)"
	case StreamExists:
		return "stream exists"
	}
	return strconv.FormatInt(int64(e), 10)
}
