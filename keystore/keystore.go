package keystore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
)

var (
	// ErrForgotten means the subject was erased: the erasure ledger says
	// so. Its personal data is gone for good; reads show it redacted.
	ErrForgotten = errors.New("data subject forgotten")

	// ErrUnavailable means a key could not be had right now: Vault is
	// down, sealed, or refused the token (expired, revoked, permission
	// denied). It is an error, never a redaction: fail closed, retry later.
	ErrUnavailable = errors.New("key store unavailable")

	// ErrKeyNotFound means the key store has no key (or no such version)
	// for a reference. Whether that means "forgotten" is for the erasure
	// ledger to say, never for the key store alone.
	ErrKeyNotFound = errors.New("key not found")

	// ErrInvalidRef is returned for a string that is not a subject
	// reference.
	ErrInvalidRef = errors.New("invalid subject reference")

	// ErrInvalidSubject is returned for an empty or oversized subject id.
	ErrInvalidSubject = errors.New("invalid subject id")

	// ErrReferenceMismatch means the key store's subject reference secret
	// is not the one the database is bound to (another Vault prefix, or a
	// Vault restored without it): references would split, and an erasure
	// through one server would leave data readable through another. A
	// server refuses to start on it; it also wraps ErrUnavailable (fail
	// closed).
	ErrReferenceMismatch = errors.New("the subject reference secret is not the one the database is bound to")
)

// MaxSubjectLength is the longest subject id accepted, in bytes.
const MaxSubjectLength = 1024

// ValidateSubject checks a subject id. The error never echoes it.
func ValidateSubject(subject string) error {
	switch {
	case subject == "":
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	case len(subject) > MaxSubjectLength:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidSubject, MaxSubjectLength)
	}
	return nil
}

// Ref is a data subject's opaque reference: the lowercase hex form of
// HMAC-SHA256(subject id) under a secret kept in the key store. It is
// pseudonymous, not anonymous: whoever holds the secret and a candidate id
// can recompute it. It may appear in PostgreSQL, logs and Vault paths.
type Ref string

// RefSize is the length of a Ref's bytes (its hex form is twice as long).
const RefSize = 32

// ParseRef checks that s is a subject reference.
func ParseRef(s string) (Ref, error) {
	if len(s) != 2*RefSize {
		return "", fmt.Errorf("%w: want %d hex digits", ErrInvalidRef, 2*RefSize)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("%w: want lowercase hex digits", ErrInvalidRef)
		}
	}
	return Ref(s), nil
}

// RefFromBytes returns the Ref of RefSize raw bytes.
func RefFromBytes(b []byte) (Ref, error) {
	if len(b) != RefSize {
		return "", fmt.Errorf("%w: want %d bytes, got %d", ErrInvalidRef, RefSize, len(b))
	}
	return Ref(hex.EncodeToString(b)), nil
}

// Bytes returns the reference's raw bytes (nil if r is not valid).
func (r Ref) Bytes() []byte {
	b, err := hex.DecodeString(string(r))
	if err != nil || len(b) != RefSize {
		return nil
	}
	return b
}

// KeySize is the size of a data key: 256 bits.
const KeySize = 32

// Key is one version of a data subject's key. Its bytes are reachable only
// through Material; every printed or serialised form redacts them.
type Key struct {
	ref     Ref
	version int
	// material is a function so that a Key held in an unexported field of
	// another struct does not print its bytes: fmt cannot call Format
	// there and prints the fields by reflection, and reflection shows a
	// function as an address whatever the verb (a pointer to the array
	// would still be followed by %s and %q). It also makes Key not
	// comparable with ==: compare Material.
	material func() [KeySize]byte
}

// NewKey returns a key. material must be KeySize bytes; version counts from 1.
func NewKey(ref Ref, version int, material []byte) (Key, error) {
	if len(material) != KeySize {
		return Key{}, fmt.Errorf("key for %s: %d bytes, want %d", ref, len(material), KeySize)
	}
	if version < 1 {
		return Key{}, fmt.Errorf("key for %s: version %d, want 1 or more", ref, version)
	}
	var m [KeySize]byte
	copy(m[:], material)
	return Key{ref: ref, version: version, material: func() [KeySize]byte { return m }}, nil
}

// Ref returns the subject reference the key belongs to.
func (k Key) Ref() Ref { return k.ref }

// Version returns the key's version (1 for a subject's first key; rotation
// adds versions).
func (k Key) Version() int { return k.version }

// Material returns the key's bytes. Never log, print or store them.
func (k Key) Material() [KeySize]byte {
	if k.material == nil {
		return [KeySize]byte{}
	}
	return k.material()
}

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k.version == 0 }

// String describes the key without its bytes.
func (k Key) String() string {
	return fmt.Sprintf("keystore.Key{ref: %s, version: %d, material: [redacted]}", k.ref, k.version)
}

// GoString is String, so that %#v does not print the bytes either.
func (k Key) GoString() string { return k.String() }

// Format makes every fmt verb print String: %x or %+v must not reach the
// bytes through reflection.
func (k Key) Format(f fmt.State, verb rune) { _, _ = fmt.Fprint(f, k.String()) }

// LogValue implements slog.LogValuer.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", string(k.ref)), slog.Int("version", k.version))
}

// MarshalJSON refuses: keys are never serialised outside the key store.
func (k Key) MarshalJSON() ([]byte, error) {
	return nil, errors.New("keystore: keys are not serialisable")
}

// Store keeps the data subjects' keys.
type Store interface {
	// SubjectRef derives a subject's reference. Returns ErrInvalidSubject
	// for a bad id and ErrUnavailable if the reference secret cannot be
	// read.
	SubjectRef(ctx context.Context, subject string) (Ref, error)

	// CurrentKey returns the newest version of ref's key. If ref has no key
	// yet, it creates version 1 — exactly once, even when many processes
	// ask at the same moment — and reports created. Returns ErrUnavailable.
	CurrentKey(ctx context.Context, ref Ref) (key Key, created bool, err error)

	// Key returns one version of ref's key. Returns ErrKeyNotFound if the
	// store has no such key or version, ErrUnavailable.
	Key(ctx context.Context, ref Ref, version int) (Key, error)

	// Rotate adds a new version of ref's key and returns it; earlier
	// versions stay readable. Returns ErrKeyNotFound, ErrUnavailable.
	Rotate(ctx context.Context, ref Ref) (Key, error)

	// Destroy deletes every version of ref's key and its metadata
	// permanently (no undelete), then checks that nothing is left. It is
	// idempotent. Returns ErrUnavailable.
	Destroy(ctx context.Context, ref Ref) (DestroyReport, error)

	// Invalidate drops ref's key from any cache of this process.
	Invalidate(ref Ref)
}

// DestroyReport is what Destroy did and verified.
type DestroyReport struct {
	// Existed is true if there was a key to destroy.
	Existed bool
	// VersionsDestroyed counts the key store's stored versions destroyed.
	VersionsDestroyed int
	// Verified is true when a read after the deletion found neither data
	// nor metadata for the key.
	Verified bool
}
