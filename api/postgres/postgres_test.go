package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// MustOpenPool returns a pool on a new, migrated database.
func MustOpenPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return testenv.Pool(tb, testenv.MigratedDatabase(tb))
}

// mustCreate generates and stores a token, and returns its secret.
func mustCreate(tb testing.TB, tokens *postgres.Tokens, name string, roles ...string) (string, wire.Token) {
	tb.Helper()
	secret, nt, err := api.GenerateToken(name, roles, "test")
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := tokens.CreateToken(testenv.Context(tb), nt)
	if err != nil {
		tb.Fatalf("CreateToken: %v", err)
	}
	return secret, tok
}

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	tokens := postgres.NewTokens(MustOpenPool(t))

	before := time.Now().Add(-time.Minute)
	secret, nt, err := api.GenerateToken("ingest", []string{wire.RoleWriter, wire.RolePIIReader}, "cli")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.CreateToken(ctx, nt)
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if tok.ID != nt.ID || tok.Name != "ingest" || !slices.Equal(tok.Roles, nt.Roles) || tok.CreatedBy != "cli" ||
		tok.RevokedAt != nil || tok.Secret != "" || tok.CreatedAt.Before(before) || tok.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreateToken = %+v, want id %s, name ingest, roles %v, created by cli, now, no secret", tok, nt.ID, nt.Roles)
	}

	p, err := tokens.Authenticate(ctx, api.HashToken(secret))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if want := (api.Principal{TokenID: nt.ID, Name: "ingest", Roles: nt.Roles}); p.TokenID != want.TokenID || p.Name != want.Name || !slices.Equal(p.Roles, want.Roles) {
		t.Fatalf("Authenticate = %+v, want %+v", p, want)
	}
	if !p.Has(wire.RolePIIReader) || p.Has(wire.RoleAdmin) {
		t.Errorf("principal roles %v", p.Roles)
	}

	// Unknown secrets, and a hash that is almost right, are refused.
	for _, s := range []string{"", "lethe_nope", secret + "x", strings.TrimSuffix(secret, secret[len(secret)-1:])} {
		if _, err := tokens.Authenticate(ctx, api.HashToken(s)); !errors.Is(err, api.ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) err = %v, want ErrUnauthenticated", s, err)
		}
	}

	_, other := mustCreate(t, tokens, "", wire.RoleReader)
	list, err := tokens.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != tok.ID || list[1].ID != other.ID || list[1].Name != "" {
		t.Fatalf("ListTokens = %+v, want the two tokens, oldest first", list)
	}

	// Revoke: authentication fails at once; the token is still listed,
	// with its revocation time; revoking again keeps the first time.
	if err := tokens.RevokeToken(ctx, tok.ID, "test", ""); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if _, err := tokens.Authenticate(ctx, api.HashToken(secret)); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("Authenticate after revocation: err = %v, want ErrUnauthenticated", err)
	}
	revokedAt := func() time.Time {
		t.Helper()
		list, err := tokens.ListTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range list {
			if l.ID == tok.ID {
				if l.RevokedAt == nil {
					t.Fatalf("revoked token listed without revokedAt: %+v", l)
				}
				return *l.RevokedAt
			}
		}
		t.Fatalf("revoked token %s not listed: %+v", tok.ID, list)
		return time.Time{}
	}
	first := revokedAt()
	if err := tokens.RevokeToken(ctx, strings.ToUpper(tok.ID), "test", ""); err != nil {
		t.Fatalf("second RevokeToken: %v", err)
	}
	if again := revokedAt(); !again.Equal(first) {
		t.Errorf("revokedAt after a second revocation = %v, want the first, %v", again, first)
	}
	if l, _ := tokens.ListTokens(ctx); len(l) != 2 || l[1].RevokedAt != nil {
		t.Errorf("the other token: %+v, want it unrevoked", l)
	}

	for _, id := range []string{"4b0d6d0e-2b7c-4f43-9c1e-6f0d3b0e9a11", "not-a-uuid", "", "4b0d6d0e+2b7c+4f43+9c1e+6f0d3b0e9a11"} {
		if err := tokens.RevokeToken(ctx, id, "test", ""); !errors.Is(err, api.ErrTokenNotFound) {
			t.Errorf("RevokeToken(%q) err = %v, want ErrTokenNotFound", id, err)
		}
	}
}

