-- The event log. One row per event; a stream is the rows sharing a stream_id.
--
-- position: the event's place in the global log ($all). It is derived from
-- the appending transaction's id: (xid << 16) + index of the event in its
-- append. Readers of $all only read positions below the visibility horizon
-- (the oldest transaction id still running, shifted the same way), so a
-- reader that asks for "events after P" never skips an event committed late
-- by an older transaction. See docs/architecture.md.
CREATE TABLE events (
    position    bigint      NOT NULL,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- The stream's category: the part of its id before the first "-".
    category    text        GENERATED ALWAYS AS (split_part(stream_id, '-', 1)) STORED,
    CONSTRAINT events_stream_version_pk PRIMARY KEY (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_version_check CHECK (version >= 0),
    CONSTRAINT events_data_object_check CHECK (jsonb_typeof(data) = 'object'),
    CONSTRAINT events_metadata_object_check CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE UNIQUE INDEX events_position_key ON events (position);
-- No index on type: type filters are applied to the position-ordered scan
-- (a follower reads each event once either way). See docs/architecture.md.
CREATE INDEX events_category_position_idx ON events (category, position);

-- Append-only, enforced by the database: any UPDATE, DELETE or TRUNCATE on
-- the events table fails, whoever runs it. (Only the table's owner can
-- disable the trigger; the application role should not own it: see
-- docs/operations.md.)
CREATE FUNCTION lethe_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lethe: % on table % is not allowed: it is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'LT001',
              HINT = 'Events are never changed or deleted. To forget a person, erase the data subject (crypto-shredding).';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_change();

---- create above / drop below ----

DROP TABLE events;
DROP FUNCTION lethe_reject_change();
