-- The database is bound to one subject reference secret. Every subject
-- reference in it is an HMAC under that secret (kept in Vault); a server
-- reaching another secret (another LETHE_VAULT_PREFIX, a Vault restored
-- from another backup, the secret deleted and created again) would make
-- other references for the same people, and an erasure through one server
-- would leave their data readable through another. The first server that
-- needs the secret records its fingerprint here (an HMAC under the secret
-- of a fixed label, never the secret); every server compares, and refuses
-- to start on a mismatch (keystore/vault, forgettable/postgres). One row,
-- append-only.
--
-- Application role (docs/operations.md): SELECT, INSERT on
-- reference_binding.
CREATE TABLE reference_binding (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    fingerprint text        NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    bound_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER reference_binding_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON reference_binding
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();

---- create above / drop below ----

DROP TABLE reference_binding;
