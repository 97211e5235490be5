-- The HTTP API: its tokens and the log of who was shown personal data.
--
-- Application role (docs/operations.md): SELECT, INSERT on api_tokens and
-- UPDATE (revoked_at) on it, for revocation; SELECT, INSERT on access_log.

-- API tokens, as SHA-256 hashes only: the secret is shown once, when the
-- token is created, and never stored. A token is revoked by setting
-- revoked_at; a revocation is final (trigger below). Revoked tokens stay, so
-- that the access log's token ids keep their meaning.
CREATE TABLE api_tokens (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL DEFAULT '',
    roles      text[]      NOT NULL,
    token_hash bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text        NOT NULL,
    revoked_at timestamptz NULL,
    CONSTRAINT api_tokens_hash_check CHECK (octet_length(token_hash) = 32),
    CONSTRAINT api_tokens_roles_check CHECK (cardinality(roles) > 0)
);

-- A token changes once, when it is revoked: nothing else about it changes,
-- and a revoked token (whose secret may have leaked) never comes back.
-- Setting revoked_at to the value it has is allowed (revoking twice).
CREATE FUNCTION lethe_api_tokens_revoke_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.name, NEW.roles, NEW.token_hash, NEW.created_at, NEW.created_by)
           IS DISTINCT FROM (OLD.id, OLD.name, OLD.roles, OLD.token_hash, OLD.created_at, OLD.created_by)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at) THEN
        RAISE EXCEPTION 'lethe: an API token can only be revoked, once'
            USING ERRCODE = 'LT003',
                  HINT = 'Create a new token instead of changing or un-revoking one.';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER api_tokens_revoke_only BEFORE UPDATE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION lethe_api_tokens_revoke_only();

-- The access log: one row per API response that carried decrypted personal
-- data (who, when, which route, whose), never the data itself. Subjects
-- appear as references (64 hex digits), never as ids. Append-only.
CREATE TABLE access_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    token_id     text        NOT NULL,
    method       text,
    route        text, -- the route pattern, e.g. /v1/streams/{streamId}/events
    request_id   text,
    stream_ids   text[]      COLLATE "C",
    subject_refs text[]      COLLATE "C",
    events       integer
);
CREATE INDEX access_log_at_idx ON access_log (at);
-- Who was shown a subject's data: audits and subject access requests.
CREATE INDEX access_log_subject_refs_idx ON access_log USING gin (subject_refs);

CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();

---- create above / drop below ----

DROP TABLE access_log, api_tokens;
DROP FUNCTION lethe_api_tokens_revoke_only();