func TestCreateTokenRefusals(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	tokens := postgres.NewTokens(MustOpenPool(t))
	_, nt, err := api.GenerateToken("a", []string{wire.RoleReader}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.CreateToken(ctx, nt); err != nil {
		t.Fatal(err)
	}
	same := nt
	_, fresh, _ := api.GenerateToken("b", []string{wire.RoleReader}, "test")
	sameHash := fresh
	sameHash.Hash = nt.Hash
	noRoles := fresh
	noRoles.Roles = nil
	badRole := fresh
	badRole.Roles = []string{"root"}
	badID := fresh
	badID.ID = "7"
	tests := []struct {
		name string
		nt   api.NewToken
		is   error
	}{
		{"same id", same, nil},
		{"same hash", sameHash, nil},
		{"no roles", noRoles, api.ErrInvalidRole},
		{"unknown role", badRole, api.ErrInvalidRole},
		{"id not a UUID", badID, nil},
	}
	for _, tt := range tests {
		_, err := tokens.CreateToken(ctx, tt.nt)
		if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
			t.Errorf("%s: err = %v, want an error (%v)", tt.name, err, tt.is)
		}
	}
	if list, err := tokens.ListTokens(ctx); err != nil || len(list) != 1 {
		t.Fatalf("ListTokens = %+v, %v; want the first token only", list, err)
	}
}

// The database holds the token's hash, never its secret: no column of the
// row contains it, in any form.
func TestTokenSecretNeverStored(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := MustOpenPool(t)
	tokens := postgres.NewTokens(pool)
	secret, tok := mustCreate(t, tokens, "ci", wire.RoleAdmin)
	if err := tokens.RevokeToken(ctx, tok.ID, "test", ""); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT * FROM api_tokens`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		hash := api.HashToken(secret)
		var sawHash bool
		for i, v := range vals {
			col := string(rows.FieldDescriptions()[i].Name)
			if b, ok := v.([]byte); ok && string(b) == string(hash[:]) {
				sawHash = true
			}
			if s := fmt.Sprintf("%v %s", v, v); strings.Contains(s, secret) || strings.Contains(s, strings.TrimPrefix(secret, "lethe_")) {
				t.Errorf("column %s holds the secret", col)
			}
		}
		if !sawHash {
			t.Errorf("no column holds the token's hash: %v", vals)
		}
	}
	if err := rows.Err(); err != nil || n != 1 {
		t.Fatalf("%d rows, %v; want 1", n, err)
	}
	// Nor does the whole table, as text.
	var dump string
	if err := pool.QueryRow(ctx, `SELECT string_agg(t::text, ' ') FROM api_tokens t`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump, strings.TrimPrefix(secret, "lethe_")) {
		t.Errorf("api_tokens holds the secret: %s", dump)
	}
}

// A token changes once, when revoked: the database refuses any other
// change, and un-revoking.
func TestTokenRevocationIsFinal(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := MustOpenPool(t)
	tokens := postgres.NewTokens(pool)
	secret, tok := mustCreate(t, tokens, "ci", wire.RoleReader)
	if _, err := pool.Exec(ctx, `UPDATE api_tokens SET roles = '{admin}'`); !isSQLState(err, "LT003") {
		t.Errorf("granting a role: err = %v, want SQLSTATE LT003", err)
	}
	if err := tokens.RevokeToken(ctx, tok.ID, "test", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE api_tokens SET revoked_at = NULL`); !isSQLState(err, "LT003") {
		t.Errorf("un-revoking: err = %v, want SQLSTATE LT003", err)
	}
	if _, err := tokens.Authenticate(ctx, api.HashToken(secret)); !errors.Is(err, api.ErrUnauthenticated) {
		t.Errorf("Authenticate after refused changes: err = %v, want ErrUnauthenticated", err)
	}
	p, err := tokens.ListTokens(ctx)
	if err != nil || len(p) != 1 || !slices.Equal(p[0].Roles, []string{wire.RoleReader}) {
		t.Errorf("after refused changes: %+v, %v", p, err)
	}
}

func isSQLState(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// Listen hears a revocation made through another Tokens value (as another
// process would), with the id as Authenticate names the token.
func TestListenHearsRevocations(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.MigratedDatabase(t)
	listener := postgres.NewTokens(testenv.Pool(t, dbURL))
	revoker := postgres.NewTokens(testenv.Pool(t, dbURL))
	secret, tok := mustCreate(t, revoker, "x", wire.RoleReader)
	if _, err := listener.Authenticate(ctx, api.HashToken(secret)); err != nil {
		t.Fatal(err)
	}

	heard := make(chan string, 10)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- listener.Listen(lctx, func(id string) { heard <- id }) }()
	next := func() string {
		t.Helper()
		select {
		case id := <-heard:
			return id
		case err := <-done:
			t.Fatalf("Listen returned early: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("nothing heard for 10s")
		}
		return ""
	}
	// Listening: the empty id says "drop every cached authentication".
	if got := next(); got != "" {
		t.Fatalf("first call: got %q, want the empty id", got)
	}
	if err := revoker.RevokeToken(ctx, strings.ToUpper(tok.ID), "test", ""); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), tok.ID; got != want {
		t.Fatalf("heard %q, want %q", got, want)
	}
	// A refused revocation announces nothing.
	if err := revoker.RevokeToken(ctx, "00000000-0000-4000-8000-000000000000", "test", ""); !errors.Is(err, api.ErrTokenNotFound) {
		t.Fatal(err)
	}
	select {
	case id := <-heard:
		t.Errorf("heard %q after a failed revocation", id)
	case <-time.After(200 * time.Millisecond):
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Listen after cancel: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not return 10s after cancel")
	}
}

