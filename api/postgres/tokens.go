package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
)

// TokenChannel is the LISTEN/NOTIFY channel on which the id of a revoked
// token is announced, so that every process drops its cached
// authentications of it.
const TokenChannel = "lethe_tokens"

// Tokens is api.TokenStore on PostgreSQL (table api_tokens).
type Tokens struct {
	pool *pgxpool.Pool
}

var _ api.TokenStore = (*Tokens)(nil)

// NewTokens returns the token store on pool.
func NewTokens(pool *pgxpool.Pool) *Tokens { return &Tokens{pool: pool} }

// Authenticate implements api.TokenStore: it returns the principal of the
// unrevoked token with this hash, or an error wrapping
// api.ErrUnauthenticated.
func (t *Tokens) Authenticate(ctx context.Context, hash [32]byte) (api.Principal, error) {
	var p api.Principal
	err := t.pool.QueryRow(ctx, `SELECT id::text, name, roles FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL`,
		hash[:]).Scan(&p.TokenID, &p.Name, &p.Roles)
	if errors.Is(err, pgx.ErrNoRows) {
		return api.Principal{}, fmt.Errorf("authenticate: %w", api.ErrUnauthenticated)
	}
	if err != nil {
		return api.Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	return p, nil
}

// CreateToken implements api.TokenStore. It refuses unknown roles
// (api.ErrInvalidRole) and an id that is not a UUID. The token and its
// audit_log row (token.created: id, name, roles; never the secret or its
// hash) commit together.
func (t *Tokens) CreateToken(ctx context.Context, nt api.NewToken) (wire.Token, error) {
	if err := api.ValidateRoles(nt.Roles); err != nil {
		return wire.Token{}, fmt.Errorf("create token: %w", err)
	}
	id, ok := parseUUID(nt.ID)
	if !ok {
		return wire.Token{}, errors.New("create token: the id is not a UUID")
	}
	if nt.CreatedBy == "" {
		return wire.Token{}, errors.New("create token: no creator")
	}
	tok := wire.Token{ID: nt.ID, Name: nt.Name, Roles: slices.Clone(nt.Roles), CreatedBy: nt.CreatedBy}
	err := pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
INSERT INTO api_tokens (id, name, roles, token_hash, created_by) VALUES ($1, $2, $3, $4, $5)
RETURNING id::text, created_at`,
			id, nt.Name, nt.Roles, nt.Hash[:], nt.CreatedBy).Scan(&tok.ID, &tok.CreatedAt)
		if err != nil {
			return err
		}
		return auditToken(ctx, tx, "token.created", tok.ID, nt.Name, nt.Roles, nt.CreatedBy, nt.RequestID)
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
		return wire.Token{}, fmt.Errorf("create token: a token with this id or secret exists (%s)", pgErr.ConstraintName)
	case err != nil:
		return wire.Token{}, fmt.Errorf("create token: %w", err)
	}
	tok.CreatedAt = tok.CreatedAt.UTC()
	return tok, nil
}

// auditToken writes a token change's audit_log row in tx: the token's id,
// name and roles.
func auditToken(ctx context.Context, tx pgx.Tx, kind, id, name string, roles []string, by, requestID string) error {
	_, err := tx.Exec(ctx, `
INSERT INTO audit_log (kind, actor, request_id, details)
VALUES ($1, $2, $3, jsonb_build_object('tokenId', $4::text, 'name', $5::text, 'roles', $6::text[]))`,
		kind, by, requestID, id, name, roles)
	return err
}

// ListTokens implements api.TokenStore: every token, revoked ones
// included, oldest first. Secrets are never stored, so never listed.
func (t *Tokens) ListTokens(ctx context.Context) ([]wire.Token, error) {
	rows, err := t.pool.Query(ctx, `
SELECT id::text, name, roles, created_at, created_by, revoked_at FROM api_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	toks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (wire.Token, error) {
		var (
			tok     wire.Token
			revoked pgtype.Timestamptz
		)
		if err := row.Scan(&tok.ID, &tok.Name, &tok.Roles, &tok.CreatedAt, &tok.CreatedBy, &revoked); err != nil {
			return tok, err
		}
		tok.CreatedAt = tok.CreatedAt.UTC()
		if revoked.Valid {
			at := revoked.Time.UTC()
			tok.RevokedAt = &at
		}
		return tok, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return toks, nil
}

// RevokeToken implements api.TokenStore. Revoking a revoked token keeps its
// first revocation time and records nothing. The revocation, its audit_log
// row (token.revoked: id, name, roles) and its announcement on
// TokenChannel commit together. It returns api.ErrTokenNotFound for an
// unknown id, or one that is not a UUID.
func (t *Tokens) RevokeToken(ctx context.Context, id, by, requestID string) error {
	uuid, ok := parseUUID(id)
	if !ok {
		return fmt.Errorf("revoke token: %w", api.ErrTokenNotFound)
	}
	if by == "" {
		return errors.New("revoke token: no actor")
	}
	err := pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		// The id as the database spells it (lowercase), which is how
		// Authenticate names the token, so listeners match it. The row
		// lock makes one of two concurrent revocations the first.
		var (
			stored, name string
			roles        []string
			revoked      bool
		)
		err := tx.QueryRow(ctx, `SELECT id::text, name, roles, revoked_at IS NOT NULL FROM api_tokens WHERE id = $1 FOR UPDATE`,
			uuid).Scan(&stored, &name, &roles, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return api.ErrTokenNotFound
		}
		if err != nil {
			return err
		}
		if !revoked {
			if _, err := tx.Exec(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE id = $1`, uuid); err != nil {
				return err
			}
			if err := auditToken(ctx, tx, "token.revoked", stored, name, roles, by, requestID); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, TokenChannel, stored)
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// Listen calls onRevoke with the id of each token revoked by any process,
// until ctx ends; it then returns nil. It holds one dedicated connection
// and reconnects on failure, with back-off. Each time it starts listening
// (the first time and after every reconnection) it calls onRevoke with the
// empty id, meaning "any token": revocations announced before then were not
// heard, so drop every cached authentication.
func (t *Tokens) Listen(ctx context.Context, onRevoke func(id string)) error {
	const maxBackoff = 5 * time.Second
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		listening, _ := t.listenConn(ctx, onRevoke)
		if ctx.Err() != nil {
			break
		}
		if listening {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// listenConn holds one LISTEN connection until it fails or ctx ends, and
// reports whether it got as far as listening.
func (t *Tokens) listenConn(ctx context.Context, onRevoke func(string)) (listening bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, t.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+TokenChannel); err != nil {
		return false, err
	}
	onRevoke("") // anything revoked before LISTEN took effect
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		if n.Channel == TokenChannel && n.Payload != "" {
			onRevoke(n.Payload)
		}
	}
}

// parseUUID parses the textual form of a UUID, 8-4-4-4-12 hex digits.
func parseUUID(s string) (pgtype.UUID, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return pgtype.UUID{}, false
	}
	var u pgtype.UUID
	src := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(u.Bytes[:], []byte(src)); err != nil {
		return pgtype.UUID{}, false
	}
	u.Valid = true
	return u, true
}
