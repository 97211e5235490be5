// Package postgres stores the HTTP API's tokens and access log in
// PostgreSQL (migrations/004_api.sql): Tokens implements api.TokenStore and
// AccessLog implements api.AccessLog. AuditTrail implements api.AuditTrail:
// it reads the audit trail from the append-only tables that record each
// action (migrations/009_audit.sql), and token changes write their
// audit_log rows in their own transactions.
//
// Tokens are stored as SHA-256 hashes only; the secret is shown once, when
// the token is created. A revocation commits together with a NOTIFY on
// TokenChannel, and Tokens.Listen hands revoked token ids to a callback, so
// that every server process drops its cached authentications at once.
//
// The access log says who was shown whose personal data, when and where:
// subjects appear as references, never as ids, and the table is
// append-only, enforced by the database.
package postgres
