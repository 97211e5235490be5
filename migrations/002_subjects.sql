-- Crypto-shredding: which data subjects each event holds personal data of,
-- the erasure ledger, legal holds, re-admissions and protection policies.
--
-- Subjects appear here only as references (keystore.Ref: 64 hex digits, an
-- HMAC of the subject id under a secret kept in Vault), never as ids.
--
-- Application role (docs/operations.md): SELECT, INSERT on every table
-- below; also UPDATE, DELETE on protection_policies.

-- The subjects whose personal data an event carries (sealed fields).
ALTER TABLE events ADD COLUMN subject_refs text[] COLLATE "C" NOT NULL DEFAULT '{}';

-- Events by subject: erasure receipts and subject access exports. Partial:
-- events without personal data cost nothing.
CREATE INDEX events_subject_refs_idx ON events USING gin (subject_refs) WHERE subject_refs <> '{}';

-- The erasure ledger: the source of truth that a subject was forgotten.
-- A row here fences the subject: appends carrying its reference are refused
-- (trigger below) and reads show its fields as forgotten, whatever any cache
-- or Vault says. Append-only.
CREATE TABLE erasures (
    erasure_id   uuid        PRIMARY KEY,
    subject_ref  text        COLLATE "C" NOT NULL UNIQUE,
    requested_at timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL,
    request_id   text        NOT NULL DEFAULT '',
    reason       text        NOT NULL DEFAULT '',
    legal_basis  text        NOT NULL DEFAULT ''
);

-- What an erasure did, recorded once the key is destroyed. Append-only.
CREATE TABLE erasure_completions (
    erasure_id          uuid        PRIMARY KEY REFERENCES erasures,
    completed_at        timestamptz NOT NULL DEFAULT now(),
    key_existed         boolean     NOT NULL,
    versions_destroyed  integer     NOT NULL,
    key_verified_gone   boolean     NOT NULL,
    streams_affected    bigint      NOT NULL,
    events_affected     bigint      NOT NULL
);

-- Legal holds (GDPR Art. 17(3)): a held subject cannot be erased. A log of
-- placements and releases; the latest entry per subject decides.
-- Append-only.
CREATE TABLE legal_holds (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_ref text        COLLATE "C" NOT NULL,
    held        boolean     NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    reason      text        NOT NULL DEFAULT ''
);
CREATE INDEX legal_holds_subject_idx ON legal_holds (subject_ref, id DESC);

-- Re-admission of an erased subject: its new data goes under a new, random
-- reference (and a new key); the erased one stays erased forever.
-- Append-only.
CREATE TABLE readmissions (
    erased_ref    text        COLLATE "C" PRIMARY KEY REFERENCES erasures (subject_ref),
    successor_ref text        COLLATE "C" NOT NULL UNIQUE,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text        NOT NULL,
    reason        text        NOT NULL DEFAULT ''
);

-- Protection policies: fields of an event type that are always personal
-- data. Managed by admins; the current policy per type.
CREATE TABLE protection_policies (
    event_type text        PRIMARY KEY,
    paths      text[]      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);

CREATE TRIGGER erasures_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON erasures
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();
CREATE TRIGGER erasure_completions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON erasure_completions
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();
CREATE TRIGGER legal_holds_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON legal_holds
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();
CREATE TRIGGER readmissions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON readmissions
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();

-- The fence: an event may not carry personal data of an erased subject,
-- whatever wrote it. Only events with personal data run the function.
CREATE FUNCTION lethe_refuse_erased_subjects() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    erased text;
BEGIN
    SELECT subject_ref INTO erased FROM erasures WHERE subject_ref = ANY (NEW.subject_refs) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lethe: event carries personal data of an erased data subject'
            USING ERRCODE = 'LT002', DETAIL = erased,
                  HINT = 'An erased subject needs an explicit re-admission before new personal data.';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_refuse_erased_subjects
    BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.subject_refs <> '{}')
    EXECUTE FUNCTION lethe_refuse_erased_subjects();

---- create above / drop below ----

DROP TRIGGER events_refuse_erased_subjects ON events;
DROP FUNCTION lethe_refuse_erased_subjects();
DROP TABLE protection_policies, readmissions, legal_holds, erasure_completions, erasures;
DROP INDEX events_subject_refs_idx;
ALTER TABLE events DROP COLUMN subject_refs;
