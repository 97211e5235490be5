package postgres_test

import (
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/internal/testenv"
)

// A token change and its audit_log row commit together, or neither does;
// the row holds the id, name and roles, never the secret or its hash;
// audit_log is append-only.
func TestTokenChangesAreAudited(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := MustOpenPool(t)
	tokens := postgres.NewTokens(pool)

	secret, nt, err := api.GenerateToken("ingest", []string{wire.RoleWriter}, "admin-1")
	if err != nil {
		t.Fatal(err)
	}
	nt.RequestID = "REQ-1"
	if _, err := tokens.CreateToken(ctx, nt); err != nil {
		t.Fatal(err)
	}
	if err := tokens.RevokeToken(ctx, nt.ID, "admin-2", "REQ-2"); err != nil {
		t.Fatal(err)
	}
	if err := tokens.RevokeToken(ctx, nt.ID, "admin-3", "REQ-3"); err != nil { // a no-op: not recorded
		t.Fatal(err)
	}
	type row struct{ kind, actor, requestID, details string }
	read := func() []row {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT kind, actor, request_id, details::text FROM audit_log ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.kind, &r.actor, &r.requestID, &r.details); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	details := `{"name": "ingest", "roles": ["writer"], "tokenId": "` + nt.ID + `"}`
	want := []row{{"token.created", "admin-1", "REQ-1", details}, {"token.revoked", "admin-2", "REQ-2", details}}
	got := read()
	if !slices.Equal(got, want) {
		t.Fatalf("audit_log = %+v, want %+v", got, want)
	}
	for _, r := range got {
		if strings.Contains(r.details, secret) || strings.Contains(r.details, hex.EncodeToString(nt.Hash[:])) {
			t.Errorf("audit_log row %+v holds the secret or its hash", r)
		}
	}

	// Make the audit row fail: the change must not happen either.
	if _, err := pool.Exec(ctx, `ALTER TABLE audit_log ADD CONSTRAINT test_refuse CHECK (actor <> 'refused')`); err != nil {
		t.Fatal(err)
	}
	_, nt2, err := api.GenerateToken("x", []string{wire.RoleReader}, "refused")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.CreateToken(ctx, nt2); err == nil {
		t.Fatal("CreateToken succeeded although its audit row was refused")
	}
	_, nt3, _ := api.GenerateToken("y", []string{wire.RoleReader}, "admin-1")
	if _, err := tokens.CreateToken(ctx, nt3); err != nil {
		t.Fatal(err)
	}
	if err := tokens.RevokeToken(ctx, nt3.ID, "refused", ""); err == nil || errors.Is(err, api.ErrTokenNotFound) {
		t.Fatalf("RevokeToken with a refused audit row: %v, want an error", err)
	}
	list, err := tokens.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range list {
		if tok.ID == nt2.ID {
			t.Errorf("the token whose audit row failed was created")
		}
		if tok.ID == nt3.ID && tok.RevokedAt != nil {
			t.Errorf("the token whose revocation's audit row failed is revoked")
		}
	}
	if got := read(); len(got) != 3 {
		t.Errorf("audit_log has %d rows, want 3", len(got))
	}

	// Append-only, whoever asks (the tests connect as a superuser).
	for _, stmt := range []string{
		`UPDATE audit_log SET actor = 'someone-else'`,
		`DELETE FROM audit_log WHERE false`,
		`TRUNCATE audit_log`,
	} {
		if _, err := pool.Exec(ctx, stmt); !isSQLState(err, "LT001") {
			t.Errorf("%s: err = %v, want SQLSTATE LT001", stmt, err)
		}
	}
}
