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
    -- Byte order (COLLATE "C"): stream ids are ASCII, and a libc collation
    -- would cost every comparison and can change under an OS upgrade.
    stream_id   text        COLLATE "C" NOT NULL,
    version     bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_pk PRIMARY KEY (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_version_check CHECK (version >= 0)
);

CREATE UNIQUE INDEX events_position_key ON events (position);
-- Only the three indexes an event store cannot do without: each index costs
-- every append a WAL record and a B-tree insertion. Type and category filters
-- on $all run on the position-ordered scan (a follower reads each event once
-- either way); see docs/architecture.md. JSON shapes are checked in Go.

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
