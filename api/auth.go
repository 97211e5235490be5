package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lethe-store/lethe/api/wire"
)

// Principal is who a request acts as: the token that authenticated it.
type Principal struct {
	// TokenID identifies the token (a UUID, or BootstrapTokenID); it is what
	// logs and the access log record, never the secret.
	TokenID string
	Name    string
	Roles   []string
}

// Has reports whether the principal holds role.
func (p Principal) Has(role string) bool { return slices.Contains(p.Roles, role) }

// BootstrapTokenID is the token id of LETHE_ADMIN_TOKEN.
const BootstrapTokenID = "bootstrap-admin"

var (
	// ErrUnauthenticated is returned for a token that is unknown or
	// revoked.
	ErrUnauthenticated = errors.New("unknown or revoked token")
	// ErrTokenNotFound is returned when revoking a token that does not
	// exist.
	ErrTokenNotFound = errors.New("no such token")
	// ErrInvalidRole is returned for a role Lethe does not know.
	ErrInvalidRole = errors.New("invalid role")
	// ErrInvalidTokenName is returned for a token name that is too long
	// or holds a NUL character.
	ErrInvalidTokenName = errors.New("invalid token name")
)

// MaxTokenNameLength is the longest token name accepted, in bytes.
const MaxTokenNameLength = 200

// TokenStore keeps API tokens, as hashes only. The PostgreSQL
// implementation is in api/postgres.
type TokenStore interface {
	// Authenticate returns the principal of a token's hash, or an error
	// wrapping ErrUnauthenticated for an unknown or revoked token.
	Authenticate(ctx context.Context, hash [32]byte) (Principal, error)
	// CreateToken stores a new token's hash, and its audit trail record
	// (token.created, by t.CreatedBy) in the same transaction; the returned
	// description has no secret.
	CreateToken(ctx context.Context, t NewToken) (wire.Token, error)
	// ListTokens returns every token, revoked ones included, oldest first.
	ListTokens(ctx context.Context) ([]wire.Token, error)
	// RevokeToken revokes a token by id (revoking twice is not an error);
	// ErrTokenNotFound if there is no such token. The revocation and its
	// audit trail record (who: by, a token id or "cli:USER"; requestID,
	// which may be empty) commit together.
	RevokeToken(ctx context.Context, id, by, requestID string) error
}

// NewToken is a token to store.
type NewToken struct {
	ID        string // a UUID
	Name      string
	Roles     []string
	Hash      [32]byte
	CreatedBy string // the creating principal: "token:<id>", or "cli:USER"
	// RequestID is the id of the request that creates it, for the audit
	// trail; may be empty.
	RequestID string
}

// tokenPrefix starts every Lethe token, so that secret scanners can find
// leaked ones.
const tokenPrefix = "lethe_"

// GenerateToken makes a new token: a random 256-bit secret, and its id.
// Returns an error wrapping ErrInvalidRole or ErrInvalidTokenName for
// roles or a name it refuses.
func GenerateToken(name string, roles []string, createdBy string) (secret string, t NewToken, err error) {
	if err := ValidateRoles(roles); err != nil {
		return "", NewToken{}, err
	}
	if len(name) > MaxTokenNameLength {
		return "", NewToken{}, fmt.Errorf("%w: at most %d bytes", ErrInvalidTokenName, MaxTokenNameLength)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", NewToken{}, fmt.Errorf("%w: a NUL character (\\u0000)", ErrInvalidTokenName)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", NewToken{}, err
	}
	secret = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", NewToken{}, err
	}
	id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80 // UUID v4
	return secret, NewToken{ID: uuidString(id), Name: name, Roles: slices.Clone(roles), Hash: HashToken(secret), CreatedBy: createdBy}, nil
}

// HashToken is how a token is stored and looked up: SHA-256. Tokens are
// 256-bit random secrets, so a fast hash is enough (no dictionary to
// guess from); a slow password hash would only slow every request.
func HashToken(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// ValidateRoles checks a token's roles: at least one, each known.
func ValidateRoles(roles []string) error {
	if len(roles) == 0 {
		return fmt.Errorf("%w: a token needs at least one role (%s)", ErrInvalidRole, strings.Join(wire.Roles, ", "))
	}
	for _, r := range roles {
		if !slices.Contains(wire.Roles, r) {
			return fmt.Errorf("%w %q: want %s", ErrInvalidRole, r, strings.Join(wire.Roles, ", "))
		}
	}
	return nil
}

// AccessLog records every response that carried decrypted personal data.
// The PostgreSQL implementation is in api/postgres.
type AccessLog interface {
	RecordAccess(ctx context.Context, r AccessRecord) error
}

// AccessRecord is one response that carried decrypted personal data: who,
// when, where, whose — never the data.
type AccessRecord struct {
	At        time.Time
	TokenID   string
	Method    string
	Route     string // the route pattern, e.g. /v1/streams/{streamId}/events
	RequestID string
	StreamIDs []string
	// SubjectRefs are the references of the subjects whose personal data
	// was decrypted.
	SubjectRefs []string
	Events      int
}

// bootstrap is the token of LETHE_ADMIN_TOKEN, held in memory only.
type bootstrap struct {
	hash [32]byte
	set  bool
}

func (b bootstrap) matches(hash [32]byte) bool {
	return b.set && subtle.ConstantTimeCompare(b.hash[:], hash[:]) == 1
}

func uuidString(id [16]byte) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexd[c>>4], hexd[c&0xf])
	}
	return string(out)
}
