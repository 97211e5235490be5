package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/internal/testenv"
)

var createdToken = regexp.MustCompile(`(?m)^id +([0-9a-f-]{36})\ntoken +(lethe_[A-Za-z0-9_-]{43})\n\z`)

// The token commands against a real PostgreSQL: create, list, revoke, and
// the token works, then does not.
func TestTokenCommands(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.MigratedDatabase(t)
	vars := env(map[string]string{"LETHE_DATABASE_URL": dbURL})
	cli := func(args ...string) (stdout, stderr string, err error) {
		var o, e bytes.Buffer
		err = run(ctx, append([]string{"token"}, args...), vars, nil, &o, &e)
		return o.String(), e.String(), err
	}
	tokens := apipg.NewTokens(testenv.Pool(t, dbURL))

	out, errOut, err := cli("create", "--role", "writer, pii-reader", "--name", "ingest")
	if err != nil {
		t.Fatalf("create: %v\n%s%s", err, out, errOut)
	}
	m := createdToken.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create printed %q, want the id and the token", out)
	}
	id, secret := m[1], m[2]
	if !strings.Contains(errOut, "cannot show it again") {
		t.Errorf("create stderr = %q, want the warning that the token is shown once", errOut)
	}
	p, err := tokens.Authenticate(ctx, api.HashToken(secret))
	if err != nil || p.TokenID != id || p.Name != "ingest" || !slices.Equal(p.Roles, []string{"writer", "pii-reader"}) {
		t.Fatalf("the created token authenticates as %+v, %v; want %s, ingest, [writer pii-reader]", p, err, id)
	}

	out2, _, err := cli("create", "--role", "auditor", "--name", "bad\nline")
	if err != nil {
		t.Fatal(err)
	}
	m2 := createdToken.FindStringSubmatch(out2)
	if m2 == nil || m2[2] == secret || m2[1] == id {
		t.Fatalf("second create printed %q, want a new id and token", out2)
	}

	list, _, err := cli("list")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(list, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "REVOKED") {
		t.Fatalf("list = %q, want a header and two tokens", list)
	}
	if f := strings.Fields(lines[1]); len(f) != 5 || f[0] != id || f[1] != "ingest" || f[2] != "writer,pii-reader" || f[4] != "-" {
		t.Errorf("list line %q, want id, name, roles, created, -", lines[1])
	}
	if !strings.Contains(lines[2], `"bad\nline"`) || !strings.Contains(lines[2], m2[1]) {
		t.Errorf("list line %q, want the second token, its name quoted", lines[2])
	}
	for _, s := range []string{secret, m2[2]} {
		if strings.Contains(list, s) || strings.Contains(list, strings.TrimPrefix(s, "lethe_")) {
			t.Errorf("list shows a secret: %s", list)
		}
	}

	// Flags may follow the id.
	out, _, err = run2(ctx, []string{"token", "revoke", id, "--database-url", dbURL})
	if err != nil || out != "token "+id+" revoked\n" {
		t.Fatalf("revoke = %q, %v", out, err)
	}
	if _, err := tokens.Authenticate(ctx, api.HashToken(secret)); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("revoked token: err = %v, want ErrUnauthenticated", err)
	}
	if _, err := tokens.Authenticate(ctx, api.HashToken(m2[2])); err != nil {
		t.Fatalf("the other token: %v", err)
	}
	list, _, err = cli("list")
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSuffix(list, "\n"), "\n")
	if f := strings.Fields(lines[1]); len(f) != 5 || f[0] != id || !strings.HasPrefix(f[4], "20") {
		t.Errorf("list line %q after revoke, want a revocation time", lines[1])
	}
	if _, _, err := cli("revoke", id); err != nil {
		t.Errorf("revoking twice: %v, want nil", err)
	}

	for _, bad := range []string{"4b0d6d0e-2b7c-4f43-9c1e-6f0d3b0e9a11", "nope"} {
		if _, _, err := cli("revoke", bad); !errors.Is(err, api.ErrTokenNotFound) {
			t.Errorf("revoke %s: err = %v, want ErrTokenNotFound", bad, err)
		}
	}
	if _, _, err := cli("create", "--role", "root"); !errors.Is(err, api.ErrInvalidRole) {
		t.Errorf("create with an unknown role: err = %v, want ErrInvalidRole", err)
	}
	if l, err := tokens.ListTokens(ctx); err != nil || len(l) != 2 {
		t.Errorf("after the refused commands: %d tokens, %v; want 2", len(l), err)
	}
}

func run2(ctx context.Context, args []string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(ctx, args, env(nil), nil, &o, &e)
	return o.String(), e.String(), err
}

// Mistakes are reported before any connection is tried: there is no
// database here.
func TestTokenUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string // a substring of the error
		is      error
	}{
		{"no command", nil, "no token command given", nil},
		{"flag instead of command", []string{"--role", "reader"}, "no token command given", nil},
		{"unknown command", []string{"delete", "x"}, `unknown token command "delete"`, nil},
		{"no role", []string{"create"}, "at least one role", api.ErrInvalidRole},
		{"blank roles", []string{"create", "--role", " , "}, "at least one role", api.ErrInvalidRole},
		{"unknown role", []string{"create", "--role", "reader,root"}, `"root"`, api.ErrInvalidRole},
		{"long name", []string{"create", "--role", "reader", "--name", strings.Repeat("n", 201)}, "at most 200 bytes", nil},
		{"create operand", []string{"create", "--role", "reader", "extra"}, "unexpected arguments: extra", nil},
		{"list operand", []string{"list", "extra"}, "unexpected arguments: extra", nil},
		{"revoke without id", []string{"revoke"}, "revoke needs one token id", nil},
		{"revoke two ids", []string{"revoke", "a", "b"}, "revoke needs one token id", nil},
		{"role flag on list", []string{"list", "--role", "reader"}, "flag provided but not defined: -role", nil},
		{"no database", []string{"list"}, "LETHE_DATABASE_URL", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := run2(context.Background(), append([]string{"token"}, tt.args...))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("err = %v, want one containing %q (%v)", err, tt.wantErr, tt.is)
			}
		})
	}
}
