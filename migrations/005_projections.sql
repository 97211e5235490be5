-- Persisted projections: the checkpoint of each registered projection (the
-- position of $all it has applied up to), written in the same transaction
-- as its read model, so that a crash never loses or doubles an effect.
--
-- Application role (docs/operations.md): SELECT, INSERT, UPDATE on
-- projection_checkpoints; the read models' own tables are created by the
-- projections (Setup) and need the privileges their handlers use.
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
    -- The last batch's error (no personal data: error texts name events by id).
    last_error      text        NOT NULL DEFAULT ''
);

---- create above / drop below ----

DROP TABLE projection_checkpoints;
