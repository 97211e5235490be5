-- The hash chain's links for an append of several events in one statement
-- (eventstore/postgres appendSQL; docs/architecture.md "The hash chain").
--
-- Each event's link is SHA-256 over the previous event's link (32 zero
-- bytes for a stream's first event, or when the event before was stored
-- before migration 009 and has none), the event's version, position and
-- recorded_at in Unix microseconds (8 bytes big-endian each), and the
-- event's content digest, which the application computes
-- (eventstore.ContentDigest). Given the link before the append, the
-- append's first version, first position, time and the digests, this
-- returns the links in order: links[i] chains on links[i-1].
-- eventstore.ChainLink is the same formula in Go; the verifier
-- (`lethe verify`) recomputes every link with it.
--
-- Application role (docs/operations.md): EXECUTE on lethe_chain_links
-- (PUBLIC has it unless revoked).
CREATE FUNCTION lethe_chain_links(prev bytea, first_version bigint, first_position bigint, at_us bigint, digests bytea[])
RETURNS bytea[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    link  bytea := coalesce(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    links bytea[] := '{}';
BEGIN
    FOR i IN 1 .. coalesce(array_length(digests, 1), 0) LOOP
        link := sha256(link || int8send(first_version + i - 1) || int8send(first_position + i - 1) || int8send(at_us) || digests[i]);
        links := links || link;
    END LOOP;
    RETURN links;
END;
$$;

---- create above / drop below ----

DROP FUNCTION lethe_chain_links(bytea, bigint, bigint, bigint, bytea[]);
