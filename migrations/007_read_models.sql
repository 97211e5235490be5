-- The built-in read models' tables (projection/postgres): created here, by
-- the owner, so that the application role needs no CREATE privilege.
--
-- Application role (docs/operations.md): SELECT, INSERT, UPDATE, DELETE on
-- read_analytics; SELECT, INSERT, DELETE on read_lookup.
--
-- read_lookup's blind indexes are keyed by the lookup key: derived from the
-- subject-reference secret in Vault (vault.Store.DerivedKey: an HMAC, under
-- that secret, of a label longer than any subject id) and stored nowhere.
-- Migration 008 asks for a rebuild of the index under that key.

-- The analysis model: event counts per category, day and type. No
-- personal data.
CREATE TABLE read_analytics (
    category   text   COLLATE "C" NOT NULL,
    day        date   NOT NULL,
    event_type text   COLLATE "C" NOT NULL,
    count      bigint NOT NULL,
    PRIMARY KEY (category, day, event_type)
);

-- The lookup index: keyed blind indexes (HMAC under the lookup key, see
-- above) of category, field and value, never values; subject_refs name the
-- subjects of the event an entry came from, so that an erasure deletes it.
CREATE TABLE read_lookup (
    blind        text   COLLATE "C" NOT NULL,
    stream_id    text   COLLATE "C" NOT NULL,
    subject_refs text[] COLLATE "C" NOT NULL DEFAULT '{}',
    UNIQUE (blind, stream_id, subject_refs)
);
CREATE INDEX read_lookup_subject_refs_idx ON read_lookup USING gin (subject_refs);

---- create above / drop below ----

DROP TABLE read_lookup, read_analytics;
