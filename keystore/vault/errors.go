package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
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
	if errors.Is(err, vaultapi.ErrSecretNotFound) {
		return fmt.Errorf("vault %s: %w", op, keystore.ErrKeyNotFound)
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		msg := messages(re.Errors)
		if re.RawError {
			msg = "unparsable answer" // could be an HTML page from a proxy
		}
		switch {
		case re.StatusCode == http.StatusNotFound && len(re.Errors) == 0:
			return fmt.Errorf("vault %s: %w", op, keystore.ErrKeyNotFound)
		case re.StatusCode == http.StatusNotFound:
			// KV v2 answers a missing secret with an empty error list; a
			// message such as "no handler for route" means the mount is
			// missing: a misconfiguration, not a missing key.
			return fmt.Errorf("%w: vault %s: no such path (is KV v2 mounted there?): %s", keystore.ErrUnavailable, op, msg)
		case re.StatusCode == http.StatusBadRequest && strings.Contains(msg, casMismatchMessage):
			return fmt.Errorf("vault %s: %w", op, errCASMismatch)
		case re.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: vault %s: permission denied (bad, expired or revoked token, or a policy without this path): %s",
				keystore.ErrUnavailable, op, msg)
		case re.StatusCode == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(msg), "sealed"):
			return fmt.Errorf("%w: vault %s: vault sealed", keystore.ErrUnavailable, op)
		case re.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("%w: vault %s: rate limited or standby (429): %s", keystore.ErrUnavailable, op, msg)
		case re.StatusCode >= 500:
			return fmt.Errorf("%w: vault %s: server error %d: %s", keystore.ErrUnavailable, op, re.StatusCode, msg)
		default:
			return fmt.Errorf("%w: vault %s: unexpected answer %d: %s", keystore.ErrUnavailable, op, re.StatusCode, msg)
		}
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
		return fmt.Errorf("%w: vault %s: canceled: %w", keystore.ErrUnavailable, op, cause)
	case errors.Is(cause, context.DeadlineExceeded), errors.As(cause, &netErr) && netErr.Timeout():
		return fmt.Errorf("%w: vault %s: timeout: %w", keystore.ErrUnavailable, op, cause)
	case urlErr != nil, errors.As(cause, &netErr):
		return fmt.Errorf("%w: vault %s: unreachable: %w", keystore.ErrUnavailable, op, cause)
	}
	return fmt.Errorf("%w: vault %s: %w", keystore.ErrUnavailable, op, err)
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
