package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/keystore"
)

// errCASMismatch is what a KV v2 write with a check-and-set version that is
// no longer current becomes: another writer got there first. It never
// leaves the package.
var errCASMismatch = errors.New("vault: check-and-set version did not match")

// casMismatchMessage is the KV v2 engine's message for a failed
// check-and-set (vault-plugin-secrets-kv, path_data.go,
// validateCheckAndSetOption), sent with HTTP 400.
const casMismatchMessage = "check-and-set parameter did not match the current version"

// classify translates an error of vault/api into Lethe's vocabulary, at
// the boundary. It fails closed: only a 404 without a message (or
// vault/api's ErrSecretNotFound) becomes keystore.ErrKeyNotFound, and only
// a check-and-set mismatch becomes errCASMismatch; every other failure —
// unreachable, timed out, sealed, standby, permission denied, bad or
// expired token, a 5xx, or any answer this package does not understand —
// is keystore.ErrUnavailable.
//
// The message is one line: the operation and path, the reason, and Vault's
// own error strings. It never holds the token (vault/api sends it in a
// header, and neither Vault nor vault/api puts it in an error). A transport
// error's cause is wrapped (so errors.Is finds context.DeadlineExceeded or
// syscall.ECONNREFUSED); a *vaultapi.ResponseError is not, its multi-line
// text being summarised instead.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	d := diagnose(err)
	switch {
	case d.kind != keystore.ErrUnavailable:
		return fmt.Errorf("vault %s: %w", op, d.kind)
	case d.detail != "":
		return fmt.Errorf("%w: vault %s: %s: %s", keystore.ErrUnavailable, op, d.reason, d.detail)
	case d.reason == "":
		return fmt.Errorf("%w: vault %s: %w", keystore.ErrUnavailable, op, d.cause)
	case d.cause != nil:
		return fmt.Errorf("%w: vault %s: %s: %w", keystore.ErrUnavailable, op, d.reason, d.cause)
	default:
		return fmt.Errorf("%w: vault %s: %s", keystore.ErrUnavailable, op, d.reason)
	}
}

// diagnosis is a non-nil error of vault/api, classified (see classify).
type diagnosis struct {
	// kind is keystore.ErrKeyNotFound, errCASMismatch or
	// keystore.ErrUnavailable.
	kind error
	// reason says why, in fixed words, for keystore.ErrUnavailable; ""
	// for an error this package does not understand.
	reason string
	// detail is Vault's error strings, which may name paths.
	detail string
	// cause is a transport error's cause, which names no path, or (with
	// reason "") the error not understood, which may.
	cause error
}

func diagnose(err error) diagnosis {
	if errors.Is(err, vaultapi.ErrSecretNotFound) {
		return diagnosis{kind: keystore.ErrKeyNotFound}
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		msg := messages(re.Errors)
		if re.RawError {
			msg = "unparsable answer" // could be an HTML page from a proxy
		}
		d := diagnosis{kind: keystore.ErrUnavailable, detail: msg}
		switch {
		case re.StatusCode == http.StatusNotFound && len(re.Errors) == 0:
			return diagnosis{kind: keystore.ErrKeyNotFound}
		case re.StatusCode == http.StatusNotFound:
			// KV v2 answers a missing secret with an empty error list; a
			// message such as "no handler for route" means the mount is
			// missing: a misconfiguration, not a missing key.
			d.reason = "no such path (is KV v2 mounted there?)"
		case re.StatusCode == http.StatusBadRequest && strings.Contains(msg, casMismatchMessage):
			return diagnosis{kind: errCASMismatch}
		case re.StatusCode == http.StatusForbidden:
			d.reason = "permission denied (bad, expired or revoked token, or a policy without this path)"
		case re.StatusCode == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(msg), "sealed"):
			d.reason, d.detail = "vault sealed", ""
		case re.StatusCode == http.StatusTooManyRequests:
			d.reason = "rate limited or standby (429)"
		case re.StatusCode >= 500:
			d.reason = "server error " + strconv.Itoa(re.StatusCode)
		default:
			d.reason = "unexpected answer " + strconv.Itoa(re.StatusCode)
		}
		return d
	}
	// A transport error: the request's URL (in a *url.Error) repeats op;
	// its cause says what went wrong.
	cause := err
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Err != nil {
		cause = urlErr.Err
	}
	var netErr net.Error
	switch {
	case errors.Is(cause, context.Canceled):
		return diagnosis{kind: keystore.ErrUnavailable, reason: "canceled", cause: cause}
	case errors.Is(cause, context.DeadlineExceeded), errors.As(cause, &netErr) && netErr.Timeout():
		return diagnosis{kind: keystore.ErrUnavailable, reason: "timeout", cause: cause}
	case urlErr != nil, errors.As(cause, &netErr):
		return diagnosis{kind: keystore.ErrUnavailable, reason: "unreachable", cause: cause}
	}
	return diagnosis{kind: keystore.ErrUnavailable, cause: err}
}

// requestError is a failed request to Vault as an Observer is told of it:
// the op name and the reason in fixed words, without paths, references or
// Vault's own messages. It wraps the Store's sentinel (errs[0]) and, for a
// request that got no answer, the transport error's cause, which names at
// most Vault's address.
type requestError struct {
	op     string
	reason string // "" for keystore.ErrKeyNotFound
	errs   []error
}

func (e *requestError) Error() string {
	if e.reason == "" {
		return "vault " + e.op + ": " + e.errs[0].Error()
	}
	msg := e.errs[0].Error() + ": vault " + e.op + ": " + e.reason
	if len(e.errs) > 1 {
		msg += ": " + e.errs[1].Error()
	}
	return msg
}

func (e *requestError) Unwrap() []error { return e.errs }

// observed returns what an Observer is told of a failed request, from the
// error vault/api returned.
func observed(op string, raw error) error {
	d := diagnose(raw)
	e := &requestError{op: op, reason: d.reason, errs: []error{d.kind}}
	switch {
	case d.kind != keystore.ErrUnavailable:
		e.reason = ""
	case d.reason == "":
		e.reason = "unexpected error" // d.cause may name a path
	case d.cause != nil:
		e.errs = append(e.errs, d.cause)
	}
	return e
}

// statusCode returns the HTTP status of a Vault answer, or 0.
func statusCode(err error) int {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// occurred matches the header of a go-multierror list, as Vault sends in
// some error strings ("2 errors occurred:\n\t* permission denied\n...").
var occurred = regexp.MustCompile(`^\d+ errors? occurred:$`)

// messages joins Vault's error strings into one line.
func messages(errs []string) string {
	var out []string
	for _, e := range errs {
		for _, line := range strings.Split(e, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
			if line != "" && !occurred.MatchString(line) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "; ")
}