// Listen survives a lost connection: it reconnects, says so with the empty
// id, and hears later revocations.
func TestListenReconnects(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.MigratedDatabase(t)
	pool := testenv.Pool(t, dbURL)
	tokens := postgres.NewTokens(pool)
	_, tok := mustCreate(t, tokens, "x", wire.RoleReader)

	heard := make(chan string, 10)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = tokens.Listen(lctx, func(id string) { heard <- id }) }()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-heard:
			if got != want {
				t.Fatalf("heard %q, want %q", got, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("nothing heard for 15s, want %q", want)
		}
	}
	expect("")
	// Kill the listening backend, as a failover or a restart would.
	var killed int
	if err := pool.QueryRow(ctx, `
SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %') k`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listening backends, %v; want 1", killed, err)
	}
	expect("")
	if err := tokens.RevokeToken(ctx, tok.ID, "test", ""); err != nil {
		t.Fatal(err)
	}
	expect(tok.ID)
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	pool := MustOpenPool(t)
	log := postgres.NewAccessLog(pool)
	ref := strings.Repeat("ab", 32)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rec := api.AccessRecord{At: at, TokenID: "0b7c1a52-4f0e-4d7a-9a53-1f6a4c1f2e3d", Method: "GET",
		Route: "/v1/streams/{streamId}/events", RequestID: "req-1", StreamIDs: []string{"lead-1"},
		SubjectRefs: []string{ref}, Events: 3}
	if err := log.RecordAccess(ctx, rec); err != nil {
		t.Fatalf("RecordAccess: %v", err)
	}
	// No time given: the database's.
	if err := log.RecordAccess(ctx, api.AccessRecord{TokenID: api.BootstrapTokenID, Method: "GET", Route: "/v1/events"}); err != nil {
		t.Fatalf("RecordAccess without time: %v", err)
	}
	// A subject id instead of a reference never reaches the table.
	if err := log.RecordAccess(ctx, api.AccessRecord{TokenID: "t", SubjectRefs: []string{"ada@example.com"}}); err == nil {
		t.Error("RecordAccess with a subject id: got nil, want an error")
	}
	if err := log.RecordAccess(ctx, api.AccessRecord{SubjectRefs: []string{ref}}); err == nil {
		t.Error("RecordAccess without a token id: got nil, want an error")
	}

	// Who was shown the subject's data: the GIN-indexed lookup.
	type row struct {
		At                     time.Time
		TokenID, Method, Route string
		RequestID              string
		StreamIDs, SubjectRefs []string
		Events                 int
	}
	rows, err := pool.Query(ctx, `
SELECT at, token_id, method, route, request_id, stream_ids, subject_refs, events
FROM access_log WHERE subject_refs @> ARRAY[$1]::text[] ORDER BY id`, ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	want := row{at, rec.TokenID, "GET", rec.Route, "req-1", []string{"lead-1"}, []string{ref}, 3}
	if len(got) != 1 || !got[0].At.Equal(want.At) || got[0].TokenID != want.TokenID || got[0].Method != want.Method ||
		got[0].Route != want.Route || got[0].RequestID != want.RequestID || !slices.Equal(got[0].StreamIDs, want.StreamIDs) ||
		!slices.Equal(got[0].SubjectRefs, want.SubjectRefs) || got[0].Events != want.Events {
		t.Fatalf("access to the subject: got %+v, want [%+v]", got, want)
	}
	var n int
	var latest time.Time
	if err := pool.QueryRow(ctx, `SELECT count(*), max(at) FROM access_log`).Scan(&n, &latest); err != nil || n != 2 || time.Since(latest) > time.Minute {
		t.Fatalf("access_log: %d rows, latest at %v, %v; want 2, the second now", n, latest, err)
	}

	// Append-only, whoever asks (the tests connect as a superuser).
	for _, stmt := range []string{
		`UPDATE access_log SET token_id = 'someone-else'`,
		`UPDATE access_log SET events = 0 WHERE false`,
		`DELETE FROM access_log`,
		`DELETE FROM access_log WHERE false`,
		`TRUNCATE access_log`,
	} {
		if _, err := pool.Exec(ctx, stmt); !isSQLState(err, "LT001") {
			t.Errorf("%s: err = %v, want SQLSTATE LT001", stmt, err)
		}
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE token_id = $1`, rec.TokenID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after refused changes: %d rows of the token, %v; want 1", n, err)
	}
}
