-- State snapshots of streams: the generic fold's state at a version, folded
-- from the events as stored, so personal fields hold their sealed
-- envelopes (under the subjects' keys: an erasure shreds them here too) and
-- no plaintext is ever written. A load reads the newest snapshot at or
-- before the point asked for, then the events after it.
--
-- Application role (docs/operations.md): SELECT, INSERT on snapshots
-- (DELETE to prune them by hand).
CREATE TABLE snapshots (
    stream_id    text        COLLATE "C" NOT NULL,
    version      bigint      NOT NULL,
    -- The recording time of the snapshot's last event (time travel).
    recorded_at  timestamptz NOT NULL,
    snapshot     jsonb       NOT NULL,
    -- The subjects whose sealed data the snapshot may hold.
    subject_refs text[]      COLLATE "C",
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);

---- create above / drop below ----

DROP TABLE snapshots;
