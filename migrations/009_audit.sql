-- The audit trail and the tamper-evident log (docs/gdpr.md "The audit
-- trail", docs/architecture.md "The hash chain").
--
-- The audit trail is not one table: it is read (api/postgres, audit.go)
-- from the append-only tables that already record each action, so that no
-- action is written twice and none can be recorded without happening:
--   events            appends (stream, versions, actor, subject references)
--   access_log        responses that carried decrypted personal data
--   erasures, erasure_completions, legal_holds, readmissions
--   audit_log         (below) key rotations, policy changes, token changes
-- Every one of them refuses UPDATE, DELETE and TRUNCATE (lethe_reject_change).
--
-- Application role (docs/operations.md): SELECT, INSERT on audit_log.

-- Who appended the event: "token:<id>" for an API token, "cli:USER" for the command
-- line, the erasure's actor for erasure records. NULL when the writer named
-- none (a library user) and for events appended before this migration.
ALTER TABLE events ADD COLUMN actor text;

-- The event's link in its stream's hash chain: SHA-256 over the previous
-- event's link and this event as stored (ciphertext, never plaintext; see
-- eventstore.ChainLink). Erasure deletes keys, never rows, so it never
-- breaks a link. NULL only for events appended before this migration: NOT
-- VALID makes the check hold for every new row without reading old ones.
ALTER TABLE events ADD COLUMN link bytea;
ALTER TABLE events ADD CONSTRAINT events_link_check
    CHECK (link IS NOT NULL AND octet_length(link) = 32) NOT VALID;

-- Time-range reads of the log (the audit export). BRIN: a few pages for the
-- whole table, and nearly free to appends, because recorded_at grows with
-- the heap's physical order in an append-only table.
CREATE INDEX events_recorded_at_brin ON events USING brin (recorded_at);

-- The actions that no other table records, with who did them. details is
-- a small JSON object of references and names (an event type, a token's
-- id and roles, a key version), never personal data. Append-only.
CREATE TABLE audit_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    kind         text        NOT NULL,
    actor        text        NOT NULL,
    request_id   text        NOT NULL DEFAULT '',
    subject_refs text[]      COLLATE "C",
    details      jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT audit_log_kind_check CHECK (kind IN (
        'key.rotated', 'policy.put', 'policy.deleted', 'token.created', 'token.revoked'))
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();

-- Time-range reads of the other sources.
CREATE INDEX erasures_requested_at_idx ON erasures (requested_at);
CREATE INDEX legal_holds_at_idx ON legal_holds (at);

---- create above / drop below ----

DROP INDEX legal_holds_at_idx, erasures_requested_at_idx;
DROP TABLE audit_log;
DROP INDEX events_recorded_at_brin;
ALTER TABLE events DROP CONSTRAINT events_link_check;
ALTER TABLE events DROP COLUMN link;
ALTER TABLE events DROP COLUMN actor;
