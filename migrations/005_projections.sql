-- Persisted projections: the checkpoint of each registered projection (the
-- position of $all it has applied up to), written in the same transaction
-- as its read model, so that a crash never loses or doubles an effect.
--
-- Application role (docs/operations.md): SELECT, INSERT, UPDATE on
-- projection_checkpoints. The built-in read models' tables come with
-- migration 007; a projection of your own creates its tables with a
-- migration, or with its optional Setup, and needs the privileges its
-- handlers use.
--
-- last_error holds a fixed text (when the last batch failed; see the
-- server log), never an error text, which could quote data.
CREATE TABLE projection_checkpoints (
    name            text        COLLATE "C" PRIMARY KEY,
    -- Every event of $all up to position has been applied.
    position        bigint      NOT NULL DEFAULT 0,
    -- Set by a rebuild request: the runner empties the read model (Reset)
    -- in the transaction of its next batch.
    reset_requested boolean     NOT NULL DEFAULT false,
    events_applied  bigint      NOT NULL DEFAULT 0,
    -- The recording time of the last event applied.
    last_event_at   timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Whether the last batch failed: a fixed text with the time, never an
    -- error's text (the server log has it).
    last_error      text        NOT NULL DEFAULT ''
);

---- create above / drop below ----

DROP TABLE projection_checkpoints;
