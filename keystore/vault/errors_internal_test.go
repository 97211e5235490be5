package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/keystore"
)

func TestClassify(t *testing.T) {
	resp := func(code int, msgs ...string) error {
		// As vault/api returns them: wrapped by the KVv2 helpers.
		return fmt.Errorf("error encountered while reading secret at secret/data/x: %w",
			&vaultapi.ResponseError{HTTPMethod: "GET", URL: "http://vault/v1/secret/data/x", StatusCode: code, Errors: msgs})
	}
	refused := &url.Error{Op: "Get", URL: "http://vault/v1/secret/data/x",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name   string
		err    error
		want   error
		says   string
		absent error
	}{
		{"secret not found", fmt.Errorf("%w: at secret/data/x", vaultapi.ErrSecretNotFound), keystore.ErrKeyNotFound, "", keystore.ErrUnavailable},
		{"404 without message", resp(404), keystore.ErrKeyNotFound, "", keystore.ErrUnavailable},
		{"404 no handler (no mount)", resp(404, `no handler for route "nosuch/data/x". route entry not found.`), keystore.ErrUnavailable, "no such path", keystore.ErrKeyNotFound},
		{"cas mismatch", resp(400, "check-and-set parameter did not match the current version"), errCASMismatch, "", keystore.ErrUnavailable},
		{"other 400", resp(400, "check-and-set parameter required for this call"), keystore.ErrUnavailable, "unexpected answer 400", errCASMismatch},
		{"403", resp(403, "1 error occurred:\n\t* permission denied\n\n"), keystore.ErrUnavailable, "permission denied", keystore.ErrKeyNotFound},
		{"403 invalid token", resp(403, "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"), keystore.ErrUnavailable, "permission denied; invalid token", keystore.ErrKeyNotFound},
		{"503 sealed", resp(503, "Vault is sealed"), keystore.ErrUnavailable, "vault sealed", keystore.ErrKeyNotFound},
		{"503 other", resp(503, "local node not active but active cluster node not found"), keystore.ErrUnavailable, "server error 503", keystore.ErrKeyNotFound},
		{"500", resp(500, "internal error"), keystore.ErrUnavailable, "server error 500", keystore.ErrKeyNotFound},
		{"429", resp(429), keystore.ErrUnavailable, "rate limited or standby", keystore.ErrKeyNotFound},
		{"raw answer", fmt.Errorf("x: %w", &vaultapi.ResponseError{StatusCode: 502, RawError: true, Errors: []string{"<html>bad gateway</html>"}}), keystore.ErrUnavailable, "unparsable answer", keystore.ErrKeyNotFound},
		{"connection refused", refused, keystore.ErrUnavailable, "unreachable: dial tcp: connection refused", keystore.ErrKeyNotFound},
		{"connection refused errno", refused, syscall.ECONNREFUSED, "", nil},
		{"dns", &url.Error{Op: "Get", URL: "http://vault/", Err: &net.DNSError{Err: "no such host", Name: "vault", IsNotFound: true}}, keystore.ErrUnavailable, "unreachable", keystore.ErrKeyNotFound},
		{"deadline", &url.Error{Op: "Get", URL: "http://vault/", Err: context.DeadlineExceeded}, context.DeadlineExceeded, "timeout", keystore.ErrKeyNotFound},
		{"deadline is unavailable", context.DeadlineExceeded, keystore.ErrUnavailable, "timeout", nil},
		{"canceled", fmt.Errorf("wrapped: %w", context.Canceled), context.Canceled, "canceled", keystore.ErrKeyNotFound},
		{"anything else", errors.New("error parsing secret: surprise"), keystore.ErrUnavailable, "surprise", keystore.ErrKeyNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify("read secret/lethe/x", tt.err)
			if !errors.Is(got, tt.want) {
				t.Fatalf("classify = %v, want %v", got, tt.want)
			}
			if tt.absent != nil && errors.Is(got, tt.absent) {
				t.Fatalf("classify = %v, must not be %v", got, tt.absent)
			}
			if !strings.Contains(got.Error(), tt.says) {
				t.Fatalf("classify = %q, want it to say %q", got, tt.says)
			}
			if strings.Contains(got.Error(), "\n") {
				t.Fatalf("classify = %q: more than one line", got)
			}
		})
	}
	if classify("x", nil) != nil {
		t.Fatal("classify(nil) != nil")
	}
}
